"""The Optuna side of a study: its storage, opened safely (see :mod:`ablate.run.queue` for how
workers share it).

The default storage is a journal file in the study's folder, whose appends finish before a
signal acts. A writer killed in the middle of a line leaves a torn last line, which Optuna
cannot read once another line follows it; that tail is set aside in a file of its own (never
deleted) before the journal is opened. A database (PostgreSQL, MySQL/MariaDB, SQLite) is an
RDB storage with heartbeats, whose stale trials go back in the queue.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ablate.base.atomic import write_file_atomic
from ablate.base.signals import deferred
from ablate.errors import AblateError
from ablate.params import column_value
from ablate.run.liveness import Liveness
from ablate.run.queue import requeue
from ablate.store.folder import StudyFolder
from ablate.study.factors import Choice, Range
from ablate.study.plan import StudyPlan


class StorageError(AblateError, RuntimeError):
    """The Optuna storage cannot be used for this study (the message says what to do)."""


# The Python module a storage URL's driver lives in -> what installs it.
DRIVERS = {
    "psycopg": "pip install 'ablate[postgres]'",
    "psycopg2": "pip install 'ablate[postgres]'",
    "pymysql": "pip install 'ablate[mysql]'",
    "MySQLdb": "pip install mysqlclient, or write mysql+pymysql:// and pip install 'ablate[mysql]'",
}


def storage_problem(where: str, error: BaseException) -> str:
    """One line saying why the storage ``where`` cannot be opened, naming a missing driver with
    the command that installs it."""
    cause = error if isinstance(error, ModuleNotFoundError) else error.__cause__
    if isinstance(error, ImportError) and isinstance(cause, ModuleNotFoundError) and cause.name:
        module = cause.name.split(".")[0]
        return (
            f"the Optuna storage {where} needs the database driver {module!r}, which is not "
            f"installed: {DRIVERS.get(module, f'pip install {module}')}"
        )
    detail = str(error).splitlines()[0] if str(error) else ""
    return f"cannot open the Optuna storage {where}: {type(error).__name__}: {detail}"


def distribution(factor: Choice | Range) -> optuna.distributions.BaseDistribution:
    if isinstance(factor, Choice):
        return optuna.distributions.CategoricalDistribution([column_value(v) for v in factor.values])
    if factor.integer:
        return optuna.distributions.IntDistribution(int(factor.low), int(factor.high), log=factor.log)
    return optuna.distributions.FloatDistribution(factor.low, factor.high, log=factor.log)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }
    return samplers[name]()


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a sampler design: ``median`` stops a trial whose value at an epoch is
    below the median of earlier trials at that epoch (after 5 trials and 1 epoch), ``hyperband``
    runs successive halving from 1 epoch to all of them."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


def set_aside_torn_tail(journal: Path) -> Path | None:
    """Move a torn last line of ``journal`` (no newline at its end) to a side file.

    Holds the journal's own lock (the one Optuna's writers take), so a line another process is
    appending right now is never mistaken for a torn one, and holds Ctrl-C until the lock is
    given back (see :class:`SignalSafeJournal`). Returns the side file, or None.
    """
    if not journal.is_file():
        return None
    with deferred():
        return _set_aside_locked(journal)


def _set_aside_locked(journal: Path) -> Path | None:
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        data = journal.read_bytes()
        if not data or data.endswith(b"\n"):
            return None
        keep = data.rfind(b"\n") + 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        side = journal.with_name(f"{journal.name}.torn-{stamp}")
        write_file_atomic(side, lambda handle: handle.write(data[keep:]))
        with journal.open("r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        return side
    finally:
        lock.release()


def _first_bad_line(journal: Path) -> int | None:
    """The number of the first line of ``journal`` that is not JSON, or None."""
    with journal.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                json.loads(line)
            except ValueError:
                return number
    return None


def open_study(
    plan: StudyPlan,
    folder: StudyFolder,
    storage_url: str | None,
    log: Callable[[str], None] = print,
    liveness: Liveness | None = None,
    create: bool = True,
) -> tuple[optuna.Study, Any]:
    """Create (or, with ``create`` False, only load) the study; refuse one of another plan.
    Returns the study and the storage object it was opened on (see :mod:`ablate.run.queue`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = storage_url or str(folder.journal)
    sampler = make_sampler(plan.design.name, 0) if plan.sampled else None  # type: ignore[union-attr]
    try:
        if storage_url is None:
            side = set_aside_torn_tail(folder.journal)
            if side is not None:
                log(
                    f"warning: {folder.journal} ended in a torn line (a writer was killed while "
                    f"writing it); the line was moved to {side} and the study goes on"
                )
        storage = make_storage(storage_url, folder.journal, liveness or Liveness())
        pruner = make_pruner(plan.pruner, int(plan.baseline.get("epochs", 10)))
        if create:
            study = optuna.create_study(
                study_name=plan.name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=plan.direction,  # type: ignore[arg-type]
                load_if_exists=True,
            )
        else:
            try:
                study = optuna.load_study(
                    study_name=plan.name, storage=storage, sampler=sampler, pruner=pruner
                )
            except KeyError:
                raise StorageError(
                    f"the Optuna storage {where} has no study {plan.name!r} to "
                    f"join: start it with `ablate run STUDY --storage URL`"
                ) from None
    except StorageError:
        raise
    except Exception as error:
        if storage_url is None and folder.journal.is_file():
            bad = _first_bad_line(folder.journal)
            if bad is not None:
                raise StorageError(
                    f"{folder.journal}: line {bad} is not valid JSON, so Optuna cannot read the "
                    "study's journal. Move the file aside and run again: the Parquet tables are "
                    "the record of what is done, and ablate starts a new journal"
                ) from None
        raise StorageError(storage_problem(where, error)) from None
    fingerprint = plan.fingerprint()
    recorded = study.user_attrs.get("fingerprint")
    if recorded is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("preset", plan.preset)
    elif recorded != fingerprint:
        raise StorageError(
            f"the Optuna storage {where} holds study {plan.name!r} of another plan (preset "
            f"{study.user_attrs.get('preset')!r}, fingerprint {recorded}; now preset "
            f"{plan.preset!r}, fingerprint {fingerprint}). Results must not mix: pass another "
            "--storage (or --results-dir for the default one), or delete that study."
        )
    return study, storage


class SignalSafeJournal(JournalFileBackend):
    """Optuna's journal file, whose appends finish before Ctrl-C or ``kill`` acts.

    Optuna's lock clean-up renames the lock file and then deletes the renamed file; an
    interrupt landing before the rename made the delete fail, so the run ended in a
    ``FileNotFoundError`` (exit 2) instead of exit 130, and a ``KeyboardInterrupt`` while
    waiting for the lock released another process's. Holding the signal (``deferred``) for the
    milliseconds of an append closes both, and SIGINT or SIGTERM never tears a line. (Waiting
    out a dead writer's lock takes up to Optuna's 30-second grace; a signal waits with it.)
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with deferred():
            super().append_logs(logs)


def make_storage(url: str | None, journal: Path, liveness: Liveness) -> Any:
    """The journal file in the study's folder (default), or the RDB storage ``url`` names,
    with heartbeats and stale trials put back in the queue."""
    if url is None:
        return JournalStorage(SignalSafeJournal(str(journal)))
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=liveness.heartbeat,
                    grace_period=liveness.grace,
                    heartbeat_stale_trial_callback=requeue,
                )
        except ImportError:  # a missing driver: no retry can help
            raise
        except Exception:
            # Workers started together on a new database race to create its tables; the
            # losers find them made on the next try.
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def fixed(
    trial: optuna.Trial, distributions: Mapping[str, optuna.distributions.BaseDistribution]
) -> dict[str, Any]:
    """The trial's factor levels: an enqueued trial's fixed parameters, recorded in Optuna as
    parameters of its distributions."""
    levels = {}
    for name, dist in distributions.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            levels[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            levels[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, optuna.distributions.FloatDistribution):
            levels[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        else:
            raise TypeError(f"factor {name!r}: no suggestion for {type(dist).__name__}")
    return levels
