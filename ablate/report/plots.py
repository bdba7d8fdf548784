"""The plots people would otherwise draw by hand, as PNG files (matplotlib, no display)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ablate.atomic import write_file_atomic  # noqa: E402
from ablate.report.analysis import Cell, Report, is_accuracy, metric_value  # noqa: E402
from ablate.report.load import StudyResults  # noqa: E402

CURVES = (("train_acc", "train (running)"), ("train_eval_acc", "train (eval mode)"),
          ("test_acc", "test"))
PNG_METADATA = {"Software": None}  # no tool URL inside the files


def _epoch_series(results: StudyResults, cell: Cell, value: Callable[[dict], float | None]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and a (seeds x epochs) array of ``value``; NaN where a seed lacks an epoch."""
    runs = [sorted(results.rows_of(results.epochs, t), key=lambda r: r["epoch"])
            for t in cell.trials]
    epochs = sorted({r["epoch"] for run in runs for r in run})
    grid = np.full((len(runs), len(epochs)), np.nan)
    for i, run in enumerate(runs):
        for row in run:
            v = value(row)
            grid[i, epochs.index(row["epoch"])] = np.nan if v is None else v
    return np.asarray(epochs), grid


def _band(axis: Any, epochs: np.ndarray, grid: np.ndarray, label: str) -> None:
    """Mean over seeds, with the band from the lowest to the highest seed."""
    if grid.size == 0:
        return
    with warnings.catch_warnings():  # an epoch no seed measured (a diverged one) stays a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(grid, axis=0) * 100
        low, high = np.nanmin(grid, 0) * 100, np.nanmax(grid, 0) * 100
    line, = axis.plot(epochs, mean, label=label)
    if len(grid) > 1:
        axis.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)


def _grid_axes(count: int, title: str) -> tuple[Any, list[Any]]:
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows),
                                squeeze=False, sharey=True)
    figure.suptitle(title)
    flat = list(axes.flat)
    for extra in flat[count:]:
        extra.set_visible(False)
    return figure, flat[:count]


def _accuracy_curves(axis: Any, results: StudyResults, cell: Cell) -> None:
    """Running train, eval-mode train and test accuracy of ``cell`` against epoch."""
    for column, label in CURVES:
        _band(axis, *_epoch_series(results, cell, lambda r, c=column: r.get(c)), label)


def learning_curves(report: Report, results: StudyResults) -> Any:
    figure, axes = _grid_axes(len(report.cells), "Accuracy per epoch (mean, band: min-max over seeds)")
    for axis, cell in zip(axes, report.cells, strict=True):
        _accuracy_curves(axis, results, cell)
        axis.set_title(cell.label, fontsize=9)
        axis.set_xlabel("epoch")
        axis.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    return figure


def gap_curves(report: Report, results: StudyResults) -> Any:
    figure, (running, evaluated) = plt.subplots(1, 2, figsize=(11, 4))
    for cell in report.cells:
        # Epoch rows carry the same accuracy columns as trials, so the gaps derive the same way.
        _band(running, *_epoch_series(results, cell, lambda r: metric_value(r, "gap_running")),
              cell.name)
        _band(evaluated, *_epoch_series(results, cell, lambda r: metric_value(r, "gap_eval")),
              cell.name)
    running.set_title("test minus running train accuracy (points)")
    evaluated.set_title("eval-mode train minus test accuracy (points)")
    for axis in (running, evaluated):
        axis.axhline(0, color="gray", lw=0.8)
        axis.set_xlabel("epoch")
    running.legend(fontsize=7)
    return figure


def _label_inches(labels: list[str]) -> float:
    """Room for the longest tick label at font size 8 (cell names of many factors run long)."""
    return 0.065 * max((len(label) for label in labels), default=0)


