"""Check a plan against the installed components before anything is written or trained.

Every planned trial (for a sampler design: the baseline and each factor's levels or range ends)
is resolved once, so an unknown name, a value of the wrong type or out of its declared range, or
a parameter that applies to no selected component fails in seconds, naming the study file's
line (or the ``--set`` option that gave it). The result says which parameter columns the trials
table gets and which parameter names need their component's prefix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ablate.components.registry import Registry
from ablate.components.setup import ConfigError, TrialSetup, resolve, watches_accuracy
from ablate.errors import RunError
from ablate.params import param_type
from ablate.study.factors import AblationPath, Choice
from ablate.study.plan import StudyPlan

Locate = Callable[[str | None, Any], str]  # (key, value) -> "file:line" or "--set KEY=VALUE"


@dataclass(frozen=True)
class ParamColumns:
    """The trials table's parameter columns for one plan.

    ``qualified`` are the names two components of some trial both declare: they are written
    ``component.param`` in every trial, so that each parameter keeps one column.
    """

    types: Mapping[str, Any]  # column name -> pyarrow type
    qualified: frozenset[str]

    def record(self, setup: TrialSetup) -> dict[str, Any]:
        return setup.recorded_params(self.qualified)

    def column(self, key: str) -> str:
        """The trials table's column of the study key ``key`` (a factor, a baseline key)."""
        name = key.rsplit(".", 1)[-1]
        return "param_" + (key if name in self.qualified else name)


def resolve_located(params: Mapping[str, Any], registry: Registry, locate: Locate) -> TrialSetup:
    """:func:`ablate.components.setup.resolve`, its errors prefixed with where the value was given."""
    try:
        return resolve(params, registry)
    except ConfigError as error:
        where = locate(error.key, error.value)
        raise RunError(f"{where}: {error}" if where else str(error)) from None


def _samples(plan: StudyPlan) -> list[dict[str, Any]]:
    if not plan.sampled:
        samples = [dict(t.params) for t in plan.trials]
        # A baseline value every cell overrides trains in no trial, but the study file says it:
        # it must still be valid (noise="high" once trained 8 trials without a word). It is
        # checked in the first trial's context, where its key means what it means there.
        unused = {k: v for k, v in plan.baseline.items() if samples and all(s.get(k) != v for s in samples)}
        return samples + [{**samples[0], key: value} for key, value in unused.items()]
    samples = [dict(plan.baseline)]
    for key, factor in plan.factors.items():
        levels = factor.values if isinstance(factor, Choice) else (factor.low, factor.high)
        samples += [{**plan.baseline, key: level} for level in levels]
    return samples


@dataclass(frozen=True)
class CheckedPlan:
    """A plan whose every trial resolved: each trial's setup, resolved here once and passed on
    to the attempt that trains it, and the trials table's parameter columns."""

    columns: ParamColumns
    trials: Mapping[int, TrialSetup]  # planned trial index -> its setup (none for a sampler)
    samples: tuple[TrialSetup, ...]  # everything checked: the trials, and each baseline value


