"""Ablation paths and leave-one-out screens (issue 28) on a synthetic objective: a stand-in
trainer whose accuracy is a known function of the settings plus seeded noise, so the path's
order, its gains and the race's early stops can be checked against the truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ablate.analysis.race import walk
from ablate.cli.app import app
from ablate.components.discovery import Plugins
from ablate.events import EpochRecord
from ablate.study.factors import StudyError, leave_one_out, path
from ablate.train.trainer import TrialResult
from tests.run.test_runner import InterruptAt

STUDY = """
from ablate import Study, DESIGN

study = Study(
    name="recipes",
    question="Which change made the difference?",
    baseline=dict(dataset="tiny", model="tiny_mlp", hidden=4, lr=0.1, weight_decay=0.0, epochs=1,
                  val_size=16, train_eval_size=16, keep_weights="none"),
    design=DESIGN(target=dict(width=dict(hidden=16), rate=dict(lr=0.05), decay=dict(weight_decay=5e-4))ARGS),
    seeds=6,
)
"""
GAINS = {"width": 0.10, "rate": 0.04, "decay": 0.01}  # the true gains, in accuracy


def objective(setup: Any, interaction: float) -> float:
    """The true accuracy of a recipe: additive gains, and with ``interaction`` decay helps
    only without the wider model (a setting that helps alone but not in the target)."""
    width = setup.model.values["hidden"] == 16
    rate = setup.optimizer.values["lr"] == 0.05
    decay = setup.optimizer.values["weight_decay"] == 5e-4
    accuracy = 0.5 + GAINS["width"] * width + GAINS["rate"] * rate + GAINS["decay"] * decay
    return accuracy + interaction * decay * (not width)


def synthetic_fit(noise: float, interaction: float = 0.0):  # type: ignore[no-untyped-def]
    def fit(  # type: ignore[no-untyped-def]
        setup,
        data,
        num_classes,
        seed,
        device,
        on_epoch_end=lambda r: None,  # type: ignore[no-untyped-def]
        checkpoints=None,
        meta=None,
        start_from=None,
        keep_best=False,
        **_ignored,
    ):
        truth = objective(setup, interaction)
        rng = np.random.default_rng(seed * 7919 + int(truth * 1e4))
        test, val = truth + rng.normal(0, noise), truth + rng.normal(0, noise)
        record = EpochRecord(1, 0.1, 1.0, test, test, 1.0, test, 0.01, val_loss=1.0, val_acc=val)
        on_epoch_end(record)
        return TrialResult((record,), (), (), 0.01, torch.nn.Linear(1, 1))

    return fit


def run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    design: str = "path",
    args: str = "",
    noise: float = 0.005,
    interaction: float = 0.0,
    results: str = "results",
) -> tuple[int, str, dict]:
    monkeypatch.setattr("ablate.train.trainer.fit", synthetic_fit(noise, interaction))
    study = tmp_path / "recipes.py"
    study.write_text(STUDY.replace("DESIGN", design).replace("ARGS", args))
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path / results)])
    report = CliRunner().invoke(app, ["report", str(tmp_path / results / "recipes"), "--format", "json"])
    parsed = json.loads(report.stdout) if report.exit_code == 0 else {}
    return result.exit_code, result.output, parsed


def trained(tmp_path: Path, results: str = "results") -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / results / "recipes" / "trials").to_pylist()
    return sorted((r["cell"], r["seed"]) for r in rows if r["state"] == "complete")


def family(report: dict, kind: str) -> list[dict]:
    return [f for f in report["findings"] if f["family"] and f["kind"] == kind and f["metric"] == "test_acc"]


def test_the_path_recovers_the_known_order_and_gains_and_races_the_losers_off(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output, report = run(tmp_path, monkeypatch)
    assert code == 0, output
    said = " ".join(output.split())
    assert "a path over 3 settings: at most 7 recipes x 6 seeds = 42 trials" in said
    steps = family(report, "path step")
    assert [s["factor"] for s in steps] == ["width", "rate", "decay"]  # largest first
    for step in steps:
        true = GAINS[step["factor"]]
        low, high = step["interval"]["low"], step["interval"]["high"]
        assert low <= true <= high and abs(step["estimate"]["value"] - true) < 0.01
    (total,) = family(report, "source to target")
    assert total["estimate"]["value"] == pytest.approx(sum(s["estimate"]["value"] for s in steps))
    # Racing: round 1's losers (rate, decay) stopped after the first 3 seeds, round 2's (decay)
    # too; the kept recipes have all 6. 7 recipes x 6 seeds would be 42 trials.
    done = trained(tmp_path)
    seeds = {cell: sum(c == cell for c, _ in done) for cell, _ in done}
    assert seeds == {
        "source": 6,
        "source+width": 6,
        "source+rate": 3,
        "source+decay": 3,
        "target-decay": 6,
        "target-rate": 3,
        "target": 6,
    }
    assert len(done) == 33
    answer = " ".join(" ".join(report["answer"]).split())
    assert (
        "Round 1 (from source) kept width: it gained more than rate on 3 of 3 seeds; "
        "stopped early: rate after 3 seeds, decay after 3 seeds." in answer
    )
    assert "chosen on val_acc" in answer or "largest mean gain on val_acc" in answer
    assert "no interaction shown at this precision" in answer
    assert report["summary"][0].startswith("Of the +15.")
    assert "in the order the path took them: width +10." in report["summary"][0]
    # The waterfall stands under the short answer, beside the forest plot.
    figures = tmp_path / "results" / "recipes" / "report"
    assert (figures / "waterfall.png").stat().st_size > 10_000
    html = (figures / "report.html").read_text()
    assert html.index("alt='waterfall'") < html.index("<h2>Answer</h2>")


def test_a_path_says_when_the_settings_do_not_add_up(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decay adds 9 points alone but 1 among the others: alone, the settings add up to 8
    points more than the whole path gains."""
    code, output, report = run(tmp_path, monkeypatch, interaction=0.08)
    assert code == 0, output
    answer = " ".join(" ".join(report["answer"]).split())
    assert "the settings interact, so each step's gain holds where the path took it" in answer
    assert "a difference of +8." in answer


