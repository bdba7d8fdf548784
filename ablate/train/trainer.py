"""One trial's training loop: ``fit`` reads top to bottom.

The dataset lives on the training device as uint8 tensors; each batch is gathered, augmented
(per image, from the trial's seeded generator), normalised and fed in channels_last layout.
Losses and correct counts accumulate on the device and are read once per epoch, so the loop
never waits on the host between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.components.setup import TrialSetup
from ablate.events import EpochRecord
from ablate.study.settings import restarts_before
from ablate.train.backends import Backends, configure, nondeterministic_ops
from ablate.train.checkpoints import CheckpointStore
from ablate.train.epoch import Evaluator, eval_batch_size, step_scheduler, train_epoch
from ablate.train.init import StartingPoint

# Re-exported: the placement of a trial's images used to live here.
from ablate.train.placement import DeviceData, free_memory
from ablate.train.precision import PrecisionChoice, choose_precision
from ablate.train.state import build_state, checkpoint_device, restart, restore, snapshot
from ablate.train.step_memory import check_fits, effective_batch


@dataclass(frozen=True)
class TrialResult:
    """What a finished trial measured."""

    epochs: tuple[EpochRecord, ...]
    class_acc: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]
    seconds: float
    model: torch.nn.Module
    precision: str = "fp32"
    resumed_from: int = 0  # epochs restored from a checkpoint (0: trained from scratch)
    diverged: bool = False  # the loss became NaN or infinite in the last epoch; training stopped
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, when kept
    fresh: tuple[str, ...] = ()  # the model's tensors a starting point did not provide
    step_ms: dict[str, float] | None = None  # fp32/bf16 step timings behind precision=auto
    backends: Backends = Backends(deterministic=False, tf32=False)
    nondeterministic: tuple[str, ...] = ()  # ops that warned they ran without a deterministic kernel
    # Per test image, whether the last epoch got it right: the paired bootstrap over test images
    # resamples these (every trial of a folder shares the test set, in the same order).
    test_correct: tuple[bool, ...] = ()

    @property
    def parameters(self) -> int:
        """The model's number of parameters."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


GPU_CHECKPOINT_SECONDS = 60.0


def checkpoint_spacing(setting: float, device: torch.device) -> float:
    """Least seconds between two checkpoints of a trial: ``checkpoint_seconds``, or for -1 (the
    default) 60 on a GPU, where epochs are short and a checkpoint every epoch would be a large
    share of the work, and none on a CPU (its epochs take longer than a write)."""
    if setting >= 0:
        return setting
    return GPU_CHECKPOINT_SECONDS if device.type == "cuda" else 0.0


