"""The report: statistics against an independent computation, the rules behind verdicts,
formats, plots, HTML."""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from ablate.analysis import analyse_folder
from ablate.analysis.load import StudyResults, read_table
from ablate.analysis.metrics import add_derived, format_half_width, format_value, swing
from ablate.analysis.provenance import ran_on
from ablate.analysis.stats import benjamini_hochberg, holm, mean_ci, sign_flip_p
from ablate.cli.app import app
from ablate.events import EpochRecord
from ablate.params import param_type
from ablate.report import build, write_files
from ablate.report.plots import PLOTS
from ablate.store.folder import StudyFolder
from ablate.store.tables import ResultsStore, class_table, epoch_table, trial_table
from ablate.study.plan import fingerprint_of
from tests.conftest import run_smoke

# Known answers: test accuracy per (dropout level, seed). Baseline is dropout 0.0.
ACCURACY = {0.0: [0.60, 0.62, 0.61, 0.65], 0.25: [0.64, 0.65, 0.66, 0.70], 0.5: [0.59, 0.63, 0.60, 0.64]}


def write_study(
    folder: Path,
    cells: dict[tuple, list[float]],
    factors: dict[str, list],
    baseline: dict,
    study: dict | None = None,
    skip: set = frozenset(),
    extra_column: bool = False,
) -> Path:
    """A results folder as ablate writes it: ``cells`` maps each cell's levels (in the order of
    ``factors``) to its test accuracy per seed; epochs climb to it by 2 points an epoch."""
    path = folder / "fixture"
    seeds = list(range(len(next(iter(cells.values())))))
    description = {
        "name": "fixture",
        "question": "Does dropout help?",
        "preset": "test",
        "metric": "test_acc",
        "direction": "maximize",
        "design": "grid",
        "baseline": baseline,
        "factors": factors,
        "seeds": seeds,
        "trials": len(cells) * len(seeds),
        **(study or {}),
    }
    fingerprint = description["fingerprint"] = fingerprint_of(description)
    path.mkdir(parents=True)
    (path / "study.json").write_text(json.dumps(description))
    writer = ResultsStore(StudyFolder(path))
    index = 0
    for seed in seeds:
        for levels, values in cells.items():
            named = dict(zip(factors, levels, strict=True))
            if (levels, seed) in skip or (levels[0], seed) in skip:
                index += 1
                continue
            keys = {"study": "fixture", "trial": index, "attempt": 1}
            acc = values[seed]
            epochs = [
                EpochRecord(e, 0.1, 1.0, acc - 0.1 + 0.02 * e, acc + 0.02, 1.0, acc - 0.04 + 0.02 * e, 1.0)
                for e in (1, 2, 3)
            ]
            cell = ",".join(f"{k}={v}" for k, v in named.items())
            row = {
                **keys,
                "state": "complete",
                "seed": seed,
                "cell": cell,
                "study_fingerprint": fingerprint,
                "test_acc": acc,
                "train_acc": acc - 0.04,
                "train_eval_acc": acc + 0.02,
                "best_epoch": 3,
                "seconds": 10.0,
            }
            params = {**named, **({"width": 8} if extra_column and seed == 0 else {})}
            writer.write(
                index,
                1,
                trial_table(row, params, {k: param_type(v) for k, v in named.items()}),
                epoch_table(keys, epochs),
                class_table(keys, ("cat", "dog"), (0.75, 5 / 6), ((3, 1), (1, 5))),
            )
            index += 1
    return path


def make_study(folder: Path, accuracy: dict[float, list[float]] = ACCURACY, **kwargs: object) -> Path:
    return write_study(
        folder,
        {(level,): values for level, values in accuracy.items()},
        {"dropout": list(accuracy)},
        {"dropout": 0.0},
        **kwargs,
    )  # type: ignore[arg-type]


def max_t_critical(columns: list[np.ndarray], alpha: float) -> float:
    """The family's critical value, computed independently of ablate: over every pattern of
    whole-seed sign flips, the largest paired |t| of the family; the value at most alpha of
    the patterns exceed."""
    n = len(columns[0])
    maxima = []
    for signs in itertools.product((1.0, -1.0), repeat=n):
        flipped = [np.array(signs) * c for c in columns]
        maxima.append(max(abs(f.mean() / (f.std(ddof=1) / math.sqrt(n))) for f in flipped))
    return float(sorted(maxima, reverse=True)[int(alpha * len(maxima))])


