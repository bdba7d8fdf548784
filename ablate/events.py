"""The plain records handed to event hooks and written to the results tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["AttemptState", "EpochRecord", "TrialInfo", "TrialOutcome"]


class AttemptState(str, Enum):
    """How a trial attempt ended, as the ``state`` column of the trials table stores it."""

    COMPLETE = "complete"  # trained every epoch
    DIVERGED = "diverged"  # its loss became NaN or infinite: a result, never retried
    PRUNED = "pruned"  # a sampler design's pruner stopped it early: a result, never retried
    FAIL = "fail"  # raised an error: recorded with the error and retried (``--retries``)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: continued by the next run

    def __str__(self) -> str:
        return self.value

    @property
    def is_result(self) -> bool:
        """Whether the attempt answers for its trial: it is never trained again."""
        return self in (AttemptState.COMPLETE, AttemptState.DIVERGED, AttemptState.PRUNED)


@dataclass(frozen=True)
class TrialInfo:
    """What identifies a trial attempt while it runs."""

    study: str
    trial: int
    attempt: int
    seed: int
    epochs: int
    params: Mapping[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # the study's results folder, for plugins that write files there
    cell: str = ""  # the cell's levels as text (dropout=0.25,augment=none)
    fingerprint: str = ""  # the plan's: the same trial number in another plan is another trial


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one epoch (1-based). Accuracies are fractions in [0, 1].

    ``train_loss`` and ``train_acc`` are measured during training, with augmentation and
    dropout active; ``train_eval_acc`` is measured in eval mode on a fixed, unaugmented subset of
    the training set, so it is comparable with ``test_acc``. In the epoch where a trial diverges
    (``train_loss`` NaN or infinite) nothing is evaluated: the evaluation metrics are None.
    """

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    train_eval_acc: float | None
    test_loss: float | None
    test_acc: float | None
    seconds: float
    restart: bool = False  # the first epoch after a simulated stop-and-reload (resume studies)
    val_loss: float | None = None  # on the validation split, when the trial has one
    val_acc: float | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial attempt ended, with its final metrics and the error of a failed one."""

    state: AttemptState
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
