"""One procedure for a family of comparisons: the max-T sign-flip test.

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

With the shared test set's error (issue 26, item 6), each statistic is mean / sqrt(se^2 +
se_images^2) and the null pairs every sign pattern with normal draws of the test set's error
(:func:`family_test`). The power of this rule (the effect it detects, the seeds it needs) is in
:mod:`ablate.analysis.power`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

EXACT_PATTERNS = 16  # up to this many seeds every sign pattern is enumerated
SAMPLED_PATTERNS = 1 << 16
NULL_DRAWS = 4000  # simulated studies for the parametric critical value


def exact_floor(alpha: float) -> int:
    """The fewest seeds at which the exact test can reach ``alpha`` (2 / 2^n <= alpha): 6 at
    0.05, 7 at 0.025."""
    return next(n for n in range(2, 64) if 2 / 2**n <= alpha + 1e-12)


@cache
def sign_patterns(n: int) -> np.ndarray:
    """The sign patterns of n seeds, the observed one (all +1) first."""
    if n <= EXACT_PATTERNS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    signs = np.random.default_rng(0).choice((1.0, -1.0), size=(SAMPLED_PATTERNS, n))
    signs[0] = 1.0
    return signs


def flipped_t(patterns: np.ndarray, values: np.ndarray) -> np.ndarray:
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


IMAGE_DRAWS = 1 << 18  # (pattern, test-set draw) pairs of the combined null, at most


def image_covariance(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The covariance of the comparisons' test-image errors: per comparison, each test image's
    part of its mean over seeds (None where the trials did not record it). Two comparisons that
    share a cell share its images' luck; the covariance of their per-image parts over N is the
    bootstrap's, exactly. None when no comparison has the images."""
    sizes = {p.size for p in parts if p is not None}
    if not sizes or len(sizes) > 1:
        return None
    (size,) = sizes
    rows = np.stack([p if p is not None else np.zeros(size) for p in parts]).astype(float)
    return np.atleast_2d(np.cov(rows, bias=True)) / size


def family_test(
    columns: Sequence[Sequence[float]], alpha: float, images: np.ndarray | None = None
) -> FamilyTest | None:
    """The max-T sign-flip test of ``columns`` (each comparison's per-seed values, the same
    seeds in the same order). None below 2 seeds or when a column has no spread (its t is
    undefined: the caller says so instead of testing it).

    ``images`` (the comparisons' test-image error covariance, :func:`image_covariance`) adds the
    shared test set's sampling: each statistic is mean / sqrt(se^2 + se_images^2), and its null
    distribution pairs every sign pattern of the seeds with normal draws of the test-set error
    (a mean over thousands of images is normal to a good approximation), with the observed
    pair among them so that no p is 0. Without images this is the plain sign-flip max-T test."""
    values = np.asarray(columns, dtype=float).T  # seeds x comparisons
    n = values.shape[0] if values.ndim == 2 else 0
    if n < 2 or values.shape[1] == 0:
        return None
    sd = values.std(0, ddof=1)
    if np.any(sd <= 0):
        return None
    correlation = np.corrcoef(values.T).reshape(values.shape[1], values.shape[1])
    patterns = sign_patterns(n)
    exact = n >= exact_floor(alpha)
    if images is None or not np.any(np.diag(images) > 0):
        flipped = flipped_t(patterns, values)
        t = flipped[0]  # the observed pattern: the same arithmetic as every flipped one
        maxima = np.abs(flipped).max(1)
    else:
        flipped, t = _t_with_images(patterns, values, images)
        maxima = np.concatenate([[np.abs(t).max()], np.abs(flipped).max(-1).ravel()])
    # The observed statistic is among them (row 0, also of a sample), so no p is 0; the
    # tolerance keeps a tie a tie when the same t is computed in another order.
    p = (maxima[:, None] >= np.abs(t)[None, :] * (1 - 1e-9)).sum(0) / len(maxima)
    critical = _critical(maxima, alpha) if exact else parametric_critical(correlation, n, alpha)
    return FamilyTest(
        n,
        tuple(t.tolist()),
        tuple((sd / math.sqrt(n)).tolist()),
        tuple(np.minimum(1.0, p).tolist()),
        critical,
        exact,
        correlation,
    )


def _t_with_images(
    patterns: np.ndarray, values: np.ndarray, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The statistics with the test set's error: for every sign pattern and test-set draw
    (patterns x draws x comparisons), and the observed ones (no flip, no draw)."""
    n = values.shape[0]
    image_var = np.clip(np.diag(images), 0.0, None)
    draws = max(1, IMAGE_DRAWS // len(patterns))
    shifts = normal_rows(correlation_of(images), 1, draws, np.random.default_rng(2))[:, 0, :]
    squares = (values**2).sum(0, keepdims=True)
    flipped = combined_t(patterns @ values / n, squares, n, image_var, shifts * np.sqrt(image_var))
    observed = values.mean(0) / np.sqrt(values.var(0, ddof=1) / n + image_var)
    return flipped, observed


def combined_t(
    means: np.ndarray, squares: np.ndarray, n: int, image_var: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
    """mean / sqrt(se_seeds^2 + se_images^2) under every sign pattern (the rows of ``means``,
    the flipped means of n seeds, whose sum of squares ``squares`` a flip keeps) paired with
    every test-set draw (the rows of ``shifts``): ... x patterns x draws x comparisons. The
    family's null and the power simulation of its rule share this arithmetic."""
    seed_var = np.maximum((squares - n * means**2) / (n - 1), 1e-30 * squares) / n
    return np.asarray((means[..., None, :] + shifts) / np.sqrt(seed_var[..., None, :] + image_var))


def correlation_of(covariance: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.clip(np.diag(covariance), 1e-300, None))
    return np.asarray(covariance / np.outer(scale, scale))


def normal_rows(correlation: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` studies of n seeds whose comparisons are standard normal with ``correlation``
    (which may be singular: it was estimated from few seeds)."""
    values, vectors = np.linalg.eigh(correlation)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    return np.asarray(rng.standard_normal((draws, n, len(correlation))) @ root.T)


def parametric_critical(correlation: np.ndarray, n: int, alpha: float) -> float:
    """The (1 - alpha) point of the largest |t| of the family on normal data with
    ``correlation``: the critical value of a continuous max-t test at n seeds."""
    rows = normal_rows(correlation, n, NULL_DRAWS, np.random.default_rng(0))
    t = rows.mean(1) / (rows.std(1, ddof=1) / math.sqrt(n))
    return float(np.quantile(np.abs(t).max(1), 1 - alpha))
