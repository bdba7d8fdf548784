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
    from ablate.base.signals import deferred, interrupt_on_signals

    interrupt_on_signals()
    try:
        with deferred():
            from ablate import cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    cli.main()
