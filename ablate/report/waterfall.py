"""The waterfall of an ablation path: the source recipe's accuracy, each kept step's gain (a
bar from where the path stood to where the step took it, with its simultaneous interval,
coloured by verdict), and the target's accuracy."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402

from ablate.analysis.findings import Report  # noqa: E402
from ablate.analysis.load import StudyResults  # noqa: E402
from ablate.analysis.metrics import is_accuracy  # noqa: E402
from ablate.analysis.paths import STEP  # noqa: E402
from ablate.report.forest import COLOURS  # noqa: E402

__all__ = ["waterfall"]


def waterfall(report: Report, results: StudyResults) -> Any | None:
    """The figure, or None for another design or before the path's first step."""
    metric = report.metric
    steps = [f for f in report.findings if f.contrast.kind == STEP and f.metric == metric and f.estimate]
    cells = {c.name: c for c in report.cells}
    source = cells.get("source")
    if report.design != "path" or not steps or source is None or metric not in source.summary:
        return None
    scale = 100.0 if is_accuracy(metric) else 1.0
    start = source.summary[metric].mean * scale
    figure, axis = plt.subplots(figsize=(1.3 * (len(steps) + 2) + 2, 4.2))
    axis.bar(0, start, color="#bbbbbb")
    level = start
    reached = [start]  # every bar's ends and interval ends, for the axis
    for x, finding in enumerate(steps, start=1):
        gain = finding.estimate.value * scale  # type: ignore[union-attr]
        colour = COLOURS.get(finding.verdict, "#999999")
        axis.bar(x, gain, bottom=level, color=colour, edgecolor="black", lw=0.5)
        if finding.interval is not None:
            low, high = (v * scale for v in finding.interval)
            axis.errorbar(x, level + gain, yerr=[[gain - low], [high - gain]], color="black", capsize=4, lw=1)
            reached += [level + low, level + high]
        axis.text(x + 0.08, level + gain, f"{gain:+.1f}", ha="left", va="bottom", fontsize=8)
        level += gain
        reached.append(level)
    target = cells.get("target")
    end = target.summary[metric].mean * scale if target is not None and metric in target.summary else level
    axis.bar(len(steps) + 1, end, color="#555555")
    labels = ["source"] + [f.contrast.factor for f in steps] + ["target"]
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels(labels, fontsize=8, rotation=20)
    # Start the axis just below the lowest end (not at 0), so that the steps are not dwarfed by
    # the bars' common base; every interval stays in view.
    low_end, high_end = min(*reached, end), max(*reached, end)
    margin = 0.05 * (high_end - low_end) + 0.5
    axis.set_ylim(max(0.0, low_end - margin), high_end + margin)
    unit = " (%)" if is_accuracy(metric) else ""
    axis.set_ylabel(f"{metric}{unit}", fontsize=9)
    confidence = max(f.confidence for f in steps) * 100
    figure.suptitle(
        f"The path from source to target: each step's gain on {metric} with its {confidence:.4g} % "
        "simultaneous interval",
        fontsize=10,
    )
    return figure
