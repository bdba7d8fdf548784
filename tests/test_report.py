"""The report: statistics against an independent computation, formats, plots, HTML."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from ablate.cli import app
from ablate.events import EpochRecord
from ablate.folder import StudyFolder
from ablate.report import build
from ablate.report.analysis import add_test_swings
from ablate.report.load import StudyResults, load, read_table
from ablate.report.stats import holm, mean_ci, paired
from ablate.results import ResultsWriter, class_table, epoch_table, param_type, trial_table

REPO = Path(__file__).resolve().parents[1]
# Known answers: test accuracy per (dropout level, seed). Baseline is dropout 0.0.
ACCURACY = {0.0: [0.60, 0.62, 0.61, 0.65], 0.25: [0.64, 0.65, 0.66, 0.70], 0.5: [0.59, 0.63, 0.60, 0.64]}


def make_study(folder: Path, accuracy: dict[float, list[float]] = ACCURACY, skip: set = frozenset(),
               extra_column: bool = False) -> Path:
    """A results folder as ablate writes it, with chosen metrics."""
    study = folder / "fixture"
    seeds = list(range(len(accuracy[0.0])))
    description = {"name": "fixture", "question": "Does dropout help?", "preset": "test",
                   "metric": "test_acc", "direction": "maximize", "design": "grid",
                   "baseline": {"dropout": 0.0}, "factors": {"dropout": list(accuracy)},
                   "seeds": seeds, "trials": len(accuracy) * len(seeds), "fingerprint": "x"}
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps(description))
    writer = ResultsWriter(StudyFolder(study))
    index = 0
    for seed in seeds:
        for level, values in accuracy.items():
            if (level, seed) in skip:
                index += 1
                continue
            keys = {"study": "fixture", "trial": index, "attempt": 1}
            acc = values[seed]
            epochs = [EpochRecord(e, 0.1, 1.0, acc - 0.1 + 0.02 * e, acc + 0.02, 1.0,
                                  acc - 0.04 + 0.02 * e, 1.0)
                      for e in (1, 2, 3)]
            row = {**keys, "state": "complete", "seed": seed, "cell": f"dropout={level}",
                   "study_fingerprint": "x",
                   "test_acc": acc, "train_acc": acc - 0.04, "train_eval_acc": acc + 0.02,
                   "best_epoch": 3, "seconds": 10.0}
            params = {"dropout": level, **({"width": 8} if extra_column and seed == 0 else {})}
            confusion = ((3, 1), (1, 5))
            writer.write(index, 1, trial_table(row, params, {"dropout": param_type(0.0)}),
                         epoch_table(keys, epochs),
                         class_table(keys, ("cat", "dog"), (0.75, 5 / 6), confusion))
            index += 1
    return study


def test_statistics_match_an_independent_computation(tmp_path: Path) -> None:
    results = load(make_study(tmp_path))
    files = build(results.folder)
    report = files.report
    base = np.array(ACCURACY[0.0])
    for cell in report.cells:
        level = float(cell.levels["dropout"])
        values = np.array(ACCURACY[level])
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        interval = cell.summary["test_acc"]
        assert interval.mean == pytest.approx(values.mean())
        assert (interval.low, interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
        assert cell.summary["gap_running"].mean == pytest.approx(0.04)
        assert cell.summary["gap_eval"].mean == pytest.approx(0.02)
        assert cell.summary["swing_test"].mean == pytest.approx(0.02)  # epochs 2 -> 3: +2 points
    effects = [e for e in report.effects if e.metric == "test_acc"]
    assert sorted(e.level for e in effects) == [0.25, 0.5]
    raw = {}
    for effect in effects:
        treated = np.array(ACCURACY[effect.level])
        differences = treated - base
        expected_p = stats.ttest_rel(treated, base).pvalue
        half = stats.t.ppf(0.975, 3) * differences.std(ddof=1) / 2
        d = effect.comparison.difference
        assert d.mean == pytest.approx(differences.mean())
        assert (d.low, d.high) == pytest.approx((differences.mean() - half, differences.mean() + half))
        assert effect.comparison.p == pytest.approx(expected_p)
        raw[effect.level] = expected_p
    small, large = sorted(raw.values())
    expected_holm = {small: min(1, 2 * small), large: max(min(1, 2 * small), min(1, large))}
    for effect in effects:
        assert effect.comparison.p_holm == pytest.approx(expected_holm[raw[effect.level]])
    # dropout 0.25 gains 3 to 5 points on every seed: a clear effect, stated with its numbers.
    verdict = " ".join(report.verdict)
    gain = (np.array(ACCURACY[0.25]) - base).mean() * 100
    assert f"dropout = 0.25 (vs 0.0) raises test_acc by {gain:+.1f} points [95% CI" in verdict
    assert "dropout = 0.5 (vs 0.0): no clear effect" in verdict and "straddles zero" in verdict


def test_swing_is_the_mean_epoch_to_epoch_change_over_the_second_half() -> None:
    series = {0: [0.1, 0.5, 0.6, 0.4, 0.7, 0.5], 1: [0.3]}  # trial -> test accuracy per epoch
    trials = [{"trial": t, "attempt": 1, "state": "complete"} for t in series]
    epochs = [{"trial": t, "attempt": 1, "epoch": e + 1, "test_acc": acc}
              for t, values in series.items() for e, acc in enumerate(values)][::-1]  # any order
    results = StudyResults(Path("."), {}, trials, epochs)
    add_test_swings(results)
    swings = {t["trial"]: t["swing_test"] for t in results.complete}
    # epochs 3-6: 0.6 -> 0.4 -> 0.7 -> 0.5; the climb of epochs 1-3 is training, not swing
    assert swings[0] == pytest.approx((0.2 + 0.3 + 0.2) / 3)
    assert swings[1] is None  # one epoch: nothing to compare


def test_holm_and_intervals_edge_cases() -> None:
    with_missing = holm([0.01, None, 0.04])
    assert with_missing[1] is None and with_missing[0] == pytest.approx(0.02)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert mean_ci([0.5]).low is None
    constant = paired([0.6, 0.6], [0.5, 0.5])
    assert constant.p == 0.0 and constant.difference.mean == pytest.approx(0.1)


def test_too_few_seeds_are_stated_plainly(tmp_path: Path) -> None:
    study = make_study(tmp_path, {0.0: [0.6], 0.25: [0.7]})
    verdict = build(study).report.verdict
    assert any("cannot decide: only 1 seed(s)" in line for line in verdict)


def test_partial_study_reports_what_exists_and_what_is_missing(tmp_path: Path) -> None:
    study = make_study(tmp_path, skip={(0.5, 2), (0.5, 3)})
    report = build(study).report
    assert report.counts == {"attempts": 10, "complete": 10, "diverged": 0, "planned": 12}
    notes = " ".join(report.missing)
    assert "10 of 12 planned trials" in notes and "cell dropout=0.5 lacks seeds [2, 3]" in notes
    (effect,) = [e for e in report.effects if e.metric == "test_acc" and e.level == 0.5]
    assert effect.comparison.difference.n == 2


def test_schemas_are_unified_across_files(tmp_path: Path) -> None:
    study = make_study(tmp_path, extra_column=True)
    rows = read_table(study / "trials")
    assert len(rows) == 12 and sorted({r.get("param_width") for r in rows}, key=str) == [8, None]


def test_cli_formats_and_self_contained_html(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    runner = CliRunner()
    text = runner.invoke(app, ["report", str(study)])
    assert text.exit_code == 0, text.output
    assert "Does dropout help?" in text.output and "Effects against the baseline" in text.output
    data = json.loads(runner.invoke(app, ["report", str(study), "--format", "json"]).stdout)
    cell = next(c for c in data["cells"] if c["baseline"])
    assert cell["metrics"]["test_acc"]["mean"] == pytest.approx(np.mean(ACCURACY[0.0]))
    assert {e["metric"] for e in data["effects"]} == {"test_acc", "gap_running", "gap_eval",
                                                      "swing_test"}
    assert all(e["p_holm"] is not None for e in data["effects"])
    markdown = runner.invoke(app, ["report", str(study), "--format", "markdown"]).stdout
    assert "| cell |" in markdown and "## Answer" in markdown
    assert runner.invoke(app, ["report", str(study), "--format", "pdf"]).exit_code == 2

    expected = {"learning_curves", "gaps", "final_metric", "per_class", "confusion"}
    assert set(data["plots"]) == expected
    page = (study / "report" / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == len(expected)
    for encoded in images:
        Image.open(io.BytesIO(base64.b64decode(encoded))).verify()
    without_images = re.sub(r"data:image/png;base64,[^']+", "", page)
    assert not re.search(r"(https?:)?//|<script|<link", without_images)
    for name in expected:
        assert Image.open(study / "report" / f"{name}.png").size[0] > 100


def test_report_without_argument_lists_studies(tmp_path: Path) -> None:
    make_study(tmp_path)
    output = CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path)]).output
    assert "fixture" in output and "12 trial attempts" in output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_report_on_the_smoke_preset_of_dropout_gap(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(REPO / "studies" / "dropout_gap.py"), "--preset", "smoke",
                               "--results-dir", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path / "dropout_gap"), "--format", "json"])
    data = json.loads(result.stdout)
    assert len(data["cells"]) == 6 and sum(c["baseline"] for c in data["cells"]) == 1
    levels = {(e["factor"], str(e["level"])) for e in data["effects"] if e["metric"] == "test_acc"}
    assert levels == {("dropout", "0.25"), ("dropout", "0.5"), ("augment", "none")}
    assert len(data["verdict"]) == 3
    assert (tmp_path / "dropout_gap" / "report" / "report.html").is_file()
    assert len(list((tmp_path / "dropout_gap" / "report").glob("*.png"))) == 5


def test_sampled_study_reports_optuna_parameter_importance(tmp_path: Path, cli_plugins: object) -> None:
    study = tmp_path / "sampled.py"
    study.write_text('''
from ablate import Study, integer, sampler, uniform

study = Study(
    name="sampled", question="Which matters more, width or learning rate?",
    baseline=dict(dataset="tiny", model="tiny_mlp", epochs=1, batch_size=16, eval_batch_size=16,
                  train_eval_size=16),
    factors=dict(hidden=integer(2, 32), lr=uniform(0.001, 0.5, log=True)),
    design=sampler("random", trials=6), seeds=1,
)
''')
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(study), "--results-dir", str(tmp_path)]).exit_code == 0
    data = json.loads(runner.invoke(app, ["report", str(tmp_path / "sampled"), "--format",
                                          "json"]).stdout)
    assert set(data["importance"]) == {"hidden", "lr"}
    assert sum(data["importance"].values()) == pytest.approx(1.0)
