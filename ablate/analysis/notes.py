"""The lines a report adds beside its tables: what the folder is missing, why an adaptive seed
rule stopped, and how many seeds of each cell reach the study's target."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ablate.analysis.answer import IDENTICAL, Finding
from ablate.analysis.load import StudyResults, is_sampled
from ablate.analysis.metrics import (
    TEST_PART,
    format_half_width,
    format_value,
    is_accuracy,
    is_ratio,
)
from ablate.analysis.stats import mean_ci

if TYPE_CHECKING:
    from ablate.analysis.findings import Cell

__all__ = ["against_target", "missing", "seed_rule_line", "test_set_floor", "variation", "widest_half_width"]


def variation(description: Mapping[str, Any], findings: Sequence[Finding] = ()) -> str:
    """Which sources of variation the intervals cover and which every seed shares. The seed
    covers its own draws; the test set's sampling is covered where the trials recorded which
    test images they got right (a paired bootstrap over them); nothing covers other training
    images, which every seed shares unless they are drawn per seed."""
    baseline, factors = description.get("baseline", {}), description.get("factors", {})

    drawn = baseline.get("train_subset") == "per_seed" and bool(baseline.get("train_size"))

    def images(setting: str, split: str) -> str | None:
        if setting in factors or (drawn and setting == "train_size"):
            return None  # varied by the design or drawn by the seed, not fixed
        count = baseline.get(setting) or 0
        return f"the first {int(count):,} {split} images" if count else f"all the {split} images"

    fixed = [
        images("train_size", "training"),
        images("test_size", "test"),
        f"the {int(baseline['val_size']):,} validation images" if baseline.get("val_size") else None,
    ]
    on_test = [f for f in findings if f.family and f.metric in TEST_PART and f.estimate is not None]
    covered = [f for f in on_test if f.estimate is not None and f.estimate.image_se is not None]
    uncovered = "" if drawn else "other training images"
    if on_test and len(covered) == len(on_test):
        test_set = (
            f". The intervals on {', '.join(sorted({f.metric for f in on_test}))} also hold the test "
            "set's own sampling: a paired bootstrap over the test images, one resample for every trial"
        )
    else:
        uncovered = "another test set" + (f" or {uncovered}" if uncovered else "")
        # Trials written before ablate recorded each test image's correctness.
        test_set = " (not every trial recorded which test images it got right)" if on_test else ""
    tail = f"; {uncovered} would add variation these intervals do not include." if uncovered else "."
    return (
        "What the intervals cover: the seed varies the initialisation, "
        + ("which training images are drawn, " if drawn else "")
        + "the order of the training images and every augmentation draw and dropout mask; every "
        "seed shares " + ", ".join(f for f in fixed if f) + test_set + tail
    )


def _same_unit(findings: list[Finding], metric: str) -> list[Finding]:
    """The family's findings measured in ``metric``'s unit (points for accuracies and gaps; a
    ratio compares only with itself)."""
    return [
        f
        for f in findings
        if f.family
        and f.verdict != IDENTICAL  # no estimate, nothing to narrow
        and (f.metric == metric or (is_accuracy(f.metric) and is_accuracy(metric) and not is_ratio(f.metric)))
    ]


def widest_half_width(findings: list[Finding], metric: str) -> float | None:
    """The widest half-width of the simultaneous intervals the report prints for the question's
    family, on the metrics measured in ``metric``'s unit; None while one of them has no interval
    yet. This is the width ``seeds=until(halfwidth=...)`` aims at: the interval a reader sees."""
    widths = [f.half_width for f in _same_unit(findings, metric)]
    known = [w for w in widths if w is not None]
    return max(known) if known and len(known) == len(widths) else None


def test_set_floor(findings: list[Finding], metric: str) -> float | None:
    """The widest half-width the test images' sampling alone gives (their error times the
    family's critical value), on the metrics in ``metric``'s unit: no number of seeds narrows
    an interval below it, since every seed shares the test set. None without that error."""
    floors = [
        f.critical * f.estimate.image_se
        for f in _same_unit(findings, metric)
        if f.critical is not None and f.estimate is not None and f.estimate.image_se is not None
    ]
    return max(floors) if floors else None


def missing(results: StudyResults, cells: list[Cell], wanted: Mapping[str, int] | None = None) -> list[str]:
    """What the report lacks. ``wanted``: the seeds each cell should have, where the design
    gives cells different numbers (a path's race stops candidates early on purpose)."""
    notes = list(results.unreadable)
    for fingerprint, count in results.other_plans.items():
        notes.append(
            f"{count} trial attempts of another plan of this study (fingerprint "
            f"{fingerprint}) are in this folder and left out of this report"
        )
    planned = sum(wanted.values()) if wanted is not None else results.description.get("trials")
    with_result = results.complete + results.diverged + results.pruned
    if planned and len(with_result) < planned:
        notes.append(
            f"{len(with_result)} of {planned} planned trials have a result; the rest are "
            "missing (still running, interrupted, or failed)."
        )
    failed = sorted({r["trial"] for r in results.attempts} - {r["trial"] for r in with_result})
    if failed:
        notes.append(f"trials with only failed or interrupted attempts: {failed}")
    without_epochs = sorted(t["trial"] for t in results.complete if not results.rows_of(results.epochs, t))
    if without_epochs:
        notes.append(
            f"trials {without_epochs} have no epochs rows (a deleted or unreadable file): "
            "left out of the swing, the restart jumps and the learning curves"
        )
    seeds = set(results.description.get("seeds", []))
    ordered = list(results.description.get("seeds", []))
    for cell in cells:
        expected = seeds if wanted is None else set(ordered[: wanted.get(cell.name, 0)])
        lacking = sorted(expected - {t["seed"] for t in cell.trials})
        if lacking:
            notes.append(f"cell {cell.name} lacks seeds {lacking}")
    if cells and not any(c.baseline for c in cells) and not is_sampled(results.description):
        notes.append("the baseline cell has no complete trial: comparisons with it cannot be made")
    return notes


def seed_rule_line(
    rule: Mapping[str, Any], cells: list[Cell], findings: list[Finding], description: Mapping[str, Any]
) -> str:
    """How many seeds each cell got under ``seeds=until(...)`` and why the rule stopped."""
    metric = description.get("metric", "test_acc")
    seeds = sorted({len(c.trials) for c in cells})
    widest = widest_half_width(findings, metric)
    target = rule["halfwidth"] / 100 if is_accuracy(metric) else rule["halfwidth"]
    count = "/".join(map(str, seeds))
    unit = "metrics in points" if is_accuracy(metric) and not is_ratio(metric) else metric
    shown = "not measurable" if widest is None else f"+-{format_half_width(metric, widest)}"
    floor = test_set_floor(findings, metric)
    if widest is not None and widest <= target:
        why = (
            f"it stopped: the widest simultaneous interval on the question's "
            f"{unit} is {shown}, within +-{rule['halfwidth']:g}"
        )
    elif floor is not None and floor >= target:
        why = (
            f"it stopped: the test set's own sampling alone gives +-{format_half_width(metric, floor)} "
            f"(every seed shares its images), wider than the target +-{rule['halfwidth']:g}, so no "
            f"number of seeds reaches it; the widest interval is {shown}. More test images, or a "
            "wider target, would"
        )
    elif seeds and seeds[0] >= rule["max"]:
        why = (
            f"it stopped at the cap: every cell has the maximum of {rule['max']} seeds and the "
            f"widest simultaneous interval on the question's {unit} is still {shown} "
            f"(target +-{rule['halfwidth']:g})"
        )
    else:
        why = (
            f"it is still adding seeds: the widest simultaneous interval on the question's "
            f"{unit} is {shown} (target "
            f"+-{rule['halfwidth']:g})"
        )
    return (
        f"Seeds: each cell has {count} seeds (until(halfwidth={rule['halfwidth']:g}, "
        f"min={rule['min']}, max={rule['max']})); {why}. Under the rule the family's level is "
        "0.025 (97.5 % simultaneous intervals), which keeps their coverage at 95 % or more "
        "although the rule stopped on a width the same data produced."
    )


def against_target(cells: list[Cell], description: Mapping[str, Any]) -> list[str]:
    """With a study's ``target`` (a bar on its metric): each cell's mean, interval and seeds at
    or past the bar."""
    target, metric = description.get("target"), description.get("metric", "test_acc")
    if target is None:
        return []
    bar = target / 100 if is_accuracy(metric) else target
    above = description.get("direction", "maximize") == "maximize"
    lines = []
    for cell in cells:
        values = list(cell.by_seed(metric).values())
        if not values:
            continue
        passed = sum((v >= bar) if above else (v <= bar) for v in values)
        interval = mean_ci(values)
        # The mean's interval says where the average run lies; a reader asking "will my run
        # reach it?" needs where one new run lies: the 95 % prediction interval.
        span = ""
        if interval.high is not None:
            # t x sd x sqrt(1 + 1/n): the mean's half-width t x sd / sqrt(n) times sqrt(n + 1).
            half = (interval.high - interval.mean) * math.sqrt(len(values) + 1)
            span = (
                f"; one new run lies in {format_value(metric, interval.mean - half)} to "
                f"{format_value(metric, interval.mean + half)} (95 % prediction interval)"
            )
        lines.append(
            f"Target {metric} {'>=' if above else '<='} {target:g}: {cell.label} "
            f"reaches it on {passed} of {len(values)} runs (seeds), mean "
            f"{format_value(metric, interval.mean)}{span}."
        )
    return lines
