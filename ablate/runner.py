"""Run a study plan: check it, put its missing trials in the queue, and train from the queue
until it is empty.

The Parquet ``trials`` table is the record of what is done: a trial is done once it has a
``complete`` or ``diverged`` row of the study's plan, so re-running a study trains only what is
missing and never a finished trial twice. The Optuna study is the queue every worker takes its
trials from, on this host or any other (see :mod:`ablate.queue`); one loop serves every design:
take a trial (or, for a sampler design, ask for a new one within the budget), resolve it once,
train, record (see :mod:`ablate.attempt`).

Before anything is written, the plan is checked against the installed components
(:mod:`ablate.validation`) and the device is opened; then the results folder must be writable
and must hold no other plan (:mod:`ablate.folder`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
import torch

from ablate.allocator import keep_freed_memory
from ablate.atomic import WriteError
from ablate.attempt import AttemptContext, provenance, run_attempt
from ablate.config import TrialSetup
from ablate.dataset_cache import DatasetCache
from ablate.discovery import Plugins
from ablate.errors import DeviceLost, RunError
from ablate.events import AttemptState
from ablate.folder import FolderError, StudyFolder
from ablate.identity import DataGuard, fixed_threads
from ablate.optuna_storage import StorageError, distribution, open_study
from ablate.queue import FINGERPRINT, PLANNED, Heartbeat, Liveness, TrialQueue, fixed
from ablate.report.metrics import format_half_width, is_accuracy
from ablate.results import ResultsWriter
from ablate.study import PlannedTrial, StudyPlan, cell_name
from ablate.validation import Locate, ParamColumns, resolve_located, validate_plan

__all__ = ["RunError", "RunOptions", "RunSummary", "Runner", "pick_device"]

WRITE_WAIT = 30.0  # seconds to wait for files another worker is writing after telling the storage


class Progress(Protocol):
    """What the runner tells a progress display besides the plugin events."""

    def begin(self, total: int, done: int) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    results_dir: Path = Path("results")
    device: str = "auto"
    storage: str | None = None
    data_dir: Path | None = None
    retries: int = 1
    retry_failed: bool = False  # try again trials that used up their retries in earlier runs
    liveness: Liveness = Liveness()
    join: bool = False  # `ablate worker`: take trials from an existing study, enqueue nothing
    threads: int | None = None  # --threads as given (None: the folder's count, else torch's)


@dataclass
class RunSummary:
    """What a run did, and what the folder holds at its end."""

    total: int
    done_before: int
    completed: list[int] = field(default_factory=list)  # trained to completion by this run
    diverged: list[int] = field(default_factory=list)  # diverged in this run (a result)
    pruned: list[int] = field(default_factory=list)  # stopped early by a sampler's pruner
    failed: list[int] = field(default_factory=list)  # failed every attempt it was given
    not_retried: list[int] = field(default_factory=list)  # failed in earlier runs; left alone
    done_after: int = 0  # trials of the plan with a result at the end, whoever trained them
    elsewhere: int = 0  # trials that other live workers were training when this run ended

    @property
    def trained(self) -> int:
        return len(self.completed) + len(self.diverged) + len(self.pruned)

    @property
    def by_others(self) -> int:
        """Trials that other runs sharing the folder finished while this one ran."""
        return max(0, self.done_after - self.done_before - self.trained)


def device_kind(requested: str) -> str:
    """The kind of device ``requested`` names ('cuda', 'mps', 'cpu'), without starting CUDA:
    the parent of ``--workers`` checks it, and holding a CUDA context of its own would take
    memory on GPU 0 for the whole study."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise RunError(f"device {requested!r} is not usable here ({error}); pass --device auto or "
                       "cpu") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RunError(f"device {requested!r} is not usable here ({torch.cuda.device_count()} CUDA "
                       "GPUs visible); pass --device auto or cpu")
    return device.type


