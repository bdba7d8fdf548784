"""The ``ablate`` console script: Ctrl-C and ``kill`` act the same from its first moment.

The handlers go in before anything else is imported; a Ctrl-C 0.3 s after start landed inside
``import torch`` and ended in a ``KeyboardInterrupt`` traceback with exit status 1, and a run
started in the background by a script (SIGINT inherited as ignored) ignored SIGINT for its first
seconds and obeyed it later. Imports and loading run with the signal held (``deferred``): an
exception raised in the middle of a library's import leaves it half-initialised (numpy then
failed with RecursionError, or the interrupt was lost and the run went on), so the interrupt
acts once the loading step is whole. Every moment ends the same way: status 130.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from ablate.base.signals import deferred, interrupt_on_signals

        # Installed with the signal held: a Ctrl-C between the SIGINT handler and the SIGTERM
        # one raised from inside signal.signal, outside any handler (a traceback, status 1).
        with deferred():
            interrupt_on_signals()
            from ablate import cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    cli.main()
