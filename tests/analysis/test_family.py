"""The family's max-T sign-flip test against an independent enumeration, and its error rate,
coverage and power by simulation (issue 26): 6 cells x 6 seeds, each treated cell against the
baseline, in the scenarios where pooling one variance went wrong."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from ablate.analysis.family import exact_floor, family_test
from ablate.analysis.power import Power

CELLS, SEEDS, ALPHA = 6, 6, 0.05
REPS = 2000
# The Monte Carlo error of a rate near 0.05 over REPS studies, twice: the simulations' allowance.
SLACK = 2 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)


def paired_t(values: list[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean / (sd / math.sqrt(n))


def test_the_max_t_test_matches_an_independent_enumeration() -> None:
    """Every sign pattern flips whole seeds across the family; a comparison's adjusted p is the
    share of patterns whose largest |t| reaches its own |t|, in plain Python."""
    rng = np.random.default_rng(11)
    columns = [list(rng.normal(effect, 1.0, SEEDS)) for effect in (2.0, 0.3, -0.5)]
    test = family_test(columns, ALPHA)
    assert test is not None and test.exact
    maxima = []
    for signs in itertools.product((1, -1), repeat=SEEDS):
        maxima.append(
            max(abs(paired_t([s * v for s, v in zip(signs, column, strict=True)])) for column in columns)
        )
    for k, column in enumerate(columns):
        t = paired_t(column)
        assert test.t[k] == pytest.approx(t)
        assert test.se[k] == pytest.approx(np.std(column, ddof=1) / math.sqrt(SEEDS))
        expected = sum(m >= abs(t) * (1 - 1e-9) for m in maxima) / len(maxima)
        assert test.p_adjusted[k] == pytest.approx(expected)
        # Decided exactly when the printed interval mean +- c x se excludes zero.
        assert (test.p_adjusted[k] <= ALPHA) == (abs(t) > test.critical)


def test_six_seeds_that_all_agree_can_be_decided_whatever_the_family_size() -> None:
    """Bonferroni over 12 comparisons would need p < 0.004, which 6 seeds cannot give (the
    smallest exact p is 2/64); the max-T test reaches 2/64 for the family's strongest effect."""
    rng = np.random.default_rng(2)
    columns = [list(rng.normal(0.0, 1.0, SEEDS)) for _ in range(11)]
    columns.insert(0, list(8.0 + rng.normal(0.0, 1.0, SEEDS)))
    test = family_test(columns, ALPHA)
    assert test is not None and test.p_adjusted[0] == pytest.approx(2 / 64)
    assert exact_floor(0.05) == 6 and exact_floor(0.025) == 7
    assert not family_test([list(rng.normal(5.0, 1.0, 5))], ALPHA).exact  # type: ignore[union-attr]


