"""The timm model plugin (issue 29, item 3): any timm model by name, its classifier for the
dataset's classes, its input for the dataset's images, pretrained weights from a local file
offline. Skipped, with the reason, where timm is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ablate.cli.app import app
from ablate.errors import SetupError

timm = pytest.importorskip("timm", reason="timm is not installed: pip install 'ablate[timm]'")

from ablate_plugins.timm_models import timm_model  # noqa: E402

STUDY = """
from ablate import Study, choice

study = Study(
    name="timm_models",
    question="Do timm models train in ablate?",
    baseline=dict(dataset="cifar10-mini", model="timm", epochs=1, batch_size=64, train_size=256,
                  test_size=128, train_eval_size=64, lr=0.05),
    factors=dict(timm_name=choice("resnet10t", "vit_tiny_patch16_224")),
    seeds=1,
)
"""


def test_two_timm_architectures_train_an_epoch_on_the_shipped_subset(tmp_path: Path) -> None:
    """A ResNet and a ViT whose input size is fixed at 224 (built for 32x32 here)."""
    study = tmp_path / "timm_models.py"
    study.write_text(STUDY)
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    trials = pq.read_table(tmp_path / "timm_models" / "trials").to_pylist()
    assert sorted(t["param_timm_name"] for t in trials) == ["resnet10t", "vit_tiny_patch16_224"]
    assert all(t["state"] == "complete" and 0.0 <= t["test_acc"] <= 1.0 for t in trials)
    assert all(len(t["test_correct"]) == 128 for t in trials)


def test_the_classifier_and_the_input_follow_the_dataset() -> None:
    model = timm_model(num_classes=7, image_shape=(3, 32, 32), timm_name="vit_tiny_patch16_224")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    grey = timm_model(num_classes=3, image_shape=(1, 28, 28), timm_name="resnet10t")
    assert grey(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_an_unknown_name_is_one_line_with_close_names() -> None:
    with pytest.raises(SetupError, match="timm has no model 'resnet18x'; close: .*resnet18"):
        timm_model(num_classes=10, image_shape=(3, 32, 32), timm_name="resnet18x")


def test_pretrained_weights_come_from_a_local_file_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file under $ABLATE_WEIGHTS/timm/ (ImageNet's 1,000 classes): the backbone is read from
    it, the classifier built afresh for the dataset's classes."""
    from safetensors.torch import save_file

    source = timm.create_model("resnet10t", pretrained=False)  # as the published weights: 1000 classes
    folder = tmp_path / "timm"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, folder / "resnet10t.safetensors")
    monkeypatch.setenv("ABLATE_WEIGHTS", str(tmp_path))
    model = timm_model(num_classes=10, image_shape=(3, 32, 32), timm_name="resnet10t", pretrained=True)
    stem = next(k for k in source.state_dict() if k.endswith("weight"))
    assert torch.equal(model.state_dict()[stem], source.state_dict()[stem])
    assert model.get_classifier().out_features == 10
    with pytest.raises(SetupError, match="timm_weights: no file"):
        timm_model(
            num_classes=10,
            image_shape=(3, 32, 32),
            timm_name="resnet10t",
            pretrained=True,
            timm_weights=str(tmp_path / "absent.safetensors"),
        )


def test_absent_weights_offline_are_one_line_naming_the_file_and_the_variable(tmp_path: Path) -> None:
    """No local file and no network (Hugging Face offline mode): the line names where to put
    the weights and the variable that names the folder."""
    code = (
        "from ablate_plugins.timm_models import timm_model\n"
        "try:\n"
        "    timm_model(num_classes=10, image_shape=(3, 32, 32), timm_name='resnet10t', pretrained=True)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ABLATE_WEIGHTS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    said = done.stdout.strip()
    assert said.startswith("WeightsNotFound ") and len(said.splitlines()) == 1, said + done.stderr
    assert "$ABLATE_WEIGHTS/timm/resnet10t.safetensors" in said and "timm_weights=FILE" in said
