"""Claims on trials, so that several workers share one study without training a trial twice.

A claim is a file created with O_EXCL (atomic on local and NFSv3+ file systems) holding
``host:pid``. A claim whose process is gone (same host, pid not alive) is stale and is taken
over: a worker killed with SIGKILL does not block its trial forever.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(owner: str) -> bool:
    """Whether ``host:pid`` names a process of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


class Claims:
    """The claim files of one study, one per trial number, and a lock for short critical steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, trial: int) -> Path:
        return self.folder / f"trial-{trial:05d}.claim"

    def acquire(self, trial: int) -> bool:
        """Claim ``trial``; False when a live worker holds it."""
        return self._take(self.path(trial))

    def release(self, trial: int) -> None:
        self._give_back(self.path(trial))

    def held(self) -> set[int]:
        """The trials that live workers (this one included) hold now."""
        held = set()
        for path in self.folder.glob("trial-*.claim"):
            try:
                owner = path.read_text().strip()
            except FileNotFoundError:
                continue  # released while listing
            if not is_stale(owner):
                held.add(int(path.stem.removeprefix("trial-")))
        return held

    def clear_stale(self) -> None:
        """Remove the claims and locks of dead workers of this host (a SIGKILL leaves them)."""
        for path in [*self.folder.glob("trial-*.claim"), *self.folder.glob("*.lock")]:
            try:
                owner = path.read_text().strip()
            except FileNotFoundError:
                continue
            if is_stale(owner):
                path.unlink(missing_ok=True)

    @contextmanager
    def locked(self, name: str, poll_seconds: float = 0.02) -> Iterator[None]:
        """Hold the study-wide lock ``name`` (waiting for it); a dead holder's lock is taken over."""
        path = self.folder / f"{name}.lock"
        while not self._take(path):
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            self._give_back(path)

    def _take(self, path: Path) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after removing a stale claim
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = path.read_text().strip()
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if owner == worker_id() or not is_stale(owner):
                    return owner == worker_id()
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w") as claim:
                claim.write(worker_id())
            return True
        return False

    @staticmethod
    def _give_back(path: Path) -> None:
        try:
            if path.read_text().strip() == worker_id():
                path.unlink()
        except FileNotFoundError:
            pass
