"""The answer of a path or leave-one-out study (issue 28): which of the changes between two
recipes made the difference, each with its interval.

The comparisons are ordinary contrasts of recipes, paired by seed, judged as one family by the
report's max-T rule (:mod:`ablate.analysis.judge`):

- a path: each kept step (the recipe after it minus the one before) and the total (target minus
  source). The steps add up to the total on the seeds they share; the settings' gains *alone*
  (each flipped alone from the source, round 1) need not, and the difference is their
  interactions: the line says so.
- leave-one-out: each setting added alone to the source, each removed alone from the target,
  and the total; whether a setting's two effects differ (it interacts) is explored beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ablate.analysis.answer import DECIDED, Finding
from ablate.analysis.contrasts import Contrast
from ablate.analysis.metrics import format_endpoint, format_value, is_accuracy
from ablate.analysis.race import Walk, replay, selection_metric, selection_scores
from ablate.study.recipes import recipe_name, setting_values

STEP = "path step"
TOTAL = "source to target"
ALONE = "alone from the source"
REMOVED = "removed from the target"
INTERACTS = "interacts"


def is_recipes(kind: str) -> bool:
    return kind in ("path", "leave_one_out")


@dataclass
class Recipes:
    """A path or screen's comparisons (by kind), the ones the answer states, and the walk."""

    settings: list[str]
    kinds: dict[str, list[Contrast]] = field(default_factory=dict)
    family: list[Contrast] = field(default_factory=list)
    walk: Walk | None = None

    def wanted(self) -> dict[str, int] | None:
        """The seeds each recipe the path has reached should have (None for a screen: every
        recipe gets every seed)."""
        if self.walk is None:
            return None
        counts: dict[str, int] = {}
        for mask, _ in self.walk.in_play:
            name = recipe_name(self.settings, mask)
            counts[name] = counts.get(name, 0) + 1
        return counts


def _texts(description: Mapping[str, Any], setting: str) -> tuple[str, str]:
    """A setting's target and source values as text (``resnet9`` vs ``resnet18``)."""
    values = setting_values(description["design"]["target"])[setting]
    baseline = description.get("baseline", {})

    def shown(pairs: dict[str, Any]) -> str:
        if len(pairs) == 1:
            return str(next(iter(pairs.values())))
        return ", ".join(f"{k}={v}" for k, v in pairs.items())

    return shown(values), shown({k: baseline.get(k, "default") for k in values})


def recipe_contrasts(description: Mapping[str, Any], complete: Sequence[Mapping[str, Any]]) -> Recipes:
    """The comparisons of a path (replayed from the trials with a result, as the run chose
    them) or of a leave-one-out screen."""
    design = description["design"]
    settings = list(design["target"])
    found = Recipes(settings)
    full = (1 << len(settings)) - 1

    def step(kind: str, setting: int, after: int, before: int, where: str = "") -> Contrast:
        name = settings[setting]
        level, source = _texts(description, name)
        condition = {"from": recipe_name(settings, before)} if where else {}
        weights = {recipe_name(settings, after): 1.0, recipe_name(settings, before): -1.0}
        return Contrast(kind, name, level, source, weights, condition)

    total = Contrast(TOTAL, "recipe", "target", "source", {"target": 1.0, "source": -1.0})
    if design.get("kind") == "path":
        maximize = description.get("direction", "maximize") == "maximize"
        scores = selection_scores(complete, description.get("metric", "test_acc"), maximize)
        seeds = len(description.get("seeds") or [])
        found.walk = replay(scores, len(settings), seeds, int(design["first"]), int(design["step"]), maximize)
        steps = [
            step(STEP, r.setting_of(r.kept), r.kept, r.current, "from")
            for r in found.walk.rounds
            if r.kept is not None
        ]
        alone = [step(ALONE, bit, 1 << bit, 0) for bit in range(len(settings))]
        found.kinds = {STEP: steps, ALONE: alone}
        if len(settings) > 1:  # do the settings add up alone as they do along the path?
            weights = {recipe_name(settings, 1 << bit): 1.0 for bit in range(len(settings))}
            weights.update({"source": 1.0 - len(settings), "target": -1.0})
            found.kinds[INTERACTS] = [Contrast(INTERACTS, "settings", "each alone", "all together", weights)]
        found.family = list(steps)
    else:
        added = [step(ALONE, bit, 1 << bit, 0) for bit in range(len(settings))]
        removed = [step(REMOVED, bit, full, full ^ (1 << bit)) for bit in range(len(settings))]
        both = [
            Contrast(
                INTERACTS,
                settings[bit],
                *_texts(description, settings[bit]),
                _interaction_weights(settings, bit),
            )
            for bit in range(len(settings))
            if len(settings) > 1
        ]
        found.kinds = {ALONE: added, REMOVED: removed, INTERACTS: both}
        found.family = added + removed
    found.kinds[TOTAL] = [total]
    found.family.append(total)
    return found


