"""One attempt at one trial, from the queue's trial to its recorded result.

Resolve the trial's parameters once, train it (continuing from its newest checkpoint, starting
from the weights ``init`` names), then record it: the Optuna trial first, because the storage is
the arbiter of who owns a trial (a worker whose heartbeat went silent finds its trial given to
another and discards its result), then the Parquet files, the kept weights and the checkpoints'
removal, all while Ctrl-C waits.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from ablate.base.atomic import WriteError
from ablate.base.signals import deferred
from ablate.components.discovery import Plugins
from ablate.components.setup import TrialSetup
from ablate.components.validate import Locate, ParamColumns
from ablate.data import trial_classes
from ablate.errors import RunError, SetupError
from ablate.events import AttemptState, EpochRecord, TrialInfo, TrialOutcome
from ablate.params import column_value
from ablate.run.keep import keep_weights
from ablate.run.queue import TrialQueue
from ablate.store import weights
from ablate.store.folder import StudyFolder
from ablate.store.tables import ResultsStore, class_table, epoch_table, final_metrics, trial_table
from ablate.study.plan import PlannedTrial, StudyPlan
from ablate.train.checkpoints import CheckpointStore
from ablate.train.datasets import DatasetCache
from ablate.train.init import starting_weights


class Superseded(Exception):
    """This worker's trial was given to another worker (its heartbeat went silent)."""


class Pruned(Exception):
    """The study's pruner stopped this trial: its curve fell behind the others'."""


@dataclass
class AttemptEnd:
    """How one attempt ended, for the runner's counts (event hooks get a :class:`TrialOutcome`)."""

    state: AttemptState
    recorded: bool = True  # False: superseded, nothing written


@dataclass
class AttemptContext:
    """What every attempt of a run shares."""

    plan: StudyPlan
    plugins: Plugins
    folder: StudyFolder
    store: ResultsStore
    queue: TrialQueue
    columns: ParamColumns
    device: Any
    data: DatasetCache
    results_dir: Path
    locate: Locate
    log: Callable[[str], None]
    provenance: dict[str, Any] = field(default_factory=dict)
    device_lost: str | None = None  # why this process's device became unusable, once it did


