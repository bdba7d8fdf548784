"""From stored trials to answers: per-cell summaries, every comparison the design allows, and
the Answer (see :mod:`ablate.analysis.answer` for the rules behind each verdict)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ablate.analysis.answer import ALPHA, ORDER, Finding, describe_family, family_contrasts, sentence
from ablate.analysis.contrasts import (
    AGAINST_BASELINE,
    ASKED,
    INTERACTION,
    MAIN,
    WITHIN,
    Contrast,
    confounding,
    design_of,
    interactions,
    main_effects,
    same,
    within,
)
from ablate.analysis.contrasts import against_baseline as baseline_contrasts
from ablate.analysis.contrasts import asked as asked_contrasts
from ablate.analysis.judge import judge
from ablate.analysis.load import StudyResults, design_kind, factor_column, is_sampled
from ablate.analysis.metrics import (
    DESCRIPTIONS,
    DIVERGED,
    JUMPS,
    SWING,
    add_derived,
    base_metric,
    compared_value,
    metric_value,
    per_image,
    swing_window,
)
from ablate.analysis.notes import against_target, missing, seed_rule_line, variation
from ablate.analysis.paths import is_recipes, recipe_contrasts, recipe_lines
from ablate.analysis.provenance import ran_on
from ablate.analysis.stats import Interval, contrast, mean_ci
from ablate.analysis.summary import short_answer

__all__ = ["CELL_METRICS", "DESCRIPTIONS", "DIVERGED", "Cell", "Report", "analyse"]

CELL_METRICS = (
    "test_acc",
    "train_acc",
    "train_eval_acc",
    "gap_running",
    "gap_eval",
    SWING,
    "best_epoch",
    "seconds",
)
EFFECT_METRICS = ("test_acc", "gap_running", "gap_eval", SWING)  # compared in every report
ARCHITECTURE_METRICS = ("model_params", "epoch_seconds")  # shown when the study varies the model


@dataclass
class Cell:
    name: str
    levels: dict[str, Any]
    baseline: bool
    trials: list[dict[str, Any]]
    summary: dict[str, Interval] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The cell's name as tables and plots show it."""
        return self.name + (" (baseline)" if self.baseline else "")

    def by_seed(self, metric: str) -> dict[int, float]:
        values = {t["seed"]: metric_value(t, metric) for t in self.trials}
        return {seed: value for seed, value in values.items() if value is not None}

    def compared(self, metric: str) -> dict[int, float]:
        """Per seed, the value comparisons use (the logarithm of a ratio metric)."""
        values = {t["seed"]: compared_value(t, metric) for t in self.trials}
        return {seed: value for seed, value in values.items() if value is not None}

    def by_image(self, metric: str) -> dict[int, Any]:
        """Per seed, each test image's part of ``metric`` (trials that recorded it)."""
        parts = {t["seed"]: per_image(t, metric) for t in self.trials}
        return {seed: part for seed, part in parts.items() if part is not None}

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter of the cell's trials, as recorded (the ``param_`` columns)."""
        first = self.trials[0] if self.trials else {}
        return {k.removeprefix("param_"): v for k, v in first.items() if k.startswith("param_")}

    @property
    def diverged_seeds(self) -> list[int]:
        return [t["seed"] for t in self.trials if t.get("state") == DIVERGED]


@dataclass
class Report:
    study: str
    question: str
    metric: str
    direction: str
    preset: str
    cells: list[Cell]
    findings: list[Finding]
    answer: list[str]
    missing: list[str]
    counts: dict[str, int]
    importance: dict[str, float] | None = None
    design: str = "grid"
    metrics: tuple[str, ...] = ()  # the question's metrics (jumps by restart point)
    within: tuple[str, ...] = ()
    delta: float | None = None
    family_size: int = 0
    jumps: tuple[str, ...] = ()
    swing_epochs: tuple[int, int] | None = None
    best_on: str = "test"  # the split the best epoch was chosen on
    ran_on: str = ""  # the devices, torch and precisions the trials ran in (one sentence)
    summary: list[str] = field(default_factory=list)  # the short answer, before any table
    path_done: bool | None = None  # a path: whether it reached the target (None: not a path)