def _interaction_weights(settings: list[str], bit: int) -> dict[str, float]:
    """(source+s - source) - (target - target without s): zero when s adds the same alone as
    it does among the others."""
    full = (1 << len(settings)) - 1
    weights: dict[str, float] = {}
    for mask, weight in ((1 << bit, 1.0), (0, -1.0), (full, -1.0), (full ^ (1 << bit), 1.0)):
        name = recipe_name(settings, mask)
        weights[name] = weights.get(name, 0.0) + weight
    return {name: w for name, w in weights.items() if w != 0}


def _interval(finding: Finding) -> str:
    """`` [+1.2, +5.0]``, or nothing where the finding has no interval."""
    interval, metric = finding.interval, finding.metric
    if interval is None:
        return ""
    return f" [{format_endpoint(metric, interval[0])}, {format_endpoint(metric, interval[1])}]"


def _gain(finding: Finding, verdict: bool = True) -> str:
    """``+3.1 [+1.2, +5.0]`` (points for accuracies), and "(undecided)" unless decided."""
    assert finding.estimate is not None
    text = format_value(finding.metric, finding.estimate.value, signed=True) + _interval(finding)
    return text + ("" if finding.verdict == DECIDED or not verdict else f" ({finding.verdict})")


def recipe_lines(recipes: Recipes, findings: Sequence[Finding], metric: str) -> tuple[str | None, list[str]]:
    """The short answer's first sentence (the total and its parts) and the lines that follow
    the family's verdicts: how each round chose, and whether the settings add up."""
    stated = {(id(f.contrast), f.metric): f for f in findings if f.estimate is not None}
    total = next((f for f in stated.values() if f.contrast.kind == TOTAL and f.metric == metric), None)
    unit = " points" if is_accuracy(metric) else ""
    lines: list[str] = []
    if recipes.walk is not None:
        parts = [stated.get((id(c), metric)) for c in recipes.kinds.get(STEP, [])]
        steps = [f for f in parts if f is not None]
        named = ", ".join(f"{f.contrast.factor} {_gain(f)}" for f in steps)
        lines += _round_lines(recipes, metric)
        additivity = [stated.get((id(c), metric)) for c in recipes.kinds.get(INTERACTS, [])]
        if additivity and additivity[0] is not None and total is not None:
            lines.append(_additivity(additivity[0], total, unit))
        if total is None or total.estimate is None:
            done = sum(r.kept is not None for r in recipes.walk.rounds)
            return (
                f"The path is not finished: {done} of {len(recipes.settings)} steps taken"
                + (f" ({named})" if named else "")
                + ".",
                lines,
            )
        return (
            f"Of the {format_value(metric, total.estimate.value, signed=True)}{unit} on {metric} from "
            f"the source recipe to the target ({_span(total)}), in the order the path took them: "
            f"{named}.",
            lines,
        )
    if total is None or total.estimate is None:
        return None, lines
    added = [stated.get((id(c), metric)) for c in recipes.kinds.get(ALONE, [])]
    removed = [stated.get((id(c), metric)) for c in recipes.kinds.get(REMOVED, [])]
    for finding in (stated.get((id(c), metric)) for c in recipes.kinds.get(INTERACTS, [])):
        if finding is not None and finding.p_adjusted is not None and finding.p_adjusted <= 0.05:
            lines.append(
                f"{finding.contrast.factor} interacts with the other settings on {metric}: it "
                f"adds {format_value(metric, _value(added, finding.contrast.factor), signed=True)}{unit} "
                f"alone but {format_value(metric, _value(removed, finding.contrast.factor), signed=True)}"
                f"{unit} among the others (Holm p = {finding.p_adjusted:.2g}, exploratory)."
            )
    return (
        f"From the source recipe to the target: {_gain(total)}{unit} on {metric}. Added alone to the "
        "source: "
        + ", ".join(f"{f.contrast.factor} {_gain(f)}" for f in added if f is not None)
        + "; removed "
        "alone from the target: "
        + ", ".join(f"{f.contrast.factor} {_gain(f)}" for f in removed if f is not None)
        + ".",
        lines,
    )


