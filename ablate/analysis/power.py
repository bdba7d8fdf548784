"""The power of the family's rule (:mod:`ablate.analysis.family`): the effect it detects and the
seeds it needs, for one comparison. Up to ``SIMULATE_POWER`` seeds the test is coarse (at 6 seeds it
needs every seed to agree) and no formula fits: the rule itself runs on simulated normal data
with the family's correlation. Beyond, the exact test behaves as a max-t test with a
continuous critical value: ``c`` is the (1 - alpha) point of the largest |t| on simulated
normal data with the family's correlation, and the power of one comparison the noncentral t's.
Both were checked against simulations of the exact rule (``tests/analysis/test_family.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, stats

from ablate.analysis.family import (
    NULL_DRAWS,
    combined_t,
    exact_floor,
    flipped_t,
    normal_rows,
    parametric_critical,
    sign_patterns,
)

SIMULATE_POWER = 8  # up to this many seeds, power comes from simulating the exact rule
POWER_DRAWS = 400  # simulated studies per power evaluation (Monte Carlo error about 0.02)
POWER = 0.8  # the power at which detectable effects and needed seeds are stated
SEEDS_CAP = 100  # beyond this, "seeds needed" is said as "more than this"
IMAGE_POWER_DRAWS = 16  # test-set draws per pattern in each simulated study of power


class Power:
    """The power of the family's rule for one comparison, by the seeds and the true effect in
    units of the comparison's per-seed sd; values are cached, so asking for the detectable
    effect and the seeds needed of every comparison costs one simulation per seed count."""

    def __init__(
        self,
        correlation: np.ndarray,
        alpha: float,
        image_shares: Sequence[float] | None = None,
        image_correlation: np.ndarray | None = None,
    ) -> None:
        self.correlation, self.alpha = correlation, alpha
        # Per comparison, the test images' variance over the per-seed variance: it stays as
        # seeds are added. With it, power is that of the combined rule (see _with_images).
        self.image_shares = np.asarray(image_shares if image_shares is not None else [0.0] * len(correlation))
        self.image_correlation = (
            image_correlation if image_correlation is not None else np.eye(len(correlation))
        )
        self.images = bool(np.any(self.image_shares > 0))
        # Critical values by seed count: of the parametric max-t test, and of the rule with
        # the test images' error (simulated; see _with_images).
        self._parametric_criticals: dict[int, float] = {}
        self._image_criticals: dict[int, float] = {}
        self._draws: dict[int, np.ndarray] = {}
        self._image_draws: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._exact_studies: dict[int, np.ndarray] = {}
        # Per (seeds, comparison): the largest |t| of the *other* comparisons in each simulated
        # study, pattern (and test-set draw). An effect on one comparison leaves the others'
        # statistics as they are, so each power evaluation recomputes one column, not the family
        # (a report's detectable effects and seeds needed took 11 of its 14 s before).
        self._others: dict[tuple[str, int, int], np.ndarray] = {}
        # The test-set draws each simulated study's null pairs with its sign patterns: its own
        # (studies x draws x comparisons). Shared by every study, so few draws bias every
        # study's critical value alike: power was 0.89 at the printed 80 % effect where the
        # test set's part is large, on a machine whose eigenvectors gave other draws.
        rng = np.random.default_rng(4)
        self._null_shifts = normal_rows(self.image_correlation, IMAGE_POWER_DRAWS, POWER_DRAWS, rng)

    def _image_study(self, n: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Simulated studies of n seeds under no effect (per-seed sd 1): each comparison's mean
        plus the test set's shift, and its se including the images' part (draws x comparisons)."""
        if (n, draws) not in self._image_draws:
            rng = np.random.default_rng(seed)
            rows = normal_rows(self.correlation, n, draws, rng)
            shifts = normal_rows(self.image_correlation, 1, draws, rng)[:, 0, :] * np.sqrt(self.image_shares)
            se = np.sqrt(rows.var(1, ddof=1) / n + self.image_shares)
            self._image_draws[(n, draws)] = (rows.mean(1) + shifts, se)
        return self._image_draws[(n, draws)]

    def _largest_other(
        self, key: tuple[str, int, int], column: int, null: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """The largest |t| of every comparison but ``column`` (the last axis of ``null()``, the
        family's |t| without an effect), computed once per key."""
        if key not in self._others:
            values = null()
            values[..., column] = 0.0
            self._others[key] = values.max(-1)
        return self._others[key]

    def _exact_with_images(self, column: int, effect_in_sds: float, n: int) -> float:
        """Power of the combined rule itself where it is coarse (few seeds): simulated studies,
        each judged by its own null of sign patterns x test-set draws, as family_test does
        (fewer draws per pattern, IMAGE_POWER_DRAWS, drawn anew for each study; common random
        numbers across effects)."""
        if n not in self._exact_studies:
            rng = np.random.default_rng(3)
            rows = normal_rows(self.correlation, n, POWER_DRAWS, rng)  # studies x seeds x comparisons
            shifts = normal_rows(self.image_correlation, 1, POWER_DRAWS, rng)[:, 0, :]
            self._exact_studies[n] = rows + (shifts * np.sqrt(self.image_shares))[:, None, :]
        shares, patterns = self.image_shares, sign_patterns(n)

        def flipped(values: np.ndarray, columns: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """|t| of ``columns`` under every pattern and draw, with their means and squares."""
            means = np.einsum("pn,snm->spm", patterns, values) / n  # studies x patterns x columns
            squares = (values**2).sum(1)[:, None, :]
            shifts = (self._null_shifts[..., columns] * np.sqrt(shares[columns]))[:, None, :, :]
            return np.abs(combined_t(means, squares, n, shares[columns], shifts)), means, squares

        others = self._largest_other(
            ("images", n, column), column, lambda: flipped(self._exact_studies[n], slice(None))[0]
        )
        values = self._exact_studies[n][:, :, column : column + 1] + effect_in_sds
        mine, means, squares = flipped(values, slice(column, column + 1))
        maxima = np.maximum(others, mine[..., 0]).reshape(len(values), -1)  # studies x (patterns x draws)
        # The observed statistic in the same arithmetic as pattern 0's, so that a tie stays one.
        square, mean = squares[:, 0, 0], means[:, 0, 0]
        seed_var = np.maximum((square - n * mean**2) / (n - 1), 1e-30 * square) / n
        observed = np.abs(mean / np.sqrt(seed_var + shares[column]))
        p = ((maxima >= observed[:, None] * (1 - 1e-9)).sum(1) + 1) / (maxima.shape[1] + 1)
        return float(np.mean(p <= self.alpha + 1e-12))

    def _with_images(self, column: int, effect_in_sds: float, n: int) -> float:
        """Power of the rule with the shared test set's error, by simulation at every seed
        count: the critical value is the (1 - alpha) point of the family's largest |t| under no
        effect (seed noise and one test-set shift per study, as the combined null draws them),
        and a study decides the comparison when |mean / se| passes it. At the study's own seed
        count this stands in for the exact combined test (checked by simulation in
        tests/analysis/test_test_images.py)."""
        if n not in self._image_criticals:
            means, se = self._image_study(n, NULL_DRAWS, 0)
            self._image_criticals[n] = float(np.quantile(np.abs(means / se).max(1), 1 - self.alpha))
        means, se = self._image_study(n, POWER_DRAWS * 4, 1)
        t = (effect_in_sds + means[:, column]) / se[:, column]
        return float(np.mean(np.abs(t) > self._image_criticals[n]))

    def critical(self, n: int) -> float:
        if n not in self._parametric_criticals:
            self._parametric_criticals[n] = parametric_critical(self.correlation, n, self.alpha)
        return self._parametric_criticals[n]

    def __call__(self, column: int, effect_in_sds: float, n: int) -> float:
        """The chance that the rule decides ``column`` at n seeds when its true effect is
        ``effect_in_sds`` per-seed sds and every other comparison has none."""
        if n < 2:
            return 0.0
        if self.images:
            if n < exact_floor(self.alpha):
                return 0.0
            if n <= SIMULATE_POWER:
                return self._exact_with_images(column, effect_in_sds, n)
            return self._with_images(column, effect_in_sds, n)
        if n > SIMULATE_POWER:
            c, noncentral = self.critical(n), effect_in_sds * math.sqrt(n)
            upper, lower = stats.nct.sf(c, n - 1, noncentral), stats.nct.cdf(-c, n - 1, noncentral)
            # Far out, scipy's noncentral t gives NaN for tails that are then 0 or 1.
            upper = upper if math.isfinite(upper) else float(noncentral > c)
            return float(min(1.0, upper + (lower if math.isfinite(lower) else 0.0)))
        if n < exact_floor(self.alpha):  # the exact test cannot decide anything yet
            return 0.0
        if n not in self._draws:  # common random numbers: power is smooth in the effect
            self._draws[n] = normal_rows(self.correlation, n, POWER_DRAWS, np.random.default_rng(1))
        patterns = sign_patterns(n)
        others = self._largest_other(
            ("seeds", n, column), column, lambda: np.abs(flipped_t(patterns, self._draws[n]))
        )
        rows = self._draws[n][:, :, column : column + 1] + effect_in_sds
        observed = np.abs(flipped_t(patterns[:1], rows)[:, 0, 0])  # studies
        maxima = np.maximum(others, np.abs(flipped_t(patterns, rows))[..., 0])  # studies x patterns
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
