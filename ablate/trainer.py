"""One trial's training loop: ``fit`` reads top to bottom.

The dataset lives on the training device as uint8 tensors; each batch is gathered, augmented
(per image, from the trial's seeded generator), normalised and fed in channels_last layout.
Losses and correct counts accumulate on the device and are read once per epoch, so the loop
never waits on the host between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ablate.checkpoints import CheckpointStore
from ablate.config import TrialSetup
from ablate.data import ImageData, stratified_holdout
from ablate.errors import SetupError
from ablate.events import EpochRecord
from ablate.state import TrainingState, build_state, restart, restore, snapshot
from ablate.weights import StartingPoint

TRAIN_EVAL_SUBSET_SEED = 20240601  # the same train subset for every trial, whatever its seed


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

    @property
    def parameters(self) -> int:
        """The model's number of parameters."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


@dataclass(frozen=True)
class DeviceData:
    """A dataset moved to the training device, with the normalisation constants."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_eval_x: torch.Tensor
    train_eval_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    val_x: torch.Tensor | None = None  # the validation split, when the trial has one
    val_y: torch.Tensor | None = None


def to_device(data: ImageData, device: torch.device, train_eval_size: int,
              val: tuple[torch.Tensor, torch.Tensor] | None = None) -> DeviceData:
    subset_generator = torch.Generator().manual_seed(TRAIN_EVAL_SUBSET_SEED)
    count = min(train_eval_size, len(data.train_labels))
    subset = torch.randperm(len(data.train_labels), generator=subset_generator)[:count]
    stats = dict(device=device, dtype=torch.float32)
    return DeviceData(
        train_x=data.train_images.to(device), train_y=data.train_labels.to(device),
        test_x=data.test_images.to(device), test_y=data.test_labels.to(device),
        train_eval_x=data.train_images[subset].to(device),
        train_eval_y=data.train_labels[subset].to(device),
        mean=torch.tensor(data.mean, **stats).view(1, 3, 1, 1),
        std=torch.tensor(data.std, **stats).view(1, 3, 1, 1),
        val_x=None if val is None else val[0].to(device),
        val_y=None if val is None else val[1].to(device),
    )


def trial_data(data: ImageData, settings: Mapping[str, Any], device: torch.device) -> DeviceData:
    """What a trial trains and tests on, on ``device``: ``val_size`` images held out of the
    training split (stratified, the same for every trial), then the first ``train_size`` of
    the rest and the first ``test_size`` test images (0: all), and a fixed ``train_eval_size``
    subset of the training images."""
    data = data.select_classes(tuple(settings["classes"]))
    val = None
    if settings["val_size"]:
        try:
            held, kept = stratified_holdout(data.train_labels, settings["val_size"])
        except ValueError as error:
            raise SetupError(f"val_size: {error} in {data.name}") from None
        val = (data.train_images[held], data.train_labels[held])
        data = replace(data, train_images=data.train_images[kept], train_labels=data.train_labels[kept])
    return to_device(data.head(settings["train_size"], settings["test_size"]), device,
                     settings["train_eval_size"], val)


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1], the range augmentations work in."""
    return images.float().div_(255)


