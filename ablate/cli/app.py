"""The ``ablate`` command line: the Typer app, its consoles and its one way out.

Every command, a plugin's too, is registered through :class:`AblateApp`, which turns an
:class:`~ablate.errors.AblateError` into one line on stderr and exit status 2; Ctrl-C and SIGTERM
end a command with status 130 (a run records its running trial first). The commands themselves
live beside this module: :mod:`ablate.cli.train` (run, worker) and :mod:`ablate.cli.inspect`
(status, plugins, list, report).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ablate.base.signals import deferred, interrupt_on_signals
from ablate.errors import AblateError, ExitCode

# Messages are never hard-wrapped (paths stay whole, output stays grep-able); tables piped to a
# file get a width that fits them rather than rich's default 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
INTERRUPTED = (
    "interrupted: finished trials are saved; run the same command again to train only the missing ones"
)
_said_interrupted = False  # whether a command printed INTERRUPTED itself


def fail(message: str, code: int = ExitCode.BAD_INPUT) -> NoReturn:
    """End the command with ``message`` as one line on stderr (``error: ...``) and ``code``."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def say_interrupted() -> typer.Exit:
    """Print INTERRUPTED once; returns the Exit(130) to raise."""
    global _said_interrupted
    if not _said_interrupted:
        err.print(INTERRUPTED)
        _said_interrupted = True
    return typer.Exit(ExitCode.INTERRUPTED)


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with every :class:`AblateError` ended as one line and status 2."""

    @functools.wraps(command)  # Typer reads the signature through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AblateError as error:
            fail(str(error))

    return run


class AblateApp(typer.Typer):
    """A Typer app whose every command maps ablate's errors to one line and status 2."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda function: register(one_line_errors(function))


app = AblateApp(
    help="Run ablation studies of image classifiers and report what each factor does.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_plugin_commands_added = False


def with_plugin_commands() -> typer.Typer:
    """The app with the commands plugins add (``lr-range``, ``new-plugin``, third parties')."""
    from ablate.components import discovery

    global _plugin_commands_added
    if not _plugin_commands_added:
        discovery.get_plugins().emit("register_commands", app=app)
        _plugin_commands_added = True
    return app


def main() -> None:
    """The command line (its console script is :func:`ablate.entry.main`, which holds Ctrl-C
    from the first moment). Plugin commands are added before Typer parses, unless the command
    is one of the core's (they need no plugin loaded to start)."""
    import ablate.cli  # noqa: F401  (registers the core commands)

    interrupt_on_signals()  # (already, through the console script; not under python -c)
    try:
        core = {
            command.name or command.callback.__name__
            for command in app.registered_commands
            if command.callback is not None
        }
        if len(sys.argv) > 1 and sys.argv[1] not in core:
            with deferred():
                with_plugin_commands()
        app()
    except KeyboardInterrupt:  # outside a command (loading, parsing)
        _leave_interrupted()
    except SystemExit as leaving:
        if leaving.code != ExitCode.INTERRUPTED:
            raise
        _leave_interrupted()


def _leave_interrupted() -> None:
    """Say so (unless the command did) and exit 130. Typer turns a KeyboardInterrupt outside
    a command's own handling (an import at its start, say) into a silent exit 130."""
    if not _said_interrupted:
        runs = len(sys.argv) > 1 and sys.argv[1] in ("run", "worker")
        err.print(INTERRUPTED if runs else "interrupted")
    _leave(ExitCode.INTERRUPTED)


def _leave(code: int) -> None:
    """Exit at once, once every thread that writes a file is done. A Ctrl-C that landed inside
    an import leaves CPython believing a KeyboardInterrupt went unhandled, and it would then end
    the process by SIGINT after a clean exit (status -2, not the documented 130)."""
    for thread in threading.enumerate():  # a checkpoint still being written finishes
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