def fit(
    setup: TrialSetup,
    data: DeviceData,
    num_classes: int,
    seed: int,
    device: torch.device,
    on_epoch_end: Callable[[EpochRecord], None] = lambda record: None,
    checkpoints: CheckpointStore | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    start_from: StartingPoint | None = None,
    keep_best: bool = False,
    precision_record: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    final_checkpoint: bool = True,
) -> TrialResult:
    """Train one trial and measure it every epoch.

    With ``checkpoints``, training continues from the newest usable checkpoint there and saves
    one every ``checkpoint_every`` epochs. The ``resume`` setting simulates stopping and
    reloading every ``resume_every`` epochs (see :func:`ablate.train.state.restart`). ``start_from``
    gives the model its starting weights (where names and shapes match); ``keep_best`` keeps a
    copy of the best epoch's weights (by validation accuracy, else test accuracy).
    ``precision_record`` is where ``precision=auto`` keeps its measured choice for the study.
    ``final_checkpoint``: False when the caller deletes the checkpoints once the trial is
    recorded, so the last epoch's is never written.
    """
    started = time.perf_counter()
    settings = setup.settings
    state = build_state(setup, num_classes, seed, device, start_from, tuple(data.test_x.shape[1:]))
    saved = checkpoints.latest() if checkpoints else None
    resumed_precision = None
    trained_on = checkpoint_device(saved) if saved is not None else None
    if saved is not None and trained_on not in (None, device.type):
        # A generator's state differs in size between a CPU and a GPU: not resumable here.
        log(
            f"checkpoint of epoch {saved['epoch']} was trained on {trained_on}, this trial runs "
            f"on {device.type}: not resumable, starting afresh"
        )
        if checkpoints is not None:
            checkpoints.clear()
    elif saved is not None and saved.get("meta") == (checkpoint_meta or {}):
        restore(state, saved)
        resumed_precision = saved.get("precision")
    elif saved is not None and checkpoints is not None:  # another trial's: never mix them
        checkpoints.clear()
    resumed_from = state.epoch
    batch_size = effective_batch(settings["batch_size"], len(data.train_y), log)
    check_fits(
        state.model,
        batch_size,
        tuple(data.train_x.shape[1:]),
        device,
        free_memory(device),
        f"model {setup.model.component.name!r}",
        settings["precision"],
    )
    augmentations = [chosen.build() for chosen in setup.augmentations]
    mode, period = settings["resume"], settings["resume_every"]
    every = settings["checkpoint_every"]
    spacing = checkpoint_spacing(settings.get("checkpoint_seconds", 0), device)
    last_saved = time.monotonic()
    if resumed_precision:  # a continued trial keeps the precision it started in: bitwise resume
        chosen = PrecisionChoice(resumed_precision["precision"], resumed_precision.get("step_ms"))
    else:
        chosen = choose_precision(
            settings["precision"],
            device,
            state.model,
            batch_size,
            tuple(data.train_x.shape[1:]),
            num_classes,
            (setup.model.component.name, tuple(sorted(setup.model.values.items()))),
            precision_record,
        )
    precision = chosen.precision
    backends = configure(settings, precision, device)
    measure = Evaluator(data, eval_batch_size(settings["eval_batch_size"], data), precision, log)
    predicted = None
    warned: set[str] = set()
    for epoch in range(state.epoch + 1, settings["epochs"] + 1):
        epoch_started = time.perf_counter()
        restarting = mode != "none" and restarts_before(epoch, period)
        if restarting:
            restart(state, setup, mode, seed, (epoch - 1) // period)
        lr = state.optimizer.param_groups[0]["lr"]
        with nondeterministic_ops() as found:  # ops that could not run deterministically
            train_loss, train_acc = train_epoch(state, data, augmentations, batch_size, precision)
        warned |= found
        if not np.isfinite(train_loss):
            # Diverged: a result of these settings, not an error. The weights are NaN now, so
            # there is nothing left to evaluate or to continue from.
            record = EpochRecord(
                epoch,
                lr,
                train_loss,
                train_acc,
                None,
                None,
                None,
                time.perf_counter() - epoch_started,
                restarting,
            )
            state.history.append(record)
            on_epoch_end(record)
            if checkpoints is not None:
                checkpoints.wait()
            return TrialResult(
                epochs=tuple(state.history),
                class_acc=(),
                confusion=(),
                seconds=time.perf_counter() - started,
                model=state.model,
                precision=precision,
                resumed_from=resumed_from,
                diverged=True,
                fresh=tuple(state.fresh),
                step_ms=chosen.step_ms,
                backends=backends,
                nondeterministic=tuple(sorted(warned)),
            )
        with nondeterministic_ops() as found:
            _, train_eval_acc, _ = measure(state.network, data.train_eval, data.train_eval_y)
            test_loss, test_acc, predicted = measure(state.network, data.test_x, data.test_y)
            val_loss = val_acc = None
            if data.val_x is not None and data.val_y is not None:
                val_loss, val_acc, _ = measure(state.network, data.val_x, data.val_y)
        warned |= found
        # Selection (a plateau's steps) uses the validation split when there is one.
        step_scheduler(state.scheduler, test_acc if val_acc is None else val_acc)
        record = EpochRecord(
            epoch,
            lr,
            train_loss,
            train_acc,
            train_eval_acc,
            test_loss,
            test_acc,
            time.perf_counter() - epoch_started,
            restarting,
            val_loss,
            val_acc,
        )
        selected = test_acc if val_acc is None else val_acc
        if keep_best and (state.best_value is None or selected > state.best_value):
            state.best_value = selected
            state.best = {
                name: value.detach().to("cpu", copy=True) for name, value in state.model.state_dict().items()
            }
        state.epoch = epoch
        state.history.append(record)
        last = epoch == settings["epochs"]
        # The last epoch's checkpoint is skipped when the caller deletes it as soon as the
        # trial is recorded (the runner: a write of the whole state, for nothing).
        if (
            checkpoints is not None
            and every > 0
            and (epoch % every == 0 or last)
            and (last or time.monotonic() - last_saved >= spacing)
            and (final_checkpoint or not last)
        ):
            checkpoints.save(
                epoch,
                {**snapshot(state), "meta": checkpoint_meta or {}, "precision": asdict(chosen)},
                background=device.type == "cuda",
            )
            last_saved = time.monotonic()
        on_epoch_end(record)
    if checkpoints is not None:
        checkpoints.wait()  # the last checkpoint is on disk before the trial counts as done
    if predicted is None:  # every epoch came from a checkpoint
        predicted = measure(state.network, data.test_x, data.test_y)[2]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    confusion.index_put_((data.test_y, predicted), torch.ones_like(predicted), accumulate=True)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1)
    correct = tuple((predicted == data.test_y).tolist())
    return TrialResult(
        epochs=tuple(state.history),
        class_acc=tuple(per_class.tolist()),
        confusion=tuple(tuple(row) for row in confusion.tolist()),
        seconds=time.perf_counter() - started,
        model=state.model,
        precision=precision,
        resumed_from=resumed_from,
        best_state=state.best,
        fresh=tuple(state.fresh),
        step_ms=chosen.step_ms,
        backends=backends,
        nondeterministic=tuple(sorted(warned)),
        test_correct=correct,
    )
