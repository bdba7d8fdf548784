"""The Optuna side of a study: opening its storage safely and recording finished attempts.

Grid and one-factor-at-a-time trials are added as finished trials (``add_trial``), so they
never linger as RUNNING; sampler designs use ask/tell. Either way every attempt is in the
storage with its parameters, value and ``trial``/``attempt``/``seed`` attributes, for Optuna's
samplers and parameter importance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from ablate.claims import is_stale, worker_id
from ablate.config import column_value
from ablate.results import write_text_atomic
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


def open_study(plan: StudyPlan, study_dir: Path, storage_url: str | None) -> optuna.Study:
    """Create or load the study; refuse one made by a different plan; clean up dead workers."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir.mkdir(parents=True, exist_ok=True)
    storage: Any = storage_url
    if storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    sampler = make_sampler(plan.design.name, 0) if plan.sampled else None  # type: ignore[union-attr]
    try:
        study = optuna.create_study(study_name=plan.name, storage=storage, sampler=sampler,
                                    direction=plan.direction, load_if_exists=True)
    except Exception as error:
        raise StorageError(f"cannot open the Optuna storage {storage!r}: {error}") from None
    fingerprint = plan.fingerprint()
    recorded = study.user_attrs.get("fingerprint")
    if recorded is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("preset", plan.preset)
    elif recorded != fingerprint:
        raise StorageError(
            f"{study_dir} holds results of a different version of study {plan.name!r} (preset "
            f"{study.user_attrs.get('preset')!r}, fingerprint {recorded}; now preset "
            f"{plan.preset!r}, fingerprint {fingerprint}). Results must not mix: pass another "
            "--results-dir, or delete that folder.")
    _fail_stale(study)
    _write_description(plan, study_dir)
    return study


def _write_description(plan: StudyPlan, study_dir: Path) -> None:
    """``study.json``: what the report needs to know (question, baseline, factors, size)."""
    factors = {k: ([column_value(v) for v in f.values] if isinstance(f, Choice) else vars(f))
               for k, f in plan.factors.items()}
    description = {
        "name": plan.name, "question": plan.question, "preset": plan.preset,
        "metric": plan.metric, "direction": plan.direction,
        "design": plan.design if isinstance(plan.design, str) else vars(plan.design),
        "baseline": {k: column_value(v) for k, v in plan.baseline.items()},
        "factors": factors, "seeds": list(plan.seeds), "trials": plan.size,
        "fingerprint": plan.fingerprint(),
    }
    write_text_atomic(study_dir / "study.json", json.dumps(description, indent=2))


def _fail_stale(study: optuna.Study) -> None:
    """Mark RUNNING trials of dead workers on this host as failed (killed processes)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if is_stale(str(trial.user_attrs.get(WORKER_ATTR, ""))):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def record_attempt(study: optuna.Study, plan: StudyPlan, trial: optuna.Trial | None, index: int,
                   attempt: int, levels: Mapping[str, Any], seed: int, state: str,
                   value: float | None) -> None:
    """Record a finished attempt: tell an asked ``trial``, or add a finished one."""
    attrs = {"trial": index, "attempt": attempt, "seed": seed, "state": state,
             WORKER_ATTR: worker_id()}
    complete = state == "complete"
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
