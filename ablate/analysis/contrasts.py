"""The comparisons a design allows, as contrasts: weights over cells that add to zero.

- *against the baseline*: a cell that changes one factor, minus the baseline cell;
- *within*: a factor's level minus its baseline level with every other factor held at one
  combination of levels (a grid's simple, or conditional, effects: "for each model");
- *interaction*: for two factors, the difference of differences: does the effect of one depend
  on the level of the other? (the remaining factors at their baseline levels);
- *main effect*: a factor's level minus its baseline level, averaged over the other factors'
  levels (a grid's, or a two-level fraction's, "on average");
- *asked*: a pair of levels the study names (``contrasts=[("model", "resnet_c3", "resnet18")]``),
  within each combination of its ``within`` factors' levels, the rest at their baseline levels;
  or, with ``"averaged"`` fourth, one main effect over the other factors' levels.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ablate.study.plan import AVERAGED

AGAINST_BASELINE = "against the baseline"
WITHIN = "within"
INTERACTION = "interaction"
MAIN = "main effect"
ASKED = "asked"
KINDS = (ASKED, AGAINST_BASELINE, WITHIN, INTERACTION, MAIN)


def same(a: Any, b: Any) -> bool:
    """Levels compare as stored: numbers numerically, tuples as their JSON text."""
    if isinstance(a, (list, tuple)):
        a = json.dumps(list(a))
    if isinstance(b, (list, tuple)):
        b = json.dumps(list(b))
    return bool(a == b)


@dataclass(frozen=True)
class Contrast:
    """One comparison between cells."""

    kind: str
    factor: str
    level: Any
    baseline_level: Any
    weights: Mapping[str, float]  # cell name -> weight
    condition: Mapping[str, Any] = field(default_factory=dict)  # levels held fixed ("within")
    other: tuple[str, Any, Any] | None = None  # interaction: the other factor, level, baseline
    aliases: tuple[str, ...] = ()  # main effect of a fraction: interactions it is confounded with

    @property
    def label(self) -> str:
        """``dropout = 0.5 (vs 0.0)`` with what it is within or interacts with."""
        text = f"{self.factor} = {self.level} (vs {self.baseline_level})"
        if self.kind == INTERACTION and self.other is not None:
            factor, level, base = self.other
            return f"{text} x {factor} = {level} (vs {base})"
        if set(self.condition) == {"from"}:  # a path's step: where the path took it
            text += f" from {self.condition['from']}"
        elif self.condition:
            text += " within " + ", ".join(f"{k} = {v}" for k, v in self.condition.items())
        if self.kind == MAIN:
            text += ", averaged over the other factors"
        if self.aliases:
            text += f"; confounded with {', '.join(self.aliases)}"
        return text


@dataclass(frozen=True)
class CellGrid:
    """The cells that ran, by their levels, and each factor's levels with its baseline first."""

    cells: Mapping[str, Mapping[str, Any]]  # cell name -> {factor: level}
    levels: Mapping[str, tuple[Any, ...]]  # factor -> levels, the baseline level first

    def cell(self, levels: Mapping[str, Any]) -> str | None:
        for name, cell_levels in self.cells.items():
            if all(same(cell_levels.get(f), v) for f, v in levels.items()):
                return name
        return None

    @property
    def baseline(self) -> dict[str, Any]:
        return {factor: levels[0] for factor, levels in self.levels.items()}


def design_of(
    cells: Mapping[str, Mapping[str, Any]], factors: Mapping[str, Sequence[Any]], baseline: Mapping[str, Any]
) -> CellGrid:
    """The design with each factor's baseline level (the study's baseline value, else its first
    level) put first."""
    levels = {}
    for factor, values in factors.items():
        values = list(values)
        base = next((v for v in values if factor in baseline and same(v, baseline[factor])), values[0])
        levels[factor] = (base, *[v for v in values if not same(v, base)])
    return CellGrid(cells, levels)


def _pair(
    design: CellGrid,
    kind: str,
    factor: str,
    level: Any,
    held: Mapping[str, Any],
    condition: Mapping[str, Any],
) -> Contrast | None:
    treated = design.cell({**held, factor: level})
    control = design.cell({**held, factor: design.levels[factor][0]})
    if treated is None or control is None:
        return None
    return Contrast(
        kind, factor, level, design.levels[factor][0], {treated: 1.0, control: -1.0}, dict(condition)
    )


def against_baseline(design: CellGrid) -> list[Contrast]:
    """Each cell that changes one factor from the baseline cell, minus the baseline cell."""
    base = design.baseline
    found = []
    for factor, levels in design.levels.items():
        held = {f: v for f, v in base.items() if f != factor}
        for level in levels[1:]:
            made = _pair(design, AGAINST_BASELINE, factor, level, held, {})
            if made is not None:
                found.append(made)
    return found


