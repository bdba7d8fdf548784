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
import torch.nn.functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ablate.backends import Backends, configure, nondeterministic_ops
from ablate.checkpoints import CheckpointStore
from ablate.config import TrialSetup
from ablate.events import EpochRecord

# Re-exported: the placement of a trial's images used to live here.
from ablate.placement import DeviceData, ImageSource, free_memory
from ablate.precision import PrecisionChoice, choose_precision
from ablate.state import (
    TrainingState,
    build_state,
    checkpoint_device,
    restart,
    restore,
    snapshot,
)
from ablate.step_memory import check_fits, effective_batch
from ablate.weights import StartingPoint


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

    @property
    def parameters(self) -> int:
        """The model's number of parameters."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1], the range augmentations work in."""
    return images.float().div_(255)


def _normalize(images: torch.Tensor, data: DeviceData) -> torch.Tensor:
    """Float images in [0, 1] -> normalised, in channels_last (faster convolutions)."""
    return ((images - data.mean) / data.std).contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor | ImageSource, labels: torch.Tensor,
             data: DeviceData, batch_size: int, precision: str = "fp32"
             ) -> tuple[float, float, torch.Tensor]:
    """Loss, accuracy and predictions of ``model`` in eval mode, without augmentation."""
    source = images if isinstance(images, ImageSource) else ImageSource(images)
    device = labels.device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    for start in range(0, len(labels), batch_size):
        batch = source.batch(start, start + batch_size, device)
        with _autocast(device, precision):
            logits = model(_normalize(_to_unit(batch), data)).float()
        loss_sum += F.cross_entropy(logits, labels[start:start + batch_size], reduction="sum")
        predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    accuracy = (predicted == labels).float().mean()
    return (loss_sum / len(labels)).item(), accuracy.item(), predicted


GPU_CHECKPOINT_SECONDS = 60.0


def checkpoint_spacing(setting: float, device: torch.device) -> float:
    """Least seconds between two checkpoints of a trial: ``checkpoint_seconds``, or for -1 (the
    default) 60 on a GPU, where epochs are short and a checkpoint every epoch would be a large
    share of the work, and none on a CPU (its epochs take longer than a write)."""
    if setting >= 0:
        return setting
    return GPU_CHECKPOINT_SECONDS if device.type == "cuda" else 0.0


def eval_batch_size(setting: int, data: DeviceData) -> int:
    """``eval_batch_size``, or for 0 (auto) 1,000 images at 32 x 32 scaled by pixel count, so
    224-pixel photos are evaluated 20 at a time, not 1,000 (several GB of activations)."""
    if setting:
        return setting
    height, width = data.test_x.shape[-2:]
    return max(8, round(1000 * 32 * 32 / (height * width)))


