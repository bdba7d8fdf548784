"""Every hook a plugin may implement. Implement them with ``@ablate.hookimpl``.

Registration hooks receive a ``register(name, factory, description, params=None)`` callable
(see :class:`ablate.Registrar`). The factory's keyword-only arguments with defaults are
the parameters a study may set; ``params`` gives each a one-line description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

__all__ = [
    "hookspec",
    "on_epoch_end",
    "on_report",
    "on_trial_end",
    "on_trial_start",
    "register_augmentations",
    "register_commands",
    "register_datasets",
    "register_models",
    "register_optimizers",
    "register_schedulers",
]

if TYPE_CHECKING:
    import typer

    from ablate.components.registry import Registrar
    from ablate.events import EpochRecord, TrialInfo, TrialOutcome

hookspec = pluggy.HookspecMarker("ablate")


@hookspec
def register_datasets(register: Registrar) -> None:
    """Register dataset factories.

    :param register: call ``register(name, factory, description, params)``. The factory takes
        the keyword-only context ``data_dir: pathlib.Path | None`` and returns an
        :class:`ablate.data.ImageData`.
    """


@hookspec
def register_models(register: Registrar) -> None:
    """Register model factories.

    :param register: the factory takes the keyword-only context ``num_classes: int`` and returns
        a ``torch.nn.Module`` mapping a float batch (N, 3, H, W) to logits (N, num_classes).
    """


@hookspec
def register_augmentations(register: Registrar) -> None:
    """Register training-time augmentations.

    :param register: the factory takes no context and returns a callable
        ``(images, generator) -> images`` working on a whole float batch in [0, 1], shape
        (N, 3, H, W), on the training device; every random draw must come from ``generator`` so
        that the trial's seed fixes it, and each image must get its own draw.
    """


@hookspec
def register_optimizers(register: Registrar) -> None:
    """Register optimizer factories.

    :param register: the factory takes the keyword-only context ``params`` (the model's
        parameters) and returns a ``torch.optim.Optimizer``.
    """


@hookspec
def register_schedulers(register: Registrar) -> None:
    """Register learning-rate schedulers, stepped once per epoch, after evaluation.

    :param register: the factory takes the keyword-only context ``optimizer`` and ``epochs``
        (the trial's epoch count) and returns a ``torch.optim.lr_scheduler.LRScheduler``, or a
        ``ReduceLROnPlateau`` (give it ``mode="max"``), which is stepped with the epoch's
        validation accuracy (the test accuracy when the trial has no validation split).
    """


@hookspec
def on_trial_start(trial: TrialInfo) -> None:
    """Called before a trial trains.

    :param trial: the study, trial number, attempt, seed and resolved parameters.
    """


@hookspec
def on_epoch_end(trial: TrialInfo, epoch: EpochRecord) -> None:
    """Called after every epoch with that epoch's metrics.

    :param trial: the running trial.
    :param epoch: the metrics of the epoch that just ended.
    """


@hookspec
def on_trial_end(trial: TrialInfo, outcome: TrialOutcome) -> None:
    """Called after a trial finished, failed or was interrupted, once its results are written.

    :param trial: the trial.
    :param outcome: its state, final metrics and error, if any.
    """


@hookspec
def on_report(folder: Path, description: Mapping[str, Any], files: Sequence[Path]) -> None:
    """Called after ``ablate report`` wrote a study's report files.

    :param folder: the study's results folder.
    :param description: its ``study.json`` (the plan, its baseline and settings, its fingerprint).
    :param files: what the report wrote: ``report.html``, ``report.md``, ``report.json``, the PNGs.
    """


@hookspec
def register_commands(app: typer.Typer) -> Any:
    """Add commands to the ``ablate`` command line.

    :param app: the root Typer application; call ``app.command()`` on your functions.
    """
