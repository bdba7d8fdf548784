"""Run a study plan: validate it, then train every missing (cell, seed) trial and record it.

The Parquet ``trials`` table is the record of what is done: a trial counts as done once it has
a ``complete`` row, so re-running a study trains only what is missing and never a finished trial
twice. The Optuna study (a JournalStorage file under the study folder by default) gets every
finished attempt with its parameters and value, for samplers and parameter importance.
"""

from __future__ import annotations

import json
import subprocess
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import optuna

import ablate
from ablate.allocator import keep_freed_memory
from ablate.checkpoints import CheckpointStore
from ablate.claims import Claims, worker_id
from ablate.config import ConfigError, TrialSetup, column_value, resolve
from ablate.discovery import Plugins
from ablate.events import EpochRecord, TrialInfo, TrialOutcome
from ablate.optuna_storage import (
    WORKER_ATTR,
    StorageError,
    distribution,
    open_study,
    record_attempt,
)
from ablate.results import (
    ResultsWriter,
    class_table,
    epoch_table,
    param_type,
    trial_table,
)
from ablate.study import Choice, StudyPlan, cell_name

BUDGET_LOCK = "sampled-budget"  # held while a worker counts a sampled design's trials and asks


class RunError(RuntimeError):
    """The study cannot run as asked (the message says why and what to do)."""


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


@dataclass
class RunSummary:
    total: int
    done_before: int
    completed: int = 0
    failed: list[int] = field(default_factory=list)


def pick_device(requested: str) -> tuple[Any, str]:
    """The torch device for ``requested`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps') and why."""
    import torch

    if requested != "auto":
        try:
            device = torch.device(requested)
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as error:
            raise RunError(f"device {requested!r} is not usable here: {error}") from None
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


