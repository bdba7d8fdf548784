"""Where images come from: local data folders, image files and Parquet splits decoded once,
and the on-disk cache of decoded arrays that every worker shares."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ablate.base.locks import FileLock
from ablate.errors import SetupError

CACHE_ENV = "ABLATE_CACHE"
DATA_ENV = "ABLATE_DATA"  # where local datasets live when --data-dir is not given


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


def cached_arrays(fingerprint: str, decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
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
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c", allow_pickle=False) for name in names}
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
