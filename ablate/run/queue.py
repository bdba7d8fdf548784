"""The Optuna study as the one trial queue, for every design and any number of hosts.

A grid, one-factor-at-a-time or fractional plan's (cell, seed) trials are enqueued once
(``enqueue_trial``, each with its number in the plan, cell and seed as user attributes) under a
lock that makes two ``ablate run`` started together enqueue each trial once; a sampler design's
new configurations are asked for under the same lock, so they stay within the trial budget. A
worker takes a waiting trial by moving it to RUNNING, which the storage does atomically: on an
RDB storage (PostgreSQL, MySQL, SQLite) with a row lock, on the journal file with its own lock.

Liveness: on an RDB storage every running trial records a heartbeat; a trial whose heartbeat
stops for longer than the grace period (its worker was killed, frozen or cut off, on any host)
is failed and a copy goes back in the queue. On the journal file (one host) a running trial
whose worker process is gone is treated the same way. The copy continues from the trial's newest
checkpoint when the checkpoint folder is shared.

Only Optuna's public API is used: the queue keeps the storage object it built (Optuna wraps an
RDB storage in a cache of its own, so the study's storage is not the one to ask what kind it is),
and trials are found by number through ``get_trial_id_from_study_id_trial_number``. Optuna's
private attributes changed under this code once (heartbeats silently stopped on databases).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ablate.base.locks import is_stale, worker_id
from ablate.base.signals import deferred, raise_if_stopped
from ablate.params import column_value
from ablate.run.liveness import Liveness, is_database, storage_lock
from ablate.study.plan import PlannedTrial

WRITE_WAIT = 30.0  # seconds to wait for files another worker is writing after telling the storage

PLANNED = "trial"  # user attribute: the trial's number in the plan (its Parquet files' number)
FRESH = "fresh"  # user attribute: a sampler's new configuration (counts toward the budget)
WORKER = "worker"  # user attribute: host:pid of the worker training it
# A live worker names itself on a trial milliseconds after taking it; a nameless running trial
# this old on the journal file (one host, one clock) was left by a worker that died in between.
ORPHAN_SECONDS = 60
FINGERPRINT = "fingerprint"
REQUEUED_FROM = "requeued_from"  # system attribute: a copy's original trial number


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Put a copy of a trial whose worker died back in the queue (its parameters and
    attributes, the worker's own left out), for the next worker to continue."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k != WORKER}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=attrs,
            system_attrs={**trial.system_attrs, REQUEUED_FROM: trial.number},
        )
    )


class TrialQueue:
    """The queue of one study plan in its Optuna study."""

    def __init__(
        self, study: optuna.Study, storage: Any, fingerprint: str, lock_file: Path, liveness: Liveness
    ) -> None:
        """``storage``: the object :func:`make_storage` built and ``study`` was opened on."""
        self.study = study
        self.storage = storage
        self.fingerprint = fingerprint
        self.lock_file = lock_file
        self.liveness = liveness
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._ids: dict[int, int] = {}  # trial number -> storage id (they never change)

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial ``number``."""
        if number not in self._ids:
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return self._ids[number]

    @property
    def distributed(self) -> bool:
        """Whether workers on other hosts may share the queue (an RDB storage)."""
        return is_database(self.storage)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with storage_lock(self.storage, f"ablate:{self.study.study_name}", self.lock_file):
            yield

    def _mine(self, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
        return [
            t
            for t in self.study.get_trials(deepcopy=False, states=states)
            if t.user_attrs.get(FINGERPRINT) == self.fingerprint
        ]

    def queued(self) -> set[int]:
        """Plan trial numbers waiting or running now."""
        return _numbers(self._mine((TrialState.WAITING, TrialState.RUNNING)))

    def enqueue(
        self,
        trials: Iterable[PlannedTrial],
        distributions: Mapping[str, optuna.distributions.BaseDistribution],
        holding_lock: bool = False,
        set_aside: frozenset[tuple[int, int]] = frozenset(),
    ) -> int:
        """Put the planned trials that are neither waiting nor running in the queue, once
        however many workers do this at the same moment; returns how many it added. Pass
        ``holding_lock`` when the caller holds :meth:`locked` already, and ``set_aside``, the
        (trial, attempt) pairs whose files were set aside as unreadable."""
        with contextlib.nullcontext() if holding_lock else self.locked():
            present = self.queued() | self.being_written(set_aside)
            added = 0
            for planned in trials:
                if planned.index in present:
                    continue
                self.study.enqueue_trial(
                    {k: column_value(planned.levels[k]) for k in distributions if k in planned.levels},
                    user_attrs={
                        PLANNED: planned.index,
                        "cell": planned.cell,
                        "seed": planned.seed,
                        FINGERPRINT: self.fingerprint,
                    },
                )
                added += 1
        return added

    def being_written(self, set_aside: frozenset[tuple[int, int]] = frozenset()) -> set[int]:
        """Plan trial numbers another live worker told complete in the last ``WRITE_WAIT``
        seconds and may be writing the files of now. A worker tells the storage first and writes
        the files next, so a run that read the files in between saw none for the trial; queueing
        it again would train it twice (three runs started together on PostgreSQL did). Counted
        from now, not from when this queue opened: the telling can come before the opening.
        Told by this process or by a dead one of this host, told longer ago, or written and then
        set aside as damaged, a trial without files is queued again. The window also covers
        hosts whose clocks differ by less than it."""
        since, me = datetime.now() - timedelta(seconds=WRITE_WAIT), worker_id()
        found = set()
        for trial in self._mine((TrialState.COMPLETE,)):
            told, teller = trial.datetime_complete, str(trial.user_attrs.get(WORKER, ""))
            if told is None or told.replace(tzinfo=None) <= since or teller == me or is_stale(teller):
                continue
            number = int(trial.user_attrs[PLANNED])
            if (number, trial.user_attrs.get("attempt")) not in set_aside:
                found.add(number)
        return found

    def requeue(self, trial: FrozenTrial) -> None:
        requeue(self.study, trial)

    def frozen(self, trial: optuna.Trial) -> FrozenTrial:
        frozen: FrozenTrial = self.storage.get_trial(self.trial_id(trial.number))
        return frozen

    def give_back(self, trial: optuna.Trial) -> None:
        """End a trial this worker cannot finish (the run stops) and put a copy back in the
        queue, so that the next run takes it at once instead of waiting for it to go stale."""
        try:  # the copy first, so that the trial never looks missing in between
            self.requeue(self.frozen(trial))
            self.tell(trial, TrialState.FAIL, None, {"state": "interrupted"})
        except Exception:  # stopping anyway; the liveness check puts it back later
            pass

    def fail_stale(self) -> None:
        """Fail the running trials of dead workers and put copies back in the queue: by
        heartbeat on an RDB storage, by process on the journal file's one host, and on both a
        trial whose worker died before it could write its name (see :meth:`_orphaned`)."""
        if self.distributed:
            with warnings.catch_warnings():  # "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        for trial in self._mine((TrialState.RUNNING,)):
            dead = not self.distributed and is_stale(str(trial.user_attrs.get(WORKER, "")))
            if dead or self._orphaned(trial):
                with self.locked():
                    try:
                        if self.storage.set_trial_state_values(self.trial_id(trial.number), TrialState.FAIL):
                            self.requeue(trial)
                    except optuna.exceptions.UpdateFinishedTrialError:
                        pass  # another worker did it first

    def _orphaned(self, trial: FrozenTrial) -> bool:
        """A running trial without a worker's name, older than a live worker needs to write
        it: its worker died between the writes of :meth:`_owned` (SIGKILL; a Ctrl-C there
        waits). Nobody would ever finish it, and every later run would wait for
        it. On an RDB storage hosts' clocks differ, so the heartbeat's grace is the bound."""
        if WORKER in trial.user_attrs or trial.datetime_start is None:
            return False
        started = trial.datetime_start
        age = (datetime.now(started.tzinfo) - started).total_seconds()
        return age > (self.liveness.grace if self.distributed else ORPHAN_SECONDS)

    def take(self) -> optuna.Trial | None:
        """Move the first waiting trial of the plan to RUNNING and return it; None when none
        waits. Two workers never get the same trial: the storage refuses the second."""
        for frozen in self._mine((TrialState.WAITING,)):
            trial = self._owned(partial(self._start, frozen))
            if trial is not None:
                return trial
        return None

    def _start(self, frozen: FrozenTrial) -> optuna.Trial | None:
        """``frozen`` moved to RUNNING, or None when another worker took it first."""
        trial_id = self.trial_id(frozen.number)
        try:
            if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        return optuna.trial.Trial(self.study, trial_id)

    def _owned(self, start: Callable[[], optuna.Trial | None]) -> optuna.Trial | None:
        """The trial ``start`` moves to RUNNING, named as this worker's (and, on an RDB
        storage, with its first heartbeat). These are several writes: a Ctrl-C between them
        once left a running trial that no worker owned, and the next run waited for it
        forever. So the signal waits until the trial is owned, and then the trial goes back
        in the queue at once. (SIGKILL cannot wait: see :meth:`_orphaned`.)"""
        trial = None
        try:
            with deferred():
                trial = start()
                if trial is not None:
                    trial.set_user_attr(WORKER, worker_id())
                    if self.distributed:
                        self.storage.record_heartbeat(self.trial_id(trial.number))
        except KeyboardInterrupt:
            if trial is not None:
                self.give_back(trial)
            raise
        return trial

    def ask_fresh(
        self, budget: int, distributions: Mapping[str, optuna.distributions.BaseDistribution]
    ) -> optuna.Trial | None:
        """A sampler's next configuration, while fewer than ``budget`` were asked for; counting
        and asking hold the lock, so workers asking together cannot overshoot."""
        with self.locked():
            # A copy put back in the queue (an interrupted or dead worker's) is the same
            # configuration as its original: counted twice, it would cost the budget one.
            fresh = sum(
                1
                for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get(FRESH)
                and t.user_attrs.get(FINGERPRINT) == self.fingerprint
                and REQUEUED_FROM not in t.system_attrs
            )
            if fresh >= budget:
                return None
            return self._owned(lambda: self._ask(distributions))

    def _ask(self, distributions: Mapping[str, optuna.distributions.BaseDistribution]) -> optuna.Trial:
        with warnings.catch_warnings():  # ablate records the heartbeats itself (Heartbeat)
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask(dict(distributions))
        if PLANNED not in trial.user_attrs:  # not a copy the queue handed back meanwhile
            for key, value in ((FRESH, True), (PLANNED, trial.number), (FINGERPRINT, self.fingerprint)):
                trial.set_user_attr(key, value)
        return trial

    def recorded(self) -> set[int]:
        """Plan trial numbers whose result the storage already has (the Parquet files follow
        within moments: the storage is told first)."""
        return _numbers(self._mine((TrialState.COMPLETE,)))

    def running_elsewhere(self) -> list[FrozenTrial]:
        """The plan's trials other workers train now."""
        me = worker_id()
        return [t for t in self._mine((TrialState.RUNNING,)) if t.user_attrs.get(WORKER) != me]

    def tell(
        self, trial: optuna.Trial, state: TrialState, value: float | None, attrs: Mapping[str, Any]
    ) -> bool:
        """Record how an attempt ended, in Optuna's terms (``optuna.trial.TrialState``, never
        ablate's :class:`~ablate.events.AttemptState`); False when the trial was no longer this
        worker's (its heartbeat went silent and the queue gave it to another worker)."""
        if not isinstance(state, TrialState):  # ablate's own states once got here, and the
            # ValueError Optuna raised for them was taken for "finished elsewhere"
            raise TypeError(f"tell() takes optuna.trial.TrialState, not {state!r}")
        try:
            for key, attr in attrs.items():
                trial.set_user_attr(key, attr)
            # A pruned trial's value is its last reported one (Optuna takes it itself).
            self.study.tell(trial, value if state is TrialState.COMPLETE else None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        except ValueError:
            if self.frozen(trial).state.is_finished():  # "Cannot tell a FAIL trial"
                return False
            raise
        return True

    def wait(self, seconds: float | None = None) -> None:
        """Pause between looks at a queue whose trials all run elsewhere (or stop: a kill whose
        interrupt was swallowed would otherwise leave this worker waiting for them)."""
        raise_if_stopped()
        time.sleep(seconds if seconds is not None else min(5.0, self.liveness.heartbeat))


def _numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """The plan's trial numbers of ``trials`` (a sampler's trial is numbered right after it is
    asked for: one without its number yet is left out)."""
    return {int(t.user_attrs[PLANNED]) for t in trials if PLANNED in t.user_attrs}
