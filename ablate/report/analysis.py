"""From stored trials to answers: per-cell summaries, paired effects, the verdict."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ablate.events import TrialState
from ablate.report.load import StudyResults
from ablate.report.stats import Comparison, Interval, holm, mean_ci, paired

CELL_METRICS = ("test_acc", "train_acc", "train_eval_acc", "gap_running", "gap_eval",
                "swing_test", "best_epoch", "seconds")
DIVERGED = TrialState.DIVERGED.value  # a cell metric, the share of diverged seeds, when any did
EFFECT_METRICS = ("gap_running", "gap_eval", "swing_test")
JUMP_METRICS = ("jump_test", "jump_train")  # resume studies only
MAIN_EFFECT = "(main effect)"  # an Effect's cell when it averages over a fractional design's cells
DESCRIPTIONS = {
    "test_acc": "final test accuracy",
    "train_acc": "train accuracy as seen during training (augmentation and dropout on)",
    "train_eval_acc": "train accuracy in eval mode on unaugmented images",
    "gap_running": "test minus running train accuracy",
    "gap_eval": "eval-mode train minus test accuracy",
    "swing_test": "mean change of test accuracy from one epoch to the next, up or down, over "
                  "the second half of training (oscillation)",
    "best_epoch": "epoch of the best test accuracy",
    "seconds": "wall time of a trial",
    "jump_test": "test accuracy change from the epoch before each restart point to the epoch after",
    "jump_train": "running train accuracy change across each restart point",
    "diverged": "share of seeds whose training loss became NaN or infinite (left out of the "
                "other metrics)",
}


def metric_value(trial: Mapping[str, Any], metric: str) -> float | None:
    """A trial's value of ``metric``, derived gaps included."""
    if metric == DIVERGED:
        return float(trial.get("state") == DIVERGED)
    if metric == "gap_running":
        return _difference(trial.get("test_acc"), trial.get("train_acc"))
    if metric == "gap_eval":
        return _difference(trial.get("train_eval_acc"), trial.get("test_acc"))
    value = trial.get(metric)
    return None if value is None else float(value)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def is_accuracy(metric: str) -> bool:
    """Whether ``metric`` is a share shown in percent (points for differences)."""
    return metric.endswith("_acc") or metric.startswith(("gap_", "jump_", "swing_")) or metric == DIVERGED


def add_restart_jumps(results: StudyResults) -> bool:
    """For resume studies, give each trial its mean accuracy jump across the restart points.

    The restart points are the epochs e > 1 with (e - 1) divisible by ``resume_every``; they are
    measured for continuous trials too, so a restart's extra jump is a paired difference.
    """
    found = False
    for trial in results.complete:
        period = trial.get("param_resume_every") or 0
        if period <= 0:
            continue
        rows = {r["epoch"]: r for r in results.rows_of(results.epochs, trial)}
        points = [e for e in rows if e > 1 and (e - 1) % period == 0 and e - 1 in rows]
        for metric, column in (("jump_test", "test_acc"), ("jump_train", "train_acc")):
            jumps = [rows[e][column] - rows[e - 1][column] for e in points]
            trial[metric] = sum(jumps) / len(jumps) if jumps else None
        found = found or bool(points)
    return found


