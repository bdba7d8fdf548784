"""Study declarations: a question, a baseline, factors, seeds, a design and size presets.

A study file declares what to compare; it trains nothing itself. :meth:`Study.plan` turns the
declaration and a preset into a :class:`StudyPlan`: the exact list of (cell, seed) trials for the
``grid``, ``oat`` and ``fractional`` designs, or a sampler and a trial budget for Optuna
designs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ablate.params import column_value
from ablate.study.factors import (
    DESIGNS,
    METRICS,
    PRUNERS,
    QUESTION_METRICS,
    AblationPath,
    Choice,
    Design,
    Factor,
    Fractional,
    LeaveOneOut,
    Range,
    Sampler,
    StudyError,
    Until,
    _is_int,
)
from ablate.study.plan import AVERAGED, StudyPlan, one_determinism
from ablate.study.recipes import check_recipes
from ablate.study.trials import planned_trials

PATH_SEEDS = (
    "seeds=until(...) cannot drive a path: its race adds seeds itself (path(first=..., "
    "step=...)); give the number of seeds"
)


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


def _caller_location() -> tuple[str, int]:
    """File and line of the code that declared the study (for error messages)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename in (__file__, "<string>"):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


def _check_seeds(seeds: Any, what: str) -> None:
    """``seeds`` is a count (3: seeds 0, 1, 2), a list of distinct whole numbers or until(...)."""
    if isinstance(seeds, Until):
        return
    if _is_int(seeds):
        if seeds < 1:
            raise StudyError(f"{what} must be at least 1, got {seeds!r}", "seeds")
        return
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise StudyError(
            f"{what} must be a whole number (3: seeds 0, 1, 2) or a list of seeds, got {seeds!r}", "seeds"
        )
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        raise StudyError(f"{what} must list whole numbers >= 0, got {seeds!r}", "seeds")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{what} lists a seed twice: {seeds!r} (a repeated seed is the same trial)", "seeds")


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
    # Comparisons the question asks beside the default ones: (factor, level, versus level),
    # e.g. ("model", "resnet_c3", "resnet18"), within each level of ``within``'s factors; or
    # (factor, level, versus, AVERAGED): one comparison averaged over the other factors' levels
    # (the most precise answer where the effect does not depend on them).
    contrasts: Sequence[tuple[Any, ...]] = ()
    delta: float | None = None  # smallest effect of interest, in points for accuracies
    target: float | None = None  # a bar each cell's metric should pass (points for accuracies)
    pruner: str = "none"  # sampler designs: stop trials whose curves fall behind (median, hyperband)
    design: Design = "grid"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    default_preset: str | None = None
    configure: Callable[..., Mapping[str, Any]] | None = None
    location: tuple[str, int] = field(default_factory=_caller_location, compare=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or self.name.startswith(".")
            or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in self.name)
        ):
            raise StudyError(
                f"study name {self.name!r} must be a plain folder name: letters, "
                "digits, '-', '_' or '.', not starting with '.'",
                "name",
            )
        _check_seeds(self.seeds, "seeds")
        for preset_name, preset in self.presets.items():
            if not isinstance(preset, Preset):
                raise StudyError(f"preset {preset_name!r} must be Preset(...)")
            if preset.seeds is not None:
                _check_seeds(preset.seeds, f"preset {preset_name!r}: seeds")
            unknown = sorted(set(preset.factors) - set(self.factors))
            if unknown or not all(isinstance(f, Choice) for f in preset.factors.values()):
                raise StudyError(
                    f"preset {preset_name!r}: factors may only give other levels, as "
                    f"choice(...), to the study's factors (not {unknown or 'ranges'})",
                    "factors",
                )
            if isinstance(preset.requires, str):
                raise StudyError(
                    f"preset {preset_name!r}: requires must be a list of study files", "requires"
                )
            if preset.trials is not None and (not _is_int(preset.trials) or preset.trials < 1):
                raise StudyError(
                    f"preset {preset_name!r}: trials must be a whole number of at "
                    f"least 1, got {preset.trials!r}"
                )
        if self.metric not in METRICS:
            raise StudyError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}", "metric")
        if isinstance(self.metrics, str) or not all(m in QUESTION_METRICS for m in self.metrics):
            raise StudyError(
                f"metrics must be a list of {', '.join(QUESTION_METRICS)}; got {self.metrics!r}", "metrics"
            )
        if isinstance(self.within, str) or not all(f in self.factors for f in self.within):
            raise StudyError(
                f"within must list factors of the study ({', '.join(self.factors)}); got {self.within!r}",
                "within",
            )
        if self.within and len(self.factors) < 2:
            raise StudyError(
                "within needs two factors or more: the effect of one within each level of another", "within"
            )
        self._check_contrasts()
        if self.delta is not None and (
            isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) or not self.delta > 0
        ):
            raise StudyError(f"delta must be a positive number (points), got {self.delta!r}", "delta")
        if self.pruner not in PRUNERS:
            raise StudyError(f"pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}", "pruner")
        if self.pruner != "none" and not isinstance(self.design, Sampler):
            raise StudyError(
                f"pruner={self.pruner!r} needs design=sampler(...): a grid, oat or "
                "fractional design needs every cell to the end",
                "pruner",
            )
        if self.target is not None and (
            isinstance(self.target, bool) or not isinstance(self.target, (int, float))
        ):
            raise StudyError(
                f"target must be a number (points for accuracies), got {self.target!r}", "target"
            )
        if self.direction not in ("maximize", "minimize"):
            raise StudyError("direction must be 'maximize' or 'minimize'", "direction")
        if isinstance(self.design, str) and self.design not in DESIGNS:
            raise StudyError(
                f"design {self.design!r} is not one of {', '.join(DESIGNS)}, sampler(...), "
                "fractional(...), path(...) or leave_one_out(...)"
            )
        if isinstance(self.design, (AblationPath, LeaveOneOut)):
            if self.factors or self.within or self.contrasts:
                raise StudyError(
                    "a path or leave_one_out design varies the target's settings, not factors: "
                    "give the source recipe as the baseline and the changes as target={...}",
                    "factors",
                )
            check_recipes(self.design, self.baseline)
            if isinstance(self.design, AblationPath) and isinstance(self.seeds, Until):
                raise StudyError(PATH_SEEDS, "seeds")
        for key, factor in self.factors.items():
            if not isinstance(factor, (Choice, Range)):
                raise StudyError(f"factor {key!r} must be choice(...), uniform(...) or integer(...)")
            if isinstance(factor, Range) and not isinstance(self.design, Sampler):
                raise StudyError(f"factor {key!r} is a range: it needs design=sampler(...)")
            if self.design == "oat" and key not in self.baseline:
                raise StudyError(f"design 'oat' varies factors from the baseline, which has no {key!r}")
            if isinstance(self.design, Fractional) and isinstance(factor, Choice) and len(factor.values) != 2:
                raise StudyError(
                    f"factor {key!r} has {len(factor.values)} levels: a fractional "
                    "design needs exactly two per factor"
                )
        if self.default_preset is not None and self.default_preset not in self.presets:
            raise StudyError(f"default_preset {self.default_preset!r} is not among the presets")

    def _check_contrasts(self) -> None:
        """Each asked contrast names a factor with listed levels and two different levels of it."""
        if not isinstance(self.contrasts, (list, tuple)) or (
            self.contrasts and isinstance(self.contrasts[0], str)  # one tuple, not a list of them
        ):
            raise StudyError("contrasts must be a list of (factor, level, versus) tuples", "contrasts")
        for item in self.contrasts:
            shaped = isinstance(item, (tuple, list)) and (
                len(item) == 3 or (len(item) == 4 and item[3] == AVERAGED)
            )
            factor = item[0] if shaped else None
            levels = self.factors.get(factor) if isinstance(factor, str) else None
            if not isinstance(levels, Choice):
                raise StudyError(
                    f"contrasts: {item!r} must be (factor, level, versus level), or with "
                    f"{AVERAGED!r} fourth, for a factor given as choice(...) "
                    f"({', '.join(self.factors) or 'none'})",
                    "contrasts",
                )
            level, versus = item[1], item[2]
            listed = [column_value(v) for v in levels.values]
            if column_value(level) not in listed or column_value(versus) not in listed or level == versus:
                raise StudyError(
                    f"contrasts: {item!r} must compare two different levels of {factor} "
                    f"({', '.join(map(str, levels.values))})",
                    "contrasts",
                )

    def preset_names(self) -> list[str]:
        return list(self.presets)

    def plan(self, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> StudyPlan:
        """Resolve ``preset`` (the default one when None) and ``--set`` overrides."""
        chosen_name = preset or self.default_preset or ""
        if chosen_name and chosen_name not in self.presets:
            raise StudyError(
                f"study {self.name!r} has no preset {chosen_name!r}; presets: "
                f"{', '.join(self.presets) or '(none)'}"
            )
        chosen = self.presets.get(chosen_name, Preset(""))
        baseline = {**self.baseline, **chosen.params, **(overrides or {})}
        seeds_spec = chosen.seeds if chosen.seeds is not None else self.seeds
        rule = seeds_spec if isinstance(seeds_spec, Until) else None
        if rule is not None and isinstance(self.design, Sampler):
            raise StudyError(
                "seeds=until(...) needs a planned design (grid, oat, fractional): a "
                "sampler spends its trial budget instead",
                "seeds",
            )
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
        factors = {k: f for k, f in {**self.factors, **chosen.factors}.items() if k not in (overrides or {})}
        baseline = one_determinism(baseline, factors)
        if isinstance(design, (AblationPath, LeaveOneOut)):
            check_recipes(design, baseline)  # a preset or --set may have given a target value
            if isinstance(design, AblationPath) and rule is not None:
                raise StudyError(PATH_SEEDS, "seeds")  # a preset's seeds may be a rule
        trials = () if isinstance(design, Sampler) else planned_trials(design, baseline, factors, seeds)
        return StudyPlan(
            self.name,
            self.question,
            chosen_name,
            self.metric,
            self.direction,
            design,
            baseline,
            factors,
            seeds,
            trials,
            self.configure,
            tuple(self.metrics),
            tuple(f for f in self.within if f in factors),
            tuple(_asked(self.contrasts, factors)),
            None if self.delta is None else float(self.delta),
            None if self.target is None else float(self.target),
            rule,
            self.pruner,
            chosen.description,
        )


def _asked(contrasts: Sequence[tuple[Any, ...]], factors: Mapping[str, Factor]) -> list[tuple[Any, ...]]:
    """The asked contrasts a preset's levels allow (a smaller preset may drop a level)."""
    kept = []
    for factor, level, versus, *how in contrasts:
        levels = factors.get(factor)
        listed = [column_value(v) for v in levels.values] if isinstance(levels, Choice) else []
        if column_value(level) in listed and column_value(versus) in listed:
            kept.append((factor, column_value(level), column_value(versus), *how))
    return kept