def test_statistics_match_an_independent_computation(tmp_path: Path) -> None:
    report = build(make_study(tmp_path)).report
    for cell in report.cells:
        values = np.array(ACCURACY[float(cell.levels["dropout"])])
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        interval = cell.summary["test_acc"]
        assert interval.mean == pytest.approx(values.mean())
        assert (interval.low, interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
        assert cell.summary["gap_running"].mean == pytest.approx(0.04)
        assert cell.summary["gap_eval"].mean == pytest.approx(0.02)
    family = [f for f in report.findings if f.family]
    assert report.family_size == 2 and {f.contrast.level for f in family} == {0.25, 0.5}
    # Each comparison has its own variance: the spread of its per-seed differences.
    columns = [np.array(ACCURACY[f.contrast.level]) - np.array(ACCURACY[0.0]) for f in family]
    for finding, differences in zip(family, columns, strict=True):
        se = differences.std(ddof=1) / math.sqrt(4)
        assert finding.estimate.value == pytest.approx(differences.mean())
        assert finding.estimate.se == pytest.approx(se)
        assert finding.estimate.p == pytest.approx(2 * stats.t.sf(abs(differences.mean()) / se, 3))
        assert finding.confidence == pytest.approx(0.95)  # simultaneous over the family
        assert finding.p_adjusted is None  # 4 seeds: no exact test at 0.05
    # Below 6 seeds the printed interval uses the continuous max-t critical value: wider than
    # one comparison's own 95 % t interval, narrower than Bonferroni's would be at 3 df.
    half = family[0].half_width / family[0].estimate.se
    assert stats.t.ppf(0.975, 3) < half < stats.t.ppf(1 - 0.05 / 4, 3)
    # dropout 0.25 gains 3 to 5 points on every seed, but 4 seeds are below the small-n rule.
    answer = " ".join(report.answer)
    assert "Family: 2 hypotheses" in answer and "max-T sign-flip test" in answer
    # What the seed varies and what every seed shares, which no interval over seeds covers;
    # these trials did not record their test images, so the test set's sampling is not covered.
    assert (
        "every seed shares all the training images, all the test images (not every trial recorded "
        "which test images it got right); another test set or other training images would add" in answer
    )
    fixed = build(
        make_study(
            tmp_path / "sized", study={"baseline": {"dropout": 0.0, "train_size": 3000, "val_size": 500}}
        )
    )
    assert "the first 3,000 training images, all the test images, the 500 validation images" in " ".join(
        fixed.report.answer
    )
    drawn = {"baseline": {"dropout": 0.0, "train_size": 3000, "train_subset": "per_seed"}}
    said = " ".join(build(make_study(tmp_path / "drawn", study=drawn)).report.answer)
    assert "the seed varies the initialisation, which training images are drawn," in said
    assert (
        "every seed shares all the test images (not every trial recorded which test images it got "
        "right); another test set would add" in said
    )
    gain = format_value("test_acc", float(np.mean(np.array(ACCURACY[0.25]) - np.array(ACCURACY[0.0]))))
    assert f"dropout = 0.25 (vs 0.0) raises test_acc by {gain} points [95% simultaneous CI" in answer
    loss = format_value("test_acc", float(np.mean(np.array(ACCURACY[0.0]) - np.array(ACCURACY[0.5]))))
    assert f"dropout = 0.5 (vs 0.0) lowers test_acc by {loss} points [95%" in answer  # no "-"
    assert (
        "provisional: 4 seeds are too few for the exact sign-flip test at this level (it needs 6)" in answer
    )


def test_six_seeds_use_the_exact_critical_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    accuracy = {
        level: list(0.6 + shift + rng.normal(0, 0.01, 6))
        for level, shift in ((0.0, 0), (0.25, 0.03), (0.5, 0))
    }
    report = build(make_study(tmp_path, accuracy)).report
    family = [f for f in report.findings if f.family]
    columns = [np.array(accuracy[f.contrast.level]) - np.array(accuracy[0.0]) for f in family]
    critical = max_t_critical(columns, 0.05)
    for finding, differences in zip(family, columns, strict=True):
        half = critical * differences.std(ddof=1) / math.sqrt(6)
        assert finding.interval == pytest.approx((differences.mean() - half, differences.mean() + half))
        assert (finding.verdict == "decided") == (abs(differences.mean()) > half)


def test_the_sign_flip_p_value_is_the_exact_enumeration() -> None:
    values = [0.03, 0.05, -0.01, 0.04, 0.02]
    patterns = list(itertools.product((1, -1), repeat=len(values)))
    at_least = sum(
        abs(sum(s * v for s, v in zip(signs, values, strict=True))) >= abs(sum(values)) - 1e-12
        for signs in patterns
    )
    assert sign_flip_p(values) == pytest.approx(at_least / len(patterns))
    assert sign_flip_p([0.01, 0.02, 0.03]) == pytest.approx(0.25)  # the floor at 3 seeds: 2 / 2^3
    assert sign_flip_p([0.01] * 6) == pytest.approx(2 / 64)
    # Past 16 seeds random patterns estimate it: the observed pattern counts, so never p = 0.
    many = sign_flip_p([0.01] * 20)
    assert many is not None and 0 < many <= 3 / (2**16 + 1)


def test_an_undefined_variance_is_cannot_decide_never_p_zero(tmp_path: Path) -> None:
    """Every seed moves by exactly the same step: no spread, no test."""
    shifted = {0.0: [0.60, 0.61, 0.62], 0.25: [0.63, 0.64, 0.65], 0.5: [0.60, 0.61, 0.62]}
    report = build(make_study(tmp_path, shifted)).report
    family = [f for f in report.findings if f.family]
    moved = next(f for f in family if f.contrast.level == 0.25)
    assert moved.verdict == "cannot decide" and moved.estimate.p is None and moved.p_adjusted is None
    assert "the same on every seed" in moved.note
    same = next(f for f in family if f.contrast.level == 0.5)  # zero on 3 seeds: too few to call it
    assert same.verdict == "provisional" and "identical on all 3 seeds" in same.note


def seeds_of(effect: float, noise: float, seeds: int, flip: int | None = None) -> dict[float, list[float]]:
    rng = np.random.default_rng(7)
    base = 0.6 + rng.normal(0, noise, seeds)
    treated = base + effect + rng.normal(0, noise, seeds)
    if flip is not None:
        treated[flip] = base[flip] - 0.02
    return {0.0: list(base), 0.5: list(treated)}


def test_a_large_effect_on_six_seeds_is_decided_and_on_three_only_provisional(tmp_path: Path) -> None:
    decided = build(make_study(tmp_path / "a", seeds_of(0.05, 0.005, 6))).report
    (finding,) = [f for f in decided.findings if f.family]
    assert finding.verdict == "decided" and finding.estimate.p_sign_flip == pytest.approx(2 / 64)
    assert any("decided." in line for line in decided.answer)
    few = build(make_study(tmp_path / "b", seeds_of(0.05, 0.005, 3))).report
    (finding,) = [f for f in few.findings if f.family]
    assert finding.verdict == "provisional"
    assert finding.seeds_to_decide is not None and finding.seeds_to_decide >= 6


def test_one_seed_against_the_others_is_not_decided_and_its_interval_says_so(tmp_path: Path) -> None:
    """One seed of six goes the other way: a plain t-interval would exclude zero, the exact
    test (p = 4/64) does not decide, and the interval printed beside the verdict, the one it
    is decided on, covers zero: the words and the numbers agree."""
    values = seeds_of(0.04, 0.002, 6, flip=2)
    report = build(make_study(tmp_path, values)).report
    (finding,) = [f for f in report.findings if f.family]
    assert finding.p_adjusted == pytest.approx(4 / 64) and finding.verdict == "undecided"
    assert finding.seeds_to_decide is not None and finding.seeds_to_decide >= 7  # never the 6 it has
    plain = mean_ci(list(np.array(values[0.5]) - np.array(values[0.0])))
    assert plain.low > 0  # what the old rule printed
    low, high = finding.interval
    assert low <= 0 < high  # here the observed pattern is the critical one: the end is zero
    (said,) = [line for line in report.answer if "raises" in line or "lowers" in line]
    assert "undecided: the interval covers zero" in said and "5 of 6 seeds agree" in said


def test_with_a_delta_an_effect_that_excludes_zero_but_not_delta_is_non_zero_not_decided(
    tmp_path: Path,
) -> None:
    """With delta = 2 points, an effect of about 2 points whose interval excludes zero but
    reaches below +2 is not "decided" (that would claim it matters): its relevance is open."""
    report = build(make_study(tmp_path, seeds_of(0.02, 0.002, 8), study={"delta": 2.0})).report
    (finding,) = [f for f in report.findings if f.family]
    low, high = finding.interval
    assert 0 < low < 0.02 < high and finding.verdict == "non-zero"
    assert any("non-zero, relevance undetermined" in line for line in report.answer)


def test_an_effect_too_small_to_decide_says_so_instead_of_a_seed_count_nobody_can_run(
    tmp_path: Path,
) -> None:
    base = 0.6 + np.random.default_rng(3).normal(0, 0.01, 6)
    wobble = np.array([0.001, -0.001, 0.0012, -0.0008, 0.001, -0.0011])  # a mean of 0.00005
    report = build(make_study(tmp_path, {0.0: list(base), 0.5: list(base + wobble)})).report
    (finding,) = [f for f in report.findings if f.family]
    assert finding.verdict == "undecided" and finding.seeds_to_decide is None
    assert any("more than 100 seeds would be needed" in line for line in report.answer)


def test_a_smallest_effect_of_interest_gives_equivalence_or_larger(tmp_path: Path) -> None:
    small = build(make_study(tmp_path / "a", seeds_of(0.001, 0.002, 8), study={"delta": 2.0})).report
    (finding,) = [f for f in small.findings if f.family]
    low, high = finding.interval
    assert -0.02 < low and high < 0.02 and finding.verdict == "equivalent"
    large = build(make_study(tmp_path / "b", seeds_of(0.08, 0.005, 8), study={"delta": 2.0})).report
    (finding,) = [f for f in large.findings if f.family]
    assert finding.interval[0] > 0.02 and finding.verdict == "larger than delta"
    assert finding.seeds_for_delta is not None and finding.detectable is not None
    assert any("larger than delta = 2.0" in line for line in large.answer)


def test_a_control_identical_on_every_seed_is_identical_not_inconclusive(tmp_path: Path) -> None:
    """resume_jump's ``full`` control equals continuous training bitwise on every seed: a
    difference that is zero on every paired seed is no estimate (it has no spread, and takes
    no place in the family's test): it is its own verdict, on six seeds or more."""
    rng = np.random.default_rng(5)
    base = list(0.6 + rng.normal(0, 0.02, 6))
    cells = {0.0: base, 0.25: list(base), 0.5: list(np.array(base) + rng.normal(0, 0.03, 6))}
    report = build(make_study(tmp_path / "a", cells, study={"delta": 1.0})).report
    control = next(f for f in report.findings if f.family and f.contrast.level == 0.25)
    assert control.interval is None and control.p_adjusted is None
    assert control.verdict == "identical"
    assert any(
        "identical on test_acc on all 6 paired seeds: a difference of exactly zero" in line
        for line in report.answer
    )
    # An identical row is no estimate: it prints no interval and no detectable effect.
    from ablate.report.render import finding_row

    row = finding_row(control)
    assert row[3] == "none: 0 on every seed" and row[7] == "n/a"
    from ablate.report.forest import forest

    files = build(make_study(tmp_path / "c", cells, study={"delta": 1.0}))
    drawn = [line for axis in forest(files.report, files.results).axes for line in axis.get_lines()]
    identical = sum(f.family and f.verdict == "identical" for f in files.report.findings)
    assert sum(line.get_marker() == "D" for line in drawn) == identical > 0  # a point, no interval
    few = {level: values[:3] for level, values in cells.items()}
    report = build(make_study(tmp_path / "b", few, study={"delta": 1.0})).report
    control = next(f for f in report.findings if f.family and f.contrast.level == 0.25)
    assert control.verdict != "identical"  # three seeds could agree by chance on a small test set


def test_interval_ends_keep_the_digits_that_show_their_side_of_zero() -> None:
    from ablate.analysis.metrics import format_endpoint

    assert format_endpoint("test_acc", 0.00004) == "+0.004"  # never "+0.0" beside a verdict
    assert format_endpoint("test_acc", -0.0213) == "-2.1"
    assert format_endpoint("swing_test", math.log(1.003)) == "x1.0030"  # never "x1.00"
    assert format_endpoint("swing_test", math.log(0.5)) == "x0.50"
    assert format_endpoint("test_acc", 0.0) == "+0.0"


def test_each_verdict_says_how_many_seeds_agree_in_sign(tmp_path: Path) -> None:
    report = build(make_study(tmp_path, seeds_of(0.04, 0.002, 6, flip=2))).report
    (said,) = [line for line in report.answer if "raises" in line]
    assert "5 of 6 seeds agree" in said
    tied = seeds_of(0.04, 0.002, 6)
    tied[0.5][:2] = tied[0.0][:2]  # two seeds give the same result in both cells
    (said,) = [line for line in build(make_study(tmp_path / "tied", tied)).report.answer if "raises" in line]
    assert "4 of 6 seeds agree (2 tied)" in said  # as the family table says it


@pytest.mark.slow
def test_simple_effects_interactions_and_main_effects_match_an_independent_computation(
    tmp_path: Path,
) -> None:
    """A 2 x 2 grid where crop+flip closes the gap by 2 points for the CNN and 8 for the ResNet."""
    rng = np.random.default_rng(3)
    seeds = 6
    noise = rng.normal(0, 0.004, (4, seeds))
    means = {("cnn", "none"): 0.50, ("cnn", "crop"): 0.52, ("resnet", "none"): 0.70, ("resnet", "crop"): 0.78}
    cells = {key: list(means[key] + noise[i]) for i, key in enumerate(means)}
    folder = write_study(
        tmp_path,
        cells,
        {"model": ["cnn", "resnet"], "augment": ["none", "crop"]},
        {"model": "cnn", "augment": "none"},
        study={"within": ["model"]},
    )
    report = build(folder).report
    table = np.array([cells[key] for key in means])
    by_label = {f.contrast.label: f for f in report.findings if f.metric == "test_acc"}
    columns = []
    for model, index in (("cnn", 0), ("resnet", 2)):
        finding = by_label[f"augment = crop (vs none) within model = {model}"]
        differences = table[index + 1] - table[index]
        columns.append(differences)
        assert finding.family and finding.estimate.value == pytest.approx(differences.mean())
        assert finding.estimate.se == pytest.approx(differences.std(ddof=1) / math.sqrt(seeds))
    interaction = by_label["augment = crop (vs none) x model = resnet (vs cnn)"]
    contrast = table[3] - table[2] - table[1] + table[0]
    columns.append(contrast)
    half = max_t_critical(columns, 0.05) * contrast.std(ddof=1) / math.sqrt(seeds)
    assert interaction.family and report.family_size == 3
    assert interaction.estimate.value == pytest.approx(contrast.mean())
    assert interaction.interval == pytest.approx((contrast.mean() - half, contrast.mean() + half))
    assert interaction.verdict == "decided" and interaction.estimate.value == pytest.approx(0.06, abs=0.01)
    main = by_label["augment = crop (vs none), averaged over the other factors"]
    assert not main.family
    averaged = (table[1] + table[3]) / 2 - (table[0] + table[2]) / 2
    assert main.estimate.value == pytest.approx(averaged.mean())
    # With no interaction in the data, the contrast's interval covers zero.
    additive = {
        key: list(means[("cnn", key[1])] + (0.2 if key[0] == "resnet" else 0) + noise[i])
        for i, key in enumerate(means)
    }
    flat = build(
        write_study(
            tmp_path / "flat",
            additive,
            {"model": ["cnn", "resnet"], "augment": ["none", "crop"]},
            {"model": "cnn", "augment": "none"},
            study={"within": ["model"]},
        )
    ).report
    (no_interaction,) = [
        f for f in flat.findings if f.family and f.contrast.kind == "interaction" and f.metric == "test_acc"
    ]
    low, high = no_interaction.interval
    assert low < 0 < high
    # Every factor in ``within``: both candidate causes are asked about, each within each level
    # of the other (oscillation's batch size and schedule): four simple effects and the
    # interaction, and no main effect, in the family.
    built = build(
        write_study(
            tmp_path / "both",
            cells,
            {"model": ["cnn", "resnet"], "augment": ["none", "crop"]},
            {"model": "cnn", "augment": "none"},
            study={"within": ["model", "augment"]},
        )
    )
    assert "interaction" in built.plots  # one asked factor on the axis, lines for the other
    both = built.report
    family = {f.contrast.label for f in both.findings if f.family and f.metric == "test_acc"}
    assert family == {
        "augment = crop (vs none) within model = cnn",
        "augment = crop (vs none) within model = resnet",
        "model = resnet (vs cnn) within augment = none",
        "model = resnet (vs cnn) within augment = crop",
        "model = resnet (vs cnn) x augment = crop (vs none)",
    }
    assert both.family_size == 5


def results_of(series: dict[int, list[dict]]) -> StudyResults:
    trials = [
        {"trial": t, "attempt": 1, "state": "complete", "seed": t, "param_resume_every": 2} for t in series
    ]
    epochs = [
        {"trial": t, "attempt": 1, "epoch": e + 1, **row}
        for t, rows in series.items()
        for e, row in enumerate(rows)
    ]
    return StudyResults(Path("."), {}, trials, epochs)


def test_the_swing_ignores_a_trend_and_a_rate_drop_and_measures_the_noise() -> None:
    trend = [{"test_acc": 0.3 + 0.05 * e, "lr": 0.1} for e in range(8)]
    assert swing([{**r, "epoch": e + 1} for e, r in enumerate(trend)]) == pytest.approx(0.0, abs=1e-12)
    dropped = [
        {
            **r,
            "epoch": e + 1,
            "lr": 0.1 if e < 6 else 0.01,
            "test_acc": r["test_acc"] + (0.2 if e >= 6 else 0),
        }
        for e, r in enumerate(trend)
    ]
    assert swing(dropped) == pytest.approx(0.0, abs=1e-12)  # the jump at the drop is not swing
    # A rate that changes every epoch (cosine) has no steps: its changes are all swing. The
    # swing is measured around the trend, so this steady climb under cosine has none.
    cosine = [
        {**r, "epoch": e + 1, "lr": 0.05 * (1 + math.cos(math.pi * e / 8))} for e, r in enumerate(trend)
    ]
    assert swing(cosine) == pytest.approx(0.0, abs=1e-12)
    wobbly = [{**r, "test_acc": r["test_acc"] + (0.03 if e % 2 else -0.03)} for e, r in enumerate(cosine)]
    assert swing(wobbly) == pytest.approx(
        np.std(np.diff([w["test_acc"] for w in wobbly[4:]]), ddof=1) / math.sqrt(2)
    )
    # A step held on both sides is left out even with noise around it.
    stepped = [{**r, "lr": 0.1 if e < 6 else 0.01} for e, r in enumerate(wobbly)]
    kept = [stepped[i + 1]["test_acc"] - stepped[i]["test_acc"] for i in (4, 6)]
    assert swing(stepped) == pytest.approx(np.std(kept, ddof=1) / math.sqrt(2))
    noisy = [0.5, 0.52, 0.48, 0.55, 0.45, 0.56, 0.44, 0.57]
    rows = [{"epoch": e + 1, "test_acc": v, "lr": 0.1} for e, v in enumerate(noisy)]
    changes = np.diff(noisy[4:])  # the window is epochs 5-8 of 8: the changes between them
    assert swing(rows) == pytest.approx(np.std(changes, ddof=1) / math.sqrt(2))


def test_jumps_are_reported_at_each_restart_point() -> None:
    accuracy = [0.3, 0.4, 0.5, 0.55, 0.7, 0.72]  # restarts every 2: after epochs 2 and 4
    results = results_of({0: [{"test_acc": a, "train_acc": a - 0.1, "lr": 0.1} for a in accuracy]})
    jumps = add_derived(results)
    assert jumps == ["jump_test@1", "jump_test@2", "jump_train@1", "jump_train@2"]
    trial = results.complete[0]
    assert trial["jump_test@1"] == pytest.approx(0.5 - 0.4)
    assert trial["jump_test@2"] == pytest.approx(0.7 - 0.55)


def test_half_widths_keep_two_significant_digits() -> None:
    assert format_half_width("test_acc", 0.0204) == "2.0"
    assert format_half_width("test_acc", 0.00043) == "0.043"  # never "0.0"
    assert format_half_width("test_acc", 0.123) == "12"


def test_holm_and_intervals_edge_cases() -> None:
    with_missing = holm([0.01, None, 0.04])
    assert with_missing[1] is None and with_missing[0] == pytest.approx(0.02)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert mean_ci([0.5]).low is None


def test_benjamini_hochberg_steps_up() -> None:
    assert benjamini_hochberg([0.01, 0.02, 0.03, 0.5], 0.05) == [True, True, True, False]
    # 0.02 alone misses its 1/3 x 0.05, but the largest p under its line (0.04 <= 0.05) takes it along.
    assert benjamini_hochberg([0.04, 0.02, 0.03], 0.05) == [True, True, True]
    assert benjamini_hochberg([0.04, 0.045, 0.9], 0.05) == [False, False, False]


def test_too_few_seeds_are_stated_plainly(tmp_path: Path) -> None:
    study = make_study(tmp_path, {0.0: [0.6], 0.25: [0.7]})
    answer = build(study).report.answer
    assert any("cannot decide: only one seed has both cells" in line for line in answer)


def test_partial_study_reports_what_exists_and_what_is_missing(tmp_path: Path) -> None:
    study = make_study(tmp_path, skip={(0.5, 2), (0.5, 3)})
    report = build(study).report
    assert report.counts == {"attempts": 10, "complete": 10, "diverged": 0, "pruned": 0, "planned": 12}
    notes = " ".join(report.missing)
    assert "10 of 12 planned trials" in notes and "cell dropout=0.5 lacks seeds [2, 3]" in notes
    (finding,) = [f for f in report.findings if f.metric == "test_acc" and f.contrast.level == 0.5]
    assert finding.estimate.n == 2


def test_schemas_are_unified_across_files(tmp_path: Path) -> None:
    study = make_study(tmp_path, extra_column=True)
    rows = read_table(study / "trials")
    assert len(rows) == 12 and sorted({r.get("param_width") for r in rows}, key=str) == [8, None]


@pytest.mark.slow
def test_cli_formats_and_self_contained_html(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    runner = CliRunner()
    text = runner.invoke(app, ["report", str(study)])
    assert text.exit_code == 0, text.output
    assert "Does dropout help?" in text.output and "The Answer's family" in text.output
    data = json.loads(runner.invoke(app, ["report", str(study), "--format", "json"]).stdout)
    cell = next(c for c in data["cells"] if c["baseline"])
    assert cell["metrics"]["test_acc"]["mean"] == pytest.approx(np.mean(ACCURACY[0.0]))
    assert {f["metric"] for f in data["findings"]} == {"test_acc", "gap_running", "gap_eval", "swing_test"}
    family = [f for f in data["findings"] if f["family"]]
    assert data["family"]["size"] == len(family) == 2
    assert all(f["interval"]["confidence"] == pytest.approx(0.95) for f in family)
    # Four seeds: no exact test at 0.05, so nothing is detectable yet; the seeds it takes are said.
    assert all(f["detectable"] is None and f["seeds_to_decide"] >= 6 for f in family)
    assert data["family"]["procedure"].startswith("max-T sign-flip")
    markdown = runner.invoke(app, ["report", str(study), "--format", "markdown"]).stdout
    assert "| cell |" in markdown and "## Answer" in markdown and "exploratory" in markdown
    assert "seed-to-seed variation on this one test set; a comparison on test accuracy" in markdown
    assert runner.invoke(app, ["report", str(study), "--format", "pdf"]).exit_code == 2

    expected = {"forest", "learning_curves", "gaps", "final_metric", "per_class", "confusion"}
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


@pytest.mark.slow
def test_report_on_the_smoke_preset_of_dropout_gap(tmp_path: Path) -> None:
    runner = CliRunner()
    run_smoke(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path / "dropout_gap"), "--format", "json"])
    data = json.loads(result.stdout)
    assert len(data["cells"]) == 6 and sum(c["baseline"] for c in data["cells"]) == 1
    # The question is about the gaps, for each augmentation: the family says so.
    family = [f for f in data["findings"] if f["family"]]
    assert {f["metric"] for f in family} == {"gap_running_first", "gap_running", "gap_eval"}
    assert {(f["factor"], json.dumps(f["condition"])) for f in family if f["kind"] == "within"} == {
        ("dropout", '{"augment": "crop_flip"}'),
        ("dropout", '{"augment": "none"}'),
    }
    # Augmentation's own effect, which the question names beside dropout's.
    assert {(f["factor"], f["level"]) for f in family if f["kind"] == "asked"} == {("augment", "none")}
    assert len(data["answer"]) == 2 + len(family)  # the family's rule, what the seed covers
    # The trials recorded which test images they got right: the final gaps' intervals hold the
    # test set's sampling (a bootstrap over its 200 images); the early gap is measured on the
    # first epoch's predictions, which are not recorded.
    final = [f for f in family if f["metric"] != "gap_running_first"]
    assert final and all(f["estimate"]["image_se"] > 0 for f in final)
    assert all(f["estimate"]["image_se"] is None for f in family if f not in final)
    assert "The intervals on gap_eval, gap_running also hold the test set's own sampling" in data["answer"][1]
    assert "another test set" not in data["answer"][1]
    assert (tmp_path / "dropout_gap" / "report" / "report.html").is_file()
    # Where and how the trials ran, from the trials table: one model, so one precision, unnamed.
    precisions = {row["precision"] for row in read_table(tmp_path / "dropout_gap" / "trials")}
    assert len(precisions) == 1
    from ablate.train.precision import cpu_name

    threads = torch.get_num_threads()
    assert data["ran_on"] == (
        f"Ran on cpu ({cpu_name()}, {threads} thread{'s' if threads != 1 else ''}) with torch "
        f"{torch.__version__}, in {precisions.pop()}."
    )
    assert {p.stem for p in (tmp_path / "dropout_gap" / "report").glob("*.png")} == {
        "forest",
        "learning_curves",
        "gaps",
        "final_metric",
        "interaction",
        "per_class",
        "confusion",
        "feature_maps",
    }  # the smoke preset keeps its final weights


