"""What a study varies and how: factors, designs, seed rules, and the errors of a declaration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablate.errors import AblateError
from ablate.study.fractions import RESOLUTIONS

DESIGNS = ("grid", "oat")


SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")


PRUNERS = ("none", "median", "hyperband")


METRICS = ("test_acc", "train_acc", "train_eval_acc", "test_loss", "train_loss")


# What a study's question may be about (the report's Answer): the stored metrics, the gaps,
# the swing, the jumps across restarts and divergence.
QUESTION_METRICS = METRICS + (
    "gap_running",
    "gap_eval",
    "gap_running_first",
    "swing_test",
    "jump_test",
    "jump_train",
    "diverged",
    "seconds",
)


class StudyError(AblateError, ValueError):
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
        raise StudyError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {resolution!r}")
    return Fractional(resolution)


MAX_SETTINGS = 8  # 2^8 recipes are planned (most never trained); beyond, a path costs too much


@dataclass(frozen=True)
class AblationPath:
    """``design=path(target={...})``: the ablation path from the baseline to ``target``.

    Each round starts its candidates on ``first`` seeds and adds ``step`` at a time to the
    candidates still in the race, up to the study's seeds."""

    target: Mapping[str, Any]
    first: int = 3
    step: int = 1
    kind: str = "path"


@dataclass(frozen=True)
class LeaveOneOut:
    """``design=leave_one_out(target={...})``: the source, the target, each setting added alone to
    the source and removed alone from the target."""

    target: Mapping[str, Any]
    kind: str = "leave_one_out"


Recipes = AblationPath | LeaveOneOut


def path(target: Mapping[str, Any], *, first: int = 3, step: int = 1) -> AblationPath:
    """The ablation path from the study's baseline to ``target`` (see the module's text).
    ``first``: the seeds each candidate of a round starts with; ``step``: seeds added at a time
    to those still in the race (``first`` equal to the study's seeds turns racing off)."""
    _check_target(target)
    if not (_is_int(first) and _is_int(step)) or first < 2 or step < 1:
        raise StudyError(
            f"path(first={first!r}, step={step!r}): a race starts each candidate on at least 2 "
            "seeds (an interval needs two) and adds at least 1 at a time",
            "design",
        )
    return AblationPath(dict(target), first, step)


def leave_one_out(target: Mapping[str, Any]) -> LeaveOneOut:
    """The leave-one-out screen between the study's baseline and ``target``."""
    _check_target(target)
    return LeaveOneOut(dict(target))


def _check_target(target: Any) -> None:
    if not isinstance(target, Mapping) or not target:
        raise StudyError("target must be a dict of the settings the target recipe changes", "design")
    if len(target) > MAX_SETTINGS:
        raise StudyError(
            f"target changes {len(target)} settings; at most {MAX_SETTINGS} (group settings "
            "that move together as one: model=dict(model='resnet9', width=16))",
            "design",
        )
    for name, value in target.items():
        if not isinstance(name, str) or not name or any(c in name for c in "+-,= "):
            raise StudyError(
                f"target: setting name {name!r} must be text without '+', '-', ',', '=' or spaces",
                "design",
            )
        if isinstance(value, Mapping) and (not value or not all(isinstance(k, str) for k in value)):
            raise StudyError(f"target: setting {name!r} must group at least one named key", "design")


Design = str | Sampler | Fractional | Recipes


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
    of every cell at a time while the widest simultaneous interval of the study's question is
    wider than +-``halfwidth`` (points for accuracies), up to ``max`` seeds."""

    halfwidth: float
    min: int = 7
    max: int = 10


# The fewest seeds a verdict rests on: the exact sign-flip test cannot go below 2/2^n, which is
# under 0.05 only from 6 seeds (0.031), and under the 0.025 a seed rule decides at only from 7
# (0.016). The report decides nothing on fewer, and until() starts there
# (ablate.analysis.family.exact_floor computes both; a test holds them equal).
MIN_SEEDS = 6
UNTIL_MIN_SEEDS = 7


def until(halfwidth: float, min: int = UNTIL_MIN_SEEDS, max: int = 10) -> Until:
    """``seeds=until(halfwidth=1.0, min=7, max=10)``: add seeds while the widest simultaneous
    interval the report prints for the study's question is wider than +-halfwidth points. The
    rule looks at the intervals' width only, never at whether an effect looks significant
    (stopping on significance would bias the p-values); under the rule the family's level is
    0.025, which keeps the intervals' coverage at 95 % or more (a simulation in the tests checks
    it), and the exact test needs 7 seeds at that level."""
    if isinstance(halfwidth, bool) or not isinstance(halfwidth, (int, float)) or not halfwidth > 0:
        raise StudyError(
            f"until(halfwidth=...) must be a positive number of points, got {halfwidth!r}", "seeds"
        )
    if not (_is_int(min) and _is_int(max)) or min < UNTIL_MIN_SEEDS or max < min:
        raise StudyError(
            f"until(min={min!r}, max={max!r}): start from at least {UNTIL_MIN_SEEDS} seeds (under "
            "a seed rule the report decides nothing on fewer, so a rule that stopped there would "
            "leave every verdict provisional) and cap at min or more",
            "seeds",
        )
    return Until(float(halfwidth), min, max)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
