"""What the report measures of each trial: the stored metrics, the two gaps, the swing, the
jumps across restarts and divergence, with their descriptions and how to print them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ablate.analysis.load import StudyResults
from ablate.events import AttemptState
from ablate.study.settings import restarts_before

DIVERGED = AttemptState.DIVERGED.value  # a cell metric: the share of seeds that diverged
SWING = "swing_test"
JUMPS = ("jump_test", "jump_train")  # per restart point: jump_test@1, jump_test@2, ...
DESCRIPTIONS = {
    "test_acc": "final test accuracy",
    "val_acc": "final validation accuracy (images held out of the training set)",
    "train_acc": "train accuracy as seen during training (augmentation and dropout on)",
    "train_eval_acc": "train accuracy in eval mode on unaugmented images",
    "gap_running": "test minus running train accuracy",
    "gap_eval": "eval-mode train minus test accuracy",
    "gap_running_first": "test minus running train accuracy after the first epoch (early in training)",
    SWING: "epoch-to-epoch noise of test accuracy around a straight-line trend over the last half "
    "of training, leaving out changes across a step of the learning rate or a restart (a "
    "rate that changes every epoch, as with cosine, is no step) (the standard deviation "
    "of the changes / sqrt 2); cells compare as ratios",
    "best_epoch": "epoch of the best test accuracy",
    "seconds": "wall time of a trial",
    "epoch_seconds": "wall time per epoch (training and evaluation)",
    "model_params": "the model's number of parameters",
    "jump_test": "test accuracy change across a restart point: the epoch after it minus the "
    "epoch before it (one epoch each side), per restart point",
    "jump_train": "running train accuracy change across a restart point, per restart point",
    DIVERGED: "share of seeds whose training loss became NaN or infinite (left out of the other metrics)",
}


# Each metric that moves with the final test accuracy, by its sign in the metric: a paired
# bootstrap over test images resamples that part (the train part is measured on other images).
TEST_PART = {"test_acc": 1, "gap_running": 1, "gap_eval": -1}


def per_image(trial: Mapping[str, Any], metric: str) -> np.ndarray | None:
    """Each test image's part of a trial's ``metric`` (its mean over the images is the test
    accuracy's part of the metric), when the trial recorded which test images it got right;
    None for metrics the final test accuracy is not part of."""
    sign, correct = TEST_PART.get(metric), trial.get("test_correct")
    if sign is None or correct is None or len(correct) == 0:
        return None
    part: np.ndarray = np.asarray(correct, dtype=np.float32) * np.float32(sign)
    return part


def base_metric(metric: str) -> str:
    """``jump_test@2`` -> ``jump_test``."""
    return metric.split("@", 1)[0]


def is_accuracy(metric: str) -> bool:
    """Whether ``metric`` is a share shown in percent (points for differences)."""
    metric = base_metric(metric)
    return metric.endswith("_acc") or metric.startswith(("gap_", "jump_", "swing_")) or metric == DIVERGED


def is_ratio(metric: str) -> bool:
    """Whether cells compare on ``metric`` as ratios (through its logarithm): a swing scales."""
    return metric == SWING


def metric_value(trial: Mapping[str, Any], metric: str) -> float | None:
    """A trial's (or an epoch row's) value of ``metric``, derived gaps included."""
    if metric == DIVERGED:
        return float(trial.get("state") == DIVERGED)
    if metric == "epoch_seconds":
        seconds, epochs = trial.get("seconds"), trial.get("epochs_done")
        return None if seconds is None or not epochs else float(seconds) / epochs
    if metric == "gap_running":
        return _difference(trial.get("test_acc"), trial.get("train_acc"))
    if metric == "gap_eval":
        return _difference(trial.get("train_eval_acc"), trial.get("test_acc"))
    value = trial.get(metric)
    return None if value is None or not math.isfinite(float(value)) else float(value)


def compared_value(trial: Mapping[str, Any], metric: str) -> float | None:
    """The value comparisons use: the logarithm for ratio metrics, else the value itself."""
    value = metric_value(trial, metric)
    if value is None or not is_ratio(metric):
        return value
    return math.log(value) if value > 0 else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def swing_window(epochs: int) -> tuple[int, int]:
    """The epochs whose changes the swing measures: the last half of training, at least 3."""
    first = max(1, epochs - max(3, math.ceil(epochs / 2)) + 1)
    return first, epochs


def swing(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The swing of one trial's epochs (see ``DESCRIPTIONS``); None below two usable changes."""
    by_epoch = {r["epoch"]: r for r in rows}
    if not by_epoch:
        return None
    first, last = swing_window(max(by_epoch))
    changes = []
    for epoch in range(first + 1, last + 1):
        now, before = by_epoch.get(epoch), by_epoch.get(epoch - 1)
        if now is None or before is None or now.get("test_acc") is None or before.get("test_acc") is None:
            continue
        if now.get("restart") or _is_rate_step(by_epoch, epoch):
            continue  # a step of the schedule or a restart is not swing
        changes.append(now["test_acc"] - before["test_acc"])
    if len(changes) < 2:
        return None
    # Spread around the mean change, i.e. around a straight-line trend: a climbing cell is
    # not an oscillating one. For independent noise of sd s, changes have sd s * sqrt 2.
    return float(np.std(changes, ddof=1) / math.sqrt(2))