def test_sampled_study_reports_optuna_parameter_importance(tmp_path: Path, cli_plugins: object) -> None:
    study = tmp_path / "sampled.py"
    study.write_text("""
from ablate import Study, integer, sampler, uniform

study = Study(
    name="sampled", question="Which matters more, width or learning rate?",
    baseline=dict(dataset="tiny", model="tiny_mlp", epochs=1, batch_size=16, eval_batch_size=16,
                  train_eval_size=16, val_size=16),
    factors=dict(hidden=integer(2, 32), lr=uniform(0.001, 0.5, log=True)),
    design=sampler("random", trials=6), seeds=1,
)
""")
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(study), "--results-dir", str(tmp_path)]).exit_code == 0
    data = json.loads(runner.invoke(app, ["report", str(tmp_path / "sampled"), "--format", "json"]).stdout)
    assert set(data["importance"]) == {"hidden", "lr"}
    assert sum(data["importance"].values()) == pytest.approx(1.0)


def test_an_undecided_ratio_says_its_interval_covers_no_change_not_zero() -> None:
    """Swings compare as ratios: x0.87 [x0.37, x2.03] covers x1, and a ratio never covers 0."""
    from ablate.analysis.answer import UNDECIDED, Finding, sentence
    from ablate.analysis.contrasts import Contrast
    from ablate.analysis.stats import Estimate

    contrast = Contrast("within", "batch_size", 16, 8, {"a": 1.0, "b": -1.0}, {"scheduler": "none"})
    estimate = Estimate(math.log(0.87), 6, 0.3, 0.6, 0.97, (0.1, -0.2, 0.0, -0.1, -0.3, 0.05))
    for metric, covers in (("swing_test", "covers x1 (no change)"), ("test_acc", "covers zero")):
        finding = Finding(contrast, metric, estimate, family=True, half_width=0.9, verdict=UNDECIDED)
        assert covers in sentence(finding)


