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
