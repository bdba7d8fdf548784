"""One procedure for a family of comparisons: the max-T sign-flip test, and the power of that
rule (the effect it detects, the seeds it needs).

Each comparison is a column of per-seed values (a contrast of cells, paired by seed) and has
its own variance: its statistic is the paired t, mean / (sd / sqrt(n)). Under "no effect
anywhere in the family" each seed's row of values is as likely negated as not, whatever the
cells' variances and however the comparisons correlate (they share cells, and metrics of one
trial move together). Flipping whole rows at once, over all 2^n patterns, gives the exact
distribution of the largest |t| in the family; its (1 - alpha) point ``c`` is the critical
value of every comparison (Westfall & Young's single-step max-T, as a randomisation test).

- A comparison is *decided* when its adjusted p (the share of patterns whose largest |t|
  reaches its |t|) is at most alpha, which is exactly when its interval, mean +- c x se,
  excludes zero: the printed interval and the decision are one rule.
- At 6 seeds, 64 patterns: the smallest adjusted p is 2/64, reached only when all six seeds
  agree in sign and no other pattern beats the comparison: a strong effect is decided at 6
  seeds whatever the family's size. Below 6 seeds no test reaches 0.05; the interval printed
  then uses the parametric ``c`` below and no verdict is more than provisional.
- Past ``EXACT_PATTERNS`` seeds, 2^16 sampled patterns (seeded; the observed one included, so
  no p is 0) stand in for all of them.

Power is that of this rule. Up to ``SIMULATE_POWER`` seeds the test is coarse (at 6 seeds it
needs every seed to agree) and no formula fits: the rule itself runs on simulated normal data
with the family's correlation. Beyond, the exact test behaves as a max-t test with a
continuous critical value: ``c`` is the (1 - alpha) point of the largest |t| on simulated
normal data with the family's correlation, and the power of one comparison the noncentral t's.
Both were checked against simulations of the exact rule (``tests/analysis/test_family.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy import optimize, stats

EXACT_PATTERNS = 16  # up to this many seeds every sign pattern is enumerated
SAMPLED_PATTERNS = 1 << 16
SIMULATE_POWER = 8  # up to this many seeds, power comes from simulating the exact rule
POWER_DRAWS = 400  # simulated studies per power evaluation (Monte Carlo error about 0.02)
NULL_DRAWS = 4000  # simulated studies for the parametric critical value
POWER = 0.8  # the power at which detectable effects and needed seeds are stated
SEEDS_CAP = 100  # beyond this, "seeds needed" is said as "more than this"


def exact_floor(alpha: float) -> int:
    """The fewest seeds at which the exact test can reach ``alpha`` (2 / 2^n <= alpha): 6 at
    0.05, 7 at 0.025."""
    return next(n for n in range(2, 64) if 2 / 2**n <= alpha + 1e-12)


@cache
def _patterns(n: int) -> np.ndarray:
    """The sign patterns of n seeds, the observed one (all +1) first."""
    if n <= EXACT_PATTERNS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    signs = np.random.default_rng(0).choice((1.0, -1.0), size=(SAMPLED_PATTERNS, n))
    signs[0] = 1.0
    return signs


def _t(patterns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The paired t of every column under every sign pattern (patterns x columns). A flip keeps
    each column's sum of squares, so the variance follows from the flipped mean alone."""
    n = values.shape[-2]
    means = patterns @ values / n
    squares = (values**2).sum(-2, keepdims=True)
    variance = np.maximum((squares - n * means**2) / (n - 1), 1e-30 * squares)
    return np.asarray(means / np.sqrt(variance / n))


def _critical(maxima: np.ndarray, alpha: float) -> float:
    """The smallest value that at most alpha of the patterns' largest |t| exceed."""
    ordered = np.sort(maxima)[::-1]
    return float(ordered[min(len(ordered) - 1, int(math.floor(alpha * len(ordered) + 1e-9)))])


@dataclass(frozen=True)
class FamilyTest:
    """The max-T test of a family: per comparison its t, se and adjusted p; the critical value
    ``c`` of the simultaneous intervals mean +- c x se; whether the test is exact (enough seeds
    for a randomisation test at alpha) or the intervals use the parametric ``c``."""

    n: int
    t: tuple[float, ...]
    se: tuple[float, ...]
    p_adjusted: tuple[float, ...]
    critical: float
    exact: bool
    correlation: np.ndarray = field(repr=False, compare=False)
    maxima: np.ndarray = field(repr=False, compare=False)  # each pattern's largest |t|

    def p_of(self, t: float) -> float:
        """The adjusted p of a statistic measured against this family's patterns: a comparison
        whose error also holds the test images' (a larger se, a smaller |t|) is judged against
        the same distribution of the largest |t|, so its p and its interval stay one rule."""
        return min(1.0, float(np.mean(self.maxima >= abs(t) * (1 - 1e-9))))