def test_the_report_says_where_and_in_which_precision_each_model_ran() -> None:
    """precision=auto chooses per model and machine: where the trials differ, each precision
    names its models, and a GPU is named without its index."""
    trials = [
        {"device": "cpu", "torch_version": "2.9.1", "precision": "bf16", "param_model": "resnet18"},
        {"device": "cpu", "torch_version": "2.9.1", "precision": "fp32", "param_model": "simple_cnn"},
        {"device": "cpu", "torch_version": "2.9.1", "precision": "bf16", "param_model": "resnet9"},
        {"device": "cpu", "torch_version": "2.9.1", "precision": "bf16", "param_model": "resnet18"},
    ]
    assert ran_on(trials, "param_model") == (
        "Ran on cpu with torch 2.9.1, in bf16 (resnet18, resnet9) and fp32 (simple_cnn)."
    )
    gpu = {
        "device": "cuda",
        "gpu": "3 NVIDIA H100 80GB HBM3",
        "torch_version": "2.9.1",
        "precision": "bf16",
        "param_model": "resnet18",
        "tf32": True,
        "deterministic": True,
    }
    assert ran_on([gpu, {**gpu, "gpu": "0 NVIDIA H100 80GB HBM3"}], "param_model") == (
        "Ran on NVIDIA H100 80GB HBM3 with torch 2.9.1, in bf16, with TF32 and deterministic kernels."
    )
    # A CPU is named by its model and thread count where the rows record them: both change its numbers.
    cpu = {"device": "cpu", "cpu": "AMD EPYC 9R14 96-Core Processor", "threads": 2, "precision": "bf16"}
    assert ran_on([cpu], None) == "Ran on cpu (AMD EPYC 9R14 96-Core Processor, 2 threads), in bf16."
    assert ran_on([cpu, {**cpu, "threads": 1}], None) == (
        "Ran on cpu (AMD EPYC 9R14 96-Core Processor, 2 threads) and cpu (AMD EPYC 9R14 96-Core "
        "Processor, 1 thread), in bf16."
    )
    assert ran_on([], "param_model") == ""
    # What the trials table does not record is left out, not printed as a placeholder.
    assert ran_on([{"seed": 0}], "param_model") == ""
    assert ran_on([{"precision": "fp32", "param_model": "resnet18"}], "param_model") == "Ran in fp32."


