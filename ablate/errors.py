"""The error every command turns into one line and exit status 2."""

from __future__ import annotations


class RunError(RuntimeError):
    """The study cannot run as asked: the message names the file, line, folder or value at
    fault and says what to do."""


class SetupError(Exception):
    """An input a component needs is missing or unusable: a dataset that is neither on disk nor
    downloadable, a photo folder with one class, weights that cannot be fetched offline.

    Plugins raise it (or a subclass) with a message that says what to do. Retrying cannot help,
    so ``ablate run`` stops with that message (exit status 2) instead of failing every trial.
    """


# A worker whose device failed exits with this status; ``ablate run --workers`` starts a fresh
# process in its place (EX_TEMPFAIL: "try again").
DEVICE_LOST_EXIT = 75


class DeviceLost(Exception):
    """The training device failed in a way that outlives the trial (a CUDA error is sticky:
    every later call in the process fails). The attempt is recorded; the worker stops, and a
    fresh process takes its place."""
