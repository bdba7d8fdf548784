"""Atomic file writes: a reader never sees half a file, and a crash never leaves one.

Every file ablate writes (results tables, checkpoints, ``study.json``, the decode cache, plots)
goes to a temporary name in its own folder, is fsynced, and is renamed into place; the folder is
fsynced too, so the rename itself survives a power cut. A write that fails (a full disk, a
read-only folder) raises :class:`WriteError`, which names the file, and leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ablate.errors import AblateError


class WriteError(AblateError, OSError):
    """A file could not be written; the message names it and says why."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error) or type(error).__name__
        super().__init__(error.errno, f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[1])


def write_file_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:  # make the rename itself durable
            os.fsync(directory)
        finally:
            os.close(directory)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(path, error) from error


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda handle: handle.write(text.encode()))


def write_parquet_atomic(table: object, path: Path) -> None:
    """Write a pyarrow table as Parquet, atomically."""
    import pyarrow.parquet as pq

    write_file_atomic(path, lambda handle: pq.write_table(table, handle))