def validate_plan(plan: StudyPlan, registry: Registry, locate: Locate) -> CheckedPlan:
    """Resolve every planned trial; raise :class:`RunError` naming the first problem."""
    samples = _samples(plan)
    resolved: dict[str, TrialSetup] = {}  # the trials of a cell share their parameters

    def setup_of(params: dict[str, Any]) -> TrialSetup:
        key = json.dumps(params, sort_keys=True, default=repr)
        if key not in resolved:
            resolved[key] = resolve_located(params, registry, locate)
        return resolved[key]

    setups = [setup_of(params) for params in samples]
    qualified = frozenset(name for setup in setups for name in setup.shared_names())
    # Every trial file gets the same parameter columns (null where a parameter does not
    # apply), so that readers see one schema whichever file they open first.
    types: dict[str, Any] = {}
    for setup in setups:
        for key, value in setup.recorded_params(qualified).items():
            types.setdefault(key, param_type(value))
    active: set[str] = set()
    for setup, params in zip(setups, samples, strict=True):
        active.update(key for key in params if key not in setup.inactive)
    for key in sorted({k for params in samples for k in params} - active):
        owners = [f"{c.kind} {c.name!r}" for c in registry if c.param(key.split(".")[-1])]
        raise RunError(
            f"{locate(key, None)}: parameter {key!r} applies to none of the components "
            f"this study selects (it belongs to {', '.join(owners)})"
        )
    if any(setup.settings["tensorboard"] for setup in setups):
        needs("tensorboard", "tensorboard=True")
    for uri in sorted({setup.settings["mlflow_uri"] for setup in setups} - {""}):
        check_mlflow(uri)
    trials = (
        {}
        if plan.sampled
        else {  # the samples begin with the trials, in order
            t.index: setup for t, setup in zip(plan.trials, setups[: len(plan.trials)], strict=True)
        }
    )
    return CheckedPlan(ParamColumns(types, qualified), trials, tuple(setups))


def needs(package: str, setting: str) -> None:
    """A setting that needs an optional extra of the same name: refused, naming the command
    that installs it, before anything trains."""
    import importlib

    try:
        importlib.import_module(package)
    except ImportError:
        raise RunError(f"{setting} needs the {package} package: pip install 'ablate[{package}]'") from None


def check_mlflow(uri: str) -> None:
    """``mlflow_uri`` needs the mlflow package and, for a server, one that answers: refused
    before anything trains, rather than a study whose runs go nowhere."""
    import urllib.error
    import urllib.request

    needs("mlflow", "mlflow_uri")
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RunError(
            f"mlflow_uri={uri}: no MLflow server answers there ({reason}); start one (mlflow "
            "server --host 127.0.0.1 --port 5000) or leave mlflow_uri out"
        ) from None


def selects_on_test_set(plan: StudyPlan, setups: Sequence[TrialSetup]) -> str | None:
    """What of this plan would select on the test set (a sampler, a plateau scheduler), when
    its trials have no validation split; None when nothing does."""
    if any(setup.settings["val_size"] for setup in setups):
        return None
    chooses = []
    if isinstance(plan.design, AblationPath) and plan.metric in ("test_acc", "test_loss"):
        chooses.append("the path chooses each step on the test set")
    if plan.sampled and plan.metric == "test_acc":
        chooses.append(f"the {plan.design.name} sampler tunes on test accuracy")  # type: ignore[union-attr]
    distinct = {id(s): s for s in setups}.values()  # built once per cell, not per trial
    watching = sorted({s.scheduler.component.name for s in distinct if _watches_accuracy(s)})
    if watching:
        chooses.append(f"the {watching[0]} scheduler steps on test accuracy")
    best = sorted({str(s.settings["keep_weights"]) for s in setups} & {"best", "both"})
    if best:
        chooses.append(f"keep_weights={best[0]} keeps the weights of the best test epoch")
    return "; ".join(chooses) or None


def refuse_selection_on_test_set(plan: StudyPlan, checked: CheckedPlan) -> None:
    """A choice made on the test set biases every test number after it: refuse the plan rather
    than report it (issue 26, item 5)."""
    on_test = selects_on_test_set(plan, list(checked.samples))
    if on_test:
        raise RunError(
            f"study {plan.name}: {on_test}, and there is no validation split: set "
            "val_size in its baseline or with --set val_size=N (images held out of the "
            "training split, the same for every trial) so that it selects on validation "
            "accuracy, never on the test set"
        )


def _watches_accuracy(setup: TrialSetup) -> bool:
    """Whether the trial's scheduler steps on accuracy, known by building it (on a throwaway
    optimizer), not by its name: a plugin's plateau scheduler selects as the built-in one does.
    One that cannot be built here fails in its trial, which names it."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    try:
        scheduler = setup.scheduler.build(optimizer=optimizer, epochs=setup.settings["epochs"])
    except Exception:
        return False
    return watches_accuracy(scheduler)
