"""``ablate status``: how a study stands, from its queue (the Optuna study) and its results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ablate.analysis.load import design_kind
from ablate.base.atomic import mirror_of, shown
from ablate.base.locks import is_stale
from ablate.errors import AblateError
from ablate.events import AttemptState
from ablate.run.liveness import Liveness
from ablate.run.queue import FINGERPRINT, PLANNED, WORKER
from ablate.run.storage import make_storage, storage_problem
from ablate.store.folder import FolderError, StudyFolder, study_path
from ablate.store.tables import ResultsStore


class StatusError(AblateError):
    """The folder or the storage cannot be read (the message says which and why)."""


@dataclass(frozen=True)
class Status:
    name: str
    preset: str
    planned: int
    storage: str
    counts: dict[str, int]
    running: list[tuple[str, str, str, str, str]]  # trial, attempt, worker, running for, heartbeat
    notes: list[str]  # files it could not read (left where they are: status only reads)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    return f"{seconds // 60}m {seconds % 60:02d}s ago" if seconds >= 60 else f"{seconds}s ago"


def _heartbeats(storage: Any) -> dict[int, datetime]:
    """Trial id -> its last heartbeat, from an RDB storage's heartbeat table."""
    engine = getattr(storage, "engine", None)
    if engine is None:
        return {}
    from sqlalchemy import text

    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT trial_id, heartbeat FROM trial_heartbeats"))
            return {int(trial_id): beat for trial_id, beat in rows}
    except Exception:  # an older schema or no table yet: no heartbeats to show
        return {}


def study_status(study_dir: Path, storage_url: str | None) -> Status:
    try:
        folder = StudyFolder(study_path(study_dir))
        description = folder.read_description()
    except FolderError as error:
        raise StatusError(str(error)) from None
    if description is None:
        raise StatusError(
            f"{shown(folder.root)} has no study.json: is it a study's results folder "
            "(<results-dir>/<study>) that `ablate run` started?"
        )
    name, fingerprint = description["name"], description.get("fingerprint")
    where = storage_url or str(folder.journal)
    if storage_url is None and not folder.journal.is_file():
        if mirror_of(folder.root) is not None:  # the journal never goes to the store
            raise StatusError(
                f"{shown(folder.root)} keeps no queue in the object store (without --storage, the "
                "Optuna journal stays on the host that ran the study): pass the study's --storage "
                "URL, or run `ablate status` there"
            )
        raise StatusError(f"{folder.journal} does not exist: pass the study's --storage URL")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = make_storage(storage_url, folder.journal, Liveness())
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StatusError(f"the Optuna storage {where} has no study {name!r}") from None
    except Exception as error:
        raise StatusError(storage_problem(where, error)) from None
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(FINGERPRINT) == fingerprint]
    waiting = {t.user_attrs.get(PLANNED) for t in mine if t.state == TrialState.WAITING}
    running = [t for t in mine if t.state == TrialState.RUNNING]
    # On the journal file (one host) a worker whose process is gone holds its trial until the
    # next run puts it back: it is not running. (On a database its silent heartbeat says so.)
    gone = {t.number for t in running if storage_url is None and is_stale(str(t.user_attrs.get(WORKER, "")))}
    notes: list[str] = []
    attempts = ResultsStore(folder, log=notes.append, read_only=True).attempts()
    results = {
        trial: [a.state for a in records]
        for trial, records in attempts.items()
        if any(a.fingerprint == fingerprint for a in records)
    }
    complete = {t for t, states in results.items() if AttemptState.COMPLETE in states}
    diverged = {t for t, states in results.items() if AttemptState.DIVERGED in states} - complete
    failed = {t for t, states in results.items() if AttemptState.FAIL in states} - complete - diverged
    busy = waiting | {t.user_attrs.get(PLANNED) for t in running}
    planned = int(description.get("trials") or 0)
    counts = {
        "waiting": len(waiting),
        "running": len(running) - len(gone),
        "abandoned": len(gone),
        "complete": len(complete),
        "diverged": len(diverged),
        "failed": len(failed - busy),
        "missing": max(0, planned - len(complete | diverged | failed | busy)),
    }
    if design_kind(description) == "path":
        notes.append(
            f"a path: {planned} trials at most; its race stops candidates that fall behind, so "
            "'missing' counts what it would train at most, not what it will"
        )
    beats, now = _heartbeats(storage), datetime.now()
    study_id = storage.get_study_id_from_name(name)
    rows = [
        (
            str(t.user_attrs.get(PLANNED)),
            str(
                max((a.attempt for a in attempts.get(int(t.user_attrs.get(PLANNED, -1)), [])), default=0) + 1
            ),
            str(t.user_attrs.get(WORKER, "?"))
            + (" (gone: the next run puts it back)" if t.number in gone else ""),
            _ago(t.datetime_start, now).removesuffix(" ago"),
            _ago(beats.get(storage.get_trial_id_from_study_id_trial_number(study_id, t.number)), now),
        )
        for t in sorted(running, key=lambda t: t.number)
    ]
    return Status(name, description.get("preset", ""), planned, where, counts, rows, notes)
