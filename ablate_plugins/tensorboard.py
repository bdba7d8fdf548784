"""TensorBoard logging, as a built-in plugin of event hooks: with ``tensorboard=True`` (or
``ablate run ... --tensorboard``) each trial's per-epoch metrics become TensorBoard scalars under
``results/STUDY/tensorboard/trial-NNNNN/``; ``tensorboard --logdir results/STUDY/tensorboard``
shows them. Needs the optional ``tensorboard`` package: ``pip install 'ablate[tensorboard]'``.
"""

from __future__ import annotations

from typing import Any

from ablate import hookimpl
from ablate.events import EpochRecord, TrialInfo, TrialOutcome

SCALARS = {
    "train_loss": "loss",
    "test_loss": "loss",
    "val_loss": "loss",
    "train_acc": "accuracy",
    "train_eval_acc": "accuracy",
    "test_acc": "accuracy",
    "val_acc": "accuracy",
    "lr": "schedule",
    "seconds": "time",
}
_writers: dict[tuple[str, int, int], Any] = {}  # one SummaryWriter per running trial attempt


def available() -> bool:
    """Whether the optional ``tensorboard`` package is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@hookimpl
def on_trial_start(trial: TrialInfo) -> None:
    if not trial.params.get("tensorboard") or trial.folder is None:
        return
    from torch.utils.tensorboard import SummaryWriter

    logdir = trial.folder / "tensorboard" / f"trial-{trial.trial:05d}"
    _writers[(trial.study, trial.trial, trial.attempt)] = SummaryWriter(str(logdir))


@hookimpl
def on_epoch_end(trial: TrialInfo, epoch: EpochRecord) -> None:
    writer = _writers.get((trial.study, trial.trial, trial.attempt))
    if writer is None:
        return
    for name, group in SCALARS.items():
        value = getattr(epoch, name)
        if value is not None:
            writer.add_scalar(f"{group}/{name}", value, epoch.epoch)


@hookimpl
def on_trial_end(trial: TrialInfo, outcome: TrialOutcome) -> None:
    writer = _writers.pop((trial.study, trial.trial, trial.attempt), None)
    if writer is not None:
        writer.close()