def add_test_swings(results: StudyResults) -> None:
    """Give each trial its ``swing_test``: the mean absolute epoch-to-epoch change of test
    accuracy over the second half of training, where the upward trend has mostly flattened and
    what is left is oscillation. None for a one-epoch trial."""
    for trial in results.complete:
        rows = sorted(results.rows_of(results.epochs, trial), key=lambda r: r["epoch"])
        accuracies = [r["test_acc"] for r in rows][(len(rows) - 1) // 2:]
        changes = [abs(b - a) for a, b in zip(accuracies, accuracies[1:], strict=False)]
        trial["swing_test"] = sum(changes) / len(changes) if changes else None


def format_value(metric: str, value: float | None, signed: bool = False) -> str:
    """Accuracies in percent (points for differences), other metrics as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    sign = "+" if signed else ""
    if is_accuracy(metric):
        return f"{value * 100:{sign}.1f}"
    return f"{value:{sign}.3g}"


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

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter of the cell's trials, as recorded (the ``param_`` columns)."""
        first = self.trials[0] if self.trials else {}
        return {k.removeprefix("param_"): v for k, v in first.items() if k.startswith("param_")}

    @property
    def diverged_seeds(self) -> list[int]:
        return [t["seed"] for t in self.trials if t.get("state") == DIVERGED]


@dataclass
class Effect:
    """One factor level against the baseline, paired by seed."""

    factor: str
    level: Any
    baseline_level: Any
    cell: str
    metric: str
    comparison: Comparison
    # for a main effect in a fraction: the two-factor interactions it cannot be told apart from
    aliases: tuple[str, ...] = ()
    left_out: tuple[int, ...] = ()  # seeds that diverged in one of the compared cells


@dataclass
class Report:
    study: str
    question: str
    metric: str
    direction: str
    preset: str
    cells: list[Cell]
    effects: list[Effect]
    verdict: list[str]
    missing: list[str]
    counts: dict[str, int]
    importance: dict[str, float] | None = None


def _same(a: Any, b: Any) -> bool:
    """Levels compare as stored: numbers numerically, tuples as their JSON text."""
    if isinstance(b, (list, tuple)):
        b = json.dumps(list(b))
    return a == b


def factor_column(description: Mapping[str, Any], factor: str) -> str:
    """The trials table's column of ``factor`` (its canonical parameter name, see the runner)."""
    return description.get("columns", {}).get(factor, f"param_{factor}")


def _cells(results: StudyResults) -> list[Cell]:
    """Cells of the trials with a result; a diverged trial belongs to its cell but has no
    accuracy, so it counts in the ``diverged`` share and nowhere else."""
    description = results.description
    factors = list(description.get("factors", {}))
    baseline = description.get("baseline", {})
    grouped: dict[str, list[dict[str, Any]]] = {}
    for trial in results.complete + results.diverged:
        grouped.setdefault(trial["cell"], []).append(trial)
    metrics = CELL_METRICS + ((DIVERGED,) if results.diverged else ())
    cells = []
    for name, trials in grouped.items():
        levels = {f: trials[0].get(factor_column(description, f)) for f in factors}
        is_baseline = all(_same(levels[f], baseline.get(f)) for f in factors if f in baseline)
        cell = Cell(name, levels, is_baseline and all(f in baseline for f in factors),
                    sorted(trials, key=lambda t: t["seed"]))
        for metric in metrics:
            cell.summary[metric] = mean_ci(list(cell.by_seed(metric).values()))
        cells.append(cell)
    return sorted(cells, key=lambda c: (not c.baseline, c.name))


def _effects(cells: list[Cell], metric: str, description: Mapping[str, Any]) -> list[Effect]:
    """Each factor level against the baseline, Holm-corrected: main effects for a fractional
    design (its cells rarely differ from the baseline in one factor), else the cells that
    change one factor, paired with the baseline cell by seed."""
    effects = (_main_effects(cells, metric, description) if is_fractional(description)
               else _simple_effects(cells, metric))
    adjusted = holm([e.comparison.p for e in effects])
    for effect, p_holm in zip(effects, adjusted, strict=True):
        effect.comparison = Comparison(effect.comparison.difference, effect.comparison.p, p_holm)
    return effects


def _simple_effects(cells: list[Cell], metric: str) -> list[Effect]:
    base = next((c for c in cells if c.baseline), None)
    if base is None:
        return []
    effects = []
    for cell in cells:
        changed = [f for f in cell.levels if not _same(cell.levels[f], base.levels[f])]
        if len(changed) != 1:
            continue
        factor = changed[0]
        treated, control = cell.by_seed(metric), base.by_seed(metric)
        seeds = sorted(set(treated) & set(control))
        comparison = paired([treated[s] for s in seeds], [control[s] for s in seeds])
        left_out = () if metric == DIVERGED else tuple(sorted(set(cell.diverged_seeds)
                                                              | set(base.diverged_seeds)))
        effects.append(Effect(factor, cell.levels[factor], base.levels[factor], cell.name,
                              metric, comparison, left_out=left_out))
    return effects


def is_sampled(description: Mapping[str, Any]) -> bool:
    """Whether an Optuna sampler proposed the study's trials (stored as ``{"name", "trials"}``)."""
    design = description.get("design")
    return isinstance(design, dict) and "trials" in design


def is_fractional(description: Mapping[str, Any]) -> bool:
    """Whether the study ran a fractional factorial design (stored as ``{"resolution": R}``)."""
    design = description.get("design")
    return isinstance(design, dict) and "resolution" in design


def _main_effects(cells: list[Cell], metric: str, description: Mapping[str, Any]) -> list[Effect]:
    """Each factor's main effect in a two-level design: per seed, the mean over the cells at the
    other level minus the mean over the cells at the baseline level; the seeds give the
    interval. Only seeds that every cell has count, so that each mean is over a balanced half."""
    by_seed = [cell.by_seed(metric) for cell in cells]
    seeds = sorted(set.intersection(*(set(values) for values in by_seed))) if cells else []
    levels = _two_levels(description)
    aliases = confounding(cells, description)
    effects = []
    for factor, (control, treated) in levels.items():
        at_treated = [values for cell, values in zip(cells, by_seed, strict=True)
                      if _same(cell.levels[factor], treated)]
        at_control = [values for cell, values in zip(cells, by_seed, strict=True)
                      if not _same(cell.levels[factor], treated)]
        if not at_treated or not at_control:
            continue
        comparison = paired([_mean_at(at_treated, s) for s in seeds],
                            [_mean_at(at_control, s) for s in seeds])
        effects.append(Effect(factor, treated, control, MAIN_EFFECT, metric, comparison,
                              tuple(aliases[factor])))
    return effects


def _two_levels(description: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each two-level factor's (baseline level, other level)."""
    baseline = description.get("baseline", {})
    return {factor: (levels[1], levels[0]) if factor in baseline and _same(levels[1], baseline[factor])
            else (levels[0], levels[1])
            for factor, levels in description.get("factors", {}).items() if len(levels) == 2}


def confounding(cells: list[Cell], description: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per factor, the two-factor interactions ("a x b") whose contrast over the cells that ran
    is the factor's own contrast or its mirror image: in a fraction of resolution III these are
    measured together with the main effect, and no analysis can separate them. Read off the
    cells, not the generators, so it holds for whatever fraction the results came from."""
    levels = _two_levels(description)
    coded = {factor: [_same(cell.levels[factor], treated) for cell in cells]
             for factor, (_, treated) in levels.items()}
    aliases: dict[str, list[str]] = {factor: [] for factor in coded}
    for factor, column in coded.items():
        others = [f for f in coded if f != factor]
        for position, first in enumerate(others):
            for second in others[position + 1:]:
                interaction = [a != b for a, b in zip(coded[first], coded[second], strict=True)]
                if interaction == column or interaction == [not bit for bit in column]:
                    aliases[factor].append(f"{first} x {second}")
    return aliases


def _mean_at(cells_by_seed: list[dict[int, float]], seed: int) -> float:
    return sum(values[seed] for values in cells_by_seed) / len(cells_by_seed)


def sentence(effect: Effect) -> str:
    """The measured answer for one factor level, in words, with numbers and interval."""
    d = effect.comparison.difference
    unit = " points" if is_accuracy(effect.metric) else ""
    averaged = ", averaged over the other factors" if effect.cell == MAIN_EFFECT else ""
    if effect.aliases:
        averaged += f"; confounded with {', '.join(effect.aliases)}"
    what = f"{effect.factor} = {effect.level} (vs {effect.baseline_level}{averaged})"
    if effect.left_out:
        what += (f" [seeds {list(effect.left_out)} diverged in one of the two cells and are left "
                 "out]")
    if d.n >= 1 and d.low == d.high == d.mean == 0.0:
        return f"{what}: identical to the baseline on all {d.n} paired seeds ({effect.metric})."
    if d.n < 2:
        return (f"{what}: cannot decide: only {d.n} seed(s) paired with the baseline; "
                "run more seeds.")
    numbers = (f"{format_value(effect.metric, d.mean, True)}{unit} "
               f"[95% CI {format_value(effect.metric, d.low, True)}, "
               f"{format_value(effect.metric, d.high, True)}], "
               f"Holm p = {effect.comparison.p_holm:.3g}, n = {d.n}")
    if d.straddles_zero:
        return f"{what}: no clear effect on {effect.metric}: {numbers}; the interval straddles zero."
    direction = "raises" if d.mean > 0 else "lowers"
    strength = "" if (effect.comparison.p_holm or 1.0) < 0.05 else (
        " (suggestive: not significant after Holm's correction)")
    return f"{what} {direction} {effect.metric} by {numbers}{strength}."


def _missing(results: StudyResults, cells: list[Cell]) -> list[str]:
    notes = list(results.unreadable)
    for fingerprint, count in results.other_plans.items():
        notes.append(f"{count} trial attempts of another plan of this study (fingerprint "
                     f"{fingerprint}) are in this folder and left out of this report")
    planned = results.description.get("trials")
    with_result = results.complete + results.diverged
    if planned and len(with_result) < planned:
        notes.append(f"{len(with_result)} of {planned} planned trials have a result; the rest are "
                     "missing (still running, interrupted, or failed).")
    failed = sorted({r["trial"] for r in results.attempts} - {r["trial"] for r in with_result})
    if failed:
        notes.append(f"trials with only failed or interrupted attempts: {failed}")
    without_epochs = sorted(t["trial"] for t in results.complete
                            if not results.rows_of(results.epochs, t))
    if without_epochs:
        notes.append(f"trials {without_epochs} have no epochs rows (a deleted or unreadable file): "
                     "left out of the swing, the restart jumps and the learning curves")
    seeds = set(results.description.get("seeds", []))
    for cell in cells:
        lacking = sorted(seeds - {t["seed"] for t in cell.trials})
        if lacking:
            notes.append(f"cell {cell.name} lacks seeds {lacking}")
    if cells and not any(c.baseline for c in cells):
        notes.append("the baseline cell has no complete trial: effects cannot be computed")
    return notes


def analyse(results: StudyResults, metric: str | None = None,
            importance: dict[str, float] | None = None) -> Report:
    """Summarise every cell, compare each factor level with the baseline, state the verdict."""
    description = results.description
    metric = metric or description.get("metric", "test_acc")
    jumps = JUMP_METRICS if add_restart_jumps(results) else ()
    add_test_swings(results)
    cells = _cells(results)
    for cell in cells:
        for name in jumps:
            cell.summary[name] = mean_ci(list(cell.by_seed(name).values()))
    effects = _effects(cells, metric, description)
    jump_effects = [e for m in jumps for e in _effects(cells, m, description)]
    gap_effects = [e for m in EFFECT_METRICS if m != metric for e in _effects(cells, m, description)]
    verdict = [sentence(e) for e in effects + jump_effects]
    if not effects:
        verdict.append("The data cannot decide yet: no factor level has complete trials next to "
                       "a complete baseline cell.")
    counts = {"attempts": len(results.attempts), "complete": len(results.complete),
              "diverged": len(results.diverged),
              "planned": int(description.get("trials") or 0)}
    return Report(description.get("name", results.folder.name), description.get("question", ""),
                  metric, description.get("direction", "maximize"), description.get("preset", ""),
                  cells, effects + jump_effects + gap_effects, verdict, _missing(results, cells), counts,
                  importance)
