"""Atomic file writes: a reader never sees half a file, and a crash never leaves one.

Every file ablate writes (results tables, checkpoints, ``study.json``, the decode cache, plots)
goes to a temporary name in its own folder, is fsynced, and is renamed into place; the folder is
fsynced too, so the rename itself survives a power cut. A write that fails (a full disk, a
read-only folder) raises :class:`WriteError`, which names the file, and leaves nothing behind.

Where results live in an object store, ablate works in a local mirror of them
(:mod:`ablate.store.remote`): every file written or removed under a mirror's root is put into
(or deleted from) the store here, in the one function every writer goes through, so that no
writer can forget to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from ablate.errors import AblateError


class WriteError(AblateError, OSError):
    """A file could not be written; the message names it and says why."""

    def __init__(self, path: Path | str, error: OSError) -> None:  # str: an object store's address
        reason = error.strerror or str(error) or type(error).__name__
        super().__init__(error.errno, f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[1])


class RecordChanged(Exception):
    """A record (a JSON file of choices) changed in the store since this process read it:
    another process decided first. Read the record again."""


class Mirror(Protocol):
    """A local folder whose files are kept in an object store too."""

    def put(self, path: Path) -> None:
        """Store the file at ``path`` (under the mirror's root) under its key."""

    def remove(self, path: Path) -> None:
        """Delete the file or folder ``path``'s objects from the store."""

    def fetch(self, path: Path) -> None:
        """Bring the store's files under ``path`` (a file or folder) into the mirror."""

    def check_writable(self, path: Path) -> None:
        """Raise, naming the store, where it refuses writes under ``path``."""

    def address(self, path: Path) -> str:
        """Where ``path`` is kept in the store (``s3://bucket/prefix/...``), for messages."""


_mirrors: dict[Path, Mirror] = {}


def mirror_into(root: Path, mirror: Mirror) -> None:
    """Put every file written under ``root`` from now on into ``mirror`` too."""
    _mirrors[root.resolve()] = mirror


def mirror_of(path: Path) -> Mirror | None:
    """The mirror whose root holds ``path``, if any."""
    if not _mirrors:
        return None
    resolved = path.resolve()
    for root, mirror in _mirrors.items():
        if resolved.is_relative_to(root):
            return mirror
    return None


def shown(path: Path) -> str:
    """``path`` as a user knows it: its object-store address where it is mirrored."""
    mirror = mirror_of(path)
    return mirror.address(path) if mirror is not None else str(path)


def fetch(path: Path) -> None:
    """Where ``path`` is in a mirror, bring what other hosts stored under it into the mirror."""
    mirror = mirror_of(path)
    if mirror is not None:
        mirror.fetch(path)


def remove_tree(path: Path) -> None:
    """Delete a file or folder, here and in its mirror's store."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    mirror = mirror_of(path)
    if mirror is not None:
        mirror.remove(path)


def write_file_atomic(path: Path, write: Callable[[BinaryIO], object], mirrored: bool = True) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it into place; then,
    under a mirror's root, store it there (``mirrored=False``: a file just fetched from it)."""
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
    mirror = mirror_of(path) if mirrored else None
    if mirror is not None:
        mirror.put(path)


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda handle: handle.write(text.encode()))


def write_parquet_atomic(table: object, path: Path) -> None:
    """Write a pyarrow table as Parquet, atomically."""
    import pyarrow.parquet as pq

    write_file_atomic(path, lambda handle: pq.write_table(table, handle))
