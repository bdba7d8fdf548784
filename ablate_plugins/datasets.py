"""Datasets: ``cifar10`` (local copy or torchvision download), the shipped ``cifar10-mini`` and
``imagefolder`` (the user's own photos, see :mod:`ablate_plugins.imagefolder`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ablate import hookimpl
from ablate.components import Registrar
from ablate.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATA_ENV,
    ImageData,
    cache_dir,
    fingerprint_files,
    given_data_dir,
    image_data,
    load_parquet_pair,
)
from ablate.errors import SetupError
from ablate.params import param
from ablate_plugins.imagefolder import imagefolder

MINI_DIR = Path(__file__).parent / "data" / "cifar10_mini"
BATCHES = "cifar-10-batches-py"
BATCH_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class DatasetNotFound(SetupError, RuntimeError):
    """The dataset is neither on disk nor downloadable."""


def _parquet_pair(root: Path) -> tuple[Path, Path] | None:
    for folder in (root, root / "cifar10"):
        train, test = folder / "train.parquet", folder / "test.parquet"
        if train.is_file() and test.is_file():
            return train, test
    return None


def _batches_dir(root: Path) -> Path | None:
    for folder in (root, root / BATCHES):
        if all((folder / n).is_file() for n in BATCH_FILES):
            return folder
    return None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch of the official python release: a pickled dict of ``data`` and ``labels``.

    These files are pickles by design of the release (torchvision reads them the same way);
    only point ablate at a copy you trust.
    """
    with path.open("rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch["labels"], dtype=np.int64)


def _from_batches(folder: Path) -> ImageData:
    """The official ``cifar-10-batches-py`` release (five train batches and a test batch)."""
    *train, (test_x, test_y) = [_read_batch(folder / name) for name in BATCH_FILES]
    arrays = {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }
    files = [folder / name for name in BATCH_FILES]
    return image_data("cifar10", arrays, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, fingerprint_files(files))


def _download(root: Path) -> Path:
    from torchvision.datasets import CIFAR10

    from ablate.base import FileLock

    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(root / ".download.lock"):  # workers starting together download once
            CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # offline: URLError, socket errors, timeouts
        raise DatasetNotFound(
            f"CIFAR-10 was not found under {root} and could not be downloaded ({error}). "
            f"Point ablate at a local copy with --data-dir PATH or {DATA_ENV}=PATH; PATH may hold "
            f"torchvision's {BATCHES}/ folder or the Hugging Face layout train.parquet + "
            "test.parquet. For a run without any download use the dataset 'cifar10-mini'."
        ) from error
    return root / BATCHES


def cifar10(*, data_dir: Path | None) -> ImageData:
    """All of CIFAR-10 (50,000 train / 10,000 test images)."""
    given = given_data_dir(data_dir)
    roots = [given] if given else [cache_dir() / "data"]
    for root in roots:
        pair = _parquet_pair(root)
        if pair:
            arrays, fingerprint = load_parquet_pair(*pair)
            return image_data("cifar10", arrays, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, fingerprint)
        batches = _batches_dir(root)
        if batches:
            return _from_batches(batches)
    return _from_batches(_download(roots[0]))


def cifar10_mini(*, data_dir: Path | None) -> ImageData:
    """The first 5,000 train and 1,000 test images of CIFAR-10, shipped with ablate."""
    arrays, fingerprint = load_parquet_pair(MINI_DIR / "train.parquet", MINI_DIR / "test.parquet")
    return image_data("cifar10-mini", arrays, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, fingerprint)


@hookimpl
def register_datasets(register: Registrar) -> None:
    register(
        "cifar10", cifar10, "CIFAR-10, 50,000/10,000 images, from --data-dir, $ABLATE_DATA or a download"
    )
    register(
        "cifar10-mini",
        cifar10_mini,
        "first 5,000 train / 1,000 test images of CIFAR-10, shipped inside the package",
    )
    register(
        "imagefolder",
        imagefolder,
        "your own photos from --data-dir or $ABLATE_DATA: one subfolder per class "
        "(or train/ and test/ holding them), decoded once and resized",
        params={
            "size": param("images are resized to size x size pixels", ge=1),
            "test_fraction": param(
                "share of each class held out for testing when the folder has no train/ and test/ subfolders",
                ge=0,
                lt=1,
            ),
            "split_seed": param("seed of that split and of the images' stored order", ge=0),
        },
    )