def _is_rate_step(by_epoch: Mapping[int, Mapping[str, Any]], epoch: int) -> bool:
    """Whether the rate changed from ``epoch - 1`` to ``epoch`` as a step of a piecewise-constant
    schedule (multistep, piecewise, plateau): it was held on the epochs beside the change. A rate
    that changes every epoch (cosine, a warm-up) is a smooth schedule: its changes are part of
    the training whose swing is measured; leaving them all out would leave no swing at all."""

    def rate(e: int) -> float | None:
        row = by_epoch.get(e)
        return None if row is None else row.get("lr")

    def held(a: int, b: int) -> bool | None:
        first, second = rate(a), rate(b)
        if first is None or second is None:
            return None
        return math.isclose(first, second, rel_tol=1e-9)

    if held(epoch - 1, epoch) is not False:
        return False
    beside = [held(epoch - 2, epoch - 1), held(epoch, epoch + 1)]
    known = [b for b in beside if b is not None]
    return not known or any(known)


def restart_points(trial: Mapping[str, Any], epochs: int) -> list[int]:
    """Epochs right after each restart of a trial with ``resume_every`` (the same epochs for a
    continuous trial of the same study, so that a restart's extra jump is a paired difference)."""
    every = int(trial.get("param_resume_every") or 0)
    return [e for e in range(2, epochs + 1) if restarts_before(e, every)]


def add_derived(results: StudyResults) -> list[str]:
    """Give each trial with a result its swing and its jumps at each restart point (by number:
    ``jump_test@1`` is the first restart); returns the jump metrics found, in order."""
    jumps: dict[int, None] = {}
    for trial in results.complete + results.diverged:
        rows = results.rows_of(results.epochs, trial)
        trial[SWING] = swing(rows) if trial["state"] == AttemptState.COMPLETE.value else None
        by_epoch = {r["epoch"]: r for r in rows}
        first = by_epoch.get(1)
        trial["gap_running_first"] = metric_value(first, "gap_running") if first else None
        for index, epoch in enumerate(restart_points(trial, max(by_epoch, default=0)), start=1):
            before, after = by_epoch.get(epoch - 1), by_epoch.get(epoch)
            for metric, column in zip(JUMPS, ("test_acc", "train_acc"), strict=True):
                if before and after and before.get(column) is not None and after.get(column) is not None:
                    trial[f"{metric}@{index}"] = after[column] - before[column]
            jumps[index] = None
    return [f"{metric}@{index}" for metric in JUMPS for index in jumps]


def format_value(metric: str, value: float | None, signed: bool = False) -> str:
    """Accuracies in percent (points for differences), other metrics as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    sign = "+" if signed else ""
    if is_accuracy(metric):
        return f"{value * 100:{sign}.1f}"
    if metric == "model_params":
        return f"{value:{sign},.0f}"
    return f"{value:{sign}.3g}"


def format_endpoint(metric: str, value: float) -> str:
    """An interval's end, signed, with the digits it takes to show its side of zero (or of x1):
    an end of +0.004 points prints "+0.004", never "+0.0", so a reader can check the verdict."""
    if is_ratio(metric):
        ratio = math.exp(value)
        shown = f"x{ratio:.2f}"
        return shown if shown != "x1.00" or ratio == 1.0 else f"x{ratio:.4f}"
    shown = format_value(metric, value, signed=True)
    scaled = value * 100 if is_accuracy(metric) else value
    if value != 0 and float(shown.replace(",", "")) == 0:
        return f"{scaled:+.2g}"
    return shown


def format_difference(metric: str, value: float, signed: bool = True) -> str:
    """A difference between cells: points for accuracies, a ratio for ratio metrics."""
    if is_ratio(metric):
        return f"x{math.exp(value):.2f}"
    unit = " points" if is_accuracy(metric) else " s" if metric in ("seconds", "epoch_seconds") else ""
    return format_value(metric, value, signed=signed) + unit


def format_half_width(metric: str, half: float) -> str:
    """A half-width with two significant digits ("+- 0.43 points"), so a narrow interval
    never prints as no interval at all."""
    value = half * (100 if is_accuracy(metric) else 1)
    return f"{value:.0f}" if value >= 10 else f"{value:#.2g}".rstrip(".")
