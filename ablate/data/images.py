"""What a dataset plugin returns: the whole train and test sets as uint8 tensors, checked
against the contract the trainer relies on, and the split and classes one trial uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ablate.errors import SetupError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class DataContractError(SetupError, ValueError):
    """A dataset's images, labels or constants break what every trial relies on."""


@dataclass(frozen=True)
class ImageData:
    """A labelled image classification dataset, held as uint8 tensors (N, 3, H, W)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str

    def __post_init__(self) -> None:
        """Check the contract every trial relies on, so that data breaking it stops the run
        when it loads, in one line, instead of mid-training as ``IndexError: Target 10 is out
        of bounds`` (and a retry, as if the trial were flaky)."""
        where = f"dataset {self.name!r}"
        if not self.classes:
            raise DataContractError(f"{where}: needs the names of its classes, got none")
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            shape = tuple(images.shape)
            if images.dtype != torch.uint8 or images.ndim != 4 or shape[1] != 3:
                hint = (
                    " (channels last? images.permute(0, 3, 1, 2) puts them first)"
                    if images.ndim == 4 and shape[-1] == 3
                    else " (grey images? images.expand(-1, 3, -1, -1) gives three channels)"
                    if images.ndim == 4 and shape[1] == 1
                    else ""
                )
                raise DataContractError(
                    f"{where}: {split} images must be uint8 of shape (N, 3, H, "
                    f"W); got {images.dtype} of shape {shape}{hint}"
                )
            if labels.dtype != torch.int64 or tuple(labels.shape) != (shape[0],):
                raise DataContractError(
                    f"{where}: {split} labels must be int64 of shape "
                    f"({shape[0]},), one per image; got {labels.dtype} of "
                    f"shape {tuple(labels.shape)}"
                )
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
                raise DataContractError(
                    f"{where}: {split} labels must be class indices 0 to "
                    f"{len(self.classes) - 1} ({len(self.classes)} classes); "
                    f"got {int(labels.min())} to {int(labels.max())}"
                )
        if len(self.mean) != 3 or len(self.std) != 3 or not all(v > 0 for v in self.std):
            raise DataContractError(
                f"{where}: mean and std must give 3 channels (std above 0); "
                f"got mean {self.mean}, std {self.std}"
            )

    def select_classes(self, chosen: tuple[int, ...]) -> ImageData:
        """Only the images of the ``chosen`` classes (by label), relabelled 0, 1, ... in that
        order; the class names are kept. For pretraining on some classes and fine-tuning on
        the others."""
        if not chosen:
            return self
        bad = [c for c in chosen if c != int(c) or not 0 <= int(c) < len(self.classes)]
        if bad or len(set(chosen)) != len(chosen):
            raise SetupError(
                f"classes={tuple(chosen)}: {self.name} has classes 0-"
                f"{len(self.classes) - 1}; list each at most once"
            )
        order = [int(c) for c in chosen]
        mapping = torch.full((len(self.classes),), -1, dtype=torch.long)
        mapping[order] = torch.arange(len(order))

        def keep(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = mapping[labels] >= 0
            return images[mask], mapping[labels[mask]]

        train_x, train_y = keep(self.train_images, self.train_labels)
        test_x, test_y = keep(self.test_images, self.test_labels)
        return replace(
            self,
            train_images=train_x,
            train_labels=train_y,
            test_images=test_x,
            test_labels=test_y,
            classes=tuple(self.classes[c] for c in order),
            fingerprint=f"{self.fingerprint}-classes-{'-'.join(map(str, order))}",
        )

    def head(self, train_size: int, test_size: int) -> ImageData:
        """The first ``train_size`` / ``test_size`` images (0 keeps a split whole)."""
        train = slice(None, train_size or None)
        test = slice(None, test_size or None)
        return replace(
            self,
            train_images=self.train_images[train],
            train_labels=self.train_labels[train],
            test_images=self.test_images[test],
            test_labels=self.test_labels[test],
        )


VAL_SPLIT_SEED = 20261123  # the validation split is the same for every trial, whatever its seed


def stratified_holdout(
    labels: torch.Tensor, size: int, seed: int = VAL_SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``size`` images held out with each class in its share of ``labels`` (largest
    remainders settle the rounding), drawn with ``seed``; and of the rest. Both sorted."""
    count = len(labels)
    if not 0 < size < count:
        raise ValueError(
            f"a validation split of {size} images needs more than {size} training images; there are {count}"
        )
    classes, per_class = torch.unique(labels, return_counts=True)
    exact = per_class.double() * size / count
    take = exact.floor().long()
    short = size - int(take.sum())
    take[torch.argsort(exact - take, descending=True, stable=True)[:short]] += 1
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label, number in zip(classes.tolist(), take.tolist(), strict=True):
        members = torch.nonzero(labels == label).flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:number]])
    chosen = torch.cat(held).sort().values
    rest = torch.ones(count, dtype=torch.bool)
    rest[chosen] = False
    return chosen, torch.nonzero(rest).flatten()


def trial_classes(data: ImageData, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The class names a trial trains on (its ``classes`` setting selects and orders them)."""
    return tuple(data.classes[int(c)] for c in settings["classes"]) or data.classes


def image_data(
    name: str,
    arrays: dict[str, np.ndarray],
    classes: tuple[str, ...],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    fingerprint: str,
) -> ImageData:
    """Wrap decoded arrays (keys train_x, train_y, test_x, test_y) as :class:`ImageData`."""
    return ImageData(
        name=name,
        train_images=torch.from_numpy(np.ascontiguousarray(arrays["train_x"])),
        train_labels=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(arrays["test_x"])),
        test_labels=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        classes=classes,
        mean=mean,
        std=std,
        fingerprint=fingerprint,
    )
