"""Fractional factorial designs: the fraction's properties, the plan, and a run with its report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from ablate import Study, choice, fractional
from ablate.analysis.answer import Finding, sentence
from ablate.analysis.contrasts import CellGrid, confounding, main_effects
from ablate.analysis.stats import Estimate
from ablate.cli.app import app
from ablate.components.discovery import Plugins
from ablate.report import build
from ablate.study.factors import StudyError
from ablate.study.fractions import fraction


def balanced(rows: list[tuple[int, ...]], columns: tuple[int, ...]) -> bool:
    """Every combination of levels in ``columns`` appears equally often."""
    counts = {combo: 0 for combo in itertools.product((0, 1), repeat=len(columns))}
    for row in rows:
        counts[tuple(row[c] for c in columns)] += 1
    return len(set(counts.values())) == 1


# (factors, resolution, runs): the textbook minimum run counts of 2^(k-p) designs.
KNOWN = [
    (3, 3, 4),
    (7, 3, 8),
    (8, 3, 16),
    (4, 4, 8),
    (5, 4, 16),
    (8, 4, 16),
    (9, 4, 32),
    (5, 5, 16),
    (6, 5, 32),
    (8, 5, 64),
]


@pytest.mark.parametrize(("factors", "resolution", "runs"), KNOWN)
def test_the_smallest_fraction_of_the_resolution(factors: int, resolution: int, runs: int) -> None:
    rows = fraction(factors, resolution).rows
    assert len(rows) == runs and len(set(rows)) == runs and rows[0] == (0,) * factors
    # Resolution R means every R - 1 columns form a full factorial, equally replicated.
    for columns in itertools.combinations(range(factors), min(resolution - 1, factors)):
        assert balanced(rows, columns), columns


def study(design: object, **factors: object) -> Study:
    return Study(
        name="f",
        question="q",
        baseline=dict(a=1, b="x", c=0.0, d=True, e=8),
        factors=factors
        or dict(
            a=choice(0, 1), b=choice("x", "y"), c=choice(0.0, 0.5), d=choice(False, True), e=choice(8, 16)
        ),
        seeds=2,
        design=design,
    )


def test_plan_starts_at_the_baseline_and_balances_every_factor() -> None:
    plan = study(fractional(4)).plan()
    assert plan.size == 16 * 2  # five factors at resolution IV: 16 cells, two seeds
    first = plan.trials[0]
    assert dict(first.levels) == dict(a=1, b="x", c=0.0, d=True, e=8) and first.cell.startswith("a=1")
    cells = [dict(t.levels) for t in plan.trials if t.seed == 0]
    assert [dict(t.levels) for t in plan.trials if t.seed == 1] == cells
    for factor, levels in dict(a=(0, 1), b=("x", "y"), c=(0.0, 0.5), d=(False, True), e=(8, 16)).items():
        assert sorted(sum(c[factor] == level for c in cells) for level in levels) == [8, 8]


def test_fractional_design_rejects_factors_without_two_levels_and_bad_resolutions() -> None:
    with pytest.raises(StudyError, match="factor 'a' has 3 levels"):
        study(fractional(), a=choice(0, 1, 2), b=choice("x", "y"))
    with pytest.raises(StudyError, match="resolution must be one of 3, 4, 5"):
        fractional(2)


FRACTIONAL = """
from ablate import Study, choice, fractional