def _span(finding: Finding) -> str:
    """``interval [-9.8, +5.6], undecided`` (the verdict only where it is not decided)."""
    text = f"interval{_interval(finding)}" if finding.interval is not None else "no interval"
    return text + ("" if finding.verdict == DECIDED else f", {finding.verdict}")


def _additivity(finding: Finding, total: Finding, unit: str) -> str:
    """Whether the settings' gains alone add up to the path's total (its steps do, by
    construction): where they do not, the settings interact and the order of the steps matters."""
    metric, estimate = finding.metric, finding.estimate
    assert estimate is not None and total.estimate is not None
    summed = format_value(metric, total.estimate.value + estimate.value, signed=True)
    together = format_value(metric, total.estimate.value, signed=True)
    head = (
        f"Flipped alone from the source, the settings add up to {summed}{unit} on {metric}, against "
        f"{together}{unit} all together (the path's steps add up to that total): a difference of "
        f"{_gain(finding, verdict=False)}{unit}"
    )
    if finding.p_adjusted is not None and finding.p_adjusted <= 0.05:
        return (
            f"{head}, Holm p = {finding.p_adjusted:.2g}: the settings interact, so each step's "
            "gain holds where the path took it, in its order."
        )
    return (
        f"{head}, on {estimate.n} seeds: no interaction shown at this precision (another order "
        "could still give other steps)."
    )


def _value(findings: Sequence[Finding | None], setting: str) -> float | None:
    found = next((f for f in findings if f is not None and f.contrast.factor == setting), None)
    return found.estimate.value if found is not None and found.estimate is not None else None


def _round_lines(recipes: Recipes, metric: str) -> list[str]:
    """How each round chose its step, on the selection metric."""
    assert recipes.walk is not None
    settings = recipes.settings
    lines = []
    for number, chosen in enumerate(recipes.walk.rounds, start=1):
        start = recipe_name(settings, chosen.current)
        stopped = ", ".join(
            f"{settings[chosen.setting_of(mask)]} after {seeds} seeds"
            for mask, seeds in sorted(chosen.stopped.items())
        )
        if chosen.kept is None:
            lines.append(
                f"Round {number} (from {start}) is still running"
                + (f"; stopped: {stopped}" if stopped else "")
                + "."
            )
            continue
        kept = settings[chosen.setting_of(chosen.kept)]
        text = f"Round {number} (from {start}) kept {kept}"
        if chosen.runner_up is not None:
            other = settings[chosen.setting_of(chosen.runner_up)]
            ahead, shared = chosen.ahead
            text += f": it gained more than {other} on {ahead} of {shared} seeds"
        lines.append(text + (f"; stopped early: {stopped}" if stopped else "") + ".")
    chosen_on = selection_metric(metric)
    if lines and chosen_on != metric:
        lines.insert(
            0,
            f"Each round kept the step with the largest mean gain on {chosen_on}, not on {metric}: "
            "choosing the largest of several gains on the numbers that then report it would inflate it.",
        )
    return lines
