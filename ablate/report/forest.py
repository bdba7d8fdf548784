"""The forest plot a report opens with: each comparison of the question's family as its
difference with the simultaneous interval it is judged on, coloured by verdict, zero and +-delta
marked (an identical control, zero on every seed, is a diamond without an interval). One panel
per metric: differences on different metrics share no axis."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ablate.analysis.answer import (  # noqa: E402
    CANNOT,
    DECIDED,
    EQUIVALENT,
    IDENTICAL,
    NEGLIGIBLE,
    NONZERO,
    OPEN,
    SETTLED,
    UNDECIDED,
)
from ablate.analysis.findings import Report  # noqa: E402
from ablate.analysis.load import StudyResults  # noqa: E402
from ablate.analysis.metrics import is_accuracy, is_ratio  # noqa: E402

__all__ = ["COLOURS", "forest"]

COLOURS = {
    **dict.fromkeys(SETTLED, "#1b7837"),
    NONZERO: "#a6dba0",
    **dict.fromkeys(NEGLIGIBLE, "#2166ac"),
    **dict.fromkeys(OPEN, "#999999"),
    CANNOT: "#dddddd",
}
LEGEND = (("decided", DECIDED), ("non-zero", NONZERO), ("negligible", EQUIVALENT), ("open", UNDECIDED))


def _scale(metric: str, value: float) -> float:
    """Points for accuracies, the ratio itself for ratio metrics, the value otherwise."""
    if is_ratio(metric):
        return math.exp(value)
    return value * 100 if is_accuracy(metric) else value


def forest(report: Report, results: StudyResults) -> Any | None:
    """The figure, or None when no comparison of the family has an interval."""
    family = [f for f in report.findings if f.family and (f.interval is not None or f.verdict == IDENTICAL)]
    if not family:
        return None
    metrics = list(dict.fromkeys(f.metric for f in family))
    rows = [[f for f in family if f.metric == m] for m in metrics]
    heights = [max(1.2, 0.32 * len(r) + 0.6) for r in rows]
    labels = [f.contrast.label for f in family]
    width = 7.5 + 0.06 * max(len(label) for label in labels)  # room for the legend on the right
    figure, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(width, sum(heights) + 0.6),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for axis, metric, findings in zip(axes[:, 0], metrics, rows, strict=True):
        for y, finding in enumerate(reversed(findings)):
            value = finding.estimate.value  # type: ignore[union-attr]
            colour = COLOURS.get(finding.verdict, "#999999")
            if finding.verdict == IDENTICAL:  # zero on every seed: no estimate, so no interval
                axis.plot(_scale(metric, value), y, "D", color=colour, ms=6)
                continue
            low, high = finding.interval  # type: ignore[misc]
            scaled = [_scale(metric, v) for v in (low, value, high)]
            axis.plot([scaled[0], scaled[2]], [y, y], color=colour, lw=2.5)
            axis.plot(scaled[1], y, "o", color=colour, ms=6)
        axis.set_yticks(range(len(findings)))
        axis.set_yticklabels([f.contrast.label for f in reversed(findings)], fontsize=8)
        axis.axvline(1.0 if is_ratio(metric) else 0.0, color="black", lw=0.8)
        if report.delta is not None and is_accuracy(metric):
            for edge in (-report.delta, report.delta):
                axis.axvline(edge, color="gray", ls="--", lw=0.8)
        unit = "ratio" if is_ratio(metric) else "points" if is_accuracy(metric) else ""
        axis.set_xlabel(f"{metric} ({unit})" if unit else metric, fontsize=9)
        axis.set_ylim(-0.7, len(findings) - 0.3)
    level = max(f.confidence for f in family) * 100
    figure.suptitle(
        f"The question's {len(family)} comparisons: difference and {level:.4g} % simultaneous "
        "interval" + (f" (dashed: +-delta = {report.delta:g})" if report.delta is not None else ""),
        fontsize=10,
    )
    handles = [Line2D([0], [0], color=COLOURS[v], lw=2.5, label=name) for name, v in LEGEND]
    # Beside the plot, never over an interval.
    axes[0, 0].legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8
    )
    return figure