def test_every_format_opens_with_the_short_answer_and_the_forest_plot(tmp_path: Path) -> None:
    """The answer before any table: its sentences come from the family's verdicts (the numbers
    are the findings' own), and the forest plot draws each comparison in its verdict's colour."""
    from ablate.report.forest import COLOURS, forest

    study = make_study(tmp_path, seeds_of(0.05, 0.005, 6))
    files = build(study)
    report = files.report
    (finding,) = [f for f in report.findings if f.family]
    low, high = finding.interval
    assert finding.verdict == "decided"
    assert report.summary[0] == (
        f"Decided: dropout = 0.5 (vs 0.0) raises test_acc by {abs(finding.estimate.value) * 100:.1f} "
        f"points [{finding.confidence * 100:.4g} % interval {low * 100:+.1f} to {high * 100:+.1f}]."
    )
    runner = CliRunner()
    text = runner.invoke(app, ["report", str(study), "--no-files"]).output
    assert text.index("Short answer") < text.index("Answer\n") < text.index("Cells")
    assert report.summary[0] in " ".join(text.split())
    markdown = runner.invoke(app, ["report", str(study), "--format", "markdown"]).stdout
    assert (
        markdown.index("## Short answer")
        < markdown.index("![forest](forest.png)")
        < (markdown.index("## Answer"))
    )
    data = json.loads(runner.invoke(app, ["report", str(study), "--format", "json"]).stdout)
    assert data["summary"] == report.summary
    page = (study / "report" / "report.html").read_text()
    assert page.index("Short answer") < page.index("alt='forest'") < page.index("<h2>Answer")
    assert "<details><summary>Cells" in page  # the tables folded under their headings
    figure = forest(report, files.results)
    (axis,) = figure.axes
    colours = {line.get_color() for line in axis.get_lines() if line.get_linewidth() == 2.5}
    assert colours == {COLOURS["decided"]}
    assert forest(build(make_study(tmp_path / "none", {0.0: [0.6] * 3})).report, files.results) is None


