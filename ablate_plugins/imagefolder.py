"""``imagefolder``: a folder of the user's own photos, one subfolder per class.

Two layouts, as torchvision's ``ImageFolder`` reads them::

    PATH/train/<class>/*.jpg  and  PATH/test/<class>/*.jpg   (``val/`` works for ``test/``)
    PATH/<class>/*.jpg        (a seeded split holds out ``test_fraction`` of each class)

Every image is decoded once with Pillow, converted to RGB and resized to ``size`` x ``size``;
the arrays are cached on disk under a hash of the files and the settings, so the next process
starts fast. The normalisation constants are the training images' per-channel mean and std.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ablate.base import write_text_atomic
from ablate.data import (
    DATA_ENV,
    ImageData,
    UnreadableImage,
    cache_dir,
    cached_arrays,
    given_data_dir,
    image_data,
    load_image,
    update_with_file,
)
from ablate.errors import SetupError

# What torchvision's ImageFolder accepts.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEST_FOLDERS = ("test", "val")


class ImageFolderError(SetupError, ValueError):
    """The folder is missing, empty or not laid out one subfolder per class."""


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, both sorted; hidden files and folders are skipped."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if files:
            classes[sub.name] = files
    return classes


def _layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """The train folder's classes and, when the folder has its own test split, the test's."""
    test_folder = next((root / n for n in TEST_FOLDERS if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_folder is not None:
        train, test = _class_files(root / "train"), _class_files(test_folder)
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise ImageFolderError(
                f"{test_folder}: classes {unknown} have no training images in {root / 'train'}"
            )
        return train, test
    return _class_files(root), None


def _split(
    files: dict[str, list[Path]], test_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Hold out ``test_fraction`` of each class (at least one image when it has two or more),
    so that a small class is never missing from the test set."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for name, paths in files.items():
        order = rng.permutation(len(paths))
        held = min(len(paths) - 1, max(1, round(test_fraction * len(paths)))) if test_fraction else 0
        test[name] = sorted(paths[i] for i in order[:held])
        train[name] = sorted(paths[i] for i in order[held:])
    return train, test


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        return load_image(path, (size, size))
    except UnreadableImage as error:
        raise ImageFolderError(str(error)) from error


def _arrays(
    split: dict[str, list[Path]], classes: list[str], size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded images and labels, in a seeded mixed order: ``train_size`` then takes a sample of
    every class, not the first classes' images."""
    pairs = [(path, classes.index(name)) for name, paths in split.items() for path in paths]
    pairs = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
    images = (
        np.stack([_decode(path, size) for path, _ in pairs])
        if pairs
        else (np.zeros((0, 3, size, size), dtype=np.uint8))
    )
    return images, np.array([label for _, label in pairs], dtype=np.int64)


def _fingerprint(train: dict[str, list[Path]], test: dict[str, list[Path]], root: Path, settings: str) -> str:
    """A hash of every file's place, class and bytes, and of the settings that shaped the arrays.

    Hashing 15 GB of photos on every start would read them all again, so each file's hash is
    kept in an index beside the decode cache, under its size and modification time: only new
    or changed files are read."""
    index_file = (
        cache_dir()
        / "imagefolder-index"
        / (hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] + ".json")
    )
    try:
        known = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    seen: dict[str, list[Any]] = {}
    digest = hashlib.sha256(settings.encode())
    for split, files in (("train", train), ("test", test)):
        for name, paths in files.items():
            for path in paths:
                place = str(path.relative_to(root))
                stat = path.stat()
                entry = known.get(place)
                if not (isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]):
                    entry = [stat.st_size, stat.st_mtime_ns, file_hash(path)]
                seen[place] = entry
                digest.update(f"{split}/{name}/{place}:{entry[2]}".encode())
    if seen != known:
        try:
            write_text_atomic(index_file, json.dumps(seen))
        except OSError:
            pass  # a read-only cache only costs reading the files again next time
    return digest.hexdigest()[:16]


def file_hash(path: Path) -> str:
    return str(update_with_file(hashlib.sha256(), path).hexdigest())


def imagefolder(
    *, data_dir: Path | None, size: int = 32, test_fraction: float = 0.2, split_seed: int = 0
) -> ImageData:
    """The images under ``--data-dir`` (or ``$ABLATE_DATA``), one subfolder per class."""
    given = given_data_dir(data_dir)
    if given is None:
        raise ImageFolderError(
            f"imagefolder needs a folder: pass --data-dir PATH or set {DATA_ENV}=PATH, where PATH "
            "holds one subfolder of images per class (or train/ and test/, each holding them)"
        )
    if not given.is_dir():
        raise ImageFolderError(f"imagefolder: {given} is not a folder")
    if size < 8:
        raise ImageFolderError(f"imagefolder: size must be at least 8 pixels, got {size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ImageFolderError(f"imagefolder: test_fraction must be in [0, 1), got {test_fraction}")
    train, test = _layout(given)
    if len(train) < 2:
        raise ImageFolderError(
            f"{given}: found {len(train)} class folder(s) with images ({', '.join(train) or 'none'}); "
            f"a classifier needs at least two. Images must end in one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if test is None:
        train, test = _split(train, test_fraction, split_seed)
    classes = sorted(train)
    settings = f"size={size} test_fraction={test_fraction} split_seed={split_seed}"
    fingerprint = _fingerprint(train, test, given, settings)

    def decode() -> dict[str, np.ndarray]:
        train_x, train_y = _arrays(train, classes, size, split_seed)
        test_x, test_y = _arrays(test, classes, size, split_seed + 1)
        return {
            "train_x": train_x,
            "train_y": train_y,
            "test_x": test_x,
            "test_y": test_y,
            "mean_std": _mean_std(train_x),
        }

    arrays = cached_arrays(fingerprint, decode)
    (m0, m1, m2), (s0, s1, s2) = ((float(v) for v in row) for row in arrays["mean_std"])
    return image_data(
        f"imagefolder:{given.name}", arrays, tuple(classes), (m0, m1, m2), (s0, s1, s2), fingerprint
    )


def _mean_std(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and std of uint8 images in [0, 1], one channel at a time (memory)."""
    rows = []
    for channel in range(3):
        pixels = images[:, channel].astype(np.float32) / 255
        rows.append((float(pixels.mean()), max(float(pixels.std()), 1e-3)))  # flat stays finite
    table: np.ndarray = np.array(rows, dtype=np.float64).T
    return table
