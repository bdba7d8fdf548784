"""Whether a running trial's worker is alive: heartbeats on a database, and a lock every
worker of a study shares."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ablate.base.locks import FileLock


@dataclass(frozen=True)
class Liveness:
    """How often a running trial proves it is alive, and how long silence means it is dead
    (RDB storages; seconds)."""

    heartbeat: int = 60
    grace: int = 300


def is_database(storage: Any) -> bool:
    """Whether ``storage`` (as :func:`make_storage` built it) is an RDB storage: workers on any
    host may share it, and its running trials prove they are alive by heartbeats."""
    return isinstance(storage, optuna.storages.RDBStorage)


@contextmanager
def storage_lock(storage: Any, name: str, fallback: Path) -> Iterator[None]:
    """A lock every worker of the study shares: a PostgreSQL advisory lock or a MySQL/MariaDB
    named lock for those servers (any host), else a lock file beside the study's results (one
    host)."""
    engine = getattr(storage, "engine", None)
    dialect = engine.dialect.name if engine is not None else ""
    if engine is not None and dialect in ("postgresql", "mysql", "mariadb"):
        from sqlalchemy import text

        with engine.connect() as connection:
            if dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name})
            else:
                connection.execute(text("SELECT GET_LOCK(:name, -1)"), {"name": name})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        return
    with FileLock(fallback):
        yield


class Heartbeat:
    """While a trial trains, a thread records its heartbeat every ``interval`` seconds."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="ablate-heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a transient database error: the next beat tries again
                pass
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if is_database(self.storage):
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
