"""Image datasets as uint8 tensors, decoded once and cached on disk.

Every dataset plugin returns an :class:`ImageData`: the whole train and test sets as uint8
tensors of shape (N, 3, H, W). The trainer moves them to the training device once and does
augmentation and normalisation there, per batch, so no per-image Python runs while training.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from ablate.base.locks import FileLock
from ablate.errors import SetupError

__all__ = ["CACHE_ENV", "DATA_ENV", "VAL_SPLIT_SEED", "DataContractError", "ImageData",
           "UnreadableImage", "cache_dir", "cached_arrays", "fingerprint_files", "given_data_dir",
           "image_data", "load_image", "load_parquet_pair", "read_parquet_split",
           "stratified_holdout", "trial_classes", "update_with_file"]

CACHE_ENV = "ABLATE_CACHE"
DATA_ENV = "ABLATE_DATA"  # where local datasets live when --data-dir is not given
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
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
                hint = (" (channels last? images.permute(0, 3, 1, 2) puts them first)"
                        if images.ndim == 4 and shape[-1] == 3 else
                        " (grey images? images.expand(-1, 3, -1, -1) gives three channels)"
                        if images.ndim == 4 and shape[1] == 1 else "")
                raise DataContractError(f"{where}: {split} images must be uint8 of shape (N, 3, H, "
                                        f"W); got {images.dtype} of shape {shape}{hint}")
            if labels.dtype != torch.int64 or tuple(labels.shape) != (shape[0],):
                raise DataContractError(f"{where}: {split} labels must be int64 of shape "
                                        f"({shape[0]},), one per image; got {labels.dtype} of "
                                        f"shape {tuple(labels.shape)}")
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
                raise DataContractError(f"{where}: {split} labels must be class indices 0 to "
                                        f"{len(self.classes) - 1} ({len(self.classes)} classes); "
                                        f"got {int(labels.min())} to {int(labels.max())}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(v > 0 for v in self.std):
            raise DataContractError(f"{where}: mean and std must give 3 channels (std above 0); "
                                    f"got mean {self.mean}, std {self.std}")

    def select_classes(self, chosen: tuple[int, ...]) -> ImageData:
        """Only the images of the ``chosen`` classes (by label), relabelled 0, 1, ... in that
        order; the class names are kept. For pretraining on some classes and fine-tuning on
        the others."""
        if not chosen:
            return self
        bad = [c for c in chosen if c != int(c) or not 0 <= int(c) < len(self.classes)]
        if bad or len(set(chosen)) != len(chosen):
            raise SetupError(f"classes={tuple(chosen)}: {self.name} has classes 0-"
                             f"{len(self.classes) - 1}; list each at most once")
        order = [int(c) for c in chosen]
        mapping = torch.full((len(self.classes),), -1, dtype=torch.long)
        mapping[order] = torch.arange(len(order))

        def keep(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = mapping[labels] >= 0
            return images[mask], mapping[labels[mask]]

        train_x, train_y = keep(self.train_images, self.train_labels)
        test_x, test_y = keep(self.test_images, self.test_labels)
        return replace(self, train_images=train_x, train_labels=train_y, test_images=test_x,
                       test_labels=test_y, classes=tuple(self.classes[c] for c in order),
                       fingerprint=f"{self.fingerprint}-classes-{'-'.join(map(str, order))}")

    def head(self, train_size: int, test_size: int) -> ImageData:
        """The first ``train_size`` / ``test_size`` images (0 keeps a split whole)."""
        train = slice(None, train_size or None)
        test = slice(None, test_size or None)
        return replace(
            self,
            train_images=self.train_images[train], train_labels=self.train_labels[train],
            test_images=self.test_images[test], test_labels=self.test_labels[test],
        )


VAL_SPLIT_SEED = 20261123  # the validation split is the same for every trial, whatever its seed


def stratified_holdout(labels: torch.Tensor, size: int, seed: int = VAL_SPLIT_SEED
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``size`` images held out with each class in its share of ``labels`` (largest
    remainders settle the rounding), drawn with ``seed``; and of the rest. Both sorted."""
    count = len(labels)
    if not 0 < size < count:
        raise ValueError(f"a validation split of {size} images needs more than {size} training "
                         f"images; there are {count}")
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


def cache_dir() -> Path:
    """Where decoded arrays and downloads go: ``$ABLATE_CACHE`` or ``~/.cache/ablate``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ablate")


def given_data_dir(data_dir: Path | None) -> Path | None:
    """The folder the user named: ``--data-dir``, else ``$ABLATE_DATA``, else None."""
    if data_dir is not None:
        return data_dir
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None


def fingerprint_files(paths: list[Path]) -> str:
    """A short content hash of the source files, so a changed file invalidates the cache."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        update_with_file(digest, path)
    return digest.hexdigest()[:16]


