"""ablate's errors and exit statuses, in one place.

Every failure a user can cause (a bad study file or ``--set``, a missing dataset, an unusable
folder or storage, a damaged file) raises an :class:`AblateError` whose message names the thing
and says what to do; the command line prints it as one line and exits with
``ExitCode.BAD_INPUT``, for every command (:mod:`ablate.cli.app`), plugin commands included.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DEVICE_LOST_EXIT", "AblateError", "DeviceLost", "ExitCode", "RunError", "SetupError"]


class ExitCode(IntEnum):
    """The statuses ``ablate`` exits with (the table in docs/cli.md)."""

    OK = 0  # every planned trial has a result (or other live workers are training the rest)
    TRIALS_MISSING = 1  # some trials failed all their attempts, or still have no result
    BAD_INPUT = 2  # bad input or an unusable folder, storage or device: one line says which
    DEVICE_LOST = 75  # the training device failed for good in this process: run it again
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished trials are saved


class AblateError(Exception):
    """The root of every error a user can cause; its message is the line the user reads."""


class RunError(AblateError, RuntimeError):
    """The study cannot run as asked: the message names the file, line, folder or value at
    fault and says what to do."""


class SetupError(AblateError):
    """An input a component needs is missing or unusable: a dataset that is neither on disk nor
    downloadable, a photo folder with one class, weights that cannot be fetched offline.

    Plugins raise it (or a subclass) with a message that says what to do. Retrying cannot help,
    so ``ablate run`` stops with that message (exit status 2) instead of failing every trial.
    """


# A worker whose device failed exits with this status; ``ablate run --workers`` starts a fresh
# process in its place (EX_TEMPFAIL: "try again").
DEVICE_LOST_EXIT = ExitCode.DEVICE_LOST


class DeviceLost(Exception):
    """The training device failed in a way that outlives the trial (a CUDA error is sticky:
    every later call in the process fails). The attempt is recorded; the worker stops, and a
    fresh process takes its place."""
