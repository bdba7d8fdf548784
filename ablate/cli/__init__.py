"""Stage 8, the command line: thin Typer commands over the stages (:mod:`.app` holds the app
and its one way out; :mod:`.train` the commands that train, :mod:`.inspect` those that read,
:mod:`.options` the training options declared once, :mod:`.plan` a study file to its plan)."""

from ablate.cli import inspect, train  # noqa: F401  (registers the commands)
from ablate.cli.app import app, main

__all__ = ["app", "main"]
