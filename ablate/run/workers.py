"""``ablate run --workers N``: N worker processes share one study on this machine.

Each worker is an ordinary ``ablate run`` process: it pays imports, device start-up and dataset
loading once, then trains trial after trial, taking each one from the study's queue (see
:mod:`ablate.run.queue`) so no trial runs twice. On a CPU each worker gets its share of the
cores. This process only starts them, shows the study's progress from the results folder, and
forwards Ctrl-C. On Linux a worker gets SIGTERM when this process dies, even by SIGKILL, so
none trains on unwatched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ablate.base.signals import raise_if_stopped
from ablate.errors import DEVICE_LOST_EXIT
from ablate.run.gpus import VISIBLE
from ablate.train.placement import SHARING_ENV

PR_SET_PDEATHSIG = 1  # from linux/prctl.h
MAX_RESPAWNS = 3  # fresh processes per worker slot after its device failed


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _end_with_parent() -> None:
    """In the child, before it runs: ask Linux for SIGTERM when the parent process dies (a
    SIGTERM ends a worker like Ctrl-C: its running attempt is recorded as interrupted)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: workers outlive a killed parent, as any child process would


def run_workers(
    arguments: Sequence[str],
    workers: int,
    count_done: Callable[[], int],
    total: int,
    console: Console,
    threads: int | None = None,
    pinned: Sequence[str] | None = None,
) -> int:
    """Start ``workers`` processes of ``ablate run ARGUMENTS``; returns the worst exit status.
    ``pinned``: each worker's ``CUDA_VISIBLE_DEVICES`` (see :mod:`ablate.run.gpus`)."""
    threads = threads or threads_per_worker(workers)
    command = [
        sys.executable,
        "-m",
        "ablate",
        "run",
        *arguments,
        "--workers",
        "1",
        "--threads",
        str(threads),
        "--quiet",
    ]
    on_linux = sys.platform.startswith("linux")
    # Each worker knows how many share its device (it budgets its share of the memory) and
    # how many compile threads are its share of the cores.
    compile_threads = str(max(1, (os.cpu_count() or 1) // workers))
    shared = {
        "TORCHINDUCTOR_COMPILE_THREADS": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", compile_threads)
    }
    if pinned is None:
        environments = [{**os.environ, **shared, SHARING_ENV: str(workers)}] * workers
    else:
        environments = [
            {**os.environ, **shared, VISIBLE: gpu, SHARING_ENV: str(pinned.count(gpu))} for gpu in pinned
        ]

    def start(environment: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            env=environment,
            preexec_fn=_end_with_parent if on_linux else None,
        )

    children = [start(environment) for environment in environments]
    respawned = [0] * workers
    where = "" if pinned is None else f", on GPUs {', '.join(pinned)}"
    console.print(f"{workers} workers, {threads} threads each{where}", highlight=False)
    progress = Progress(
        TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    task = progress.add_task("trials", total=total)
    try:

        def busy() -> bool:  # a worker still runs, or one whose device failed is to be replaced
            return any(
                child.poll() is None or (child.poll() == DEVICE_LOST_EXIT and respawned[slot] < MAX_RESPAWNS)
                for slot, child in enumerate(children)
            )

        with progress:
            while busy():
                raise_if_stopped()
                for slot, child in enumerate(children):
                    # A worker whose device failed recorded its trial and stopped: a fresh
                    # process (a new CUDA context) takes its place, a few times at most.
                    if child.poll() == DEVICE_LOST_EXIT and respawned[slot] < MAX_RESPAWNS:
                        respawned[slot] += 1
                        progress.console.print(
                            f"worker {slot + 1}: its device failed; a fresh worker takes its place",
                            highlight=False,
                        )
                        children[slot] = start(environments[slot])
                progress.update(task, completed=min(count_done(), total))
                time.sleep(1.0)
            progress.update(task, completed=min(count_done(), total))
    except KeyboardInterrupt:
        for child in children:  # each worker records its running attempt and stops
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            child.wait()
        return 130
    return max(child.returncode for child in children)