def differences(kind: str, effects: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One study: cells x seeds with a shared seed effect, minus the baseline cell (column 0)."""
    scale = np.ones(CELLS)
    if kind == "one cell 3x noisier":
        scale[3] = 3.0
    if kind == "baseline 3x noisier":
        scale[0] = 3.0
    if kind == "heavy tails (t, 3 df)":
        noise = stats.t.rvs(3, size=(SEEDS, CELLS), random_state=rng)
    else:
        noise = rng.normal(size=(SEEDS, CELLS)) * scale
    values = noise + rng.normal(0.0, 2.0, (SEEDS, 1)) + np.r_[0.0, effects]
    return np.asarray(values[:, 1:] - values[:, [0]])


SCENARIOS = ("equal variances", "one cell 3x noisier", "baseline 3x noisier", "heavy tails (t, 3 df)")


@pytest.mark.parametrize("kind", SCENARIOS)
def test_the_family_wise_error_is_at_most_alpha(kind: str) -> None:
    """No effect anywhere: the chance of deciding anything is at most 0.05 (exactly 2/64 here,
    since only the all-agreeing patterns can reach it)."""
    rng = np.random.default_rng(SCENARIOS.index(kind))
    errors = 0
    for _ in range(REPS):
        test = family_test(differences(kind, np.zeros(CELLS - 1), rng).T, ALPHA)
        assert test is not None
        errors += min(test.p_adjusted) <= ALPHA
    rate = errors / REPS
    assert rate <= ALPHA + SLACK
    assert rate > 0.01  # the test is alive: it does reject at about its level


def test_the_simultaneous_intervals_cover_under_real_effects() -> None:
    """With two real effects and one noisy cell, every comparison's interval mean +- c x se
    covers its true difference at once in 95 % of studies or more."""
    rng = np.random.default_rng(7)
    effects = np.array([3.0, 1.5, 0.0, 0.0, 0.0])
    covered = 0
    for _ in range(REPS):
        values = differences("one cell 3x noisier", effects, rng)
        test = family_test(values.T, ALPHA)
        assert test is not None
        halves = test.critical * np.array(test.se)
        covered += bool(np.all(np.abs(values.mean(0) - effects) <= halves))
    assert covered / REPS >= 1 - ALPHA - SLACK


@pytest.mark.parametrize("seeds", [6, 10])
def test_the_printed_detectable_effect_has_80_percent_power(seeds: int) -> None:
    """The detectable effect is computed for the rule actually used (simulated at 6 seeds,
    where the exact test needs every seed to agree; a max-t approximation at 10): studies with
    a true effect of that size are decided 80 % of the time, give or take 0.05."""
    correlation = np.full((CELLS - 1, CELLS - 1), 0.5) + 0.5 * np.eye(CELLS - 1)  # cells - baseline
    detectable = Power(correlation, ALPHA).detectable(0, seeds)
    assert detectable is not None
    sd = math.sqrt(2.0)  # of a per-seed difference of two cells with noise sd 1
    rng = np.random.default_rng(100 + seeds)
    reps = 1000
    decided = 0
    for _ in range(reps):
        values = rng.normal(size=(seeds, CELLS)) + rng.normal(0.0, 2.0, (seeds, 1))
        values[:, 1] += detectable * sd
        test = family_test((values[:, 1:] - values[:, [0]]).T, ALPHA)
        assert test is not None
        decided += test.p_adjusted[0] <= ALPHA
    assert abs(decided / reps - 0.8) <= 0.05


def test_the_power_of_one_comparison_is_the_whole_family_s_recomputed() -> None:
    """Power keeps the other comparisons' largest |t| per simulated study and recomputes only
    the one with the effect: the same decisions as flipping the whole family anew, with and
    without the test images' error, whichever comparison was asked first."""
    from ablate.analysis.family import combined_t, flipped_t, sign_patterns

    rng = np.random.default_rng(5)
    root = rng.normal(size=(4, 4))
    correlation = np.corrcoef(root @ root.T)
    plain, images = Power(correlation, ALPHA), Power(correlation, ALPHA, [0.3, 0.0, 1.2, 0.5], correlation)
    n, patterns = 6, sign_patterns(6)
    for column, effect in [(2, 1.5), (0, 0.7), (2, 2.5), (3, 0.0)]:
        plain(column, effect, n)
        rows = plain._draws[n].copy()
        rows[:, :, column] += effect
        observed = np.abs(flipped_t(patterns[:1], rows)[:, 0, column])
        maxima = np.abs(flipped_t(patterns, rows)).max(-1)
        p = (maxima >= observed[:, None] * (1 - 1e-9)).sum(1) / len(patterns)
        assert plain(column, effect, n) == float(np.mean(p <= ALPHA + 1e-12))

        images(column, effect, n)
        values = images._exact_studies[n].copy()
        values[:, :, column] += effect
        shares = images.image_shares
        means = np.einsum("pn,snm->spm", patterns, values) / n
        squares = (values**2).sum(1)[:, None, :]
        shifts = (images._null_shifts * np.sqrt(shares))[:, None, :, :]
        whole = np.abs(combined_t(means, squares, n, shares, shifts)).max(-1).reshape(len(values), -1)
        square, mean = squares[:, 0, column], means[:, 0, column]
        seed_var = np.maximum((square - n * mean**2) / (n - 1), 1e-30 * square) / n
        observed = np.abs(mean / np.sqrt(seed_var + shares[column]))
        p = ((whole >= observed[:, None] * (1 - 1e-9)).sum(1) + 1) / (whole.shape[1] + 1)
        assert images(column, effect, n) == float(np.mean(p <= ALPHA + 1e-12))


def test_seeds_needed_are_floored_at_the_exact_test_and_capped() -> None:
    power = Power(np.eye(3), ALPHA)
    assert power.seeds_needed(0, 10.0) == 6  # never fewer than the exact test needs
    needed = power.seeds_needed(0, 1.0)
    assert needed is not None and 6 < needed < 30
    assert power(0, 1.0, needed) >= 0.8 > power(0, 1.0, needed - 1)
    assert power.seeds_needed(0, 0.05) is None  # beyond 100 seeds: said as "more than 100"
