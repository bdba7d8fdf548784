"""Figures of where training ends, per cell: the final metric with its interval, accuracy per
class, and the confusion matrix of the best cell (the curves over epochs: :mod:`.plots`)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ablate.analysis.findings import Cell, Report
from ablate.analysis.load import StudyResults
from ablate.analysis.metrics import is_accuracy


def _shown_metric(report: Report) -> str:
    """The study's metric when the cells summarise it, else test accuracy."""
    return report.metric if report.metric in report.cells[0].summary else "test_acc"


def _label_inches(labels: list[str]) -> float:
    """Room for the longest tick label at font size 8 (cell names of many factors run long)."""
    return 0.065 * max((len(label) for label in labels), default=0)


def final_metric(report: Report, results: StudyResults) -> Any:
    names = [c.label for c in report.cells]
    figure, axis = plt.subplots(figsize=(5 + _label_inches(names), 0.5 * len(report.cells) + 1.5))
    means, lows, highs = [], [], []
    for cell in report.cells:
        interval = cell.summary[_shown_metric(report)]
        scale = 100 if is_accuracy(_shown_metric(report)) else 1
        means.append(interval.mean * scale)
        low = interval.low if interval.low is not None else interval.mean
        high = interval.high if interval.high is not None else interval.mean
        lows.append((interval.mean - low) * scale)
        highs.append((high - interval.mean) * scale)
    positions = np.arange(len(names))
    axis.errorbar(means, positions, xerr=[lows, highs], fmt="o", capsize=4)
    axis.set_yticks(positions, names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(f"{_shown_metric(report)} (mean and 95% CI over seeds)")
    return figure


def per_class(report: Report, results: StudyResults) -> Any:
    names = sorted({(r["class_index"], r["class_name"]) for r in results.classes})
    matrix = np.full((len(report.cells), len(names)), np.nan)
    for i, cell in enumerate(report.cells):
        for j, (index, _) in enumerate(names):
            values = [
                r["test_acc"]
                for t in cell.trials
                for r in results.rows_of(results.classes, t)
                if r["class_index"] == index
            ]
            matrix[i, j] = np.mean(values) * 100 if values else np.nan
    rows = [c.name for c in report.cells]
    figure, axis = plt.subplots(
        figsize=(2.5 + 0.8 * len(names) + _label_inches(rows), 1 + 0.45 * len(report.cells))
    )
    image = axis.imshow(matrix, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(names)), [n for _, n in names], rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(report.cells)), rows, fontsize=8)
    figure.colorbar(image, label="test accuracy (%)")
    axis.set_title("per-class test accuracy (mean over seeds)")
    return figure


def best_cell(report: Report) -> tuple[Cell, str]:
    """The best cell by the study's metric (validation accuracy in place of test accuracy when
    the trials have a validation split), and the metric it was chosen on."""
    sign = 1 if report.direction == "maximize" else -1
    chosen = (
        "val_acc"
        if report.best_on == "val" and _shown_metric(report) == "test_acc"
        else (_shown_metric(report))
    )
    return max(report.cells, key=lambda c: sign * c.summary[chosen].mean), chosen


def confusion(report: Report, results: StudyResults) -> Any:
    best, chosen = best_cell(report)
    rows = sorted(
        (r for t in best.trials for r in results.rows_of(results.classes, t)), key=lambda r: r["class_index"]
    )
    if not rows:  # its classes files are missing or unreadable (the report lists them)
        return None
    names = sorted({(r["class_index"], r["class_name"]) for r in rows})
    counts = np.zeros((len(names), len(names)))
    for row in rows:
        counts[row["class_index"]] += np.asarray(row["confusion"], dtype=float)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(share * 100, cmap="Blues")
    labels = [n for _, n in names]
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    how = " (descriptive: chosen on the test set)" if chosen == "test_acc" else ""
    axis.set_title(
        f"confusion matrix of the best cell by {chosen}{how}: {best.name} (all seeds, % of row)", fontsize=9
    )
    figure.colorbar(image)
    return figure