def _cells(results: StudyResults, metrics: tuple[str, ...]) -> list[Cell]:
    """Cells of the trials with a result; a diverged trial belongs to its cell but has no
    accuracy, so it counts in the ``diverged`` share and nowhere else."""
    description = results.description
    recipes = is_recipes(design_kind(description))
    factors = list(description.get("factors", {}))
    baseline = description.get("baseline", {})
    grouped: dict[str, list[dict[str, Any]]] = {}
    for trial in results.complete + results.diverged:
        grouped.setdefault(trial["cell"], []).append(trial)
    cells = []
    for name, trials in grouped.items():
        levels = {f: trials[0].get(factor_column(description, f)) for f in factors}
        if recipes:  # a path or screen compares recipes; the source is its baseline
            is_baseline = name == "source"
        else:
            is_baseline = all(f in baseline and same(levels[f], baseline[f]) for f in factors)
        cell = Cell(name, levels, is_baseline, sorted(trials, key=lambda t: t["seed"]))
        for metric in metrics:
            cell.summary[metric] = mean_ci(list(cell.by_seed(metric).values()))
        cells.append(cell)
    return sorted(cells, key=lambda c: (not c.baseline, c.name))


def _contrasts(
    cells: list[Cell], description: Mapping[str, Any], held: tuple[str, ...]
) -> tuple[dict[str, list[Contrast]], list[Contrast]]:
    """Every comparison the design allows, by kind (see :mod:`ablate.analysis.contrasts`), and the
    ones the Answer states (its family)."""
    kind = design_kind(description)
    factors = {f: levels for f, levels in description.get("factors", {}).items() if isinstance(levels, list)}
    if kind == "sampled" or not factors:
        return {}, []
    design = design_of({c.name: c.levels for c in cells}, factors, description.get("baseline", {}))
    if kind == "fractional":
        found = {MAIN: main_effects(design, confounding(design))}
        return found, family_contrasts(found, kind, [])
    found = {AGAINST_BASELINE: baseline_contrasts(design)}
    named = asked_contrasts(design, description.get("contrasts") or (), held)
    if named:
        found[ASKED] = named
    asked: list[Contrast] = []
    if kind == "grid" and len(factors) > 1:
        # Interactions name the factor whose effect is asked about first, the held one second.
        pairs = sorted(itertools.combinations(factors, 2), key=lambda pair: pair[0] in held)
        pairs = [(b, a) if a in held and b not in held else (a, b) for a, b in pairs]
        # A main effect the study names is stated once, among the asked ones.
        averaged = [dict(c.weights) for c in named if c.kind == MAIN]
        found.update(
            {
                WITHIN: within(design),
                INTERACTION: interactions(design, pairs),
                MAIN: [c for c in main_effects(design) if dict(c.weights) not in averaged],
            }
        )
        if held:
            # Every factor held: the question asks each factor's effect within each level of
            # the others (two candidate causes, each checked for each level of the other).
            asked = within(design, conditions=None if set(held) >= set(factors) else held)
            # With three or more factors these hold the rest at baseline: not among the above.
            found[WITHIN] += [c for c in asked if c not in found[WITHIN]]
    return found, family_contrasts(found, kind, asked)


def _question_metrics(
    description: Mapping[str, Any], metric: str | None, jumps: list[str]
) -> tuple[str, ...]:
    """The Answer's metrics, with a jump metric expanded to each restart point."""
    named = (
        [metric] if metric else list(description.get("metrics") or [description.get("metric", "test_acc")])
    )
    expanded: list[str] = []
    for name in named:
        expanded += [j for j in jumps if base_metric(j) == name] if name in JUMPS else [name]
    return tuple(expanded)


