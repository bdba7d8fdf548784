"""What every format of a report shows: its tables (cells, comparisons, confounding), their
headers and the legend that explains them (the formats themselves: :mod:`.formats`)."""

from __future__ import annotations

from ablate.analysis.answer import IDENTICAL, Finding, agreement
from ablate.analysis.contrasts import AGAINST_BASELINE, ASKED, INTERACTION, MAIN, WITHIN
from ablate.analysis.findings import ARCHITECTURE_METRICS, CELL_METRICS, DIVERGED, Report
from ablate.analysis.metrics import (
    format_difference,
    format_endpoint,
    format_half_width,
    format_value,
)
from ablate.analysis.stats import Estimate, Interval

CELL_HEADERS = {
    "test_acc": "test %",
    "train_acc": "train % run",
    "train_eval_acc": "train % eval",
    "gap_running": "gap run",
    "gap_eval": "gap eval",
    "swing_test": "swing",
    "best_epoch": "best ep",
    "seconds": "s",
    "val_acc": "val %",
    DIVERGED: "diverged %",
    "model_params": "params",
    "epoch_seconds": "s/epoch",
    "gap_running_first": "gap run ep1",
}
FINDING_HEADERS = (
    "comparison",
    "metric",
    "difference",
    "interval",
    "p (adj.)",
    "seeds agree",
    "n",
    "detectable",
    "verdict",
)
KIND_TITLES = {
    ASKED: "Asked by the study: each pair of levels it names, within each level of its "
    "'within' factors, paired by seed",
    AGAINST_BASELINE: "Against the baseline: each cell that changes one factor, minus the "
    "baseline cell, paired by seed",
    WITHIN: "Within: each factor's level against its baseline level, with the other factors "
    "held at each combination of their levels",
    INTERACTION: "Interactions: does one factor's effect depend on another's level? "
    "(difference of differences)",
    MAIN: "Main effects: each factor's level against its baseline level, averaged over the other factors",
}


def legend(report: Report) -> str:
    window = (
        f"epochs {report.swing_epochs[0]}-{report.swing_epochs[1]}"
        if report.swing_epochs
        else "the last half of training"
    )
    return (
        "Cells: means over seeds ± the half-width of their 95 % t interval. 'train % run': "
        "train accuracy as seen during training (augmentation and dropout on); 'train % eval': "
        "in eval mode on unaugmented train images; 'gap run' = test - train run; 'gap eval' = "
        f"train eval - test; 'swing': epoch-to-epoch noise of test accuracy around a trend over "
        f"{window}, leaving out steps of the learning rate (not the every-epoch changes of "
        "cosine) and restarts (cells compare as ratios); accuracies, gaps and swings in "
        "percent (points). "
        + (
            "'best ep': the best epoch by validation accuracy. "
            if report.best_on == "val"
            else "'best ep': the best epoch by test accuracy, a description only (the study has no "
            "validation split: choosing on the test set would bias it). "
        )
        + "Comparisons: paired by seed, each with its own seed-to-seed variance; the family's "
        "'p (adj.)' from the max-T sign-flip test, the others' from Holm; 'detectable': the "
        "smallest true effect the comparison's rule finds with 80 % power. The cells' intervals "
        "describe seed-to-seed variation on this one test set; a comparison on test accuracy or "
        "the final gaps also holds the test set's own sampling where every trial recorded its "
        "test images (the Answer says which)."
    )


def _interval_text(metric: str, interval: Interval, signed: bool = False) -> str:
    """``mean ± half-width``: t intervals are symmetric, so this is exact and compact."""
    text = format_value(metric, interval.mean, signed)
    if interval.low is None or interval.high is None or interval.high == interval.low:
        return text
    return f"{text} ± {format_half_width(metric, (interval.high - interval.low) / 2)}"


