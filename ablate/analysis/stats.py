"""Small, exact statistics over seeds: intervals, contrasts with a pooled error, the exact
sign-flip test, multiplicity corrections and power.

A study's trials form a table of cells x seeds. Every comparison the report makes is a
*contrast*: per seed, a weighted sum of cell values whose weights add to zero (a cell minus the
baseline cell; a difference of differences; a mean over some cells minus a mean over others).
Its error comes from all cells together, with the seed as a block (the residual of the additive
model cell + seed): 6 cells x 3 seeds give 10 degrees of freedom instead of the 2 a single paired
difference has. Cells with too few seeds for the block are left out of the pooled estimate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

EXACT_SIGN_FLIP = 16  # up to this many seeds every sign pattern is enumerated
POWER = 0.8  # the power at which detectable effects and needed seeds are stated


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % t confidence interval (``low``/``high`` are None below 2 values)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def straddles_zero(self) -> bool:
        return self.low is None or self.high is None or self.low <= 0.0 <= self.high


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and two-sided t confidence interval of ``values``."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return Interval(math.nan, None, None, 0)
    mean = float(data.mean())
    if n < 2:
        return Interval(mean, None, None, n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * data.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - float(half), mean + float(half), n)


@dataclass(frozen=True)
class PooledError:
    """The residual variance of the additive model value = cell + seed, and its degrees of
    freedom, from the cells that share a block of seeds."""

    variance: float
    df: int
    cells: int
    seeds: int


def pooled_error(by_cell: Mapping[str, Mapping[int, float]]) -> PooledError | None:
    """From {cell: {seed: value}}: the largest block of seeds that all but sparse cells share.

    None when fewer than two cells or two seeds share a block, or the residual is exactly zero
    (an undefined error is "cannot decide", never p = 0).
    """
    filled = {cell: values for cell, values in by_cell.items() if len(values) >= 2}
    if len(filled) < 2:
        return None
    # Seeds that most cells have; the cells having all of them form the block.
    counts: dict[int, int] = {}
    for values in filled.values():
        for seed in values:
            counts[seed] = counts.get(seed, 0) + 1
    best: tuple[int, list[str], list[int]] = (0, [], [])
    for threshold in sorted(set(counts.values()), reverse=True):
        seeds = sorted(s for s, c in counts.items() if c >= threshold)
        cells = [c for c, values in filled.items() if all(s in values for s in seeds)]
        df = (len(cells) - 1) * (len(seeds) - 1)
        if df > best[0]:
            best = (df, cells, seeds)
    df, cells, seeds = best
    if df < 1:
        return None
    table = np.array([[filled[c][s] for s in seeds] for c in cells], dtype=float)
    residual = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    variance = float((residual**2).sum() / df)
    if not variance > 0:
        return None
    return PooledError(variance, df, len(cells), len(seeds))


def sign_flip_p(values: Sequence[float]) -> float | None:
    """Exact two-sided sign-flip (randomisation) p-value of the mean of paired ``values``.

    Under "no effect" each value's sign is as likely flipped as not: the p-value is the share
    of the 2^n sign patterns whose mean is at least as far from zero as the observed one. It
    needs no normality, but cannot go below 2 / 2^n (0.25 at 3 seeds, 0.031 at 6). Beyond
    ``EXACT_SIGN_FLIP`` values, 2^16 random patterns (seeded) estimate it, never as 0."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return None
    observed = abs(data.sum())
    if n <= EXACT_SIGN_FLIP:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(1 << 16, n))
    sums = np.abs(signs @ data)
    extreme = int(np.sum(sums >= observed - 1e-12 * max(1.0, observed)))
    if n <= EXACT_SIGN_FLIP:  # every pattern, the observed one among them
        return extreme / len(signs)
    # Sampled patterns: the observed one counts too, so an estimate is never 0 (Phipson & Smyth).
    return (extreme + 1) / (len(signs) + 1)


@dataclass(frozen=True)
class Estimate:
    """A contrast's estimate (the mean over seeds of its per-seed value) and its tests.

    ``se`` and ``df`` come from the pooled error; ``p`` is the two-sided t-test, ``p_sign_flip``
    the exact sign-flip test of the per-seed values. ``unit`` is the contrast's variance per
    seed in units of the pooled variance (the sum of its squared weights)."""

    value: float
    n: int
    unit: float
    se: float | None
    df: int | None
    p: float | None
    p_sign_flip: float | None
    per_seed: tuple[float, ...] = ()

    def half_width(self, confidence: float) -> float | None:
        if self.se is None or self.df is None:
            return None
        return float(stats.t.ppf(0.5 + confidence / 2, self.df) * self.se)

    def interval(self, confidence: float) -> tuple[float, float] | None:
        half = self.half_width(confidence)
        return None if half is None else (self.value - half, self.value + half)

    def detectable(self, alpha: float) -> float | None:
        """The smallest true effect this comparison detects with 80 % power at level ``alpha``."""
        if self.se is None or self.df is None:
            return None
        return float((stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(POWER, self.df)) * self.se)


def contrast(
    by_cell: Mapping[str, Mapping[int, float]], weights: Mapping[str, float], pooled: PooledError | None
) -> Estimate | None:
    """The contrast ``weights`` over the seeds that all its cells have, tested against the
    pooled error. None when no seed has every cell of the contrast."""
    cells = [c for c, w in weights.items() if w != 0]
    if not cells or any(c not in by_cell for c in cells):
        return None
    seeds = sorted(set.intersection(*(set(by_cell[c]) for c in cells)))
    if not seeds:
        return None
    per_seed = np.array([sum(weights[c] * by_cell[c][s] for c in cells) for s in seeds])
    unit = float(sum(weights[c] ** 2 for c in cells))
    value, n = float(per_seed.mean()), len(seeds)
    se = df = p = None
    if pooled is not None:
        se = math.sqrt(pooled.variance * unit / n)
        df = pooled.df
        p = float(2 * stats.t.sf(abs(value) / se, df))
    return Estimate(value, n, unit, se, df, p, sign_flip_p(per_seed.tolist()), tuple(per_seed.tolist()))


SEEDS_CAP = 100  # seeds per cell beyond which "seeds needed" is said as "more than this"


def seeds_needed(
    effect: float, unit: float, pooled: PooledError, alpha: float, power: float = POWER, cap: int = SEEDS_CAP
) -> int | None:
    """Seeds per cell for a contrast of variance ``unit`` x the pooled variance to detect a true
    ``effect`` at level ``alpha`` (two-sided) with ``power``; with ``power`` 0.5, the seeds at
    which an effect of the measured size would just be decided. The error's degrees of freedom
    grow with the seeds as the pooled block's do. None beyond ``cap``."""
    if effect == 0:
        return None
    for n in range(2, cap + 1):
        df = max(1, (pooled.cells - 1) * (n - 1))
        needed = (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * math.sqrt(
            pooled.variance * unit / n
        )
        if needed <= abs(effect):
            return n
    return None


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order; None stays None."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
