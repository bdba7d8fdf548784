"""Run a study plan: check it, then train every (cell, seed) trial that has no result yet.

The Parquet ``trials`` table is the record of what is done: a trial is done once it has a
``complete`` or ``diverged`` row of the study's plan, so re-running a study trains only what
is missing and never a finished trial twice. The Optuna study (a journal file in the study
folder by default) gets every finished attempt with its parameters and value, for samplers and
parameter importance.

Before anything is written, the plan is checked against the installed components
(:mod:`ablate.validation`) and the device is opened; then the results folder must be writable
and must hold no other plan (:mod:`ablate.folder`).
"""

from __future__ import annotations

import json
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import optuna

import ablate
from ablate import weights
from ablate.allocator import keep_freed_memory
from ablate.atomic import WriteError
from ablate.checkpoints import CheckpointStore
from ablate.claims import Claims, worker_id
from ablate.config import TrialSetup
from ablate.data import trial_classes
from ablate.dataset_cache import DatasetCache
from ablate.discovery import Plugins
from ablate.errors import RunError, SetupError
from ablate.events import EpochRecord, TrialInfo, TrialOutcome, TrialState
from ablate.folder import FolderError, StudyFolder
from ablate.optuna_storage import WORKER_ATTR, StorageError, distribution, open_study, record_attempt
from ablate.registry import column_value
from ablate.results import (
    ResultsWriter,
    class_table,
    epoch_table,
    final_metrics,
    trial_table,
)
from ablate.signals import deferred
from ablate.study import PlannedTrial, StudyPlan, cell_name
from ablate.validation import Locate, ParamColumns, resolve_located, validate_plan

__all__ = ["RunError", "RunOptions", "RunSummary", "Runner", "pick_device"]

BUDGET_LOCK = "sampled-budget"  # held while a worker counts a sampled design's trials and asks


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


@dataclass
class RunSummary:
    """What a run did, and what the folder holds at its end."""

    total: int
    done_before: int
    completed: list[int] = field(default_factory=list)  # trained to completion by this run
    diverged: list[int] = field(default_factory=list)  # diverged in this run (a result)
    failed: list[int] = field(default_factory=list)  # failed every attempt of this run
    not_retried: list[int] = field(default_factory=list)  # failed in earlier runs; left alone
    done_after: int = 0  # trials of the plan with a result at the end, whoever trained them
    elsewhere: int = 0  # trials that other live workers were training when this run ended

    @property
    def trained(self) -> int:
        return len(self.completed) + len(self.diverged)

    @property
    def by_others(self) -> int:
        """Trials that other runs sharing the folder finished while this one ran."""
        return max(0, self.done_after - self.done_before - self.trained)


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