def update_with_file(digest: Any, path: Path) -> Any:
    """Feed ``path``'s bytes to ``digest`` a block at a time (a photo folder can be gigabytes)."""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


class UnreadableImage(SetupError, ValueError):
    """A file that is not a readable image (the message names it)."""


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 (3, H, W): converted to RGB and resized to ``size`` (width,
    height) with bilinear filtering, as photo folders are for training."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != tuple(size):
                rgb = rgb.resize(tuple(size), Image.Resampling.BILINEAR)
            pixels: np.ndarray = np.asarray(rgb).transpose(2, 0, 1).copy()
            return pixels
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UnreadableImage(f"{path}: not a readable image ({error})") from error


def _decode(encoded: list[bytes]) -> np.ndarray:
    """Decode PNG/JPEG bytes into one uint8 array (N, 3, H, W) with Pillow."""
    from PIL import Image

    images = [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in encoded]
    stacked: np.ndarray = np.stack(images).transpose(0, 3, 1, 2)
    return stacked


def read_parquet_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Hugging Face image-classification Parquet file (``img.bytes``, ``label``)."""
    table = pq.read_table(path)
    names = table.column_names
    image_column = next((c for c in ("img", "image") if c in names), None)
    label_column = next((c for c in ("label", "labels") if c in names), None)
    if image_column is None or label_column is None:
        raise ValueError(f"{path}: expected columns img/image and label, found {names}")
    blobs = table.column(image_column).combine_chunks().field("bytes").to_pylist()
    labels = table.column(label_column).to_numpy().astype(np.int64)
    return _decode(blobs), labels


def load_parquet_pair(train: Path, test: Path) -> tuple[dict[str, np.ndarray], str]:
    """Decoded train/test arrays of a Parquet pair, through the on-disk decode cache."""
    fingerprint = fingerprint_files([train, test])

    def decode() -> dict[str, np.ndarray]:
        train_x, train_y = read_parquet_split(train)
        test_x, test_y = read_parquet_split(test)
        return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}

    return cached_arrays(fingerprint, decode), fingerprint


def cached_arrays(fingerprint: str, decode: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """The arrays cached under ``fingerprint``, else ``decode()``'s, cached for next time.

    The cache is a folder of ``.npy`` files opened as memory maps: a dataset larger than memory
    can be streamed from it batch by batch (``data_placement=stream``), and a process reads only
    the pages it touches. The maps are copy-on-write, so nothing a trial does reaches the file.
    """
    cached = cache_dir() / "decoded" / fingerprint
    opened = _try_open(cached)
    if opened is not None:
        return opened
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        lock: Any = FileLock(cached.with_name(f".{fingerprint}.lock"))
    except OSError:  # a read-only home: decode without the cache
        lock = contextlib.nullcontext()
    # Workers starting together (32 on a GPU host) decode once: the others wait for the first
    # and open its arrays, instead of each decoding and holding its own copy in memory.
    with lock:
        opened = _try_open(cached)
        if opened is not None:
            return opened
        arrays = decode()
        try:
            _write_arrays(cached, arrays)
        except OSError:  # a read-only or full home still trains, just without the cache
            return arrays
    return _open_arrays(cached)


def _try_open(cached: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there are none; a damaged cache is removed (rebuilt,
    never trusted)."""
    if not cached.is_dir():
        return None
    try:
        return _open_arrays(cached)
    except (OSError, ValueError):
        shutil.rmtree(cached, ignore_errors=True)
        return None


def _open_arrays(folder: Path) -> dict[str, np.ndarray]:
    names = json.loads((folder / "arrays.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c", allow_pickle=False)
              for name in names}
    for name, shape in names.items():
        if list(arrays[name].shape) != shape:
            raise ValueError(f"{folder / name}.npy: shape {arrays[name].shape}, expected {shape}")
    return arrays


def _write_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write every array into a temporary folder, then rename it into place: a crash leaves no
    half-written cache under the real name."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        manifest = {name: list(array.shape) for name, array in arrays.items()}
        (staging / "arrays.json").write_text(json.dumps(manifest), encoding="utf-8")
        try:
            staging.rename(folder)
        except OSError:
            if not folder.is_dir():  # else another process cached it first: keep theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
        classes=classes, mean=mean, std=std, fingerprint=fingerprint,
    )