def test_a_path_killed_mid_round_resumes_without_training_a_recipe_twice(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, straight = run(tmp_path, monkeypatch, results="straight")
    cli_plugins.manager.register(InterruptAt(2 * 6 + 1), name="tests:kill")  # source+rate, seed 1
    code, output, cut = run(tmp_path, monkeypatch, results="killed")
    assert code == 130, output
    # The report of a path cut off in round 1 says so, and names no step yet.
    assert cut["summary"][0] == "The path is not finished: 0 of 3 steps taken."
    cli_plugins.manager.unregister(name="tests:kill")
    code, output, resumed = run(tmp_path, monkeypatch, results="killed")
    assert code == 0, output
    done = trained(tmp_path, "killed")
    assert len(done) == len(set(done)) == len(trained(tmp_path, "straight"))  # none twice
    assert [s["factor"] for s in family(resumed, "path step")] == ["width", "rate", "decay"]
    assert [s["estimate"]["value"] for s in family(resumed, "path step")] == pytest.approx(
        [s["estimate"]["value"] for s in family(straight, "path step")]
    )


def test_leave_one_out_shows_a_setting_that_helps_alone_but_not_in_the_target(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output, report = run(tmp_path, monkeypatch, design="leave_one_out", interaction=0.03)
    assert code == 0, output
    assert len(trained(tmp_path)) == 8 * 6  # source, target, 3 alone, 3 removed
    alone = {f["factor"]: f["estimate"]["value"] for f in family(report, "alone from the source")}
    removed = {f["factor"]: f["estimate"]["value"] for f in family(report, "removed from the target")}
    assert alone["decay"] == pytest.approx(0.04, abs=0.01) and removed["decay"] == pytest.approx(
        0.01, abs=0.01
    )
    # Without decay, widening gains its 10 points; among the others it also loses decay's help.
    assert alone["width"] == pytest.approx(0.10, abs=0.01) and removed["width"] == pytest.approx(
        0.07, abs=0.01
    )
    answer = " ".join(" ".join(report["answer"]).split())
    assert "decay interacts with the other settings on test_acc: it adds +4." in answer
    assert report["summary"][0].startswith("From the source recipe to the target: +15.")


def test_the_walk_stops_nobody_when_the_race_is_off_and_waits_for_unfinished_trials() -> None:
    def score(mask: int, place: int) -> float:
        return 0.5 + 0.1 * (mask & 1) + 0.01 * (mask >> 1 & 1) + 0.001 * place

    straight = walk(2, 4, 4, 1, score)  # first == seeds: no race
    assert straight.done and not any(r.stopped for r in straight.rounds)
    assert [r.kept for r in straight.rounds] == [1, 3]
    waiting = walk(2, 4, 2, 1, lambda mask, place: None if mask == 2 and place == 1 else score(mask, place))
    assert not waiting.done and waiting.rounds[0].kept is None
    assert waiting.in_play == {(m, p) for m in (0, 1, 2) for p in (0, 1)}


def test_bad_path_declarations_are_refused_in_one_line() -> None:
    with pytest.raises(StudyError, match="must be a dict of the settings"):
        path(target={})
    with pytest.raises(StudyError, match="at least 2 seeds"):
        path(target={"lr": 0.1}, first=1)
    with pytest.raises(StudyError, match="without '\\+'"):
        leave_one_out(target={"a+b": 1})
    from ablate import Study

    with pytest.raises(StudyError, match="gives the source's own value"):
        Study(name="s", question="?", baseline={"lr": 0.1}, design=path(target={"lr": 0.1}))
    with pytest.raises(StudyError, match="not factors"):
        from ablate import choice

        Study(
            name="s",
            question="?",
            baseline={"lr": 0.1},
            factors={"x": choice(1, 2)},
            design=path(target={"lr": 0.2}),
        )


def test_a_path_without_a_validation_split_is_refused(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ablate.train.trainer.fit", synthetic_fit(0.005))
    study = tmp_path / "recipes.py"
    study.write_text(
        STUDY.replace("DESIGN", "path").replace("ARGS", "").replace("val_size=16, train_eval", "train_eval")
    )
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "the path chooses each step on the test set, and there is no validation split" in " ".join(
        result.output.split()
    )