def family_test(columns: Sequence[Sequence[float]], alpha: float) -> FamilyTest | None:
    """The max-T sign-flip test of ``columns`` (each comparison's per-seed values, the same
    seeds in the same order). None below 2 seeds or when a column has no spread (its t is
    undefined: the caller says so instead of testing it)."""
    values = np.asarray(columns, dtype=float).T  # seeds x comparisons
    n = values.shape[0] if values.ndim == 2 else 0
    if n < 2 or values.shape[1] == 0:
        return None
    sd = values.std(0, ddof=1)
    if np.any(sd <= 0):
        return None
    correlation = np.corrcoef(values.T).reshape(values.shape[1], values.shape[1])
    patterns = _patterns(n)
    exact = n >= exact_floor(alpha)
    flipped = _t(patterns, values)
    t = flipped[0]  # the observed pattern: the same arithmetic as every flipped one
    maxima = np.abs(flipped).max(1)
    # The observed pattern is among them (row 0, also of a sample), so no p is 0; the
    # tolerance keeps a tie a tie when the same t is computed in another order.
    p = (maxima[:, None] >= np.abs(t)[None, :] * (1 - 1e-9)).sum(0) / len(patterns)
    critical = _critical(maxima, alpha) if exact else parametric_critical(correlation, n, alpha)
    return FamilyTest(
        n,
        tuple(t.tolist()),
        tuple((sd / math.sqrt(n)).tolist()),
        tuple(np.minimum(1.0, p).tolist()),
        critical,
        exact,
        correlation,
        maxima,
    )


def _normal_rows(correlation: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` studies of n seeds whose comparisons are standard normal with ``correlation``
    (which may be singular: it was estimated from few seeds)."""
    values, vectors = np.linalg.eigh(correlation)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    return np.asarray(rng.standard_normal((draws, n, len(correlation))) @ root.T)


def parametric_critical(correlation: np.ndarray, n: int, alpha: float) -> float:
    """The (1 - alpha) point of the largest |t| of the family on normal data with
    ``correlation``: the critical value of a continuous max-t test at n seeds."""
    rows = _normal_rows(correlation, n, NULL_DRAWS, np.random.default_rng(0))
    t = rows.mean(1) / (rows.std(1, ddof=1) / math.sqrt(n))
    return float(np.quantile(np.abs(t).max(1), 1 - alpha))


class Power:
    """The power of the family's rule for one comparison, by the seeds and the true effect in
    units of the comparison's per-seed sd; values are cached, so asking for the detectable
    effect and the seeds needed of every comparison costs one simulation per seed count."""

    def __init__(
        self, correlation: np.ndarray, alpha: float, image_shares: Sequence[float] | None = None
    ) -> None:
        self.correlation, self.alpha = correlation, alpha
        # Per comparison, the test images' variance over the per-seed variance: it stays as
        # seeds are added, so at n seeds the error is sqrt(1 + n x share) times the seeds' alone.
        self.image_shares = tuple(image_shares or [0.0] * len(correlation))
        self._criticals: dict[int, float] = {}
        self._draws: dict[int, np.ndarray] = {}

    def critical(self, n: int) -> float:
        if n not in self._criticals:
            self._criticals[n] = parametric_critical(self.correlation, n, self.alpha)
        return self._criticals[n]

    def __call__(self, column: int, effect_in_sds: float, n: int) -> float:
        """The chance that the rule decides ``column`` at n seeds when its true effect is
        ``effect_in_sds`` per-seed sds and every other comparison has none."""
        if n < 2:
            return 0.0
        effect_in_sds /= math.sqrt(1 + n * self.image_shares[column])
        if n > SIMULATE_POWER:
            c, noncentral = self.critical(n), effect_in_sds * math.sqrt(n)
            upper, lower = stats.nct.sf(c, n - 1, noncentral), stats.nct.cdf(-c, n - 1, noncentral)
            # Far out, scipy's noncentral t gives NaN for tails that are then 0 or 1.
            upper = upper if math.isfinite(upper) else float(noncentral > c)
            return float(min(1.0, upper + (lower if math.isfinite(lower) else 0.0)))
        if n < exact_floor(self.alpha):  # the exact test cannot decide anything yet
            return 0.0
        if n not in self._draws:  # common random numbers: power is smooth in the effect
            self._draws[n] = _normal_rows(self.correlation, n, POWER_DRAWS, np.random.default_rng(1))
        rows = self._draws[n].copy()
        rows[:, :, column] += effect_in_sds
        patterns = _patterns(n)
        observed = np.abs(_t(patterns[:1], rows)[:, 0, column])  # studies
        maxima = np.abs(_t(patterns, rows)).max(-1)  # studies x patterns
        p = (maxima >= observed[:, None] * (1 - 1e-9)).sum(1) / len(patterns)
        return float(np.mean(p <= self.alpha + 1e-12))

    def detectable(self, column: int, n: int, power: float = POWER) -> float | None:
        """The smallest true effect (in per-seed sds) decided with ``power`` at n seeds."""
        if self(column, 20.0, n) < power:
            return None
        return float(optimize.brentq(lambda e: self(column, e, n) - power, 0.0, 20.0, xtol=1e-3))

    def seeds_needed(self, column: int, effect_in_sds: float, power: float = POWER) -> int | None:
        """The fewest seeds (at least the exact floor) at which the rule decides an effect of this size with
        ``power``; None beyond ``SEEDS_CAP``. Power rises with the seeds, so a bisection finds
        it in a few evaluations."""
        if effect_in_sds == 0 or self(column, abs(effect_in_sds), SEEDS_CAP) < power:
            return None
        floor = exact_floor(self.alpha)
        if self(column, abs(effect_in_sds), floor) >= power:
            return floor
        low, high = floor, SEEDS_CAP  # power(low) < power <= power(high)
        while high - low > 1:
            middle = (low + high) // 2
            if self(column, abs(effect_in_sds), middle) >= power:
                high = middle
            else:
                low = middle
        return high