def _agree(estimate: Estimate) -> str:
    """How many seeds point the way the mean does: information beside the test, not a test."""
    return agreement(estimate) or "n/a"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def cell_metrics(report: Report) -> tuple[str, ...]:
    """The cell table's metrics: validation accuracy and the share of diverged seeds only when
    the study has them."""
    extra = tuple(m for m in ("val_acc", DIVERGED) if any(m in c.summary for c in report.cells))
    asked = tuple(m for m in report.metrics if "@" not in m and m not in CELL_METRICS + extra)
    varies_model = bool(report.cells) and "model" in report.cells[0].levels
    return CELL_METRICS + extra + asked + (ARCHITECTURE_METRICS if varies_model else ())


def cell_rows(report: Report) -> list[list[str]]:
    return [
        [
            cell.label,
            str(len(cell.trials)),
            *(_interval_text(m, cell.summary[m]) for m in cell_metrics(report)),
        ]
        for cell in report.cells
    ]


def _interval_cell(finding: Finding) -> str:
    if finding.verdict == IDENTICAL:  # no estimate: the same computation, zero on every seed
        return "none: 0 on every seed"
    interval = finding.interval
    if interval is None:
        return "n/a"
    low, high = interval
    level = f"{finding.confidence * 100:.4g}%"
    return f"{level}: {format_endpoint(finding.metric, low)} to {format_endpoint(finding.metric, high)}"


def finding_row(finding: Finding) -> list[str]:
    estimate = finding.estimate
    if estimate is None:
        return [
            finding.contrast.label,
            finding.metric,
            "n/a",
            "n/a",
            "n/a",
            "n/a",
            "0",
            "n/a",
            finding.verdict,
        ]
    detectable = (
        "n/a"
        if finding.detectable is None or finding.verdict == IDENTICAL
        else format_difference(finding.metric, finding.detectable, signed=False)
    )
    return [
        finding.contrast.label,
        finding.metric,
        format_difference(finding.metric, estimate.value),
        _interval_cell(finding),
        _p(finding.p_adjusted),
        _agree(estimate),
        str(estimate.n),
        detectable,
        finding.verdict,
    ]


def tables(report: Report, brief: bool = False) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    """The report's tables as (title, headers, rows), in the order every format shows them.

    ``brief`` (the terminal) keeps exploratory rows to the question's metrics."""
    headers = ("cell", "n", *(CELL_HEADERS.get(m, m) for m in cell_metrics(report)))
    shown = [("Cells (mean ± 95% CI half-width over seeds)", headers, cell_rows(report))]
    if report.jumps:
        shown.append(
            (
                "Restart jumps per cell, by restart point (points; mean ± 95% CI half-width)",
                ("cell", *report.jumps),
                [
                    [c.label, *(_interval_text(j, c.summary[j], signed=True) for j in report.jumps)]
                    for c in report.cells
                ],
            )
        )
    family = [f for f in report.findings if f.family]
    if family:
        shown.append(
            (
                f"The Answer's family: {report.family_size} hypotheses, each judged on its "
                "simultaneous interval",
                FINDING_HEADERS,
                [finding_row(f) for f in family],
            )
        )
    focus = set(report.metrics) | {report.metric}
    for kind, title in KIND_TITLES.items():
        rows = [
            finding_row(f)
            for f in report.findings
            if f.contrast.kind == kind and not f.family and (not brief or f.metric in focus)
        ]
        if rows:
            shown.append((f"{title} (exploratory: Holm-corrected within each metric)", FINDING_HEADERS, rows))
    if report.design == "fractional":
        shown.append(
            (
                "Confounding: in this fraction each main effect is measured together "
                "with these two-factor interactions",
                ("factor", "confounded with"),
                confounding_rows(report),
            )
        )
    return shown


def confounding_rows(report: Report) -> list[list[str]]:
    factors = {f.contrast.factor: f.contrast.aliases for f in report.findings if f.contrast.kind == MAIN}
    return [
        [factor, ", ".join(aliases) or "no two-factor interaction"] for factor, aliases in factors.items()
    ]