def _git_revision(where: Path) -> str | None:
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                               text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def _error_text(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "".join(lines)[-4000:]


def objective(metric: str, setup: TrialSetup) -> str:
    """What Optuna is told: with a validation split, validation accuracy in place of the test
    accuracy, so a sampler never tunes on the test set."""
    return "val_acc" if metric == "test_acc" and setup.settings["val_size"] else metric


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
    """Checks one study plan and trains its missing trials."""

    def __init__(self, plan: StudyPlan, options: RunOptions, plugins: Plugins,
                 log: Callable[[str], None] = print, progress: Progress | None = None,
                 locate: Locate = lambda key, value: "") -> None:
        self.plan = plan
        self.options = options
        self.plugins = plugins
        self.log = log
        self.progress = progress
        self.locate = locate
        self.folder = StudyFolder.of(options.results_dir, plan.name)
        self.writer = ResultsWriter(self.folder, log)

    @property
    def study_dir(self) -> Path:
        return self.folder.root

    def validate(self) -> ParamColumns:
        """Resolve every planned trial before any training, so a typo fails in seconds."""
        return validate_plan(self.plan, self.plugins.registry, self.locate)

    def prepare(self, columns: ParamColumns) -> optuna.Study:
        """Make the folder ready for this plan: writable, holding no other plan, its damaged
        files set aside, the Optuna study open and ``study.json`` written (with the trials
        table's column of each factor)."""
        fingerprint = self.plan.fingerprint()
        try:
            self.folder.prepare()
            self.folder.check_plan(fingerprint, self.plan.preset, self.writer.fingerprints())
            self.writer.check_files()
            study = open_study(self.plan, self.folder, self.options.storage, self.log)
            self.folder.write_description({**self.plan.describe(), "columns": {
                factor: columns.column(factor) for factor in self.plan.factors}})
        except (FolderError, StorageError, WriteError) as error:
            raise RunError(str(error)) from None
        Claims(self.folder.claims).clear_stale()
        return study

    def finished(self) -> set[int]:
        """The plan's trials that have a result (complete or diverged)."""
        return self.writer.finished_trials(self.plan.fingerprint())

    def count_done(self, finished: set[int]) -> int:
        if self.plan.sampled:
            return min(len(finished), self.plan.size)
        return sum(t.index in finished for t in self.plan.trials)

    def run(self) -> RunSummary:
        columns = self.validate()
        device, why = pick_device(self.options.device)  # before anything is written
        study = self.prepare(columns)
        summary = RunSummary(self.plan.size, self.count_done(self.finished()))
        if summary.done_before >= summary.total:
            summary.done_after = summary.done_before
            return summary
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
        if self.progress is not None:
            self.progress.begin(summary.total, summary.done_before)
        claims = Claims(self.folder.claims)
        trainer = _Attempts(self, study, columns, device, summary)
        try:
            if self.plan.sampled:
                self._continue_sampled(trainer, claims)
                self._run_sampled(trainer, claims)
            else:
                self._run_planned(trainer, claims)
        finally:
            # Claims first: a trial another worker finishes in between then counts as finished,
            # never as missing. This run's own claims are released by now.
            held = claims.held()
            finished = self.finished()
            summary.done_after = self.count_done(finished)
            summary.elsewhere = len(held - finished)
        return summary

    # -- scheduling ------------------------------------------------------------------------

    def _run_planned(self, trainer: _Attempts, claims: Claims) -> None:
        """Grid, oat and fractional designs: every planned (cell, seed) trial without a result."""
        fingerprint = self.plan.fingerprint()
        for planned in self.plan.trials:
            if not claims.acquire(planned.index):
                continue  # another worker trains it now
            try:
                # Read its files now: another worker may have finished it since the start.
                records = self.writer.attempts(planned.index).get(planned.index, [])
                if any(r.state.is_result and r.fingerprint == fingerprint for r in records):
                    continue
                failures = sum(r.state is TrialState.FAIL for r in records)
                if failures > self.options.retries and not self.options.retry_failed:
                    trainer.summary.not_retried.append(planned.index)
                    continue
                trainer.train(planned, first=max((r.attempt for r in records), default=0) + 1)
            finally:
                claims.release(planned.index)

    def _budget_left(self, claims: Claims, finished: set[int]) -> bool:
        """Whether a sampled design has room for one more trial: the finished trials and those
        that live workers train now stay under its size. Call it holding the budget lock, so
        that workers asking at the same moment cannot overshoot together."""
        return len(finished | claims.held()) < self.plan.size

    def _continue_sampled(self, trainer: _Attempts, claims: Claims) -> None:
        """Finish sampled trials that a killed run left with checkpoints, budget permitting."""
        for folder in sorted(self.folder.checkpoint_root.glob("trial-*")):
            index = int(folder.name.split("-")[1])
            saved = CheckpointStore(folder, log=self.log).latest()
            meta = (saved or {}).get("meta", {})
            if meta.get("fingerprint") != self.plan.fingerprint():
                continue
            with claims.locked(BUDGET_LOCK):
                finished = self.finished()
                if (index in finished or not self._budget_left(claims, finished)
                        or not claims.acquire(index)):
                    continue  # finished, no room left, or another worker continues it
            try:
                params = json.loads(meta["params"])
                levels = {k: v for k, v in params.items() if k in self.plan.factors}
                records = self.writer.attempts(index).get(index, [])
                planned = PlannedTrial(index, meta["cell"], levels, params, meta["seed"])
                trainer.train(planned, first=max((r.attempt for r in records), default=0) + 1)
            finally:
                claims.release(index)

    def _run_sampled(self, trainer: _Attempts, claims: Claims) -> None:
        distributions = {k: distribution(f) for k, f in self.plan.factors.items()}
        failed = 0
        while failed < self.plan.size:  # a design whose every trial fails must still end
            with claims.locked(BUDGET_LOCK):
                if not self._budget_left(claims, self.finished()):
                    return
                trial = trainer.study.ask(distributions)
                claims.acquire(trial.number)
            try:
                trial.set_user_attr(WORKER_ATTR, worker_id())
                levels = dict(trial.params)
                if self.plan.configure is not None:
                    levels.update(self.plan.configure(trial))
                params = {**self.plan.baseline, **levels}
                seed = self.plan.seeds[trial.number % len(self.plan.seeds)]
                try:
                    resolve_located(params, self.plugins.registry, self.locate)
                except RunError:
                    trainer.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                planned = PlannedTrial(trial.number, cell_name(levels), levels, params, seed)
                state = trainer.train(planned, first=1, optuna_trial=trial)
                failed += not state.is_result
            finally:
                claims.release(trial.number)
        self.log(f"stopping: {failed} sampled trials failed in this run")


class _Attempts:
    """Trains one trial's attempts (retrying failures) and records each of them."""

    def __init__(self, runner: Runner, study: optuna.Study, columns: ParamColumns, device: Any,
                 summary: RunSummary) -> None:
        import torch

        self.runner = runner
        self.plan = runner.plan
        self.study = study
        self.columns = columns
        self.device = device
        self.summary = summary
        self.data = DatasetCache(device, runner.options.data_dir, runner.log)
        self.context = {
            "device": str(device), "torch_version": torch.__version__,
            "ablate_version": ablate.__version__,
            "plugin_versions": json.dumps({p.name: p.version
                                           for p in runner.plugins.loaded.values()}, sort_keys=True),
            # The revision of the project the study is run from (its working directory).
            "git_revision": _git_revision(Path.cwd()),
            "study_fingerprint": self.plan.fingerprint(), "preset": self.plan.preset,
        }

    def train(self, planned: PlannedTrial, first: int,
              optuna_trial: optuna.Trial | None = None) -> TrialState:
        """Attempt ``planned`` until it has a result or has used its retries."""
        retries, log = self.runner.options.retries, self.runner.log
        for attempt in range(first, first + retries + 1):
            state = self.attempt(planned, attempt, optuna_trial)
            optuna_trial = None  # a retry is recorded as a trial of its own
            if state is TrialState.COMPLETE:
                self.summary.completed.append(planned.index)
                return state
            if state is TrialState.DIVERGED:  # a result of these settings: never retried
                self.summary.diverged.append(planned.index)
                return state
            if state is TrialState.INTERRUPTED:
                raise KeyboardInterrupt
            log(f"trial {planned.index} attempt {attempt} failed"
                + ("; retrying" if attempt < first + retries else ""))
        self.summary.failed.append(planned.index)
        return TrialState.FAIL

    def attempt(self, planned: PlannedTrial, attempt: int,
                optuna_trial: optuna.Trial | None = None) -> TrialState:
        """Train one attempt, write its results and record it in the Optuna study (telling
        ``optuna_trial`` when a sampler asked for it); returns its state.

        A trial whose earlier attempt was interrupted or killed continues from its newest
        checkpoint. A failed attempt's checkpoints are dropped: its retry starts afresh.
        """
        from ablate.trainer import fit

        runner, index = self.runner, planned.index
        setup = resolve_located(planned.params, runner.plugins.registry, runner.locate)
        recorded = self.columns.record(setup)
        info = TrialInfo(self.plan.name, index, attempt, planned.seed, setup.settings["epochs"],
                         recorded, runner.folder.root)
        keys = {"study": self.plan.name, "trial": index, "attempt": attempt}
        started = datetime.now(timezone.utc)
        epochs: list[EpochRecord] = []
        result, error, state, data = None, None, TrialState.COMPLETE, None
        checkpoints = None
        if setup.settings["checkpoint_every"] > 0:
            checkpoints = CheckpointStore(runner.folder.checkpoints(index),
                                          setup.settings["keep_checkpoints"], runner.log)
        meta = {"trial": index, "seed": planned.seed, "cell": planned.cell,
                "fingerprint": self.plan.fingerprint(),
                "params": json.dumps({k: column_value(v) for k, v in planned.params.items()},
                                     sort_keys=True)}

        def epoch_done(record: EpochRecord) -> None:
            epochs.append(record)
            runner.plugins.emit("on_epoch_end", trial=info, epoch=record)

        runner.plugins.emit("on_trial_start", trial=info)
        keep = weights.kept(setup.settings["keep_weights"])
        try:
            data, device_data = self.data.get(setup)
            classes = trial_classes(data, setup.settings)
            start = weights.starting_weights(setup.settings["init"], setup.model.component.name,
                                             planned.seed, runner.options.results_dir, classes)
            result = fit(setup, device_data, len(classes), planned.seed, self.device, epoch_done,
                         checkpoints, meta, start, keep_best="best" in keep)
            if result.resumed_from:
                runner.log(f"trial {index} continued from its checkpoint after epoch "
                           f"{result.resumed_from}")
            if start is not None and result.fresh:
                runner.log(f"trial {index}: not in the starting weights {setup.settings['init']!r}, "
                           f"freshly initialised: {', '.join(result.fresh)}")
            if result.diverged:
                state = TrialState.DIVERGED
        except KeyboardInterrupt:
            state, error = TrialState.INTERRUPTED, "interrupted (KeyboardInterrupt or SIGTERM)"
        except WriteError as lost:  # a full disk or a read-only folder: not the trial's fault
            raise self._lost(index, attempt, lost) from None
        except SetupError as error:  # a missing dataset or weights file: no retry can help
            raise RunError(str(error)) from None
        except BaseException as exc:  # SystemExit too: recorded as a failed attempt; the study goes on
            state, error = TrialState.FAIL, _error_text(exc)
            runner.log(f"trial {index} attempt {attempt} raised {type(exc).__name__}: {exc}")
        history = list(result.epochs) if result else epochs
        metrics = final_metrics(history)
        row = {**keys, **self.context, **metrics, "state": state.value, "seed": planned.seed,
               "cell": planned.cell,
               "seconds": result.seconds if result else sum(e.seconds for e in epochs),
               "resumed_from_epoch": result.resumed_from if result else None,
               "precision": result.precision if result else None,
               "model_params": result.parameters if result else None,
               "data_fingerprint": data.fingerprint if data else None,
               "started_at": started, "error": error}
        class_rows = (class_table(keys, trial_classes(data, setup.settings), result.class_acc,
                                  result.confusion) if result and data and result.class_acc else None)
        # An interrupted attempt's epochs live on in its checkpoint; the attempt that continues
        # from there writes them, so every epoch of a trial is written once.
        epoch_rows = epoch_table(keys, history) if state is not TrialState.INTERRUPTED else None
        value = metrics.get(objective(self.plan.metric, setup)) if state is TrialState.COMPLETE else None
        try:
            # Ctrl-C waits until the attempt is recorded whole: its files, its checkpoints'
            # removal and its Optuna trial.
            with deferred():
                if state is TrialState.COMPLETE and result is not None and data is not None:
                    self._keep_weights(keep, result, row, setup, data, device_data, planned)
                runner.writer.write(index, attempt, trial_table(row, recorded, self.columns.types),
                                    epoch_rows, class_rows)
                if checkpoints is not None and state is not TrialState.INTERRUPTED:
                    checkpoints.clear()
                record_attempt(self.study, self.plan, optuna_trial, index, attempt, planned.levels,
                               planned.seed, state, value)
        except WriteError as lost:
            raise self._lost(index, attempt, lost) from None
        outcome = TrialOutcome(state, {k: v for k, v in metrics.items() if v is not None}, error)
        runner.plugins.emit("on_trial_end", trial=info, outcome=outcome)
        return state

    def _keep_weights(self, keep: tuple[str, ...], result: Any, row: dict[str, Any],
                      setup: TrialSetup, data: Any, device_data: Any, planned: PlannedTrial) -> None:
        """Save the finished trial's kept weights with a sidecar that rebuilds the model."""
        if not keep:
            return
        folder = self.runner.folder.weights
        weights.save_samples(folder, device_data.test_x, device_data.test_y)
        metrics = {k: row.get(k) for k in ("test_acc", "test_loss", "train_acc", "train_eval_acc",
                                           "val_acc", "best_test_acc", "best_epoch", "best_on")}
        base = {
            "model": {"name": setup.model.component.name, "params": dict(setup.model.values)},
            "classes": list(trial_classes(data, setup.settings)),
            "image_size": list(data.train_images.shape[2:]), "mean": list(data.mean),
            "std": list(data.std), "metrics": metrics,
            "provenance": {"study": self.plan.name, "trial": planned.index, "attempt": row["attempt"],
                           "seed": planned.seed, "cell": planned.cell, "preset": self.plan.preset,
                           "fingerprint": self.plan.fingerprint(), "dataset": data.name,
                           "data_fingerprint": data.fingerprint, "init": setup.settings["init"],
                           **{k: self.context[k] for k in ("ablate_version", "torch_version",
                                                            "git_revision")}},
        }
        if "final" in keep:
            weights.save(folder, planned.index, "final", result.model.state_dict(),
                         {**base, "which": "final", "epoch": row.get("epochs_done")})
        if "best" in keep and result.best_state is not None:
            weights.save(folder, planned.index, "best", result.best_state,
                         {**base, "which": "best", "epoch": row.get("best_epoch")})

    @staticmethod
    def _lost(index: int, attempt: int, error: WriteError) -> RunError:
        return RunError(f"trial {index} (attempt {attempt}) is lost: {error}. Free some space or "
                        "fix the folder's permissions, then run the same command again: it trains "
                        "that trial again")

