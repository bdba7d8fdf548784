from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ablate_plugins import models
from ablate_plugins.models import (
    BasicBlock,
    WeightsNotFound,
    resnet9,
    resnet18,
    resnet50,
    simple_cnn,
    torchvision_resnet18,
)


def test_resnet18_is_the_cifar_variant() -> None:
    model = resnet18(num_classes=10, width=64)
    stem_conv = model.stem[0]
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert [b.conv2.out_channels for b in blocks[::2]] == [64, 128, 256, 512]
    assert [b.conv1.stride[0] for b in blocks[::2]] == [1, 2, 2, 2]
    assert model.classifier.in_features == 512
    # 11.17 M parameters: the figure usually quoted for the CIFAR ResNet-18.
    assert sum(p.numel() for p in model.parameters()) == 11_173_962


def test_width_scales_channels_and_dropout_sits_before_the_classifier() -> None:
    model = resnet18(num_classes=4, width=8, dropout=0.5)
    assert model.classifier.in_features == 64 and model.classifier.out_features == 4
    assert model.dropout.p == 0.5
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))  # dropout off in eval mode
    model.train()
    torch.manual_seed(0)
    features = model.pool(model.stages(model.stem(x))).flatten(1)
    assert (model.dropout(features) == 0).float().mean() > 0.3


def test_simple_cnn_is_the_tutorial_network() -> None:
    model = simple_cnn(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 62_006
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("factory", "bad"),
    [
        (resnet18, dict(width=0)),
        (resnet18, dict(dropout=1.0)),
        (resnet9, dict(width=0)),
        (resnet9, dict(dropout=-0.1)),
        (resnet50, dict(dropout=1.0)),
        (torchvision_resnet18, dict(dropout=1.5)),
    ],
)
def test_models_reject_bad_parameters(factory: object, bad: dict) -> None:
    with pytest.raises(ValueError, match="width|dropout"):
        factory(num_classes=10, **bad)  # type: ignore[operator]


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet9_is_torchvisions_resnet_with_one_block_per_stage_and_a_3x3_stem() -> None:
    from torchvision.models.resnet import BasicBlock as TorchvisionBlock
    from torchvision.models.resnet import ResNet

    model = resnet9(num_classes=10)
    assert isinstance(model.stem[0], nn.Conv2d) and model.stem[0].kernel_size == (3, 3)
    assert isinstance(model.stem[-1], nn.MaxPool2d)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert [b.conv2.out_channels for b in blocks] == [64, 128, 256, 512]
    # torchvision's layout with [1, 1, 1, 1] blocks, its 7x7 stem (3*64*49) swapped for 3x3.
    reference = ResNet(TorchvisionBlock, [1, 1, 1, 1], num_classes=10)
    assert parameters(model) == parameters(reference) - 3 * 64 * 49 + 3 * 64 * 9
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet50_is_torchvisions_with_dropout_before_the_classifier() -> None:
    model = resnet50(num_classes=4)
    assert parameters(model) == 23_516_228  # the users' "about 23.5 M" for 4 classes
    with_dropout = resnet50(num_classes=4, dropout=0.5)
    assert isinstance(with_dropout.fc[0], nn.Dropout) and with_dropout.fc[0].p == 0.5
    assert parameters(with_dropout) == parameters(model)


WEIGHTS_FILE = "resnet18-f37072fd.pth"  # torchvision's name for its ImageNet ResNet-18 weights


def test_pretrained_weights_come_from_the_weights_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import resnet18 as torchvision_build

    torch.manual_seed(5)
    stand_in = torchvision_build(weights=None).state_dict()  # ImageNet's would need the network
    torch.save(stand_in, tmp_path / WEIGHTS_FILE)
    monkeypatch.setenv(models.WEIGHTS_ENV, str(tmp_path))
    model = torchvision_resnet18(num_classes=10, pretrained=True, dropout=0.5)
    assert torch.equal(model.conv1.weight, stand_in["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, stand_in["layer4.1.bn2.running_var"])
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.5
    assert model.fc[1].in_features == 512 and model.fc[1].out_features == 10
    fresh = torchvision_resnet18(num_classes=10)
    assert not torch.equal(fresh.conv1.weight, stand_in["conv1.weight"])


def test_offline_without_weights_says_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    def offline(url: str, destination: str, *args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setenv(models.WEIGHTS_ENV, str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsNotFound) as raised:
        torchvision_resnet18(num_classes=10, pretrained=True)
    message = str(raised.value)
    assert WEIGHTS_FILE in message and "ABLATE_WEIGHTS=PATH" in message
    assert "https://download.pytorch.org/models/" + WEIGHTS_FILE in message
    assert "pretrained=False" in message


def test_resnet_c3_is_the_resnet18_layout_with_c3_blocks() -> None:
    """Parameter count from the layers' shapes, as YOLOv5's C3 defines them."""
    from ablate_plugins.models import C3, resnet_c3

    def conv_bn(c_in: int, c_out: int, kernel: int) -> int:
        return c_in * c_out * kernel * kernel + 2 * c_out

    def c3(c: int, bottlenecks: int) -> int:
        h = c // 2
        return (
            2 * conv_bn(c, h, 1) + conv_bn(2 * h, c, 1) + bottlenecks * (conv_bn(h, h, 1) + conv_bn(h, h, 3))
        )

    width, classes = 8, 10
    expected = 3 * width * 9 + 2 * width + c3(width, 2)
    for before, after in ((width, 2 * width), (2 * width, 4 * width), (4 * width, 8 * width)):
        expected += conv_bn(before, after, 3) + c3(after, 2)
    expected += 8 * width * classes + classes
    model = resnet_c3(num_classes=classes, width=width)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(isinstance(m, C3) for m in model.modules()) == 4
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)
