"""One epoch, step by step: the data path (gather, augment, normalise), the training step, and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ablate.base.signals import raise_if_stopped
from ablate.components.setup import watches_accuracy
from ablate.train.placement import DeviceData, ImageSource
from ablate.train.state import TrainingState


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1], the range augmentations work in."""
    return images.float().div_(255)


def _normalize(images: torch.Tensor, data: DeviceData) -> torch.Tensor:
    """Float images in [0, 1] -> normalised, in channels_last (faster convolutions)."""
    return ((images - data.mean) / data.std).contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor | ImageSource,
    labels: torch.Tensor,
    data: DeviceData,
    batch_size: int,
    precision: str = "fp32",
) -> tuple[float, float, torch.Tensor]:
    """Loss, accuracy and predictions of ``model`` in eval mode, without augmentation."""
    source = images if isinstance(images, ImageSource) else ImageSource(images)
    device = labels.device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    for start in range(0, len(labels), batch_size):
        raise_if_stopped()
        batch = source.batch(start, start + batch_size, device)
        with _autocast(device, precision):
            logits = model(_normalize(_to_unit(batch), data)).float()
        loss_sum += F.cross_entropy(logits, labels[start : start + batch_size], reduction="sum")
        predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    accuracy = (predicted == labels).float().mean()
    return (loss_sum / len(labels)).item(), accuracy.item(), predicted


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

    def __init__(
        self, data: DeviceData, batch_size: int, precision: str, log: Callable[[str], None] | None = None
    ) -> None:
        self.data, self.batch_size, self.precision, self.log = data, batch_size, precision, log

    def __call__(
        self, model: torch.nn.Module, images: torch.Tensor | ImageSource, labels: torch.Tensor
    ) -> tuple[float, float, torch.Tensor]:
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


def prepare_batch(
    data: DeviceData,
    index: torch.Tensor,
    augmentations: list[Any],
    generator: torch.Generator,
    host_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a batch on the device, augment it per image, normalise it: the whole data path."""
    images = _to_unit(data.train_batch(index, host_index))
    for augment in augmentations:
        images = augment(images, generator)
    return _normalize(images, data), data.train_y[index]


def step_scheduler(scheduler: Any, accuracy: float) -> None:
    """The once-per-epoch step, after evaluation: a plateau scheduler watches ``accuracy`` (the
    validation accuracy when the trial has a validation split, else the test accuracy)."""
    if watches_accuracy(scheduler):
        scheduler.step(accuracy)
    else:
        scheduler.step()


def train_epoch(
    state: TrainingState, data: DeviceData, augmentations: list[Any], batch_size: int, precision: str
) -> tuple[float, float]:
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
        raise_if_stopped()
        index = order[start : start + batch_size]
        host_index = None if host_order is None else host_order[start : start + batch_size]
        images, labels = prepare_batch(data, index, augmentations, state.generator, host_index)
        loss, logits = train_step(model, optimizer, images, labels, precision)
        loss_sum += loss * len(index)
        correct += (logits.argmax(1) == labels).sum()
    return (loss_sum / stop).item(), (correct.float() / stop).item()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a prepared batch; returns the loss and logits, detached and
    left on the device (reading them would wait for the step to finish)."""
    with _autocast(images.device, precision):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()