def final_metric(report: Report, results: StudyResults) -> Any:
    names = [c.label for c in report.cells]
    figure, axis = plt.subplots(figsize=(5 + _label_inches(names), 0.5 * len(report.cells) + 1.5))
    means, lows, highs = [], [], []
    for cell in report.cells:
        interval = cell.summary[report.metric]
        scale = 100 if is_accuracy(report.metric) else 1
        means.append(interval.mean * scale)
        low = interval.low if interval.low is not None else interval.mean
        high = interval.high if interval.high is not None else interval.mean
        lows.append((interval.mean - low) * scale)
        highs.append((high - interval.mean) * scale)
    positions = np.arange(len(names))
    axis.errorbar(means, positions, xerr=[lows, highs], fmt="o", capsize=4)
    axis.set_yticks(positions, names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(f"{report.metric} (mean and 95% CI over seeds)")
    return figure


def per_class(report: Report, results: StudyResults) -> Any:
    names = sorted({(r["class_index"], r["class_name"]) for r in results.classes})
    matrix = np.full((len(report.cells), len(names)), np.nan)
    for i, cell in enumerate(report.cells):
        for j, (index, _) in enumerate(names):
            values = [r["test_acc"] for t in cell.trials for r in results.rows_of(results.classes, t)
                      if r["class_index"] == index]
            matrix[i, j] = np.mean(values) * 100 if values else np.nan
    rows = [c.name for c in report.cells]
    figure, axis = plt.subplots(figsize=(2.5 + 0.8 * len(names) + _label_inches(rows),
                                         1 + 0.45 * len(report.cells)))
    image = axis.imshow(matrix, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(names)), [n for _, n in names], rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(report.cells)), rows, fontsize=8)
    figure.colorbar(image, label="test accuracy (%)")
    axis.set_title("per-class test accuracy (mean over seeds)")
    return figure


def confusion(report: Report, results: StudyResults) -> Any:
    sign = 1 if report.direction == "maximize" else -1
    best = max(report.cells, key=lambda c: sign * c.summary[report.metric].mean)
    rows = sorted((r for t in best.trials for r in results.rows_of(results.classes, t)),
                  key=lambda r: r["class_index"])
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
    axis.set_title(f"confusion matrix of the best cell: {best.name} (all seeds, % of row)")
    figure.colorbar(image)
    return figure


def restarts(report: Report, results: StudyResults) -> Any | None:
    """Accuracy around each restart, for studies whose epochs table marks restarts."""
    if not any(r.get("restart") for r in results.epochs):
        return None
    figure, axes = _grid_axes(len(report.cells), "accuracy around restarts (dashed: restart)")
    for axis, cell in zip(axes, report.cells, strict=True):
        _accuracy_curves(axis, results, cell)
        marks = {r["epoch"] for t in cell.trials for r in results.rows_of(results.epochs, t)
                 if r.get("restart")}
        for epoch in sorted(marks):
            axis.axvline(epoch - 0.5, color="gray", ls="--", lw=0.8)
        axis.set_title(cell.name, fontsize=9)
    axes[0].legend(fontsize=8)
    return figure


PLOTS: dict[str, Callable[[Report, StudyResults], Any]] = {
    "learning_curves": learning_curves, "gaps": gap_curves, "final_metric": final_metric,
    "per_class": per_class, "confusion": confusion, "restarts": restarts,
}


def draw_all(report: Report, results: StudyResults, folder: Path) -> dict[str, Path]:
    """Write every plot that has data as ``folder/<name>.png``; returns name -> path."""
    written = {}
    for name, draw in PLOTS.items():
        if not report.cells or (name in ("per_class", "confusion") and not results.classes):
            continue
        figure = draw(report, results)
        if figure is None:
            continue
        path = folder / f"{name}.png"
        figure.tight_layout()
        try:
            write_file_atomic(path, lambda handle, f=figure: f.savefig(handle, format="png", dpi=100,
                                                                      metadata=PNG_METADATA))
        finally:
            plt.close(figure)
        written[name] = path
    return written
