"""A study resolved for one preset: the exact trials that will run, and the fingerprint that says
what their results mean."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ablate.params import column_value
from ablate.study.factors import AblationPath, Choice, Design, Factor, Sampler, Until

# An asked contrast's fourth element: one comparison averaged over the other factors' levels.
AVERAGED = "averaged"


@dataclass(frozen=True)
class PlannedTrial:
    """One (cell, seed) pair of an enumerated design."""

    index: int
    cell: str
    levels: Mapping[str, Any]
    params: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class StudyPlan:
    """A study resolved for one preset: what will run."""

    name: str
    question: str
    preset: str
    metric: str
    direction: str
    design: Design
    baseline: Mapping[str, Any]
    factors: Mapping[str, Factor]
    seeds: tuple[int, ...]
    trials: tuple[PlannedTrial, ...]
    configure: Callable[..., Mapping[str, Any]] | None
    # What the question is about (the report's Answer); they change no trial, so they are not
    # part of the fingerprint.
    metrics: tuple[str, ...] = ()
    within: tuple[str, ...] = ()
    contrasts: tuple[tuple[Any, ...], ...] = ()  # (factor, level, versus[, AVERAGED]) the question asks
    delta: float | None = None
    target: float | None = None
    seed_rule: Until | None = None  # seeds added as the answer needs them (``trials`` plans the cap)
    pruner: str = "none"
    preset_description: str = ""  # what this size measures and what a larger one adds

    @property
    def sampled(self) -> bool:
        return isinstance(self.design, Sampler)

    @property
    def size(self) -> int:
        """The trials the plan trains at most (a path: its k(k+1)/2 + 1 recipes, not the 2^k
        it plans so that any round can reach any of them)."""
        if isinstance(self.design, Sampler):
            return self.design.trials
        if isinstance(self.design, AblationPath):
            k = len(self.design.target)
            return (k * (k + 1) // 2 + 1) * len(self.seeds)
        return len(self.trials)

    @property
    def size_text(self) -> str:
        """The plan's size as the run announces it, before it trains anything."""
        if isinstance(self.design, AblationPath):
            k = len(self.design.target)
            return (
                f"a path over {k} settings: at most {k * (k + 1) // 2 + 1} recipes x "
                f"{len(self.seeds)} seeds = {self.size} trials (racing trains fewer)"
            )
        return f"{self.size} trials"

    def describe(self) -> dict[str, Any]:
        """What ``study.json`` records: what the report needs to know of the plan, and the
        fingerprint of the part that decides what the trials compute (:func:`fingerprint_of`),
        so that a hand-edited record is told from the plan its trials ran under."""
        factors = {
            k: ([column_value(v) for v in f.values] if isinstance(f, Choice) else vars(f))
            for k, f in self.factors.items()
        }
        record = {
            "name": self.name,
            "question": self.question,
            "preset": self.preset,
            "preset_description": self.preset_description,
            "metric": self.metric,
            "direction": self.direction,
            "design": self.design if isinstance(self.design, str) else vars(self.design),
            "baseline": {k: column_value(v) for k, v in self.baseline.items()},
            "factors": factors,
            "seeds": list(self.seeds),
            "trials": self.size,
            "seed_rule": vars(self.seed_rule) if self.seed_rule else None,
            "pruner": self.pruner,
            "configure": getattr(self.configure, "__qualname__", None),
            "metrics": list(self.metrics or (self.metric,)),
            "within": list(self.within),
            "contrasts": [list(c) for c in self.contrasts],
            "delta": self.delta,
            "target": self.target,
        }
        return {**record, "fingerprint": fingerprint_of(record)}

    def fingerprint(self) -> str:
        """Identifies what the results mean; results of a different plan must not mix."""
        return str(self.describe()["fingerprint"])


# What a plan's trials compute, as study.json records it; the rest of the record (the question,
# its metrics, within, delta, target) changes no trial and may be edited.
IDENTITY = ("baseline", "factors", "seeds", "metric", "seed_rule", "design", "configure", "pruner")


def fingerprint_of(record: Mapping[str, Any]) -> str:
    """The fingerprint of a plan from its record (``study.json``'s fields or
    :meth:`StudyPlan.describe`'s): the same whether computed from the study file or re-read
    from the folder, so that the report can check a record against its trials."""
    from ablate.study.settings import OBSERVING

    identity = {key: record.get(key) for key in IDENTITY}
    identity["baseline"] = {k: v for k, v in (identity["baseline"] or {}).items() if k not in OBSERVING}
    text = json.dumps(identity, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def one_determinism(baseline: Mapping[str, Any], factors: Mapping[str, Factor]) -> dict[str, Any]:
    """``baseline`` with ``deterministic="auto"`` decided once for the whole study: on whenever
    any of its trials writes checkpoints (a crash-resumed trial then equals one that never
    stopped) or restarts (a resume study's ``full`` control equals ``none``), else off. Decided
    per cell, the ``none`` cell of a resume study trained with other kernels than the rest, and
    the control could never equal it on a GPU. (On a CPU the setting changes nothing.)"""
    from ablate.study.settings import SETTINGS

    default = {p.name: p.default for p in SETTINGS}
    if baseline.get("deterministic", default["deterministic"]) != "auto" or "deterministic" in factors:
        return dict(baseline)

    def values(key: str) -> list[Any]:
        factor = factors.get(key)
        levels = list(factor.values) if isinstance(factor, Choice) else []
        return [baseline.get(key, default[key]), *levels]

    restarts = any(mode != "none" for mode in values("resume"))
    checkpoints = any(isinstance(n, (int, float)) and n > 0 for n in values("checkpoint_every"))
    return {**baseline, "deterministic": "on" if restarts or checkpoints else "off"}


def cell_name(levels: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in levels.items()) or "baseline"