def test_the_short_answer_names_what_is_open_and_what_is_negligible(tmp_path: Path) -> None:
    from ablate.analysis.summary import short_answer

    small = build(make_study(tmp_path / "a", seeds_of(0.001, 0.002, 8), study={"delta": 2.0})).report
    assert small.summary[0].startswith("Nothing the question asks is decided yet (1 comparisons)")
    assert small.summary[1].startswith("Shown negligible (within +-2): dropout = 0.5 (vs 0.0) on test_acc")
    few = build(make_study(tmp_path / "b", seeds_of(0.05, 0.005, 3))).report
    assert few.summary[-1].startswith("Still open: 1 comparison, the largest dropout = 0.5")
    assert "(provisional)" in few.summary[-1]
    assert short_answer([], None) == [
        "No comparison the question asks for has results in both of its cells yet."
    ]


def test_a_family_is_judged_on_the_seeds_all_its_comparisons_share(tmp_path: Path) -> None:
    """Seed 5 of dropout 0.5 is missing: both comparisons are tested together on seeds 0-4, and
    the one that had seed 5 says so (its estimate is over the shared seeds, like the test)."""
    rng = np.random.default_rng(9)
    accuracy = {
        level: list(0.6 + shift + rng.normal(0, 0.01, 6))
        for level, shift in ((0.0, 0), (0.25, 0.05), (0.5, 0))
    }
    report = build(make_study(tmp_path, accuracy, skip={(0.5, 5)})).report
    family = {f.contrast.level: f for f in report.findings if f.family}
    assert family[0.25].estimate.seeds == family[0.5].estimate.seeds == (0, 1, 2, 3, 4)
    assert "judged on the 5 seeds every comparison of the family has" in family[0.25].note
    expected = np.mean(np.array(accuracy[0.25][:5]) - np.array(accuracy[0.0][:5]))
    assert family[0.25].estimate.value == pytest.approx(expected)
    assert family[0.25].verdict == "provisional"  # 5 seeds: no exact test at 0.05


