"""Small, exact statistics over seeds: intervals, paired contrasts, the exact sign-flip test,
Holm's correction.

A study's trials form a table of cells x seeds. Every comparison the report makes is a
*contrast*: per seed, a weighted sum of cell values whose weights add to zero (a cell minus the
baseline cell; a difference of differences; a mean over some cells minus a mean over others).
The seed's own effect cancels in it, and its error is the spread of its per-seed values: each
comparison has its own variance. Pooling one variance over all cells would give every
comparison the same error, and cells differ: the published tables held cell SDs 13 to 41 times
apart in variance, so comparisons among noisy cells erred at several times their share of alpha
and quiet ones lost power (issue 26). The family's decisions are in :mod:`ablate.analysis.family`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

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
    """A contrast's estimate (the mean over seeds of its per-seed values) with its own error.

    ``se`` is the per-seed values' standard deviation over sqrt(n) (None below 2 seeds), with
    n - 1 degrees of freedom: what another seed would change. ``seeds`` name the seeds of
    ``per_seed``, in order. ``per_image`` (seeds x test images), when every trial recorded which
    test images it got right, is each image's part of each seed's value; it gives ``image_se``,
    what another test set would change, which every seed shares and no number of seeds averages
    away. ``total_se`` combines the two; ``p`` (the paired t-test) and the exploratory intervals
    use it. ``p_sign_flip`` is the exact sign-flip test of the per-seed values alone."""

    value: float
    n: int
    se: float | None
    p: float | None
    p_sign_flip: float | None
    per_seed: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    per_image: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def spread(self) -> bool:
        """Whether the per-seed values differ at all (else no t, no interval)."""
        return self.se is not None and self.se > 0

    @property
    def image_se(self) -> float | None:
        """The standard error of the mean over seeds under a paired bootstrap over test images
        (one resample of the test set shared by every trial, as the test set itself is). The
        bootstrap variance of a mean of N values is their variance (divided by N, not N - 1)
        over N, exactly: no resample needs drawing. It slightly overstates the test set's part,
        since the per-image noise of single seeds, already in ``se``, enters it divided by n."""
        if self.per_image is None or self.per_image.size == 0:
            return None
        by_image = self.per_image.mean(0)
        return float(by_image.std() / math.sqrt(by_image.size))

    @property
    def total_se(self) -> float | None:
        """The error over seeds and, when recorded, over test images (independent sources)."""
        if self.se is None:
            return None
        return math.hypot(self.se, self.image_se or 0.0)

    def half_width(self, confidence: float) -> float | None:
        """Of the plain t interval at ``confidence`` (exploratory comparisons)."""
        if self.total_se is None or self.n < 2:
            return None
        return float(stats.t.ppf(0.5 + confidence / 2, self.df) * self.total_se)

    def detectable(self, alpha: float) -> float | None:
        """The smallest true effect the paired t-test at level ``alpha`` finds with 80 % power."""
        if self.total_se is None or self.n < 2:
            return None
        return float((stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(POWER, self.df)) * self.total_se)

    def restricted(self, seeds: Sequence[int]) -> Estimate:
        """The same comparison on ``seeds`` only (a family is judged on the seeds it shares)."""
        wanted = set(seeds)
        keep = [i for i, s in enumerate(self.seeds) if s in wanted]
        rows = None if self.per_image is None else self.per_image[keep]
        return estimate_of([self.per_seed[i] for i in keep], [self.seeds[i] for i in keep], rows)


def estimate_of(
    per_seed: Sequence[float], seeds: Sequence[int], per_image: np.ndarray | None = None
) -> Estimate:
    """The estimate of a contrast from its per-seed values (and, when recorded, each test
    image's part of them)."""
    values = np.asarray(per_seed, dtype=float)
    n = len(values)
    value = float(values.mean()) if n else math.nan
    se = float(values.std(ddof=1) / math.sqrt(n)) if n >= 2 else None
    estimate = Estimate(
        value, n, se, None, sign_flip_p(values.tolist()), tuple(values.tolist()), tuple(seeds), per_image
    )
    total = estimate.total_se
    p = float(2 * stats.t.sf(abs(value) / total, n - 1)) if total else None
    return replace(estimate, p=p)


def contrast(
    by_cell: Mapping[str, Mapping[int, float]],
    weights: Mapping[str, float],
    by_image: Mapping[str, Mapping[int, np.ndarray]] | None = None,
) -> Estimate | None:
    """The contrast ``weights`` over the seeds that all its cells have. None when no seed has
    every cell of the contrast. ``by_image`` (cell -> seed -> each test image's part of that
    trial's value) adds the test images' error when every trial of the contrast has it, on a
    test set of one size."""
    cells = [c for c, w in weights.items() if w != 0]
    if not cells or any(c not in by_cell for c in cells):
        return None
    seeds = sorted(set.intersection(*(set(by_cell[c]) for c in cells)))
    if not seeds:
        return None
    per_seed = [sum(weights[c] * by_cell[c][s] for c in cells) for s in seeds]
    per_image = None
    if by_image is not None and all(s in by_image.get(c, {}) for c in cells for s in seeds):
        if len({by_image[c][s].size for c in cells for s in seeds}) == 1:
            per_image = np.stack([sum(weights[c] * by_image[c][s] for c in cells) for s in seeds])
    return estimate_of(per_seed, seeds, per_image)


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Benjamini-Hochberg rejects at false discovery rate ``alpha``, in the
    input order: every p at or below the largest p(k) with p(k) <= k alpha / m."""
    m = len(p_values)
    ordered = sorted(p_values)
    passing = [k for k, p in enumerate(ordered, start=1) if p <= k * alpha / m]
    threshold = ordered[passing[-1] - 1] if passing else -1.0
    return [p <= threshold for p in p_values]


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