def asked(design: CellGrid, pairs: Sequence[Sequence[Any]], held: Sequence[str]) -> list[Contrast]:
    """Each named pair (factor, level, versus): level minus versus within each combination of
    the ``held`` factors' levels (other than its own), the other factors at baseline."""
    found = []
    for factor, level, versus, *how in pairs:
        if factor not in design.levels:
            continue
        if how == [AVERAGED]:
            made = _averaged(design, factor, level, versus)
            found += [made] if made is not None else []
            continue
        varied = [f for f in held if f != factor and f in design.levels]
        fixed = {f: v[0] for f, v in design.levels.items() if f != factor and f not in varied}
        for combination in itertools.product(*(design.levels[f] for f in varied)):
            condition = dict(zip(varied, combination, strict=True))
            treated = design.cell({**fixed, **condition, factor: level})
            control = design.cell({**fixed, **condition, factor: versus})
            if treated is not None and control is not None and treated != control:
                weights = {treated: 1.0, control: -1.0}
                found.append(Contrast(ASKED, factor, level, versus, weights, condition))
    return found


def _averaged(design: CellGrid, factor: str, level: Any, versus: Any) -> Contrast | None:
    """``level`` minus ``versus`` averaged over the other factors: the mean over the cells at
    one level minus the mean over those at the other (a main effect the question names)."""
    treated = [c for c, lv in design.cells.items() if same(lv.get(factor), level)]
    control = [c for c, lv in design.cells.items() if same(lv.get(factor), versus)]
    if not treated or not control:
        return None
    weights = {**{c: -1.0 / len(control) for c in control}, **{c: 1.0 / len(treated) for c in treated}}
    return Contrast(MAIN, factor, level, versus, weights)


def within(design: CellGrid, conditions: Sequence[str] | None = None) -> list[Contrast]:
    """Simple effects: each factor's levels against its baseline level within each combination
    of the other factors' levels. With ``conditions``, only the effects of the other factors,
    within each level of those (the remaining factors at their baseline levels)."""
    found = []
    for factor, levels in design.levels.items():
        if conditions is not None and factor in conditions:
            continue
        others = [f for f in design.levels if f != factor]
        varied = [f for f in others if conditions is None or f in conditions]
        fixed = {f: design.levels[f][0] for f in others if f not in varied}
        for combination in itertools.product(*(design.levels[f] for f in varied)):
            condition = dict(zip(varied, combination, strict=True))
            for level in levels[1:]:
                made = _pair(design, WITHIN, factor, level, {**fixed, **condition}, condition)
                if made is not None:
                    found.append(made)
    return found


def interactions(design: CellGrid, pairs: Sequence[tuple[str, str]] | None = None) -> list[Contrast]:
    """For each pair of factors (or each of ``pairs``) and each combination of their non-baseline
    levels: (a, b) - (a0, b) - (a, b0) + (a0, b0), the other factors at their baseline levels."""
    found = []
    factors = list(design.levels)
    pairs = pairs if pairs is not None else list(itertools.combinations(factors, 2))
    for first, second in pairs:
        fixed = {f: design.levels[f][0] for f in factors if f not in (first, second)}
        a0, b0 = design.levels[first][0], design.levels[second][0]
        for a in design.levels[first][1:]:
            for b in design.levels[second][1:]:
                found_corners = [
                    design.cell({**fixed, first: x, second: y})
                    for x, y in ((a, b), (a0, b), (a, b0), (a0, b0))
                ]
                corners = [c for c in found_corners if c is not None]
                if len(corners) < 4:
                    continue
                weights: dict[str, float] = {}
                for corner, weight in zip(corners, (1.0, -1.0, -1.0, 1.0), strict=True):
                    weights[corner] = weights.get(corner, 0.0) + weight
                found.append(Contrast(INTERACTION, first, a, a0, weights, {}, (second, b, b0)))
    return found


def main_effects(design: CellGrid, aliases: Mapping[str, Sequence[str]] | None = None) -> list[Contrast]:
    """Each factor's level against its baseline level, averaged over the cells that ran: the mean
    over the cells at that level minus the mean over the cells at the baseline level."""
    found = []
    for factor, levels in design.levels.items():
        control = [c for c, lv in design.cells.items() if same(lv.get(factor), levels[0])]
        for level in levels[1:]:
            treated = [c for c, lv in design.cells.items() if same(lv.get(factor), level)]
            if not treated or not control:
                continue
            weights = {
                **{c: -1.0 / len(control) for c in control},
                **{c: 1.0 / len(treated) for c in treated},
            }
            found.append(
                Contrast(
                    MAIN, factor, level, levels[0], weights, aliases=tuple((aliases or {}).get(factor, ()))
                )
            )
    return found


def confounding(design: CellGrid) -> dict[str, list[str]]:
    """Per two-level factor, the two-factor interactions ("a x b") whose contrast over the cells
    that ran is the factor's own contrast or its mirror image: in a fraction of resolution III
    these are measured together with the main effect, and no analysis can separate them. Read
    off the cells, not the generators, so it holds for whatever fraction the results came from."""
    names = list(design.cells)
    coded = {
        factor: [same(design.cells[c].get(factor), levels[1]) for c in names]
        for factor, levels in design.levels.items()
        if len(levels) == 2
    }
    aliases: dict[str, list[str]] = {factor: [] for factor in coded}
    for factor, column in coded.items():
        others = [f for f in coded if f != factor]
        for position, first in enumerate(others):
            for second in others[position + 1 :]:
                interaction = [a != b for a, b in zip(coded[first], coded[second], strict=True)]
                if interaction == column or interaction == [not bit for bit in column]:
                    aliases[factor].append(f"{first} x {second}")
    return aliases
