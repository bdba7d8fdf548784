"""Ctrl-C and ``kill`` end a run the same way, but never in the middle of recording a result.

``ablate run`` turns SIGINT and SIGTERM into ``KeyboardInterrupt``: the running attempt is
recorded as interrupted and the run exits 130. While a finished attempt is being recorded
(its Parquet files, its Optuna trial: see :func:`deferred`), a signal waits until the record is
whole; an interrupt that landed inside Optuna's journal lock once left the run with a
``FileNotFoundError`` from the lock's clean-up instead of exit 130.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0  # how many deferred() blocks are open
_pending: int | None = None  # a signal that arrived inside one


def _stop(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_signals() -> None:
    """Install the handlers. A process started in the background by a non-interactive shell
    inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt: hence explicit."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(signal.Signals(signum).name)