def test_a_comparison_the_study_names_joins_the_family(tmp_path: Path) -> None:
    """architecture's question is C3 against ResNet-18, not each against the tutorial CNN: the
    study names the pair, and the family holds it within each level of its within factor."""
    rng = np.random.default_rng(12)
    means = {"cnn": 0.50, "r18": 0.70, "c3": 0.74}
    cells = {
        (model, augment): list(means[model] + (0.05 if augment == "crop" else 0) + rng.normal(0, 0.005, 6))
        for model in means
        for augment in ("none", "crop")
    }
    report = build(
        write_study(
            tmp_path,
            cells,
            {"model": ["cnn", "r18", "c3"], "augment": ["none", "crop"]},
            {"model": "cnn", "augment": "none"},
            study={"within": ["augment"], "contrasts": [["model", "c3", "r18"]]},
        )
    ).report
    named = [f for f in report.findings if f.family and f.contrast.kind == "asked"]
    assert {f.contrast.label for f in named} == {
        "model = c3 (vs r18) within augment = none",
        "model = c3 (vs r18) within augment = crop",
    }
    for finding in named:
        augment = finding.contrast.condition["augment"]
        expected = np.mean(np.array(cells[("c3", augment)]) - np.array(cells[("r18", augment)]))
        assert finding.estimate.value == pytest.approx(expected) and finding.verdict == "decided"
    assert "and the 2 comparisons the study names" in report.answer[0]
    assert report.family_size == 6 + 2  # 4 effects within augment, 2 interactions, 2 named


