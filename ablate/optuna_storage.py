"""The Optuna side of a study: opening its storage safely and recording finished attempts.

Grid and one-factor-at-a-time trials are added as finished trials (``add_trial``), so they
never linger as RUNNING; sampler designs use ask/tell. Either way every attempt is in the
storage with its parameters, value and ``trial``/``attempt``/``seed`` attributes, for Optuna's
samplers and parameter importance.

The default storage is a journal file in the study's folder. A writer killed in the middle of
a line leaves a torn last line, which Optuna cannot read once another line follows it; that
tail is set aside in a file of its own (never deleted) before the journal is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from ablate.atomic import write_file_atomic
from ablate.claims import is_stale, worker_id
from ablate.events import TrialState
from ablate.folder import StudyFolder
from ablate.registry import column_value
from ablate.study import Choice, Range, StudyPlan

WORKER_ATTR = "worker"


class StorageError(RuntimeError):
    """The Optuna storage cannot be used for this study (the message says what to do)."""


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


def set_aside_torn_tail(journal: Path) -> Path | None:
    """Move a torn last line of ``journal`` (no newline at its end) to a side file.

    Holds the journal's own lock (the one Optuna's writers take), so a line another process is
    appending right now is never mistaken for a torn one. Returns the side file, or None.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    if not journal.is_file():
        return None
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


def open_study(plan: StudyPlan, folder: StudyFolder, storage_url: str | None,
               log: Callable[[str], None] = print) -> optuna.Study:
    """Create or load the study; refuse one made by a different plan; clean up dead workers."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = storage_url or str(folder.journal)
    sampler = make_sampler(plan.design.name, 0) if plan.sampled else None  # type: ignore[union-attr]
    try:
        storage: Any = storage_url
        if storage_url is None:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            side = set_aside_torn_tail(folder.journal)
            if side is not None:
                log(f"warning: {folder.journal} ended in a torn line (a writer was killed while "
                    f"writing it); the line was moved to {side} and the study goes on")
            storage = JournalStorage(JournalFileBackend(str(folder.journal)))
        study = optuna.create_study(study_name=plan.name, storage=storage, sampler=sampler,
                                    direction=plan.direction, load_if_exists=True)
    except StorageError:
        raise
    except Exception as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        if storage_url is None and folder.journal.is_file():
            bad = _first_bad_line(folder.journal)
            if bad is not None:
                raise StorageError(
                    f"{folder.journal}: line {bad} is not valid JSON, so Optuna cannot read the "
                    "study's journal. Move the file aside and run again: the Parquet tables are "
                    "the record of what is done, and ablate starts a new journal") from None
        raise StorageError(f"cannot open the Optuna storage {where}: {type(error).__name__}: "
                           f"{detail}") from None
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
            "--storage (or --results-dir for the default one), or delete that study.")
    _fail_stale(study)
    return study


def _fail_stale(study: optuna.Study) -> None:
    """Mark RUNNING trials of dead workers on this host as failed (killed processes)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if is_stale(str(trial.user_attrs.get(WORKER_ATTR, ""))):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def record_attempt(study: optuna.Study, plan: StudyPlan, trial: optuna.Trial | None, index: int,
                   attempt: int, levels: Mapping[str, Any], seed: int, state: TrialState,
                   value: float | None) -> None:
    """Record a finished attempt: tell an asked ``trial``, or add a finished one.

    Optuna knows no diverged state: a diverged trial is told as failed (samplers then avoid
    its region); its ``state`` attribute and the trials table say ``diverged``.
    """
    attrs = {"trial": index, "attempt": attempt, "seed": seed, "state": state.value,
             WORKER_ATTR: worker_id()}
    complete = state is TrialState.COMPLETE
    optuna_state = optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL
    if trial is not None:
        for key, attr in attrs.items():
            trial.set_user_attr(key, attr)
        study.tell(trial, value if complete else None, state=optuna_state)
        return
    distributions = {k: distribution(f) for k, f in plan.factors.items() if k in levels}
    study.add_trial(optuna.trial.create_trial(
        params={k: column_value(levels[k]) for k in distributions},
        distributions=distributions, user_attrs=attrs, state=optuna_state,
        value=value if complete else None))
