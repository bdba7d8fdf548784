"""Ctrl-C and ``kill`` end a run the same way, but never in the middle of recording a result.

``ablate run`` turns SIGINT and SIGTERM into ``KeyboardInterrupt``: the running attempt is
recorded as interrupted and the run exits 130. While a finished attempt is being recorded
(its Parquet files, its Optuna trial: see :func:`deferred`), a signal waits until the record is
whole; an interrupt that landed inside Optuna's journal lock once left the run with a
``FileNotFoundError`` from the lock's clean-up instead of exit 130.

A handler raises at whatever bytecode is running. When that is a weakref callback or a
``__del__`` (an import's module-lock clean-up, once), Python prints "Exception ignored ... Traceback"
and goes on: a SIGTERM did nothing and the run trained to the end. So a signal is also
remembered, the training loop and a waiting worker ask :func:`raise_if_stopped` between steps, and
such a swallowed interrupt is not printed.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_depth = 0  # how many deferred() blocks are open
_pending: int | None = None  # a signal that arrived inside one
_requested: int | None = None  # a signal whose interrupt was raised (and may have been swallowed)
_chained_hook: Callable[[Any], object] | None = None  # sys.unraisablehook before ours


def _stop(signum: int, frame: FrameType | None) -> None:
    global _pending, _requested
    if _depth:
        _pending = signum
        return
    _requested = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _unraisable(info: Any) -> None:
    """Our interrupt, swallowed in a callback or destructor, is not news: the run stops at its
    next :func:`raise_if_stopped`. Everything else goes to the hook that was there before."""
    if isinstance(info.exc_value, KeyboardInterrupt) and _requested is not None:
        return
    (_chained_hook or sys.__unraisablehook__)(info)


def interrupt_on_signals() -> None:
    """Install the handlers. A process started in the background by a non-interactive shell
    inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt: hence explicit.
    A command starts with no stop requested."""
    global _requested, _chained_hook
    _requested = None
    if sys.unraisablehook is not _unraisable:
        _chained_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def raise_if_stopped() -> None:
    """Raise the interrupt of a signal that has arrived, in case the handler's own raise was
    swallowed (see the module's doc). Cheap: the training loop calls it every batch."""
    if _requested is not None:
        raise KeyboardInterrupt(signal.Signals(_requested).name)


@contextmanager
def interrupting() -> Iterator[None]:
    """:func:`interrupt_on_signals` for one block, for a caller that goes on after it (a test
    that sends itself a signal, a notebook): the handlers and the hook that were there come back
    at its end, and a signal that arrived inside is forgotten."""
    global _requested
    handlers, hook = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)), sys.unraisablehook
    interrupt_on_signals()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
        sys.unraisablehook, _requested = hook, None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them."""
    global _depth, _pending, _requested
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            _requested = signum
            raise KeyboardInterrupt(signal.Signals(signum).name)
