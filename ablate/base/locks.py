"""Who a worker is, whether a worker of this host is still alive, and a lock file for short
critical steps that the processes of one host share.

A lock is a file created with O_EXCL (atomic on local and NFSv3+ file systems) holding
``host:pid``. A lock whose process is gone (same host, pid not alive) is stale and is taken
over: a worker killed with SIGKILL inside a critical step blocks nobody for long.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import TracebackType


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


class FileLock:
    """``with FileLock(path): ...`` holds ``path`` (waiting for it); a dead holder's lock is
    taken over, and the lock is removed on leaving."""

    def __init__(self, path: Path, poll_seconds: float = 0.02) -> None:
        self.path = path
        self.poll_seconds = poll_seconds

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._take():
            time.sleep(self.poll_seconds)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if self.path.read_text().strip() == worker_id():
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _take(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = self.path.read_text().strip()
            except FileNotFoundError:
                return False  # released meanwhile: try again
            if owner and is_stale(owner):
                self.path.unlink(missing_ok=True)
            return False
        with os.fdopen(handle, "w") as lock:
            lock.write(worker_id())
        return True
