"""Small, exact statistics over seeds: t intervals, paired t-tests, Holm's correction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


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


@dataclass(frozen=True)
class Comparison:
    """A paired difference (treatment minus baseline, matched by seed) and its test."""

    difference: Interval
    p: float | None
    p_holm: float | None = None


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


def paired(treatment: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Paired t-test of ``treatment - baseline`` (same order = same seed)."""
    differences = np.asarray(treatment, dtype=float) - np.asarray(baseline, dtype=float)
    interval = mean_ci(differences)
    if len(differences) < 2:
        return Comparison(interval, None)
    if np.allclose(differences, differences[0]):  # no spread: the t statistic is undefined
        return Comparison(interval, 1.0 if differences[0] == 0 else 0.0)
    return Comparison(interval, float(stats.ttest_1samp(differences, 0.0).pvalue))


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
