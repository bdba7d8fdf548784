"""Run a study plan: check it, put its missing trials in the queue, and train from the queue
until it is empty.

The Parquet ``trials`` table is the record of what is done: a trial is done once it has a
``complete`` or ``diverged`` row of the study's plan, so re-running a study trains only what is
missing and never a finished trial twice. The Optuna study is the queue every worker takes its
trials from, on this host or any other (see :mod:`ablate.run.queue`); one loop serves every design:
take a trial (or, for a sampler design, ask for a new one within the budget), train it, record
it (see :mod:`ablate.run.attempt`); a seed rule adds seeds as the answer needs them
(:mod:`ablate.run.seeds`).

Before anything is written, the plan is checked against the installed components, each trial
resolved once (:mod:`ablate.components.validate`), and the device is opened
(:mod:`ablate.run.device`); then the results folder must be writable and must hold no other
plan (:mod:`ablate.store.folder`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from ablate.base.atomic import RecordChanged, WriteError, fetch
from ablate.components.discovery import Plugins
from ablate.components.setup import TrialSetup
from ablate.components.validate import (
    CheckedPlan,
    Locate,
    refuse_selection_on_test_set,
    resolve_located,
    validate_plan,
)
from ablate.errors import DeviceLost, RunError
from ablate.events import AttemptState
from ablate.run.attempt import AttemptContext, run_attempt
from ablate.run.device import pick_device
from ablate.run.interface import Progress, RunOptions, RunSummary
from ablate.run.liveness import Heartbeat
from ablate.run.paths import schedule_for
from ablate.run.provenance import provenance
from ablate.run.queue import FINGERPRINT, PLANNED, WRITE_WAIT, TrialQueue
from ablate.run.storage import StorageError, distribution, fixed, open_study
from ablate.store.folder import FolderError, StudyFolder
from ablate.store.identity import DataGuard, fixed_threads
from ablate.store.tables import ResultsStore
from ablate.study.plan import PlannedTrial, StudyPlan, cell_name
from ablate.train.allocator import keep_freed_memory
from ablate.train.datasets import DatasetCache

__all__ = ["RunError", "RunOptions", "RunSummary", "Runner"]


class Runner:
    """Checks one study plan, queues its missing trials and trains from the queue."""

    def __init__(
        self,
        plan: StudyPlan,
        options: RunOptions,
        plugins: Plugins,
        log: Callable[[str], None] = print,
        progress: Progress | None = None,
        locate: Locate = lambda key, value: "",
    ) -> None:
        self.plan = plan
        self.options = options
        self.plugins = plugins
        self.log = log
        self.progress = progress
        self.locate = locate
        try:
            self.folder = StudyFolder.of(options.results_dir, plan.name)
        except FolderError as error:
            raise RunError(str(error)) from None
        self.store = ResultsStore(self.folder, log)
        self.distributions = {k: distribution(f) for k, f in plan.factors.items()}
        self.schedule = schedule_for(plan, self.store, self.distributions, log)
        self.checked: CheckedPlan | None = None

    @property
    def study_dir(self) -> Path:
        return self.folder.root

    def validate(self) -> CheckedPlan:
        """Resolve every planned trial before any training, so a typo fails in seconds; each
        trial's setup is kept and handed to the attempt that trains it."""
        checked = validate_plan(self.plan, self.plugins.registry, self.locate)
        refuse_selection_on_test_set(self.plan, checked)
        self.checked = checked
        return checked

    def prepare(self, checked: CheckedPlan) -> TrialQueue:
        """Make the folder ready for this plan: writable, holding no other plan, its damaged
        files set aside, the Optuna study open and ``study.json`` written (with the trials
        table's column of each factor); returns the study's trial queue."""
        fingerprint = self.plan.fingerprint()
        try:
            self.folder.prepare()
            self.folder.check_plan(fingerprint, self.plan.preset, self.store.fingerprints())
            self.store.check_files()
            study, storage = open_study(
                self.plan,
                self.folder,
                self.options.storage,
                self.log,
                self.options.liveness,
                create=not self.options.join,
            )
            description = {
                **self.plan.describe(),
                "columns": {factor: checked.columns.column(factor) for factor in self.plan.factors},
            }
            while True:
                try:
                    self.folder.write_description(description)
                    break
                except RecordChanged:  # another machine wrote it meanwhile (an object store)
                    fetch(self.folder.description_file)
                    self.folder.check_plan(fingerprint, self.plan.preset, self.store.fingerprints())
        except (FolderError, StorageError, WriteError) as error:
            raise RunError(str(error)) from None
        return TrialQueue(
            study, storage, self.plan.fingerprint(), self.folder.claims / "queue.lock", self.options.liveness
        )

    def fix_threads(self, default: int) -> int:
        """Train this folder's CPU trials with its recorded thread count (the first run's:
        ``--threads``, else ``default``), and say so when that is not what this run would
        have used (see :mod:`ablate.store.identity`)."""
        threads = fixed_threads(self.folder, self.options.threads, default, self.log)
        torch.set_num_threads(threads)
        return threads

    def recorded_data(self) -> dict[str, set[str]]:
        return self.store.data_fingerprints(self.plan.fingerprint())

    def finished(self) -> set[int]:
        """The plan's trials that have a result (complete or diverged)."""
        return self.store.finished_trials(self.plan.fingerprint())

    def total(self, queue: TrialQueue | None = None) -> int:
        return self.plan.size if self.plan.sampled else len(self.schedule.in_play(queue))

    def count_done(self, finished: set[int], queue: TrialQueue | None = None) -> int:
        if self.plan.sampled:
            return min(len(finished), self.plan.size)
        return sum(t.index in finished for t in self.schedule.in_play(queue))

    def grow(self, queue: TrialQueue) -> bool:
        """Queue what the schedule adds once the trials in play are finished (a seed, a path's
        next look); False when it adds nothing."""
        attempts = self.store.attempts()
        grown = self.schedule.grow(queue, self.finished, lambda index: self._can_train(attempts, index))
        if grown and self.progress is not None:  # the bar's total grows with the plan in play
            self.progress.begin(self.total(queue), self.count_done(self.finished(), queue))
        return grown

    def _can_train(self, attempts: dict[int, list[Any]], index: int) -> bool:
        """Whether a trial may be queued: not when it used up its retries in earlier runs
        (unless ``retry_failed``)."""
        failures = sum(a.state is AttemptState.FAIL for a in attempts.get(index, []))
        return failures <= self.options.retries or self.options.retry_failed

    def enqueue(self, queue: TrialQueue, summary: RunSummary) -> None:
        """Queue the planned trials that have no result, unless they used up their retries in
        earlier runs (then only with ``retry_failed``). A sampler design queues nothing: it
        asks as it goes, and its history must be in the storage."""
        attempts = self.store.attempts()
        if self.plan.sampled:
            mine = [
                t
                for t in queue.study.get_trials(deepcopy=False)
                if t.user_attrs.get(FINGERPRINT) == self.plan.fingerprint()
            ]
            if self.finished() and not mine:
                raise RunError(
                    f"the Optuna storage {self.options.storage or self.folder.journal} holds none "
                    f"of the sampled trials in {self.folder.root}: a sampler cannot go on without "
                    "its history. Restore that storage, or start afresh in another --results-dir"
                )
            return
        finished, eligible = self.finished(), []
        for planned in self.schedule.in_play(queue):
            if planned.index in finished:
                continue
            if not self._can_train(attempts, planned.index):
                summary.not_retried.append(planned.index)
                continue
            eligible.append(planned)
        queue.enqueue(eligible, self.distributions, set_aside=self.store.set_aside_attempts())

    def run(self) -> RunSummary:
        checked = self.validate()
        device, why = pick_device(self.options.device)  # before anything is written
        queue = self.prepare(checked)
        summary = RunSummary(self.total(queue), self.count_done(self.finished(), queue))
        if not self.options.join:
            self.enqueue(queue, summary)
        if summary.done_before >= summary.total and not self.grow(queue):
            summary.done_after = summary.done_before
            return summary
        if self.plan.seed_rule is not None:
            rule = self.plan.seed_rule
            self.log(
                f"seeds: from {rule.min}, one more at a time while the widest simultaneous "
                f"interval on {self.plan.metric} is wider than +-{rule.halfwidth:g}, up to {rule.max}"
            )
        self.log(f"device: {why}")
        if device.type == "cpu":
            keep_freed_memory()
            self.fix_threads(torch.get_num_threads())
        elif self.options.threads:
            torch.set_num_threads(self.options.threads)  # the host side of a GPU's trials
        if self.progress is not None:
            self.progress.begin(summary.total, summary.done_before)
        ctx = AttemptContext(
            self.plan,
            self.plugins,
            self.folder,
            self.store,
            queue,
            checked.columns,
            device,
            DatasetCache(device, self.options.data_dir, self.log, DataGuard(self.folder, self.recorded_data)),
            self.options.results_dir,
            self.locate,
            self.log,
            provenance(self.plan, self.plugins, device),
        )
        try:
            self._work(queue, ctx, summary)
        finally:
            summary.elsewhere = len({t.user_attrs.get(PLANNED) for t in queue.running_elsewhere()})
            summary.total = self.total(queue)
            summary.done_after = self.count_done(self.finished(), queue)
        return summary

    def _work(self, queue: TrialQueue, ctx: AttemptContext, summary: RunSummary) -> None:
        """Take trials until the queue is empty and no other worker trains one of the plan (a
        trial whose worker dies goes back in the queue)."""
        writing_since: float | None = None
        while True:
            queue.fail_stale()
            trial = queue.take()
            if trial is None and self.plan.sampled:
                trial = queue.ask_fresh(self.plan.size, self.distributions)
            if trial is not None:
                self._train(trial, ctx, summary)
                if ctx.device_lost is not None:  # recorded; a fresh process goes on
                    raise DeviceLost(
                        f"the training device failed after trial "
                        f"{trial.user_attrs.get(PLANNED)} ({ctx.device_lost})"
                    )
            elif queue.running_elsewhere():
                queue.wait()
            elif queue.recorded() - self.finished():
                # Another worker has told the storage and is writing the files now; a worker
                # that died in between leaves them missing, and the next run queues them again.
                writing_since = writing_since or time.monotonic()
                if time.monotonic() - writing_since > WRITE_WAIT:
                    return
                queue.wait(0.2)
            elif not self.grow(queue) and not queue.queued():
                # Another worker may have queued the next seed or round a moment ago (this
                # one's grow then adds nothing): those trials are taken, not left behind.
                return

    def _planned(self, trial: optuna.Trial) -> tuple[PlannedTrial, TrialSetup]:
        """The plan's trial the queue handed over, its parameters recorded in Optuna, and its
        setup: checked before the run began, or for a sampled trial resolved here, once."""
        index = int(trial.user_attrs[PLANNED])
        if not self.plan.sampled:
            fixed(trial, self.distributions)
            checked = self.checked or self.validate()
            return self.plan.trials[index], checked.trials[index]
        levels = fixed(trial, self.distributions)
        if self.plan.configure is not None:
            levels.update(self.plan.configure(trial))
        params = {**self.plan.baseline, **levels}
        setup = resolve_located(params, self.plugins.registry, self.locate)
        seed = self.plan.seeds[index % len(self.plan.seeds)]
        return PlannedTrial(index, cell_name(levels), levels, params, seed), setup

    def _train(self, trial: optuna.Trial, ctx: AttemptContext, summary: RunSummary) -> None:
        try:
            planned, setup = self._planned(trial)
        except RunError:
            ctx.queue.tell(trial, optuna.trial.TrialState.FAIL, None, {"state": "invalid"})
            raise
        records = self.store.attempts(planned.index).get(planned.index, [])
        if any(r.state.is_result and r.fingerprint == self.plan.fingerprint() for r in records):
            ctx.queue.tell(trial, optuna.trial.TrialState.FAIL, None, {"state": "duplicate"})
            return
        failures = sum(r.state is AttemptState.FAIL for r in records)
        attempt = max((r.attempt for r in records), default=0) + 1
        # A trial may fail retries + 1 times; --retry-failed grants it as many again.
        retry = failures % (self.options.retries + 1) < self.options.retries
        with Heartbeat(ctx.queue.storage, ctx.queue.trial_id(trial.number), self.options.liveness.heartbeat):
            outcome = run_attempt(ctx, planned, setup, attempt, trial, retry)
        if not outcome.recorded:
            return
        if outcome.state is AttemptState.COMPLETE:
            summary.completed.append(planned.index)
        elif outcome.state is AttemptState.DIVERGED:  # a result of these settings: never retried
            summary.diverged.append(planned.index)
        elif outcome.state is AttemptState.PRUNED:  # a result of the search: never retried
            summary.pruned.append(planned.index)
        elif outcome.state is AttemptState.INTERRUPTED:
            raise KeyboardInterrupt
        elif retry:
            self.log(f"trial {planned.index} attempt {attempt} failed; retrying")
        else:
            self.log(f"trial {planned.index} attempt {attempt} failed")
            summary.failed.append(planned.index)