class Runner:
    """Trains the missing trials of one study plan."""

    def __init__(self, plan: StudyPlan, options: RunOptions, plugins: Plugins,
                 log: Callable[[str], None] = print, progress: Progress | None = None,
                 locate: Callable[[str | None, Any], str] = lambda key, value: "") -> None:
        self.plan = plan
        self.options = options
        self.plugins = plugins
        self.log = log
        self.progress = progress
        self.locate = locate
        self.study_dir = options.results_dir / plan.name
        self.writer = ResultsWriter(self.study_dir)
        self._datasets: dict[Any, Any] = {}
        self._on_device: dict[Any, Any] = {}
        self.param_types: dict[str, Any] = {}

    # -- validation ------------------------------------------------------------------------

    def _resolve(self, params: Mapping[str, Any]) -> TrialSetup:
        try:
            return resolve(params, self.plugins.registry)
        except ConfigError as error:
            where = self.locate(error.key, error.value)
            raise RunError(f"{where}: {error}" if where else str(error)) from None

    def validate(self) -> None:
        """Resolve every planned trial before any training, so a typo fails in seconds."""
        plan = self.plan
        if plan.sampled:
            samples = [dict(plan.baseline)]
            for key, factor in plan.factors.items():
                levels = factor.values if isinstance(factor, Choice) else (factor.low, factor.high)
                samples += [{**plan.baseline, key: level} for level in levels]
        else:
            samples = [dict(t.params) for t in plan.trials]
        setups = [self._resolve(params) for params in samples]
        # Every trial file gets the same parameter columns (null where a parameter does not
        # apply), so that readers see one schema whichever file they open first.
        for setup, params in zip(setups, samples, strict=True):
            for key, value in setup.recorded_params(params).items():
                self.param_types.setdefault(key, param_type(value))
        active = set()
        for setup, params in zip(setups, samples, strict=True):
            active.update(key for key in params if key not in setup.inactive)
        for key in sorted({k for params in samples for k in params} - active):
            owners = [f"{c.kind} {c.name!r}" for c in self.plugins.registry
                      if c.param(key.split(".")[-1])]
            where = self.locate(key, None)
            raise RunError(f"{where}: parameter {key!r} applies to none of the components this "
                           f"study selects (it belongs to {', '.join(owners)})")

    # -- storage ---------------------------------------------------------------------------

    def open_storage(self) -> optuna.Study:
        try:
            return open_study(self.plan, self.study_dir, self.options.storage)
        except StorageError as error:
            raise RunError(str(error)) from None

    # -- running ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        self.validate()
        study = self.open_storage()
        done = self.writer.complete_trials()
        if self.plan.sampled:
            summary = RunSummary(self.plan.size, min(len(done), self.plan.size))
        else:
            summary = RunSummary(self.plan.size, sum(t.index in done for t in self.plan.trials))
        if summary.done_before >= summary.total:
            self.log(f"all {summary.total} trials of {self.plan.name!r} are complete; nothing to run")
            return summary
        device, why = pick_device(self.options.device)
        self.device = device
        self.log(f"device: {why}")
        if device.type == "cpu":
            keep_freed_memory()
        self.context = self._context()
        if self.progress is not None:
            self.progress.begin(summary.total, summary.done_before)
        claims = Claims(self.study_dir / "claims")
        if self.plan.sampled:
            self._continue_sampled(study, summary, claims)
            self._run_sampled(study, summary, claims)
        else:
            for planned in self.plan.trials:
                if planned.index in done or not claims.acquire(planned.index):
                    continue  # finished, or another worker trains it now
                try:
                    # Another worker may have finished it since the start: read its files again.
                    attempts = self.writer.attempts(planned.index)
                    if "complete" in attempts.get(planned.index, []):
                        continue
                    first = len(attempts.get(planned.index, [])) + 1
                    self._with_retries(study, summary, planned.index, first, planned.cell,
                                       planned.params, planned.seed, planned.levels)
                finally:
                    claims.release(planned.index)
        return summary

    def _budget_left(self, claims: Claims, complete: set[int]) -> bool:
        """Whether a sampled design has room for one more trial: the ``complete`` trials and
        those that live workers train now stay under its size. Call it holding the budget lock,
        so that workers asking at the same moment cannot overshoot together."""
        return len(complete | claims.held()) < self.plan.size

    def _continue_sampled(self, study: optuna.Study, summary: RunSummary, claims: Claims) -> None:
        """Finish sampled trials that a killed run left with checkpoints, budget permitting."""
        for folder in sorted((self.study_dir / "checkpoints").glob("trial-*")):
            index = int(folder.name.split("-")[1])
            saved = CheckpointStore(folder, log=self.log).latest()
            meta = (saved or {}).get("meta", {})
            if meta.get("fingerprint") != self.plan.fingerprint():
                continue
            with claims.locked(BUDGET_LOCK):
                complete = self.writer.complete_trials()
                if (index in complete or not self._budget_left(claims, complete)
                        or not claims.acquire(index)):
                    continue  # finished, no room left, or another worker continues it
            try:
                params = json.loads(meta["params"])
                levels = {k: v for k, v in params.items() if k in self.plan.factors}
                first = len(self.writer.attempts(index).get(index, [])) + 1
                self._with_retries(study, summary, index, first, meta["cell"], params,
                                   meta["seed"], levels)
            finally:
                claims.release(index)

    def _run_sampled(self, study: optuna.Study, summary: RunSummary, claims: Claims) -> None:
        distributions = {k: distribution(f) for k, f in self.plan.factors.items()}
        failed = 0
        while failed < self.plan.size:  # a design whose every trial fails must still end
            with claims.locked(BUDGET_LOCK):
                if not self._budget_left(claims, self.writer.complete_trials()):
                    return
                trial = study.ask(distributions)
                claims.acquire(trial.number)
            try:
                trial.set_user_attr(WORKER_ATTR, worker_id())
                levels = dict(trial.params)
                if self.plan.configure is not None:
                    levels.update(self.plan.configure(trial))
                params = {**self.plan.baseline, **levels}
                seed = self.plan.seeds[trial.number % len(self.plan.seeds)]
                try:
                    self._resolve(params)
                except RunError:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                state = self._with_retries(study, summary, trial.number, 1, cell_name(levels),
                                           params, seed, levels, optuna_trial=trial)
                failed += state != "complete"
            finally:
                claims.release(trial.number)
        self.log(f"stopping: {failed} sampled trials failed in this run")

    def _with_retries(self, study: optuna.Study, summary: RunSummary, index: int, first: int,
                      cell: str, params: Mapping[str, Any], seed: int, levels: Mapping[str, Any],
                      optuna_trial: optuna.Trial | None = None) -> str:
        state = "fail"
        for attempt in range(first, first + self.options.retries + 1):
            state, value = self._attempt(index, attempt, cell, params, seed)
            record_attempt(study, self.plan, optuna_trial, index, attempt, levels, seed, state,
                           value)
            optuna_trial = None  # a retry is recorded as a trial of its own
            if state == "complete":
                summary.completed += 1
                return state
            if state == "interrupted":
                raise KeyboardInterrupt
            self.log(f"trial {index} attempt {attempt} failed"
                     + ("; retrying" if attempt < first + self.options.retries else ""))
        summary.failed.append(index)
        return state

    def _context(self) -> dict[str, Any]:
        import torch

        return {
            "device": str(self.device), "torch_version": torch.__version__,
            "ablate_version": ablate.__version__,
            "plugin_versions": json.dumps({p.name: p.version for p in self.plugins.loaded.values()},
                                          sort_keys=True),
            # The revision of the project the study is run from (its working directory).
            "git_revision": _git_revision(Path.cwd()),
            "study_fingerprint": self.plan.fingerprint(), "preset": self.plan.preset,
        }

    def _device_data(self, setup: TrialSetup) -> tuple[Any, Any]:
        from ablate.trainer import trial_data

        dataset = setup.dataset
        key = (dataset.component.name, tuple(sorted(dataset.values.items())))
        if key not in self._datasets:
            self.log(f"loading dataset {dataset.component.name!r}")
            self._datasets[key] = dataset.build(data_dir=self.options.data_dir)
        data = self._datasets[key]
        sizes = tuple(setup.settings[k] for k in ("train_size", "test_size", "train_eval_size"))
        if (key, sizes) not in self._on_device:
            self._on_device.clear()  # keep one dataset on the device at a time
            self._on_device[(key, sizes)] = trial_data(data, setup.settings, self.device)
        return data, self._on_device[(key, sizes)]

    def _checkpoints(self, index: int, setup: TrialSetup) -> CheckpointStore | None:
        if setup.settings["checkpoint_every"] <= 0:
            return None
        return CheckpointStore(self.study_dir / "checkpoints" / f"trial-{index:05d}",
                               setup.settings["keep_checkpoints"], self.log)

    def _attempt(self, index: int, attempt: int, cell: str, params: Mapping[str, Any],
                 seed: int) -> tuple[str, float | None]:
        """Train one attempt and write its results; returns its state and metric value.

        A trial whose earlier attempt was interrupted or killed continues from its newest
        checkpoint. A failed attempt's checkpoints are dropped: its retry starts afresh.
        """
        from ablate.trainer import fit

        setup = self._resolve(params)
        recorded = setup.recorded_params(params)
        info = TrialInfo(self.plan.name, index, attempt, seed, setup.settings["epochs"], recorded)
        keys = {"study": self.plan.name, "trial": index, "attempt": attempt}
        started = datetime.now(timezone.utc)
        epochs: list[EpochRecord] = []
        result, error, state, data = None, None, "complete", None
        checkpoints = self._checkpoints(index, setup)
        meta = {"trial": index, "seed": seed, "cell": cell, "fingerprint": self.plan.fingerprint(),
                "params": json.dumps({k: column_value(v) for k, v in params.items()}, sort_keys=True)}

        def epoch_done(record: EpochRecord) -> None:
            epochs.append(record)
            self.plugins.emit("on_epoch_end", trial=info, epoch=record)

        self.plugins.emit("on_trial_start", trial=info)
        try:
            data, device_data = self._device_data(setup)
            result = fit(setup, device_data, len(data.classes), seed, self.device, epoch_done,
                         checkpoints, meta)
            if result.resumed_from:
                self.log(f"trial {index} continued from its checkpoint after epoch "
                         f"{result.resumed_from}")
        except KeyboardInterrupt:
            state, error = "interrupted", "interrupted (KeyboardInterrupt or SIGTERM)"
        except Exception as exc:  # recorded as a failed attempt; the study goes on
            state, error = "fail", _error_text(exc)
            self.log(f"trial {index} attempt {attempt} raised {type(exc).__name__}: {exc}")
        history = list(result.epochs) if result else epochs
        metrics = self._metrics(history)
        row = {**keys, **self.context, **metrics, "state": state, "seed": seed, "cell": cell,
               "seconds": result.seconds if result else sum(e.seconds for e in epochs),
               "resumed_from_epoch": result.resumed_from if result else None,
               "precision": result.precision if result else None,
               "data_fingerprint": data.fingerprint if data else None,
               "started_at": started, "error": error}
        classes = (class_table(keys, data.classes, result.class_acc, result.confusion)
                   if result and data else None)
        # An interrupted attempt's epochs live on in its checkpoint; the attempt that continues
        # from there writes them, so every epoch of a trial is written once.
        epoch_rows = epoch_table(keys, history) if state != "interrupted" else None
        self.writer.write(index, attempt, trial_table(row, recorded, self.param_types), epoch_rows,
                          classes)
        if checkpoints is not None and state != "interrupted":
            checkpoints.clear()
        outcome = TrialOutcome(state, {k: v for k, v in metrics.items() if v is not None}, error)
        self.plugins.emit("on_trial_end", trial=info, outcome=outcome)
        value = metrics.get(self.plan.metric) if state == "complete" else None
        return state, value

    @staticmethod
    def _metrics(epochs: list[EpochRecord]) -> dict[str, Any]:
        if not epochs:
            return {"epochs_done": 0}
        last = epochs[-1]
        best = max(epochs, key=lambda e: e.test_acc)
        return {"test_acc": last.test_acc, "test_loss": last.test_loss,
                "train_acc": last.train_acc, "train_loss": last.train_loss,
                "train_eval_acc": last.train_eval_acc, "best_test_acc": best.test_acc,
                "best_epoch": best.epoch, "epochs_done": len(epochs)}
