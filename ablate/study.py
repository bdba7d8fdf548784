"""Study declarations: a question, a baseline, factors, seeds, a design and size presets.

A study file declares what to compare; it trains nothing itself. :meth:`Study.plan` turns the
declaration and a preset into a :class:`StudyPlan`: the exact list of (cell, seed) trials for the
``grid``, ``oat`` and ``fractional`` designs, or a sampler and a trial budget for Optuna
designs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ablate.fractions import RESOLUTIONS, fraction
from ablate.registry import column_value

DESIGNS = ("grid", "oat")
SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
PRUNERS = ("none", "median", "hyperband")
METRICS = ("test_acc", "train_acc", "train_eval_acc", "test_loss", "train_loss")
# What a study's question may be about (the report's Answer): the stored metrics, the gaps,
# the swing, the jumps across restarts and divergence.
QUESTION_METRICS = METRICS + ("gap_running", "gap_eval", "gap_running_first", "swing_test",
                              "jump_test", "jump_train", "diverged", "seconds")


class StudyError(ValueError):
    """A study declaration is inconsistent; ``key`` names the field at fault, when one is."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Choice:
    """A factor with a fixed list of levels."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A numeric factor sampled by Optuna (``int`` or ``float``, optionally on a log scale)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


Factor = Choice | Range


def choice(*values: Any) -> Choice:
    """Levels of a factor, for example ``choice(0.0, 0.25, 0.5)``."""
    if not values:
        raise StudyError("choice() needs at least one value")
    return Choice(tuple(values))


def uniform(low: float, high: float, *, log: bool = False) -> Range:
    """A float factor in [low, high] (Optuna designs only)."""
    return Range(float(low), float(high), log=log)


def integer(low: int, high: int, *, log: bool = False) -> Range:
    """An integer factor in [low, high] (Optuna designs only)."""
    return Range(low, high, log=log, integer=True)


@dataclass(frozen=True)
class Sampler:
    """An Optuna design: ``trials`` trials proposed by the named sampler."""

    name: str = "tpe"
    trials: int = 20


@dataclass(frozen=True)
class Fractional:
    """A two-level fractional factorial design (2^(k-p)) of the given resolution."""

    resolution: int = 4


def fractional(resolution: int = 4) -> Fractional:
    """The smallest fraction in which no main effect is confounded with an interaction of
    fewer than ``resolution - 1`` factors (4: main effects clear of two-factor interactions)."""
    if resolution not in RESOLUTIONS:
        raise StudyError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, "
                         f"got {resolution!r}")
    return Fractional(resolution)


Design = str | Sampler | Fractional


def sampler(name: str = "tpe", trials: int = 20) -> Sampler:
    """An Optuna sampler (``tpe``, ``random``, ``cmaes``, ``qmc``, ``gp``) proposing ``trials`` trials."""
    if name not in SAMPLERS:
        raise StudyError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
    if not _is_int(trials) or trials < 1:
        raise StudyError(f"sampler trials must be a whole number of at least 1, got {trials!r}")
    return Sampler(name, trials)


@dataclass(frozen=True)
class Until:
    """Seeds until the answer is precise enough: after ``min`` seeds of every cell, one more seed
    of every cell at a time while the widest 95 % interval of the study's comparisons on its
    metric is wider than +-``halfwidth`` (points for accuracies), up to ``max`` seeds."""

    halfwidth: float
    min: int = 5
    max: int = 10


def until(halfwidth: float, min: int = 5, max: int = 10) -> Until:
    """``seeds=until(halfwidth=1.0, min=5, max=10)``: add seeds while the widest 95 % interval
    on the study's metric is wider than +-halfwidth points. The rule looks at the intervals'
    width only, never at whether an effect looks significant (stopping on significance would
    bias the p-values); the report's intervals at the stop are 97.5 % ones, which keeps their
    coverage at 95 % or more (a simulation in the tests checks it)."""
    if isinstance(halfwidth, bool) or not isinstance(halfwidth, (int, float)) or not halfwidth > 0:
        raise StudyError(f"until(halfwidth=...) must be a positive number of points, got "
                         f"{halfwidth!r}", "seeds")
    if not (_is_int(min) and _is_int(max)) or min < 5 or max < min:
        raise StudyError(f"until(min={min!r}, max={max!r}): start from at least 5 seeds (with "
                         "fewer, stopping when an interval looks narrow reuses a spread that came "
                         "out small by chance, and coverage falls below 95 %) and cap at min or "
                         "more", "seeds")
    return Until(float(halfwidth), min, max)


@dataclass(frozen=True)
class Preset:
    """A named size of the study: parameter overrides and, optionally, seeds, trial budget,
    other levels for some factors (a ``full`` preset may compare ImageNet weights where a
    ``cpu`` one compares weights pretrained offline), and the study files whose results this
    preset needs first (``requires``, paths relative to the study file; run with the same
    preset name when they have one)."""

    description: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seeds: int | Sequence[int] | Until | None = None
    trials: int | None = None
    factors: Mapping[str, Factor] = field(default_factory=dict)
    requires: Sequence[str] = ()


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
    delta: float | None = None
    target: float | None = None
    seed_rule: Until | None = None  # seeds added as the answer needs them (``trials`` plans the cap)
    pruner: str = "none"

    @property
    def sampled(self) -> bool:
        return isinstance(self.design, Sampler)

    @property
    def size(self) -> int:
        return self.design.trials if isinstance(self.design, Sampler) else len(self.trials)

    def describe(self) -> dict[str, Any]:
        """What ``study.json`` records: what the report needs to know of the plan, and the
        fingerprint of the part that decides what the trials compute (:func:`fingerprint_of`),
        so that a hand-edited record is told from the plan its trials ran under."""
        factors = {k: ([column_value(v) for v in f.values] if isinstance(f, Choice) else vars(f))
                   for k, f in self.factors.items()}
        record = {
            "name": self.name, "question": self.question, "preset": self.preset,
            "metric": self.metric, "direction": self.direction,
            "design": self.design if isinstance(self.design, str) else vars(self.design),
            "baseline": {k: column_value(v) for k, v in self.baseline.items()},
            "factors": factors, "seeds": list(self.seeds), "trials": self.size,
            "seed_rule": vars(self.seed_rule) if self.seed_rule else None, "pruner": self.pruner,
            "configure": getattr(self.configure, "__qualname__", None),
            "metrics": list(self.metrics or (self.metric,)), "within": list(self.within),
            "delta": self.delta, "target": self.target,
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
    from ablate.config import OBSERVING

    identity = {key: record.get(key) for key in IDENTITY}
    identity["baseline"] = {k: v for k, v in (identity["baseline"] or {}).items()
                            if k not in OBSERVING}
    text = json.dumps(identity, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def one_determinism(baseline: Mapping[str, Any], factors: Mapping[str, Factor]) -> dict[str, Any]:
    """``baseline`` with ``deterministic="auto"`` decided once for the whole study: on whenever
    any of its trials writes checkpoints (a crash-resumed trial then equals one that never
    stopped) or restarts (a resume study's ``full`` control equals ``none``), else off. Decided
    per cell, the ``none`` cell of a resume study trained with other kernels than the rest, and
    the control could never equal it on a GPU. (On a CPU the setting changes nothing.)"""
    from ablate.config import SETTINGS

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


def _caller_location() -> tuple[str, int]:
    """File and line of the code that declared the study (for error messages)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename in (__file__, "<string>"):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


def _fraction_cells(choices: Mapping[str, tuple[Any, ...]], baseline: Mapping[str, Any],
                    resolution: int) -> list[dict[str, Any]]:
    """The cells of a fraction. Level 0 of each factor is its baseline level (its first level
    when the baseline has another), so the first cell is the baseline."""
    coded = {key: (levels[::-1] if key in baseline and baseline[key] == levels[1] else levels)
             for key, levels in choices.items()}
    if not coded:
        return [{}]
    rows = fraction(len(coded), resolution).rows
    return [{key: coded[key][bit] for key, bit in zip(coded, row, strict=True)} for row in rows]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seeds(seeds: Any, what: str) -> None:
    """``seeds`` is a count (3: seeds 0, 1, 2), a list of distinct whole numbers or until(...)."""
    if isinstance(seeds, Until):
        return
    if _is_int(seeds):
        if seeds < 1:
            raise StudyError(f"{what} must be at least 1, got {seeds!r}", "seeds")
        return
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise StudyError(f"{what} must be a whole number (3: seeds 0, 1, 2) or a list of seeds, "
                         f"got {seeds!r}", "seeds")
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        raise StudyError(f"{what} must list whole numbers >= 0, got {seeds!r}", "seeds")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{what} lists a seed twice: {seeds!r} (a repeated seed is the same trial)",
                         "seeds")