def pick_device(requested: str) -> tuple[Any, str]:
    """The torch device for ``requested`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps') and why."""
    import torch

    if requested != "auto":
        try:
            device = torch.device(requested)
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunError(f"device {requested!r} is not usable here ({reason}); pass --device "
                           "auto or cpu") from None
        return device, f"{device} (asked for)"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"cuda: {torch.cuda.get_device_name(0)} (auto)"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps"), "mps (auto)"
    return torch.device("cpu"), f"cpu, {torch.get_num_threads()} threads (auto: no CUDA or MPS)"


def selects_on_test_set(plan: StudyPlan, setups: list[TrialSetup]) -> str | None:
    """What of this plan would select on the test set (a sampler, a plateau scheduler), when
    its trials have no validation split; None when nothing does."""
    if any(setup.settings["val_size"] for setup in setups):
        return None
    chooses = []
    if plan.sampled and plan.metric == "test_acc":
        chooses.append(f"the {plan.design.name} sampler tunes on test accuracy")  # type: ignore[union-attr]
    if any(setup.scheduler.component.name == "plateau" for setup in setups):
        chooses.append("the plateau scheduler steps on test accuracy")
    return "; ".join(chooses) or None


class Runner:
    """Checks one study plan, queues its missing trials and trains from the queue."""

    def __init__(self, plan: StudyPlan, options: RunOptions, plugins: Plugins,
                 log: Callable[[str], None] = print, progress: Progress | None = None,
                 locate: Locate = lambda key, value: "") -> None:
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
        self.writer = ResultsWriter(self.folder, log)
        self.distributions = {k: distribution(f) for k, f in plan.factors.items()}

    @property
    def study_dir(self) -> Path:
        return self.folder.root

    def validate(self) -> ParamColumns:
        """Resolve every planned trial before any training, so a typo fails in seconds."""
        return validate_plan(self.plan, self.plugins.registry, self.locate)

    def prepare(self, columns: ParamColumns) -> TrialQueue:
        """Make the folder ready for this plan: writable, holding no other plan, its damaged
        files set aside, the Optuna study open and ``study.json`` written (with the trials
        table's column of each factor); returns the study's trial queue."""
        fingerprint = self.plan.fingerprint()
        try:
            self.folder.prepare()
            self.folder.check_plan(fingerprint, self.plan.preset, self.writer.fingerprints())
            self.writer.check_files()
            study, storage = open_study(self.plan, self.folder, self.options.storage, self.log,
                                        self.options.liveness, create=not self.options.join)
            self.folder.write_description({**self.plan.describe(), "columns": {
                factor: columns.column(factor) for factor in self.plan.factors}})
        except (FolderError, StorageError, WriteError) as error:
            raise RunError(str(error)) from None
        return TrialQueue(study, storage, self.plan.fingerprint(), self.folder.claims / "queue.lock",
                          self.options.liveness)

    def fix_threads(self, default: int) -> int:
        """Train this folder's CPU trials with its recorded thread count (the first run's:
        ``--threads``, else ``default``), and say so when that is not what this run would
        have used (see :mod:`ablate.identity`)."""
        threads, existed = fixed_threads(self.folder, self.options.threads, default)
        if existed and threads != default:
            self.log(f"threads: {threads} per trial, as this folder's trials computed "
                     f"({self.folder.threads_record}): on a CPU the count changes the numbers")
        torch.set_num_threads(threads)
        return threads

    def recorded_data(self) -> dict[str, set[str]]:
        return self.writer.data_fingerprints(self.plan.fingerprint())

    def finished(self) -> set[int]:
        """The plan's trials that have a result (complete or diverged)."""
        return self.writer.finished_trials(self.plan.fingerprint())

    def planned(self, active: int | None = None) -> list[PlannedTrial]:
        """The plan's trials of its first ``active`` seeds (all of them by default)."""
        if active is None or self.plan.seed_rule is None:
            return list(self.plan.trials)
        cells = len(self.plan.trials) // len(self.plan.seeds)
        return [t for t in self.plan.trials if t.index // cells < active]

    def active_seeds(self, queue: TrialQueue | None = None) -> int:
        """How many seeds are in play: all of them, or under a seed rule its start and every
        seed already added (a seed with any attempt, queued or recorded trial)."""
        rule = self.plan.seed_rule
        if rule is None:
            return len(self.plan.seeds)
        cells = len(self.plan.trials) // len(self.plan.seeds)
        used = set(self.writer.attempts())
        if queue is not None:
            used |= {t for t in queue.queued() | queue.recorded() if t is not None}
        return max(rule.min, max((t // cells for t in used), default=-1) + 1)

    def total(self, queue: TrialQueue | None = None) -> int:
        return self.plan.size if self.plan.sampled else len(self.planned(self.active_seeds(queue)))

    def count_done(self, finished: set[int], queue: TrialQueue | None = None) -> int:
        if self.plan.sampled:
            return min(len(finished), self.plan.size)
        return sum(t.index in finished for t in self.planned(self.active_seeds(queue)))

    def widest_interval(self) -> float | None:
        """The widest 95 % half-width of the comparisons the study's question makes on its
        metric, from the results so far (in the metric's own units); None when none can be
        measured yet."""
        from ablate.report import ReportError, analyse_folder

        try:
            report, _ = analyse_folder(self.folder.root, self.plan.metric)
        except ReportError:
            return None
        widths = [f.estimate.half_width(0.95) for f in report.findings
                  if f.family and f.estimate is not None]
        known = [w for w in widths if w is not None]
        return max(known) if known and len(known) == len(widths) else None

    def add_seed(self, queue: TrialQueue) -> bool:
        """Under a seed rule, with every trial of the seeds in play finished: queue one more
        seed of every cell while the widest interval is wider than the target, up to the cap.
        The rule looks at widths only, never at whether an effect looks significant."""
        rule = self.plan.seed_rule
        if rule is None:
            return False
        with queue.locked():
            active = self.active_seeds(queue)
            if active >= rule.max or not {t.index for t in self.planned(active)} <= self.finished():
                return False
            widest = self.widest_interval()
            target = rule.halfwidth / 100 if is_accuracy(self.plan.metric) else rule.halfwidth
            if widest is not None and widest <= target:
                self.log(f"seeds: the widest 95% interval on {self.plan.metric} is "
                         f"+-{format_half_width(self.plan.metric, widest)}, within the target "
                         f"+-{rule.halfwidth:g}, after {active} seeds: done")
                return False
            cells = len(self.plan.trials) // len(self.plan.seeds)
            queue.enqueue([t for t in self.plan.trials if t.index // cells == active],
                          self.distributions, holding_lock=True)
            shown = "not measurable yet" if widest is None else (
                f"+-{format_half_width(self.plan.metric, widest)}")
            self.log(f"seeds: the widest 95% interval on {self.plan.metric} is {shown} (target "
                     f"+-{rule.halfwidth:g}) after {active} seeds: adding seed {active + 1} of at "
                     f"most {rule.max}")
            return True

    def enqueue(self, queue: TrialQueue, summary: RunSummary) -> None:
        """Queue the planned trials that have no result, unless they used up their retries in
        earlier runs (then only with ``retry_failed``). A sampler design queues nothing: it
        asks as it goes, and its history must be in the storage."""
        attempts = self.writer.attempts()
        if self.plan.sampled:
            mine = [t for t in queue.study.get_trials(deepcopy=False)
                    if t.user_attrs.get(FINGERPRINT) == self.plan.fingerprint()]
            if self.finished() and not mine:
                raise RunError(
                    f"the Optuna storage {self.options.storage or self.folder.journal} holds none "
                    f"of the sampled trials in {self.folder.root}: a sampler cannot go on without "
                    "its history. Restore that storage, or start afresh in another --results-dir")
            return
        finished, eligible = self.finished(), []
        for planned in self.planned(self.active_seeds(queue)):
            if planned.index in finished:
                continue
            failures = sum(a.state is AttemptState.FAIL for a in attempts.get(planned.index, []))
            if failures > self.options.retries and not self.options.retry_failed:
                summary.not_retried.append(planned.index)
                continue
            eligible.append(planned)
        queue.enqueue(eligible, self.distributions)

    def run(self) -> RunSummary:
        columns = self.validate()
        device, why = pick_device(self.options.device)  # before anything is written
        queue = self.prepare(columns)
        summary = RunSummary(self.total(queue), self.count_done(self.finished(), queue))
        if not self.options.join:
            self.enqueue(queue, summary)
        if summary.done_before >= summary.total and not self.add_seed(queue):
            summary.done_after = summary.done_before
            return summary
        if self.plan.seed_rule is not None:
            rule = self.plan.seed_rule
            self.log(f"seeds: from {rule.min}, one more at a time while the widest 95% interval on "
                     f"{self.plan.metric} is wider than +-{rule.halfwidth:g}, up to {rule.max}")
        self.log(f"device: {why}")
        setups = [resolve_located(t.params, self.plugins.registry, self.locate)
                  for t in self.plan.trials] or [
            resolve_located(self.plan.baseline, self.plugins.registry, self.locate)]
        on_test = selects_on_test_set(self.plan, setups)
        if on_test:
            self.log(f"note: no validation split, so {on_test}; set val_size (images held out of "
                     "the training split) to select on validation accuracy instead")
        if device.type == "cpu":
            keep_freed_memory()
            self.fix_threads(torch.get_num_threads())
        elif self.options.threads:
            torch.set_num_threads(self.options.threads)  # the host side of a GPU's trials
        if self.progress is not None:
            self.progress.begin(summary.total, summary.done_before)
        ctx = AttemptContext(self.plan, self.plugins, self.folder, self.writer, queue, columns,
                             device, DatasetCache(device, self.options.data_dir, self.log,
                                                  DataGuard(self.folder, self.recorded_data)),
                             self.options.results_dir, self.locate, self.log,
                             provenance(self.plan, self.plugins, device))
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
                    raise DeviceLost(f"the training device failed after trial "
                                     f"{trial.user_attrs.get(PLANNED)} ({ctx.device_lost})")
            elif queue.running_elsewhere():
                queue.wait()
            elif queue.recorded() - self.finished():
                # Another worker has told the storage and is writing the files now; a worker
                # that died in between leaves them missing, and the next run queues them again.
                writing_since = writing_since or time.monotonic()
                if time.monotonic() - writing_since > WRITE_WAIT:
                    return
                queue.wait(0.2)
            elif not self.add_seed(queue):
                return

    def _planned(self, trial: optuna.Trial) -> PlannedTrial:
        """The plan's trial the queue handed over, its parameters recorded in Optuna."""
        index = int(trial.user_attrs[PLANNED])
        if not self.plan.sampled:
            fixed(trial, self.distributions)
            return self.plan.trials[index]
        levels = fixed(trial, self.distributions)
        if self.plan.configure is not None:
            levels.update(self.plan.configure(trial))
        params = {**self.plan.baseline, **levels}
        resolve_located(params, self.plugins.registry, self.locate)
        seed = self.plan.seeds[index % len(self.plan.seeds)]
        return PlannedTrial(index, cell_name(levels), levels, params, seed)

    def _train(self, trial: optuna.Trial, ctx: AttemptContext, summary: RunSummary) -> None:
        try:
            planned = self._planned(trial)
        except RunError:
            ctx.queue.tell(trial, optuna.trial.TrialState.FAIL, None, {"state": "invalid"})
            raise
        records = self.writer.attempts(planned.index).get(planned.index, [])
        if any(r.state.is_result and r.fingerprint == self.plan.fingerprint() for r in records):
            ctx.queue.tell(trial, optuna.trial.TrialState.FAIL, None, {"state": "duplicate"})
            return
        failures = sum(r.state is AttemptState.FAIL for r in records)
        attempt = max((r.attempt for r in records), default=0) + 1
        # A trial may fail retries + 1 times; --retry-failed grants it as many again.
        retry = failures % (self.options.retries + 1) < self.options.retries
        with Heartbeat(ctx.queue.storage, ctx.queue.trial_id(trial.number),
                       self.options.liveness.heartbeat):
            outcome = run_attempt(ctx, planned, attempt, trial, retry)
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