def analyse(
    results: StudyResults, metric: str | None = None, importance: dict[str, float] | None = None
) -> Report:
    """Summarise every cell, make every comparison the design allows, judge the family that
    the study's question declares and state the Answer."""
    description = results.description
    jumps = add_derived(results)
    questions = _question_metrics(description, metric, jumps)
    diverged = (DIVERGED,) if results.diverged else ()
    validated = ("val_acc",) if any(t.get("val_acc") is not None for t in results.complete) else ()
    asked = tuple(m for m in questions if m not in CELL_METRICS and "@" not in m)
    cells = _cells(
        results,
        tuple(
            dict.fromkeys(CELL_METRICS + validated + ARCHITECTURE_METRICS + asked + tuple(jumps) + diverged)
        ),
    )
    compared = tuple(dict.fromkeys(questions + EFFECT_METRICS + tuple(jumps) + diverged))
    within_factors = tuple(description.get("within") or ())
    kind = design_kind(description)
    recipes = recipe_contrasts(description, results.complete + results.diverged) if is_recipes(kind) else None
    kinds, family = (
        (recipes.kinds, recipes.family) if recipes else _contrasts(cells, description, within_factors)
    )
    by_name = {c.name: c for c in cells}
    findings = []
    for contrasts in kinds.values():
        for item in contrasts:
            if any(name not in by_name for name in item.weights):  # a recipe not trained (yet)
                continue
            involved = [by_name[name] for name in item.weights]
            left_out = tuple(sorted({s for cell in involved for s in cell.diverged_seeds}))
            for name in compared:
                by_cell = {cell.name: cell.compared(name) for cell in involved}
                by_image = {cell.name: cell.by_image(name) for cell in involved}
                findings.append(
                    Finding(
                        item,
                        name,
                        contrast(by_cell, item.weights, by_image),
                        family=item in family and name in questions,
                        left_out=() if name == DIVERGED else left_out,
                    )
                )
    delta, rule = description.get("delta"), description.get("seed_rule")
    alpha = ALPHA / 2 if rule else ALPHA  # intervals at an adaptive stop: 97.5 % (see until)
    size = judge(findings, delta, alpha)
    stated = sorted((f for f in findings if f.family), key=lambda f: ORDER.index(f.verdict))
    answer = [sentence(f, delta) for f in stated]
    if stated:
        answer.insert(
            0,
            describe_family(
                size,
                questions,
                kind,
                within_factors,
                alpha,
                sum(c in kinds.get(ASKED, ()) for c in family),
            ),
        )
        answer.insert(1, variation(description, findings))
    if rule:
        answer.insert(0, seed_rule_line(rule, cells, findings, description))
    if not stated and not is_sampled(description):
        answer.append(
            "The data cannot decide yet: no comparison the question asks for has "
            "trials with a result in both of its cells."
        )
    answer += against_target(cells, description)
    summary = short_answer(
        findings, delta, description.get("preset", ""), description.get("preset_description", "")
    )
    if recipes is not None:
        first, lines = recipe_lines(recipes, findings, questions[0] if questions else "test_acc")
        answer += lines
        # The first sentence names every step with its interval: the list of decided ones
        # would repeat it.
        rest = [line for line in summary if not line.startswith("Decided:")]
        summary = ([first] if first else []) + rest[: 4 - bool(first)]
    counts = {
        "attempts": len(results.attempts),
        "complete": len(results.complete),
        "diverged": len(results.diverged),
        "pruned": len(results.pruned),
        "planned": int(description.get("trials") or 0),
    }
    epochs = max((r["epoch"] for r in results.epochs), default=0)
    return Report(
        description.get("name", results.folder.name),
        description.get("question", ""),
        metric or description.get("metric", "test_acc"),
        description.get("direction", "maximize"),
        description.get("preset", ""),
        cells,
        findings,
        answer,
        missing(results, cells, recipes.wanted() if recipes is not None else None),
        counts,
        importance,
        kind,
        questions,
        within_factors,
        delta,
        size,
        tuple(jumps),
        swing_window(epochs) if epochs else None,
        "val" if validated else "test",
        ran_on(results.complete + results.diverged, factor_column(description, "model")),
        summary,
        None if recipes is None or recipes.walk is None else recipes.walk.done,
    )