def cell_name(levels: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in levels.items()) or "baseline"


@dataclass(frozen=True)
class Study:
    """A declared ablation study. See the README for every field."""

    name: str
    question: str
    baseline: Mapping[str, Any]
    factors: Mapping[str, Factor] = field(default_factory=dict)
    seeds: int | Sequence[int] | Until = 3
    metric: str = "test_acc"
    direction: str = "maximize"
    metrics: Sequence[str] = ()  # the question's metrics (default: metric)
    within: Sequence[str] = ()  # factors the question asks "for each level of"
    delta: float | None = None  # smallest effect of interest, in points for accuracies
    target: float | None = None  # a bar each cell's metric should pass (points for accuracies)
    pruner: str = "none"  # sampler designs: stop trials whose curves fall behind (median, hyperband)
    design: Design = "grid"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    default_preset: str | None = None
    configure: Callable[..., Mapping[str, Any]] | None = None
    location: tuple[str, int] = field(default_factory=_caller_location, compare=False)

    def __post_init__(self) -> None:
        if (not isinstance(self.name, str) or not self.name or self.name.startswith(".")
                or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in self.name)):
            raise StudyError(f"study name {self.name!r} must be a plain folder name: letters, "
                             "digits, '-', '_' or '.', not starting with '.'", "name")
        _check_seeds(self.seeds, "seeds")
        for preset_name, preset in self.presets.items():
            if not isinstance(preset, Preset):
                raise StudyError(f"preset {preset_name!r} must be Preset(...)")
            if preset.seeds is not None:
                _check_seeds(preset.seeds, f"preset {preset_name!r}: seeds")
            unknown = sorted(set(preset.factors) - set(self.factors))
            if unknown or not all(isinstance(f, Choice) for f in preset.factors.values()):
                raise StudyError(f"preset {preset_name!r}: factors may only give other levels, as "
                                 f"choice(...), to the study's factors (not {unknown or 'ranges'})",
                                 "factors")
            if isinstance(preset.requires, str):
                raise StudyError(f"preset {preset_name!r}: requires must be a list of study files",
                                 "requires")
            if preset.trials is not None and (not _is_int(preset.trials) or preset.trials < 1):
                raise StudyError(f"preset {preset_name!r}: trials must be a whole number of at "
                                 f"least 1, got {preset.trials!r}")
        if self.metric not in METRICS:
            raise StudyError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}", "metric")
        if isinstance(self.metrics, str) or not all(m in QUESTION_METRICS for m in self.metrics):
            raise StudyError(f"metrics must be a list of {', '.join(QUESTION_METRICS)}; got "
                             f"{self.metrics!r}", "metrics")
        if isinstance(self.within, str) or not all(f in self.factors for f in self.within):
            raise StudyError(f"within must list factors of the study ({', '.join(self.factors)}); "
                             f"got {self.within!r}", "within")
        if self.within and len(self.factors) < 2:
            raise StudyError("within needs two factors or more: the effect of one within each "
                             "level of another", "within")
        if self.delta is not None and (isinstance(self.delta, bool)
                                       or not isinstance(self.delta, (int, float))
                                       or not self.delta > 0):
            raise StudyError(f"delta must be a positive number (points), got {self.delta!r}",
                             "delta")
        if self.pruner not in PRUNERS:
            raise StudyError(f"pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}", "pruner")
        if self.pruner != "none" and not isinstance(self.design, Sampler):
            raise StudyError(f"pruner={self.pruner!r} needs design=sampler(...): a grid, oat or "
                             "fractional design needs every cell to the end", "pruner")
        if self.target is not None and (isinstance(self.target, bool)
                                        or not isinstance(self.target, (int, float))):
            raise StudyError(f"target must be a number (points for accuracies), got "
                             f"{self.target!r}", "target")
        if self.direction not in ("maximize", "minimize"):
            raise StudyError("direction must be 'maximize' or 'minimize'", "direction")
        if isinstance(self.design, str) and self.design not in DESIGNS:
            raise StudyError(f"design {self.design!r} is not one of {', '.join(DESIGNS)}, "
                             "sampler(...) or fractional(...)")
        for key, factor in self.factors.items():
            if not isinstance(factor, (Choice, Range)):
                raise StudyError(f"factor {key!r} must be choice(...), uniform(...) or integer(...)")
            if isinstance(factor, Range) and not isinstance(self.design, Sampler):
                raise StudyError(f"factor {key!r} is a range: it needs design=sampler(...)")
            if self.design == "oat" and key not in self.baseline:
                raise StudyError(f"design 'oat' varies factors from the baseline, which has no {key!r}")
            if (isinstance(self.design, Fractional) and isinstance(factor, Choice)
                    and len(factor.values) != 2):
                raise StudyError(f"factor {key!r} has {len(factor.values)} levels: a fractional "
                                 "design needs exactly two per factor")
        if self.default_preset is not None and self.default_preset not in self.presets:
            raise StudyError(f"default_preset {self.default_preset!r} is not among the presets")

    def preset_names(self) -> list[str]:
        return list(self.presets)

    def plan(self, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> StudyPlan:
        """Resolve ``preset`` (the default one when None) and ``--set`` overrides."""
        chosen_name = preset or self.default_preset or ""
        if chosen_name and chosen_name not in self.presets:
            raise StudyError(f"study {self.name!r} has no preset {chosen_name!r}; presets: "
                             f"{', '.join(self.presets) or '(none)'}")
        chosen = self.presets.get(chosen_name, Preset(""))
        baseline = {**self.baseline, **chosen.params, **(overrides or {})}
        seeds_spec = chosen.seeds if chosen.seeds is not None else self.seeds
        rule = seeds_spec if isinstance(seeds_spec, Until) else None
        if rule is not None and isinstance(self.design, Sampler):
            raise StudyError("seeds=until(...) needs a planned design (grid, oat, fractional): a "
                             "sampler spends its trial budget instead", "seeds")
        seeds: tuple[int, ...]
        if rule is not None:
            seeds = tuple(range(rule.max))
        elif isinstance(seeds_spec, int):
            seeds = tuple(range(seeds_spec))
        else:
            assert not isinstance(seeds_spec, Until)
            seeds = tuple(seeds_spec)
        if not seeds:
            raise StudyError("a study needs at least one seed")
        design = self.design
        if isinstance(design, Sampler) and chosen.trials is not None:
            design = Sampler(design.name, chosen.trials)
        factors = {k: f for k, f in {**self.factors, **chosen.factors}.items()
                   if k not in (overrides or {})}
        baseline = one_determinism(baseline, factors)
        trials = () if isinstance(design, Sampler) else self._enumerate(design, baseline, factors, seeds)
        return StudyPlan(self.name, self.question, chosen_name, self.metric, self.direction, design,
                         baseline, factors, seeds, trials, self.configure, tuple(self.metrics),
                         tuple(f for f in self.within if f in factors),
                         None if self.delta is None else float(self.delta),
                         None if self.target is None else float(self.target), rule, self.pruner)

    @staticmethod
    def _enumerate(design: str | Fractional, baseline: Mapping[str, Any], factors: Mapping[str, Factor],
                   seeds: tuple[int, ...]) -> tuple[PlannedTrial, ...]:
        choices = {k: f.values for k, f in factors.items() if isinstance(f, Choice)}
        if design == "grid":
            cells = [dict(zip(choices, combo, strict=True)) for combo in itertools.product(*choices.values())]
        elif isinstance(design, Fractional):
            cells = _fraction_cells(choices, baseline, design.resolution)
        else:  # one factor at a time: the baseline, then each other level of each factor
            base_levels = {k: baseline[k] for k in choices}
            cells = [base_levels] + [
                {**base_levels, key: level}
                for key, levels in choices.items() for level in levels if level != baseline[key]
            ]
        # Seed-major order: an interrupted study has every cell at its first seeds.
        planned: list[PlannedTrial] = []
        for seed in seeds:
            for levels in cells:
                planned.append(PlannedTrial(len(planned), cell_name(levels), levels,
                                            {**baseline, **levels}, seed))
        return tuple(planned)