study = Study(
    name="tiny_fraction",
    question="Which of four settings matters?",
    baseline=dict(dataset="tiny", model="tiny_mlp", hidden=8, epochs=2, batch_size=16,
                  eval_batch_size=16, lr=0.05, train_eval_size=32, augment="none",
                  weight_decay=0.0),
    factors=dict(hidden=choice(8, 2), lr=choice(0.05, 0.001), augment=choice("none", "crop_flip"),
                 weight_decay=choice(0.0, 1e-3)),
    seeds=2,
    design=fractional(4),
)
"""


@pytest.mark.slow
def test_fractional_study_runs_and_reports_main_effects(tmp_path: Path, cli_plugins: Plugins) -> None:
    path = tmp_path / "fraction.py"
    path.write_text(FRACTIONAL)
    result = CliRunner().invoke(app, ["run", str(path), "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "tiny_fraction"
    trials = ds.dataset(folder / "trials").to_table().to_pylist()
    assert len(trials) == 16 and {t["state"] for t in trials} == {"complete"}  # 8 cells x 2 seeds
    assert json.loads((folder / "study.json").read_text())["design"] == {"resolution": 4}
    report = build(folder).report
    effects = {f.contrast.factor: f for f in report.findings if f.metric == "test_acc"}
    assert set(effects) == {"hidden", "lr", "augment", "weight_decay"}
    assert all(f.family and f.contrast.kind == "main effect" for f in effects.values())
    # Each main effect, recomputed from the trials: per seed, mean at the other level minus
    # mean at the baseline level.
    baseline = {"hidden": 8, "lr": 0.05, "augment": "none", "weight_decay": 0.0}
    for factor, effect in effects.items():
        assert effect.contrast.baseline_level == baseline[factor]
        per_seed = []
        for seed in (0, 1):
            mine = [t for t in trials if t["seed"] == seed]
            treated = [t["test_acc"] for t in mine if t[f"param_{factor}"] != baseline[factor]]
            control = [t["test_acc"] for t in mine if t[f"param_{factor}"] == baseline[factor]]
            assert len(treated) == len(control) == 4
            per_seed.append(np.mean(treated) - np.mean(control))
        assert effect.estimate.value == pytest.approx(np.mean(per_seed))
        assert list(effect.estimate.per_seed) == pytest.approx(per_seed)
        assert effect.estimate.n == 2
    # A narrower hidden layer and a 50x smaller learning rate both cost accuracy in two epochs.
    assert effects["hidden"].estimate.value < 0
    assert effects["lr"].estimate.value < 0
    assert any("averaged over the other factors" in line for line in report.answer)
    # Resolution IV: no main effect shares its contrast with a two-factor interaction.
    assert all(effect.contrast.aliases == () for effect in effects.values())
    text = CliRunner().invoke(app, ["report", str(folder), "--format", "markdown"]).output
    assert "each factor's main effect" in text
    assert "| hidden | no two-factor interaction |" in text


def fraction_design(factors: int, resolution: int) -> CellGrid:
    names = [f"f{i}" for i in range(factors)]
    cells = {str(row): dict(zip(names, row, strict=True)) for row in fraction(factors, resolution).rows}
    return CellGrid(cells, {name: (0, 1) for name in names})


def test_confounding_follows_the_generators_of_a_resolution_iii_fraction() -> None:
    design = fraction_design(3, 3)  # four runs: f2 = f0 x f1
    assert confounding(design) == {"f0": ["f1 x f2"], "f1": ["f0 x f2"], "f2": ["f0 x f1"]}
    # The saturated 2^(7-4) fraction: each main effect carries three two-factor interactions.
    assert [len(a) for a in confounding(fraction_design(7, 3)).values()] == [3] * 7
    # The other half of the 2^(3-1) (f2 = not f0 x f1): the contrasts are mirror images.
    design = fraction_design(3, 3)
    mirrored = CellGrid(
        {name: {**levels, "f2": 1 - levels["f2"]} for name, levels in design.cells.items()}, design.levels
    )
    aliases = confounding(mirrored)
    assert aliases["f2"] == ["f0 x f1"]
    (effect,) = [c for c in main_effects(mirrored, aliases) if c.factor == "f2"]
    finding = Finding(effect, "test_acc", Estimate(0.05, 3, 0.01, 0.01, 0.25, (0.04, 0.05, 0.06)))
    assert "(vs 0), averaged over the other factors; confounded with f0 x f1 raises" in sentence(finding)


def test_no_confounding_at_resolution_iv_or_in_the_full_factorial() -> None:
    for factors, resolution in ((8, 4), (5, 5)):
        assert all(a == [] for a in confounding(fraction_design(factors, resolution)).values())
    names = ["a", "b", "c"]
    full = CellGrid(
        {str(row): dict(zip(names, row, strict=True)) for row in itertools.product((0, 1), repeat=3)},
        dict.fromkeys(names, (0, 1)),
    )
    assert confounding(full) == {"a": [], "b": [], "c": []}