def release_device_memory(device: Any) -> None:
    """Give freed GPU blocks back after a trial (the next trial's model may differ). After a
    sticky CUDA error this raises: the process's device is unusable from then on."""
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _error_text(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "".join(lines)[-4000:]


def objective(metric: str, setup: TrialSetup) -> str:
    """What Optuna is told: with a validation split, validation accuracy in place of the test
    accuracy, so a sampler never tunes on the test set."""
    return "val_acc" if metric == "test_acc" and setup.settings["val_size"] else metric


def lost(index: int, attempt: int, error: WriteError) -> RunError:
    return RunError(
        f"trial {index} (attempt {attempt}) is lost: {error}. Free some space or fix "
        "the folder's permissions, then run the same command again: it trains that "
        "trial again"
    )


def run_attempt(
    ctx: AttemptContext,
    planned: PlannedTrial,
    setup: TrialSetup,
    attempt: int,
    trial: optuna.Trial,
    retry: bool,
) -> AttemptEnd:
    """Train one attempt of ``planned`` (resolved, once, into ``setup``) and record it;
    ``retry``: put a copy back in the queue if it fails."""
    from ablate.train.trainer import fit

    index, plan = planned.index, ctx.plan
    recorded = ctx.columns.record(setup)
    info = TrialInfo(
        plan.name,
        index,
        attempt,
        planned.seed,
        setup.settings["epochs"],
        recorded,
        ctx.folder.root,
        planned.cell,
        plan.fingerprint(),
    )
    keys = {"study": plan.name, "trial": index, "attempt": attempt}
    started = datetime.now(timezone.utc)
    epochs: list[EpochRecord] = []
    result, error, state, data, device_data = None, None, AttemptState.COMPLETE, None, None
    checkpoints = None
    if setup.settings["checkpoint_every"] > 0:
        checkpoints = CheckpointStore(
            ctx.folder.checkpoints(index), setup.settings["keep_checkpoints"], ctx.log
        )
    meta = {
        "trial": index,
        "seed": planned.seed,
        "cell": planned.cell,
        "fingerprint": plan.fingerprint(),
        "params": json.dumps({k: column_value(v) for k, v in planned.params.items()}, sort_keys=True),
    }
    watched = objective(plan.metric, setup)

    def epoch_done(record: EpochRecord) -> None:
        epochs.append(record)
        value = getattr(record, watched, None)
        if value is not None:
            try:  # per-epoch values: learning curves in optuna-dashboard, and pruners can act
                trial.report(value, record.epoch)
            except optuna.exceptions.UpdateFinishedTrialError:
                raise Superseded from None
        ctx.plugins.emit("on_epoch_end", trial=info, epoch=record)
        if (
            plan.pruner != "none"
            and value is not None
            and record.epoch < setup.settings["epochs"]
            and trial.should_prune()
        ):
            raise Pruned

    ctx.plugins.emit("on_trial_start", trial=info)
    keep = weights.kept(setup.settings["keep_weights"])
    try:
        data, device_data = ctx.data.get(setup, planned.seed)
        classes = trial_classes(data, setup.settings)
        start = starting_weights(
            setup.settings["init"], setup.model.component.name, planned.seed, ctx.results_dir, classes
        )
        result = fit(
            setup,
            device_data,
            len(classes),
            planned.seed,
            ctx.device,
            epoch_done,
            checkpoints,
            meta,
            start,
            keep_best="best" in keep,
            precision_record=ctx.folder.precision_record,
            log=ctx.log,
            final_checkpoint=False,
        )
        if result.resumed_from:
            ctx.log(f"trial {index} continued from its checkpoint after epoch {result.resumed_from}")
        if start is not None and result.fresh:
            ctx.log(
                f"trial {index}: not in the starting weights {setup.settings['init']!r}, "
                f"freshly initialised: {', '.join(result.fresh)}"
            )
        if result.diverged:
            state = AttemptState.DIVERGED
    except Superseded:
        ctx.log(
            f"trial {index}: another worker took it over while this one was silent; this "
            "attempt stops and records nothing"
        )
        return AttemptEnd(AttemptState.INTERRUPTED, recorded=False)
    except Pruned:
        state = AttemptState.PRUNED
        ctx.log(f"trial {index} pruned after epoch {len(epochs)}: its curve fell behind the others'")
    except KeyboardInterrupt:
        state, error = AttemptState.INTERRUPTED, "interrupted (KeyboardInterrupt or SIGTERM)"
    except WriteError as failure:  # a full disk or a read-only folder: not the trial's fault
        ctx.queue.give_back(trial)
        raise lost(index, attempt, failure) from None
    except SetupError as failure:  # a missing dataset or weights file: no retry can help
        ctx.queue.give_back(trial)
        raise RunError(str(failure)) from None
    except BaseException as exc:  # SystemExit too: recorded as a failed attempt; the study goes on
        state, error = AttemptState.FAIL, _error_text(exc)
        ctx.log(f"trial {index} attempt {attempt} raised {type(exc).__name__}: {exc}")
    try:
        release_device_memory(ctx.device)
    except Exception as failure:  # a sticky CUDA error: this process's device is unusable
        ctx.device_lost = f"{type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else ''}"
        if state is not AttemptState.FAIL:
            state, error = AttemptState.FAIL, _error_text(failure)
    history = list(result.epochs) if result else epochs
    metrics = final_metrics(history)
    row = {
        **keys,
        **ctx.provenance,
        **metrics,
        "state": state.value,
        "seed": planned.seed,
        "cell": planned.cell,
        "seconds": result.seconds if result else sum(e.seconds for e in epochs),
        "resumed_from_epoch": result.resumed_from if result else None,
        "precision": result.precision if result else None,
        "data_placement": device_data.placement if device_data else None,
        "tf32": result.backends.tf32 if result else None,
        # deterministic only when no op ran without a deterministic kernel (warn_only)
        "deterministic": (result.backends.deterministic and not result.nondeterministic if result else None),
        "nondeterministic_ops": ", ".join(result.nondeterministic) or None if result else None,
        "compiled": bool(setup.settings["compile"]) if result else None,
        "threads": _threads(),
        **{f"step_ms_{p}": (result.step_ms or {}).get(p) if result else None for p in ("fp32", "bf16")},
        "model_params": result.parameters if result else None,
        "test_correct": list(result.test_correct) if result and result.test_correct else None,
        "data_fingerprint": data.fingerprint if data else None,
        "optuna_trial": trial.number,
        "started_at": started,
        "error": error,
    }
    class_rows = (
        class_table(keys, trial_classes(data, setup.settings), result.class_acc, result.confusion)
        if result and data and result.class_acc
        else None
    )
    # An interrupted attempt's epochs live on in its checkpoint; the attempt that continues
    # from there writes them, so every epoch of a trial is written once.
    epoch_rows = epoch_table(keys, history) if state is not AttemptState.INTERRUPTED else None
    value = metrics.get(watched) if state is AttemptState.COMPLETE else None
    attrs = {"attempt": attempt, "seed": planned.seed, "state": state.value}
    try:
        with deferred():  # Ctrl-C waits until the attempt is recorded whole
            if state.is_result and ctx.store.finished_trials(plan.fingerprint()) & {index}:
                # A copy of this trial finished first (a duplicate from a crash): keep that one.
                ctx.queue.tell(trial, optuna.trial.TrialState.FAIL, None, {**attrs, "state": "duplicate"})
                return AttemptEnd(state, recorded=False)
            if (state is AttemptState.INTERRUPTED) or (state is AttemptState.FAIL and retry):
                # Back in the queue before this attempt ends, so that it never looks missing.
                ctx.queue.requeue(ctx.queue.frozen(trial))
            optuna_state = {
                AttemptState.COMPLETE: optuna.trial.TrialState.COMPLETE,
                AttemptState.PRUNED: optuna.trial.TrialState.PRUNED,
            }.get(state, optuna.trial.TrialState.FAIL)
            if not ctx.queue.tell(trial, optuna_state, value, attrs):
                ctx.log(
                    f"trial {index}: another worker took it over while this one was silent; "
                    "its result is discarded"
                )
                return AttemptEnd(state, recorded=False)
            if state is AttemptState.COMPLETE and result is not None and data is not None:
                keep_weights(ctx, keep, result, row, setup, data, device_data, planned)
            ctx.store.write(
                index, attempt, trial_table(row, recorded, ctx.columns.types), epoch_rows, class_rows
            )
            if checkpoints is not None and state is not AttemptState.INTERRUPTED:
                checkpoints.clear()
    except WriteError as failure:
        ctx.queue.give_back(trial)
        raise lost(index, attempt, failure) from None
    outcome = TrialOutcome(state, {k: v for k, v in metrics.items() if v is not None}, error)
    ctx.plugins.emit("on_trial_end", trial=info, outcome=outcome)
    return AttemptEnd(state)
