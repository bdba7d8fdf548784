"""The shipped studies: every preset of every study resolves, and the newest runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from ablate.cli.app import app
from ablate.components.discovery import load_plugins
from ablate.components.validate import validate_plan
from ablate.study.load import load
from tests.conftest import REPO

STUDIES = sorted((REPO / "studies").glob("*.py"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_preset_of_every_study_passes_the_checks_of_ablate_run(path: Path) -> None:
    """The same checks ``ablate run`` makes before training: every trial resolves, every value
    is in its range, and no parameter applies to none of the selected components."""
    study = load(path)
    registry = load_plugins().registry
    assert study.presets and study.default_preset in study.presets
    for preset in study.presets:
        plan = study.plan(preset)
        assert plan.trials, f"{path.name} preset {preset} plans no trial"
        validate_plan(plan, registry, lambda key, value, p=preset: f"{path.name} preset {p} {key}")


@pytest.mark.slow
def test_architecture_study_crosses_four_models_with_augmentation(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(REPO / "studies" / "architecture.py"),
            "--preset",
            "smoke",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    trials = ds.dataset(tmp_path / "architecture" / "trials").to_table().to_pylist()
    cells = {(t["param_model"], t["param_augment"]) for t in trials}
    assert cells == {
        (m, a) for m in ("simple_cnn", "resnet9", "resnet18", "resnet_c3") for a in ("none", "crop_flip")
    }
    assert len(trials) == 24 and all(t["state"] == "complete" for t in trials)
    # The answer speaks to both halves of the question: for each model, what crop + flip does
    # to the gap; with and without crop + flip, what each model gains over the tutorial CNN.
    # The cells show each model's size and speed.
    report = json.loads(
        CliRunner().invoke(app, ["report", str(tmp_path / "architecture"), "--format", "json"]).stdout
    )
    family = [f for f in report["findings"] if f["family"]]
    within = {(f["factor"], *f["condition"].values(), f["metric"]) for f in family if f["kind"] == "within"}
    metrics = ("test_acc", "gap_eval")
    assert within == (
        {
            ("augment", m, metric)
            for m in ("simple_cnn", "resnet9", "resnet18", "resnet_c3")
            for metric in metrics
        }
        | {("model", a, metric) for a in ("none", "crop_flip") for metric in metrics}
    )
    gains = [f for f in family if f["kind"] == "within" and f["factor"] == "model"]
    assert {f["level"] for f in gains} == {"resnet9", "resnet18", "resnet_c3"}
    assert all(f["baseline_level"] == "simple_cnn" for f in gains) and len(gains) == 12
    interactions = {(f["level"], f["other"][0], f["metric"]) for f in family if f["kind"] == "interaction"}
    assert interactions == {
        (m, "augment", metric) for m in ("resnet9", "resnet18", "resnet_c3") for metric in metrics
    }
    # C3 against the ResNet-18 it replaces, asked directly, within each augmentation.
    named = {
        (f["level"], f["baseline_level"], *f["condition"].values(), f["metric"])
        for f in family
        if f["kind"] == "asked"
    }
    assert named == {
        ("resnet_c3", "resnet18", a, metric) for a in ("none", "crop_flip") for metric in metrics
    }
    assert len(family) == 26 + 4 == report["family"]["size"]
    params = {c["levels"]["model"]: c["metrics"]["model_params"]["mean"] for c in report["cells"]}
    assert 0 < params["resnet_c3"] < params["resnet18"]  # about a third of ResNet-18's
    assert all(c["metrics"]["epoch_seconds"]["mean"] > 0 for c in report["cells"])


@pytest.mark.slow
def test_recipe_path_smoke_runs_and_reports_its_steps_with_the_waterfall(tmp_path: Path) -> None:
    """The path from the tutorial recipe to the ResNet-9 recipe on the shipped subset: five
    rounds, every step and the total with an interval, the waterfall under the short answer.
    Two workers share the queue: each queues the next round once the last is finished, under
    the queue's lock, and no recipe is trained twice."""
    study = str(REPO / "studies" / "recipe_path.py")
    result = CliRunner().invoke(
        app, ["run", study, "--preset", "smoke", "--workers", "2", "--results-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "a path over 5 settings: at most 16 recipes x 2 seeds = 32 trials" in said
    assert "32/32 trials complete" in said
    folder = tmp_path / "recipe_path"
    trials = ds.dataset(folder / "trials").to_table().to_pylist()
    assert len(trials) == len({t["trial"] for t in trials}) == 32  # 2 seeds: no race, each once
    report = json.loads(CliRunner().invoke(app, ["report", str(folder), "--format", "json"]).stdout)
    steps = [f for f in report["findings"] if f["family"] and f["kind"] == "path step"]
    assert sorted(f["factor"] for f in steps) == ["augment", "batch", "model", "rate", "schedule"]
    total = [f for f in report["findings"] if f["family"] and f["kind"] == "source to target"]
    assert len(total) == 1 and total[0]["estimate"]["n"] == 2
    # Cosine annealing over one epoch changes nothing: that step is identical, with no interval.
    assert all(f["interval"] is not None or set(f["estimate"]["per_seed"]) == {0.0} for f in steps)
    assert (
        report["summary"][0].startswith("Of the ")
        and "in the order the path took them" in report["summary"][0]
    )
    assert (folder / "report" / "waterfall.png").stat().st_size > 10_000