class Evaluator:
    """``evaluate`` with the trial's batch size, halved on a CUDA out-of-memory error (the
    metrics do not depend on it) instead of failing the trial; the smaller size is kept."""

    def __init__(self, data: DeviceData, batch_size: int, precision: str,
                 log: Callable[[str], None] | None = None) -> None:
        self.data, self.batch_size, self.precision, self.log = data, batch_size, precision, log

    def __call__(self, model: torch.nn.Module, images: torch.Tensor | ImageSource,
                 labels: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        while True:
            try:
                return evaluate(model, images, labels, self.data, self.batch_size, self.precision)
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if self.log is not None:
                    self.log(f"out of memory while evaluating: eval batch size now {self.batch_size}")


def prepare_batch(data: DeviceData, index: torch.Tensor, augmentations: list[Any],
                  generator: torch.Generator, host_index: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a batch on the device, augment it per image, normalise it: the whole data path."""
    images = _to_unit(data.train_batch(index, host_index))
    for augment in augmentations:
        images = augment(images, generator)
    return _normalize(images, data), data.train_y[index]


def step_scheduler(scheduler: Any, accuracy: float) -> None:
    """The once-per-epoch step, after evaluation: a plateau scheduler watches ``accuracy`` (the
    validation accuracy when the trial has a validation split, else the test accuracy)."""
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(accuracy)
    else:
        scheduler.step()


def train_epoch(state: TrainingState, data: DeviceData, augmentations: list[Any],
                 batch_size: int, precision: str) -> tuple[float, float]:
    """One pass over the training set; returns the running loss and accuracy."""
    model, optimizer, device = state.network, state.optimizer, data.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = len(data.train_y)
    order = torch.randperm(count, generator=state.generator, device=device)
    # A last batch of one image would break BatchNorm in train mode; it is dropped.
    stop = count - 1 if count % batch_size == 1 else count
    # Streaming reads rows in host memory: one copy of the order per epoch, not a wait per step.
    host_order = order.cpu() if data.train_rows is not None else None
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        host_index = None if host_order is None else host_order[start:start + batch_size]
        images, labels = prepare_batch(data, index, augmentations, state.generator, host_index)
        loss, logits = train_step(model, optimizer, images, labels, precision)
        loss_sum += loss * len(index)
        correct += (logits.argmax(1) == labels).sum()
    return (loss_sum / stop).item(), (correct.float() / stop).item()


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a prepared batch; returns the loss and logits, detached and
    left on the device (reading them would wait for the step to finish)."""
    with _autocast(images.device, precision):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


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
    reloading every ``resume_every`` epochs (see :func:`ablate.state.restart`). ``start_from``
    gives the model its starting weights (where names and shapes match); ``keep_best`` keeps a
    copy of the best epoch's weights (by validation accuracy, else test accuracy).
    ``precision_record`` is where ``precision=auto`` keeps its measured choice for the study.
    ``final_checkpoint``: False when the caller deletes the checkpoints once the trial is
    recorded, so the last epoch's is never written.
    """
    started = time.perf_counter()
    settings = setup.settings
    state = build_state(setup, num_classes, seed, device, start_from)
    saved = checkpoints.latest() if checkpoints else None
    resumed_precision = None
    trained_on = checkpoint_device(saved) if saved is not None else None
    if saved is not None and trained_on not in (None, device.type):
        # A generator's state differs in size between a CPU and a GPU: not resumable here.
        log(f"checkpoint of epoch {saved['epoch']} was trained on {trained_on}, this trial runs "
            f"on {device.type}: not resumable, starting afresh")
        if checkpoints is not None:
            checkpoints.clear()
    elif saved is not None and saved.get("meta") == (checkpoint_meta or {}):
        restore(state, saved)
        resumed_precision = saved.get("precision")
    elif saved is not None and checkpoints is not None:  # another trial's: never mix them
        checkpoints.clear()
    resumed_from = state.epoch
    batch_size = effective_batch(settings["batch_size"], len(data.train_y), log)
    check_fits(state.model, batch_size, tuple(data.train_x.shape[1:]), device, free_memory(device),
               f"model {setup.model.component.name!r}", settings["precision"])
    augmentations = [chosen.build() for chosen in setup.augmentations]
    mode, period = settings["resume"], settings["resume_every"]
    every = settings["checkpoint_every"]
    spacing = checkpoint_spacing(settings.get("checkpoint_seconds", 0), device)
    last_saved = time.monotonic()
    if resumed_precision:  # a continued trial keeps the precision it started in: bitwise resume
        chosen = PrecisionChoice(resumed_precision["precision"], resumed_precision.get("step_ms"))
    else:
        chosen = choose_precision(
            settings["precision"], device, state.model, batch_size,
            tuple(data.train_x.shape[1:]), num_classes,
            (setup.model.component.name, tuple(sorted(setup.model.values.items()))),
            precision_record)
    precision = chosen.precision
    backends = configure(settings, precision, device)
    measure = Evaluator(data, eval_batch_size(settings["eval_batch_size"], data), precision, log)
    predicted = None
    warned: set[str] = set()
    for epoch in range(state.epoch + 1, settings["epochs"] + 1):
        epoch_started = time.perf_counter()
        restarting = mode != "none" and period > 0 and epoch > 1 and (epoch - 1) % period == 0
        if restarting:
            restart(state, setup, mode, seed, (epoch - 1) // period)
        lr = state.optimizer.param_groups[0]["lr"]
        with nondeterministic_ops() as found:  # ops that could not run deterministically
            train_loss, train_acc = train_epoch(state, data, augmentations, batch_size, precision)
        warned |= found
        if not np.isfinite(train_loss):
            # Diverged: a result of these settings, not an error. The weights are NaN now, so
            # there is nothing left to evaluate or to continue from.
            record = EpochRecord(epoch, lr, train_loss, train_acc, None, None, None,
                                 time.perf_counter() - epoch_started, restarting)
            state.history.append(record)
            on_epoch_end(record)
            if checkpoints is not None:
                checkpoints.wait()
            return TrialResult(epochs=tuple(state.history), class_acc=(), confusion=(),
                               seconds=time.perf_counter() - started, model=state.model,
                               precision=precision, resumed_from=resumed_from, diverged=True,
                               fresh=tuple(state.fresh), step_ms=chosen.step_ms,
                               backends=backends, nondeterministic=tuple(sorted(warned)))
        with nondeterministic_ops() as found:
            _, train_eval_acc, _ = measure(state.network, data.train_eval, data.train_eval_y)
            test_loss, test_acc, predicted = measure(state.network, data.test_x, data.test_y)
            val_loss = val_acc = None
            if data.val_x is not None and data.val_y is not None:
                val_loss, val_acc, _ = measure(state.network, data.val_x, data.val_y)
        warned |= found
        # Selection (a plateau's steps) uses the validation split when there is one.
        step_scheduler(state.scheduler, test_acc if val_acc is None else val_acc)
        record = EpochRecord(epoch, lr, train_loss, train_acc, train_eval_acc, test_loss,
                             test_acc, time.perf_counter() - epoch_started, restarting, val_loss,
                             val_acc)
        selected = test_acc if val_acc is None else val_acc
        if keep_best and (state.best_value is None or selected > state.best_value):
            state.best_value = selected
            state.best = {name: value.detach().to("cpu", copy=True)
                          for name, value in state.model.state_dict().items()}
        state.epoch = epoch
        state.history.append(record)
        last = epoch == settings["epochs"]
        # The last epoch's checkpoint is skipped when the caller deletes it as soon as the
        # trial is recorded (the runner: a write of the whole state, for nothing).
        if checkpoints is not None and every > 0 and (epoch % every == 0 or last) and (
                last or time.monotonic() - last_saved >= spacing) and (final_checkpoint or not last):
            checkpoints.save(epoch, {**snapshot(state), "meta": checkpoint_meta or {},
                                     "precision": asdict(chosen)},
                             background=device.type == "cuda")
            last_saved = time.monotonic()
        on_epoch_end(record)
    if checkpoints is not None:
        checkpoints.wait()  # the last checkpoint is on disk before the trial counts as done
    if predicted is None:  # every epoch came from a checkpoint
        predicted = measure(state.network, data.test_x, data.test_y)[2]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    confusion.index_put_((data.test_y, predicted), torch.ones_like(predicted), accumulate=True)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1)
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
    )