def _normalize(images: torch.Tensor, data: DeviceData) -> torch.Tensor:
    """Float images in [0, 1] -> normalised, in channels_last (faster convolutions)."""
    return ((images - data.mean) / data.std).contiguous(memory_format=torch.channels_last)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16, AMX or Arm BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = {word for line in handle if line.startswith(("flags", "Features"))
                     for word in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` becomes bf16 where the hardware does bf16 natively, fp32 elsewhere."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             data: DeviceData, batch_size: int, precision: str = "fp32"
             ) -> tuple[float, float, torch.Tensor]:
    """Loss, accuracy and predictions of ``model`` in eval mode, without augmentation."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for start in range(0, len(labels), batch_size):
        with _autocast(images.device, precision):
            logits = model(_normalize(_to_unit(images[start:start + batch_size]), data)).float()
        loss_sum += F.cross_entropy(logits, labels[start:start + batch_size], reduction="sum")
        predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    accuracy = (predicted == labels).float().mean()
    return (loss_sum / len(labels)).item(), accuracy.item(), predicted


def prepare_batch(data: DeviceData, index: torch.Tensor, augmentations: list[Any],
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a batch on the device, augment it per image, normalise it: the whole data path."""
    images = _to_unit(data.train_x[index])
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
    model, optimizer, device = state.network, state.optimizer, data.train_x.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = len(data.train_y)
    order = torch.randperm(count, generator=state.generator, device=device)
    # A last batch of one image would break BatchNorm in train mode; it is dropped.
    stop = count - 1 if count % batch_size == 1 else count
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        images, labels = prepare_batch(data, index, augmentations, state.generator)
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
) -> TrialResult:
    """Train one trial and measure it every epoch.

    With ``checkpoints``, training continues from the newest usable checkpoint there and saves
    one every ``checkpoint_every`` epochs. The ``resume`` setting simulates stopping and
    reloading every ``resume_every`` epochs (see :func:`ablate.state.restart`). ``start_from``
    gives the model its starting weights (where names and shapes match); ``keep_best`` keeps a
    copy of the best epoch's weights (by validation accuracy, else test accuracy).
    """
    started = time.perf_counter()
    settings = setup.settings
    state = build_state(setup, num_classes, seed, device, start_from)
    saved = checkpoints.latest() if checkpoints else None
    if saved is not None and saved.get("meta") == (checkpoint_meta or {}):
        restore(state, saved)
    elif saved is not None and checkpoints is not None:  # another trial's: never mix them
        checkpoints.clear()
    resumed_from = state.epoch
    augmentations = [chosen.build() for chosen in setup.augmentations]
    mode, period = settings["resume"], settings["resume_every"]
    every = settings["checkpoint_every"]
    precision = resolve_precision(settings["precision"], device)
    predicted = None
    for epoch in range(state.epoch + 1, settings["epochs"] + 1):
        epoch_started = time.perf_counter()
        restarting = mode != "none" and period > 0 and epoch > 1 and (epoch - 1) % period == 0
        if restarting:
            restart(state, setup, mode, seed, (epoch - 1) // period)
        lr = state.optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(state, data, augmentations, settings["batch_size"],
                                             precision)
        if not np.isfinite(train_loss):
            # Diverged: a result of these settings, not an error. The weights are NaN now, so
            # there is nothing left to evaluate or to continue from.
            record = EpochRecord(epoch, lr, train_loss, train_acc, None, None, None,
                                 time.perf_counter() - epoch_started, restarting)
            state.history.append(record)
            on_epoch_end(record)
            return TrialResult(epochs=tuple(state.history), class_acc=(), confusion=(),
                               seconds=time.perf_counter() - started, model=state.model,
                               precision=precision, resumed_from=resumed_from, diverged=True,
                               fresh=tuple(state.fresh))
        eval_batch = settings["eval_batch_size"]
        _, train_eval_acc, _ = evaluate(state.network, data.train_eval_x, data.train_eval_y,
                                        data, eval_batch, precision)
        test_loss, test_acc, predicted = evaluate(state.network, data.test_x, data.test_y, data,
                                                  eval_batch, precision)
        val_loss = val_acc = None
        if data.val_x is not None and data.val_y is not None:
            val_loss, val_acc, _ = evaluate(state.network, data.val_x, data.val_y, data, eval_batch,
                                            precision)
        # Selection (a plateau's steps) uses the validation split when there is one.
        step_scheduler(state.scheduler, test_acc if val_acc is None else val_acc)
        record = EpochRecord(epoch, lr, train_loss, train_acc, train_eval_acc, test_loss,
                             test_acc, time.perf_counter() - epoch_started, restarting, val_loss,
                             val_acc)
        chosen = test_acc if val_acc is None else val_acc
        if keep_best and (state.best_value is None or chosen > state.best_value):
            state.best_value = chosen
            state.best = {name: value.detach().to("cpu", copy=True)
                          for name, value in state.model.state_dict().items()}
        state.epoch = epoch
        state.history.append(record)
        if checkpoints is not None and every > 0 and (epoch % every == 0 or epoch == settings["epochs"]):
            checkpoints.save(epoch, {**snapshot(state), "meta": checkpoint_meta or {}})
        on_epoch_end(record)
    if predicted is None:  # every epoch came from a checkpoint
        predicted = evaluate(state.network, data.test_x, data.test_y, data,
                             settings["eval_batch_size"], precision)[2]
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
    )
