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
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

from ablate.analysis.findings import Cell, Report
from ablate.analysis.load import StudyResults
from ablate.analysis.metrics import is_accuracy, is_ratio, metric_value
from ablate.base.atomic import write_file_atomic
from ablate.report.endpoints import best_cell, confusion, final_metric, per_class
from ablate.report.forest import forest
from ablate.report.waterfall import waterfall

CURVES = (("train_acc", "train (running)"), ("train_eval_acc", "train (eval mode)"), ("test_acc", "test"))
PNG_METADATA = {"Software": None}  # no tool URL inside the files


def _column(name: str) -> Callable[[dict[str, Any]], float | None]:
    """Reads column ``name`` of an epochs row."""
    return lambda row: row.get(name)


def _png(figure: Any) -> Callable[[Any], None]:
    """Writes ``figure`` as PNG into a file handle."""
    return lambda handle: figure.savefig(handle, format="png", dpi=100, metadata=PNG_METADATA)


def _epoch_series(
    results: StudyResults, cell: Cell, value: Callable[[dict[str, Any]], float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and a (seeds x epochs) array of ``value``; NaN where a seed lacks an epoch."""
    runs = [sorted(results.rows_of(results.epochs, t), key=lambda r: r["epoch"]) for t in cell.trials]
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
    (line,) = axis.plot(epochs, mean, label=label)
    if len(grid) > 1:
        axis.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)


def _grid_axes(count: int, title: str) -> tuple[Any, list[Any]]:
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, sharey=True
    )
    figure.suptitle(title)
    flat = list(axes.flat)
    for extra in flat[count:]:
        extra.set_visible(False)
    return figure, flat[:count]


def _accuracy_curves(axis: Any, results: StudyResults, cell: Cell) -> None:
    """Running train, eval-mode train and test accuracy of ``cell`` against epoch."""
    for column, label in CURVES:
        _band(axis, *_epoch_series(results, cell, _column(column)), label)


def rate_drops(results: StudyResults, cell: Cell) -> list[int]:
    """Epochs whose learning rate is lower than the epoch before's, in the cell's first trial
    (a cell's trials share their schedule, except a plateau scheduler's, which follows each)."""
    if not cell.trials:
        return []
    rows = sorted(results.rows_of(results.epochs, cell.trials[0]), key=lambda r: r["epoch"])
    return [
        b["epoch"]
        for a, b in zip(rows, rows[1:], strict=False)
        if a.get("lr") is not None and b.get("lr") is not None and b["lr"] < a["lr"] * (1 - 1e-9)
    ]


def _mark_drops(axis: Any, epochs: list[int]) -> None:
    for number, epoch in enumerate(epochs):
        axis.axvline(
            epoch - 0.5, color="gray", ls=":", lw=0.9, label="learning rate drops" if number == 0 else None
        )


def learning_curves(report: Report, results: StudyResults) -> Any:
    figure, axes = _grid_axes(
        len(report.cells),
        "Accuracy per epoch (mean, band: min-max over seeds; dotted: the learning rate drops)",
    )
    for axis, cell in zip(axes, report.cells, strict=True):
        _accuracy_curves(axis, results, cell)
        _mark_drops(axis, rate_drops(results, cell))
        axis.set_title(cell.label, fontsize=9)
        axis.set_xlabel("epoch")
        axis.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    return figure


def gap_curves(report: Report, results: StudyResults) -> Any:
    figure, (running, evaluated) = plt.subplots(1, 2, figsize=(11, 4))
    for cell in report.cells:
        # Epoch rows carry the same accuracy columns as trials, so the gaps derive the same way.
        _band(running, *_epoch_series(results, cell, lambda r: metric_value(r, "gap_running")), cell.name)
        _band(evaluated, *_epoch_series(results, cell, lambda r: metric_value(r, "gap_eval")), cell.name)
    drops = rate_drops(results, report.cells[0])  # the baseline cell comes first
    running.set_title("test minus running train accuracy (points)")
    evaluated.set_title("eval-mode train minus test accuracy (points)")
    for axis in (running, evaluated):
        axis.axhline(0, color="gray", lw=0.8)
        _mark_drops(axis, drops)
        axis.set_xlabel("epoch")
    running.legend(fontsize=7)
    return figure


def interaction(report: Report, results: StudyResults) -> Any | None:
    """For a study asking "for each" (``within``): each question metric per level of the other
    factor, one line per level of the ``within`` factor, with 95 % intervals of the cell means."""
    if not report.within or len(report.cells[0].levels) < 2:
        return None
    factors = list(report.cells[0].levels)
    # The x axis is a factor whose effect is asked; with every factor in ``within`` (each asked
    # within the others), the first one, lines for the last.
    factor = next((f for f in factors if f not in report.within), report.within[0])
    held = next(f for f in reversed(report.within) if f != factor)
    metrics = [m for m in report.metrics if "@" not in m]
    if not metrics:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    xs = list(dict.fromkeys(str(c.levels[factor]) for c in report.cells))
    lines = list(dict.fromkeys(str(c.levels[held]) for c in report.cells))
    for axis, metric in zip(axes[0], metrics, strict=True):
        scale = 100 if is_accuracy(metric) else 1
        for offset, line in enumerate(lines):
            points = []
            for position, x in enumerate(xs):
                cell = next(
                    (c for c in report.cells if str(c.levels[factor]) == x and str(c.levels[held]) == line),
                    None,
                )
                if cell is None or metric not in cell.summary:
                    continue
                interval = cell.summary[metric]
                if not math.isfinite(interval.mean) or (is_ratio(metric) and interval.mean <= 0):
                    continue  # not measured (a swing needs epochs enough for its window)
                half = 0.0 if interval.high is None else (interval.high - interval.mean)
                points.append((position + 0.04 * offset, interval.mean * scale, half * scale))
            if points:
                px, py, pe = zip(*points, strict=True)
                axis.errorbar(px, py, yerr=pe, marker="o", capsize=3, label=f"{held} = {line}")
        axis.set_xticks(range(len(xs)), xs, fontsize=8)
        axis.set_xlabel(factor)
        title = f"{metric}{' (points)' if is_accuracy(metric) else ''}"
        if is_ratio(metric) and axis.lines:  # compared as ratios: parallel on a log axis means no interaction
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.5, 1, 2, 5
            axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.5, not 5 x 10^-1
            axis.yaxis.set_minor_formatter(NullFormatter())
            title += ", log scale"
        axis.set_title(title, fontsize=9)
        if axis.lines:
            axis.legend(fontsize=7)
    if not any(axis.lines for axis in axes[0]):  # nothing measured to draw
        plt.close(figure)
        return None
    figure.suptitle(
        "Interaction: parallel lines mean no interaction\n(mean and 95% CI over seeds)", fontsize=10
    )
    return figure


def restarts(report: Report, results: StudyResults) -> Any | None:
    """Accuracy around each restart, for studies whose epochs table marks restarts."""
    if not any(r.get("restart") for r in results.epochs):
        return None
    figure, axes = _grid_axes(len(report.cells), "accuracy around restarts (dashed: restart)")
    for axis, cell in zip(axes, report.cells, strict=True):
        _accuracy_curves(axis, results, cell)
        marks = {
            r["epoch"] for t in cell.trials for r in results.rows_of(results.epochs, t) if r.get("restart")
        }
        for epoch in sorted(marks):
            axis.axvline(epoch - 0.5, color="gray", ls="--", lw=0.8)
        axis.set_title(cell.name, fontsize=9)
    axes[0].legend(fontsize=8)
    return figure


PLOTS: dict[str, Callable[[Report, StudyResults], Any]] = {
    "forest": forest,  # first: the figures of the answer
    "waterfall": waterfall,  # a path's steps
    "learning_curves": learning_curves,
    "gaps": gap_curves,
    "final_metric": final_metric,
    "interaction": interaction,
    "per_class": per_class,
    "confusion": confusion,
    "restarts": restarts,
}


def draw_all(report: Report, results: StudyResults, folder: Path, registry: Any = None) -> dict[str, Path]:
    """Write every plot that has data as ``folder/<name>.png``; returns name -> path. With the
    components' ``registry``, also the best cell's first-layer filters and feature maps from its
    kept weights (:mod:`ablate.report.features`)."""
    from ablate.report.features import feature_maps

    plots = dict(PLOTS)
    if registry is not None:
        plots["feature_maps"] = lambda report, results: feature_maps(
            report, results, best_cell(report)[0], registry
        )
    written = {}
    for name, draw in plots.items():
        if not report.cells or (name in ("per_class", "confusion") and not results.classes):
            continue
        figure = draw(report, results)
        if figure is None:
            continue
        path = folder / f"{name}.png"
        figure.tight_layout()
        try:
            write_file_atomic(path, _png(figure))
        finally:
            plt.close(figure)
        written[name] = path
    return written