def test_a_main_effect_the_study_names_joins_the_family_once(tmp_path: Path) -> None:
    """oscillation's question is whether cosine cuts the swing: where it does at every batch
    size, the effect averaged over the batch sizes is the most precise answer, and the study
    can ask for it (``"averaged"``)."""
    rng = np.random.default_rng(13)
    cells = {
        (schedule, batch): list(
            0.60 + (0.02 if schedule == "cosine" else 0) - 0.01 * i + rng.normal(0, 0.01, 6)
        )
        for schedule in ("none", "cosine")
        for i, batch in enumerate(("8", "16", "64"))
    }
    factors = {"scheduler": ["none", "cosine"], "batch": ["8", "16", "64"]}
    report = build(
        write_study(
            tmp_path,
            cells,
            factors,
            {"scheduler": "none", "batch": "8"},
            study={
                "within": ["scheduler", "batch"],
                "contrasts": [["scheduler", "cosine", "none", "averaged"]],
            },
        )
    ).report
    named = [f for f in report.findings if f.family and f.contrast.kind == "main effect"]
    assert [f.contrast.label for f in named] == [
        "scheduler = cosine (vs none), averaged over the other factors"
    ]
    expected = np.mean(
        [np.array(cells[("cosine", b)]) - np.array(cells[("none", b)]) for b in factors["batch"]]
    )
    assert named[0].estimate.value == pytest.approx(expected)
    # The exploratory main effects no longer hold it a second time; the other factor's stay.
    others = [
        f
        for f in report.findings
        if not f.family and f.metric == "test_acc" and f.contrast.kind == "main effect"
    ]
    assert {f.contrast.factor for f in others} == {"batch"}
    assert "and the comparison the study names" in report.answer[0]
    # 3 effects of the schedule within batch, 2 x 2 of batch within schedule, 2 interactions, 1 named.
    assert report.family_size == 3 + 4 + 2 + 1


def test_a_ratio_metric_not_measured_in_any_cell_draws_no_interaction_plot(tmp_path: Path) -> None:
    """oscillation's smoke preset trains 2 epochs: too few for the swing's window, so every
    cell's swing is missing; the log-scaled interaction plot raised (a traceback, exit 1)."""
    cells = {(s, b): [0.6, 0.61, 0.62] for s in ("none", "cosine") for b in ("8", "64")}
    folder = write_study(
        tmp_path,
        cells,
        {"scheduler": ["none", "cosine"], "batch": ["8", "64"]},
        {"scheduler": "none", "batch": "8"},
        study={"within": ["scheduler", "batch"], "metrics": ["swing_test"]},
    )
    report, results = analyse_folder(folder)
    assert PLOTS["interaction"](report, results) is not None  # measured: drawn
    for cell in report.cells:
        cell.summary["swing_test"] = mean_ci([])  # as when no cell has epochs enough
    assert PLOTS["interaction"](report, results) is None
    assert "interaction" not in write_files(report, results).plots


def test_a_target_says_how_many_runs_reach_it_and_where_one_new_run_lies(tmp_path: Path) -> None:
    """A mean's interval is not a claim about single runs: with a target, each cell counts its
    runs past the bar and gives the 95 % prediction interval for one more run."""
    report = build(make_study(tmp_path, study={"target": 62.0})).report
    (line,) = [text for text in report.answer if text.startswith("Target test_acc >= 62: dropout=0.0")]
    values = np.array(ACCURACY[0.0])
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) * math.sqrt(1 + 1 / 4)
    low, high = (format_value("test_acc", v) for v in (values.mean() - half, values.mean() + half))
    assert "reaches it on 2 of 4 runs (seeds)" in line
    assert f"one new run lies in {low} to {high} (95 % prediction interval)" in line


def test_a_trial_recording_another_test_set_size_is_refused_in_one_line(tmp_path: Path) -> None:
    """The trials of a plan share their test set: a record of another length (damaged by hand)
    would pair one trial's images with another's. The report names the file and what to do,
    instead of leaving out the images' part of every interval without a word."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = make_study(tmp_path)
    files = sorted((folder / "trials").glob("*.parquet"))
    for index, file in enumerate(files):
        table = pq.read_table(file)
        size = 90 if index == 3 else 100
        column = pa.array([[True] * size], type=pa.list_(pa.bool_()))
        table = table.set_column(table.schema.get_field_index("test_correct"), "test_correct", column)
        pq.write_table(table, file)
    code, output = invoke_report(folder)
    assert code == 2, output
    line = " ".join(output.split())
    assert f"{files[3]} records 90 test images where the study's other trials record 100" in line
    assert "set-aside" in line and "Traceback" not in output
    files[3].rename(folder / "trial.parquet.moved")  # as the line says: the rest reports
    code, output = invoke_report(folder)
    assert code == 0, output


def invoke_report(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", str(folder)])
    return result.exit_code, result.output
