"""Models of the users' scripts: the CIFAR ResNet-18, a ResNet-9, torchvision's ResNet-18
(optionally ImageNet-pretrained) and ResNet-50, and the PyTorch tutorial CNN."""

from __future__ import annotations

import os

import torch
from torch import nn

from ablate import hookimpl
from ablate.components import Registrar
from ablate.errors import SetupError
from ablate.params import param


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place, as torchvision's BasicBlock: BatchNorm's backward needs its input, not its
        # output, so the output can take the ReLU and the residual without a new tensor.
        out = self.bn1(self.conv1(x)).relu_()
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return torch.relu_(out)


class CifarResNet(nn.Module):
    """3x3 stem (optionally max-pooled), four stages of BasicBlocks whose channels double,
    global average pool, dropout, linear."""

    def __init__(self, num_classes: int, width: int, dropout: float, blocks: int, stem_pool: bool) -> None:
        super().__init__()
        stem: list[nn.Module] = [
            nn.Conv2d(3, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        if stem_pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        in_channels = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            out_channels = width * multiplier
            stride = 1 if index == 0 else 2
            stages.append(BasicBlock(in_channels, out_channels, stride))
            stages += [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        logits: torch.Tensor = self.classifier(self.dropout(features))
        return logits


class SimpleCNN(nn.Module):
    """The PyTorch tutorial network: conv 3->6 5x5, pool, conv 6->16 5x5, pool, 400-120-84-10."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def _check_width(width: int) -> None:
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def resnet18(*, num_classes: int, width: int = 64, dropout: float = 0.0) -> nn.Module:
    _check_width(width)
    _check_dropout(dropout)
    return CifarResNet(num_classes, width, dropout, blocks=2, stem_pool=False)


def resnet9(*, num_classes: int, width: int = 64, dropout: float = 0.0) -> nn.Module:
    _check_width(width)
    _check_dropout(dropout)
    return CifarResNet(num_classes, width, dropout, blocks=1, stem_pool=True)


def resnet50(*, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """torchvision's ResNet-50 (7x7 stride-2 stem, max-pool, bottleneck stages 3-4-6-3), random
    initialisation; ``dropout`` goes before the classifier, as the users' fine-tuning heads do."""
    from torchvision.models import resnet50 as torchvision_resnet50

    _check_dropout(dropout)
    model = torchvision_resnet50(weights=None, num_classes=num_classes)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    built: nn.Module = model
    return built


WEIGHTS_ENV = "ABLATE_WEIGHTS"  # a folder of downloaded weight files, for offline machines


class WeightsNotFound(SetupError, RuntimeError):
    """Pretrained weights are neither on disk nor downloadable."""


def _imagenet_state(url: str) -> dict[str, torch.Tensor]:
    """Weights from ``$ABLATE_WEIGHTS`` (else torch's hub cache), downloaded there if missing;
    read with ``weights_only=True`` and, on download, checked against the hash in the name."""
    folder = os.environ.get(WEIGHTS_ENV) or os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=folder, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as error:  # offline: URLError is an OSError
        name = url.rsplit("/", 1)[-1]
        raise WeightsNotFound(
            f"ImageNet weights {name} are not in {folder} and could not be downloaded "
            f"({error}). On a machine with internet, download {url} and put the file in a "
            f"folder named by {WEIGHTS_ENV}=PATH (or in {folder}); or train with "
            "pretrained=False."
        ) from error


def torchvision_resnet18(*, num_classes: int, pretrained: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's ResNet-18 (7x7 stride-2 stem, max-pool), optionally with its ImageNet
    weights, every layer trainable; the classifier is replaced by Dropout + Linear(512,
    classes), as the users' fine-tuning script does."""
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as build

    _check_dropout(dropout)
    model = build(weights=None)
    if pretrained:
        model.load_state_dict(_imagenet_state(ResNet18_Weights.IMAGENET1K_V1.url))
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    model.fc = head
    built: nn.Module = model
    return built


class ConvBN(nn.Sequential):
    """YOLOv5's Conv: convolution, BatchNorm, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """YOLOv5's Bottleneck: a 1x1 then a 3x3 ConvBN, with the input added back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = ConvBN(channels, channels, 1)
        self.spread = ConvBN(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread: torch.Tensor = self.spread(self.reduce(x))
        return x + spread


class C3(nn.Module):
    """YOLOv5's C3 (a CSP block): two 1x1 branches of half the channels, one through
    ``bottlenecks`` residual Bottlenecks; concatenated and fused by a 1x1."""

    def __init__(self, in_channels: int, out_channels: int, bottlenecks: int) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.through = ConvBN(in_channels, hidden, 1)
        self.blocks = nn.Sequential(*(Bottleneck(hidden) for _ in range(bottlenecks)))
        self.beside = ConvBN(in_channels, hidden, 1)
        self.fuse = ConvBN(2 * hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused: torch.Tensor = self.fuse(torch.cat((self.blocks(self.through(x)), self.beside(x)), 1))
        return fused


class CifarC3Net(nn.Module):
    """The CIFAR ResNet-18 layout with each stage's BasicBlocks replaced by a C3 block: 3x3 stem,
    four stages whose channels double (stages 2-4 open with a strided 3x3 ConvBN, as YOLOv5
    downsamples), global average pool, dropout, linear."""

    def __init__(self, num_classes: int, width: int, dropout: float, bottlenecks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        channels = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            out_channels = width * multiplier
            if index:
                stages.append(ConvBN(channels, out_channels, 3, 2))
            stages.append(C3(out_channels, out_channels, bottlenecks))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        logits: torch.Tensor = self.classifier(self.dropout(features))
        return logits


def resnet_c3(*, num_classes: int, width: int = 64, dropout: float = 0.0, bottlenecks: int = 2) -> nn.Module:
    _check_width(width)
    _check_dropout(dropout)
    if width < 2:
        raise ValueError(f"width must be at least 2 for the C3 halves, got {width}")
    return CifarC3Net(num_classes, width, dropout, bottlenecks)


def simple_cnn(*, num_classes: int) -> nn.Module:
    return SimpleCNN(num_classes)


WIDTH = param("channels of the first stage (64 in the paper; doubles per stage)", ge=1)
DROPOUT = param("dropout probability before the classifier", ge=0, lt=1)


@hookimpl
def register_models(register: Registrar) -> None:
    register(
        "resnet18",
        resnet18,
        "CIFAR ResNet-18: 3x3 stem, no max-pool, 4 stages of 2 BasicBlocks",
        params={"width": WIDTH, "dropout": DROPOUT},
    )
    register(
        "resnet9",
        resnet9,
        "ResNet-9: 3x3 stem with max-pool, 4 stages of 1 BasicBlock (the users' step up from "
        "the tutorial CNN)",
        params={"width": WIDTH, "dropout": DROPOUT},
    )
    register(
        "resnet_c3",
        resnet_c3,
        "the CIFAR ResNet-18 layout with each stage's BasicBlocks replaced by a YOLOv5 C3 "
        "block (two 1x1 branches, residual bottlenecks on one, concatenated, fused by a 1x1)",
        params={
            "width": param("channels of the first stage (doubles per stage)", ge=2),
            "dropout": DROPOUT,
            "bottlenecks": param(
                "residual Bottlenecks in each C3 block (2: one per BasicBlock it replaces)", ge=1
            ),
        },
    )
    register(
        "resnet50",
        resnet50,
        "torchvision's ResNet-50 (7x7 stride-2 stem, bottleneck stages 3-4-6-3), for larger "
        "images such as an imagefolder at size 224",
        params={"dropout": DROPOUT},
    )
    register(
        "torchvision_resnet18",
        torchvision_resnet18,
        "torchvision's ResNet-18 (7x7 stem, max-pool), optionally ImageNet-pretrained "
        "(weights from $ABLATE_WEIGHTS or a download), head Dropout + Linear",
        params={
            "pretrained": "start from the ImageNet weights (else random initialisation)",
            "dropout": param("dropout probability before the new classifier", ge=0, lt=1),
        },
    )
    register(
        "simple_cnn",
        simple_cnn,
        "the PyTorch tutorial CNN: two 5x5 convs with max-pool, then 400-120-84-classes",
    )
