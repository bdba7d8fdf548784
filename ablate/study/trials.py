"""The trials a design plans: every (cell, seed) pair of a grid, one-factor-at-a-time, fractional,
path or leave-one-out design."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ablate.study.factors import AblationPath, Choice, Factor, Fractional, LeaveOneOut, Recipes
from ablate.study.fractions import fraction
from ablate.study.plan import PlannedTrial, cell_name
from ablate.study.recipes import recipe_trials


def planned_trials(
    design: str | Fractional | Recipes,
    baseline: Mapping[str, Any],
    factors: Mapping[str, Factor],
    seeds: tuple[int, ...],
) -> tuple[PlannedTrial, ...]:
    """The (cell, seed) trials of an enumerated design, seed-major: an interrupted study has
    every cell at its first seeds. (A sampler plans none: it proposes as it goes.)"""
    if isinstance(design, (AblationPath, LeaveOneOut)):
        return recipe_trials(design, baseline, seeds)
    choices = {k: f.values for k, f in factors.items() if isinstance(f, Choice)}
    if design == "grid":
        cells = [dict(zip(choices, combo, strict=True)) for combo in itertools.product(*choices.values())]
    elif isinstance(design, Fractional):
        cells = fraction_cells(choices, baseline, design.resolution)
    else:  # one factor at a time: the baseline, then each other level of each factor
        base_levels = {k: baseline[k] for k in choices}
        cells = [base_levels] + [
            {**base_levels, key: level}
            for key, levels in choices.items()
            for level in levels
            if level != baseline[key]
        ]
    planned: list[PlannedTrial] = []
    for seed in seeds:
        for levels in cells:
            planned.append(
                PlannedTrial(len(planned), cell_name(levels), levels, {**baseline, **levels}, seed)
            )
    return tuple(planned)


def fraction_cells(
    choices: Mapping[str, tuple[Any, ...]], baseline: Mapping[str, Any], resolution: int
) -> list[dict[str, Any]]:
    """The cells of a fraction. Level 0 of each factor is its baseline level (its first level
    when the baseline has another), so the first cell is the baseline."""
    coded = {
        key: (levels[::-1] if key in baseline and baseline[key] == levels[1] else levels)
        for key, levels in choices.items()
    }
    if not coded:
        return [{}]
    rows = fraction(len(coded), resolution).rows
    return [{key: coded[key][bit] for key, bit in zip(coded, row, strict=True)} for row in rows]
