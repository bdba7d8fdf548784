"""Kept weights, predict, starting weights (pretraining), freeze, class subsets, requires, and
TensorBoard logging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ablate.cli.app import app, with_plugin_commands
from ablate.components.discovery import Plugins
from ablate.components.setup import resolve
from ablate.errors import SetupError
from ablate.store import weights
from ablate.train.init import StartingPoint
from ablate.train.placement import to_device
from ablate.train.state import build_state
from ablate.train.trainer import fit
from tests.conftest import REPO, run_smoke, tiny_data
from tests.run.test_runner import TINY, table, tiny_study

CPU = torch.device("cpu")


def test_kept_weights_rebuild_from_the_sidecar_alone_with_the_same_predictions(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    study = tiny_study(
        tmp_path, TINY.replace("train_eval_size=32)", "train_eval_size=32, val_size=16, keep_weights='both')")
    )
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "tiny_study" / "weights"
    assert {p.name for p in folder.glob("*.safetensors")} >= {
        "trial-00000-final.safetensors",
        "trial-00000-best.safetensors",
        "samples.safetensors",
    }
    trials = {t["trial"]: t for t in table(tmp_path / "tiny_study", "trials")}
    classes = {
        (r["trial"], r["class_index"]): r["confusion"] for r in table(tmp_path / "tiny_study", "classes")
    }
    data = tiny_data()
    for trial, row in trials.items():
        kept = weights.read(weights.weights_path(folder, trial, "final"))
        assert kept.sidecar["model"] == {"name": "tiny_mlp", "params": {"hidden": row["param_hidden"]}}
        assert kept.sidecar["provenance"]["seed"] == row["seed"]
        assert kept.sidecar["metrics"]["test_acc"] == pytest.approx(row["test_acc"])
        model = weights.rebuild(kept, cli_plugins.registry)  # nothing but the sidecar and weights
        mean = torch.tensor(kept.sidecar["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(kept.sidecar["std"]).view(1, 3, 1, 1)
        with torch.inference_mode():
            predicted = model((data.test_images.float() / 255 - mean) / std).argmax(1)
        confusion = np.zeros((3, 3), dtype=int)
        np.add.at(confusion, (data.test_labels.numpy(), predicted.numpy()), 1)
        # The rebuilt model makes exactly the predictions the trial recorded.
        assert confusion.tolist() == [classes[(trial, c)] for c in range(3)]
        best = weights.read(weights.weights_path(folder, trial, "best"))
        assert best.sidecar["epoch"] == row["best_epoch"]


@pytest.mark.slow
def test_predict_names_a_cifar_class_and_a_garbage_file_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    run_smoke(tmp_path)
    from ablate_plugins.datasets import cifar10_mini

    picture = tmp_path / "ship.png"
    Image.fromarray(cifar10_mini(data_dir=None).test_images[1].permute(1, 2, 0).numpy()).save(picture)
    (tmp_path / "garbage.png").write_bytes(b"not an image")
    result = runner.invoke(
        with_plugin_commands(),
        ["predict", str(tmp_path / "dropout_gap"), str(picture), str(tmp_path / "garbage.png")],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    (shown,) = [line for line in lines if line.startswith(str(picture))]
    cifar = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert any(f"{name} " in shown for name in cifar) and "%" in shown
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "garbage.png: not a readable image" in errors[0]
    assert "Traceback" not in result.output
    as_json = runner.invoke(
        with_plugin_commands(),
        ["predict", str(tmp_path / "dropout_gap"), str(picture), "--trial", "3", "--json", "--top", "2"],
    )
    data = json.loads(as_json.stdout)
    assert data["weights"].endswith("trial-00003-final.safetensors")
    assert len(data["predictions"][0]["top"]) == 2
    missing = runner.invoke(with_plugin_commands(), ["predict", str(tmp_path / "nothing"), str(picture)])
    assert missing.exit_code == 2 and "no such weights file or study folder" in missing.output


def test_starting_weights_load_the_backbone_and_a_new_head_for_other_classes(plugins: Plugins) -> None:
    setup = resolve({"dataset": "tiny", "model": "resnet18", "width": 2}, plugins.registry)
    source = build_state(setup, 5, seed=1, device=CPU).model.state_dict()
    start = StartingPoint(source, new_head=True)
    state = build_state(setup, 5, seed=2, device=CPU, start_from=start)
    fresh = build_state(setup, 5, seed=2, device=CPU).model.state_dict()
    mine = state.model.state_dict()
    assert set(state.fresh) == {"classifier.weight", "classifier.bias"}
    assert torch.equal(mine["stem.0.weight"], source["stem.0.weight"])  # the backbone came along
    assert torch.equal(mine["classifier.weight"], fresh["classifier.weight"])  # the head did not
    assert not torch.equal(mine["classifier.weight"], source["classifier.weight"])
    # Another class count: the head's shape differs, so it starts afresh whatever the flag.
    other = build_state(setup, 3, seed=2, device=CPU, start_from=StartingPoint(source, False))
    assert set(other.fresh) == {"classifier.weight", "classifier.bias"}


def test_freeze_backbone_trains_the_head_alone(plugins: Plugins) -> None:
    setup = resolve(
        {
            "dataset": "tiny",
            "model": "resnet18",
            "width": 2,
            "freeze": "backbone",
            "epochs": 1,
            "batch_size": 16,
            "train_eval_size": 16,
        },
        plugins.registry,
    )
    state = build_state(setup, 3, seed=0, device=CPU)
    trainable = {name for name, p in state.model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    result = fit(setup, to_device(tiny_data(), CPU, 16), 3, 0, CPU)
    after = result.model.state_dict()
    start = build_state(setup, 3, seed=0, device=CPU).model.state_dict()
    assert torch.equal(after["stem.0.weight"], start["stem.0.weight"])  # frozen
    assert not torch.equal(after["classifier.weight"], start["classifier.weight"])  # trained
    assert torch.equal(before["stem.0.weight"], start["stem.0.weight"])


def test_a_class_subset_is_relabelled_in_its_order_and_keeps_the_names() -> None:
    data = tiny_data(train=60, test=30, classes=3)
    subset = data.select_classes((2, 0))
    assert subset.classes == ("class2", "class0")
    assert sorted(set(subset.train_labels.tolist())) == [0, 1]
    original = data.train_labels[(data.train_labels == 2) | (data.train_labels == 0)]
    assert subset.train_labels.tolist() == [0 if label == 2 else 1 for label in original.tolist()]
    chosen = (data.train_labels == 2) | (data.train_labels == 0)
    assert torch.equal(subset.train_images, data.train_images[chosen])
    with pytest.raises(SetupError, match="classes=\\(0, 5\\)"):
        data.select_classes((0, 5))


def test_init_names_a_missing_source_and_imagenet_needs_a_pretrained_model(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    study = tiny_study(tmp_path, TINY.replace("train_eval_size=32)", "train_eval_size=32, init='nowhere')"))
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "init 'nowhere':" in result.output and "has no kept weights" in result.output
    study = tiny_study(tmp_path, TINY.replace("train_eval_size=32)", "train_eval_size=32, init='imagenet')"))
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path / "b")])
    assert result.exit_code == 2 and "model 'tiny_mlp' has no ImageNet weights" in result.output


@pytest.mark.slow
def test_the_pretraining_study_runs_the_study_it_requires_first_and_pairs_by_seed(tmp_path: Path) -> None:
    runner = CliRunner()
    command = [
        "run",
        str(REPO / "studies" / "pretraining.py"),
        "--preset",
        "smoke",
        "--results-dir",
        str(tmp_path),
    ]
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "needs the results of" in first.output and "pretrain_source.py (preset smoke)" in first.output
    source = table(tmp_path / "pretrain_source", "trials")
    assert sorted(t["seed"] for t in source) == [0, 1, 2]
    pretrained = [
        t for t in table(tmp_path / "pretraining", "trials") if t["param_init"] == "pretrain_source"
    ]
    assert len(pretrained) == 6
    # Each fine-tuning trial started from the source trial with its seed; the head afresh.
    assert "freshly initialised: classifier.weight, classifier.bias" in first.output
    again = runner.invoke(app, command)
    assert again.exit_code == 0 and "needs the results of" not in again.output
    report = json.loads(
        runner.invoke(app, ["report", str(tmp_path / "pretraining"), "--format", "json"]).stdout
    )
    family = [f for f in report["findings"] if f["family"]]
    assert {f["factor"] for f in family} == {"init"}
    assert {f["metric"] for f in family} == {"test_acc", "gap_running_first"}
    assert any("init = pretrain_source (vs scratch)" in line for line in report["answer"])


def test_tensorboard_writes_one_scalar_per_epoch_that_tensorboard_reads_back(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ablate.components.discovery import load_plugins
    from tests.conftest import TinyPlugin

    loaded = load_plugins(extra={"tests:tiny": TinyPlugin()})  # the built-in tensorboard plugin too
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ablate.components.discovery.get_plugins", lambda: loaded)
        result = CliRunner().invoke(
            app, ["run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path), "--tensorboard"]
        )
    assert result.exit_code == 0, result.output
    logs = sorted((tmp_path / "tiny_study" / "tensorboard").iterdir())
    assert [p.name for p in logs] == [f"trial-{n:05d}" for n in range(4)]
    events = EventAccumulator(str(logs[0]))
    events.Reload()
    accuracy = events.Scalars("accuracy/test_acc")
    assert [s.step for s in accuracy] == [1, 2]  # the study trains 2 epochs
    rows = [r for r in table(tmp_path / "tiny_study", "epochs") if r["trial"] == 0]
    recorded = [r["test_acc"] for r in sorted(rows, key=lambda r: r["epoch"])]
    assert [s.value for s in accuracy] == pytest.approx(recorded)
