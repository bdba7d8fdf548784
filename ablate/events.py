"""The plain records handed to event hooks and written to the results tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialInfo:
    """What identifies a trial attempt while it runs."""

    study: str
    trial: int
    attempt: int
    seed: int
    epochs: int
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one epoch (1-based). Accuracies are fractions in [0, 1].

    ``train_loss`` and ``train_acc`` are measured during training, with augmentation and
    dropout active; ``train_eval_acc`` is measured in eval mode on a fixed, unaugmented subset of
    the training set, so it is comparable with ``test_acc``.
    """

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    train_eval_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    restart: bool = False  # the first epoch after a simulated stop-and-reload (resume studies)


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial attempt ended: ``complete``, ``fail`` or ``interrupted``."""

    state: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
