"""Judging the findings: the family by one max-T procedure (see :mod:`ablate.analysis.family`),
everything else as exploration (Holm within its metric and kind, never called decided).

A family finding's interval is mean +- c x se with the family's critical value c, so the
interval printed beside a verdict is the one it was decided on. The family is judged on the
seeds all its comparisons share (a seed lost to divergence in one cell leaves every comparison
of the family); a comparison with more seeds says so in its note.
"""

from __future__ import annotations

from collections.abc import Sequence

from ablate.analysis.answer import (
    ALPHA,
    CANNOT,
    DECIDED,
    EQUIVALENT,
    EXPLORATORY,
    IDENTICAL,
    INCONCLUSIVE,
    LARGER,
    NONZERO,
    OPEN,
    PROVISIONAL,
    UNDECIDED,
    Finding,
)
from ablate.analysis.family import correlation_of, exact_floor, family_test, image_covariance
from ablate.analysis.metrics import is_accuracy, is_ratio
from ablate.analysis.power import Power
from ablate.analysis.stats import holm

__all__ = ["judge"]


def judge(findings: Sequence[Finding], delta: float | None, alpha: float = ALPHA) -> int:
    """Set every finding's interval, adjusted p and verdict; returns the family's size.
    ``alpha`` is the family's error rate: halved (0.025) when seeds were added until the
    intervals were narrow enough, so that the intervals at the stop still cover at 95 % or
    more."""
    family = [f for f in findings if f.family]
    _judge_family(family, delta, alpha)
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if not finding.family:
            groups.setdefault((finding.metric, finding.contrast.kind), []).append(finding)
    for group in groups.values():
        adjusted = holm([f.estimate.p if f.estimate else None for f in group])
        for finding, p in zip(group, adjusted, strict=True):
            finding.p_adjusted, finding.confidence, finding.verdict = p, 0.95, EXPLORATORY
            if finding.estimate is not None:
                finding.half_width = finding.estimate.half_width(0.95)
                finding.detectable = finding.estimate.detectable(ALPHA)
    return len(family)


def _delta_in_units(metric: str, delta: float | None) -> float | None:
    """``delta`` is in points for accuracies; it does not apply to ratio metrics."""
    if delta is None or is_ratio(metric):
        return None
    return delta / 100 if is_accuracy(metric) else delta


def _untestable(finding: Finding, floor: int) -> bool:
    """Set the verdict of a finding the max-T test cannot take (no seeds in common, or no
    spread between seeds); True when it did."""
    estimate = finding.estimate
    if estimate is None or estimate.n < 2:
        finding.verdict = CANNOT
        finding.note = "no seed has both cells" if estimate is None else "only one seed has both cells"
        return True
    if estimate.spread:
        return False
    if all(v == 0 for v in estimate.per_seed):
        # The two cells ran the same computation (a control such as a resume that restores
        # everything): the difference is exactly zero, not an estimate.
        finding.verdict = IDENTICAL if estimate.n >= floor else PROVISIONAL
        if finding.verdict == PROVISIONAL:
            finding.note = f"identical on all {estimate.n} seeds; {floor} would show it is no coincidence"
    else:
        finding.verdict = CANNOT
        finding.note = "the difference is the same on every seed: no spread to estimate an interval from"
    return True


def _judge_family(family: Sequence[Finding], delta: float | None, alpha: float) -> None:
    floor = exact_floor(alpha)
    for finding in family:
        finding.confidence = 1 - alpha
    testable = [f for f in family if not _untestable(f, floor)]
    if not testable:
        return
    shared = sorted(set.intersection(*(set(f.estimate.seeds) for f in testable if f.estimate)))
    for finding in testable:
        assert finding.estimate is not None
        if len(shared) < finding.estimate.n:
            finding.estimate = finding.estimate.restricted(shared)
            finding.note = f"judged on the {len(shared)} seeds every comparison of the family has"
    testable = [f for f in testable if not _untestable(f, floor)]  # spread may go with seeds
    estimates = [f.estimate for f in testable if f.estimate]
    # The shared test set's error, where the trials recorded it: each comparison's images'
    # part of its mean over seeds, and how those parts move together.
    images = image_covariance([None if e.per_image is None else e.per_image.mean(0) for e in estimates])
    test = family_test([e.per_seed for e in estimates], alpha, images) if testable else None
    if test is None:
        return
    shares = [(e.image_se or 0.0) ** 2 / ((e.se or 1.0) ** 2 * e.n) for e in estimates]
    power = Power(test.correlation, alpha, shares, None if images is None else correlation_of(images))
    for column, finding in enumerate(testable):
        _decide(finding, column, test.critical, test.p_adjusted[column] if test.exact else None, power, delta)


def _decide(
    finding: Finding, column: int, critical: float, p: float | None, power: Power, delta_points: float | None
) -> None:
    estimate = finding.estimate
    assert estimate is not None and estimate.se is not None and estimate.total_se is not None
    finding.half_width, finding.p_adjusted = critical * estimate.total_se, p
    finding.critical = critical
    if p is not None and p > power.alpha:
        # Undecided: the interval reaches zero. When the observed pattern is itself the
        # critical one, c x se equals |mean| up to rounding: the end is zero, not a hair past.
        finding.half_width = max(finding.half_width, abs(estimate.value))
    sd = estimate.se * estimate.n**0.5  # per seed (the test images' share is in power)
    detectable = power.detectable(column, estimate.n)
    finding.detectable = None if detectable is None else detectable * sd
    low, high = estimate.value - finding.half_width, estimate.value + finding.half_width
    excludes = p <= power.alpha if p is not None else (low > 0 or high < 0)
    delta = _delta_in_units(finding.metric, delta_points)
    inside = delta is not None and -delta < low and high < delta
    beyond = delta is not None and (low > delta or high < -delta)
    if delta is not None:
        finding.seeds_for_delta = power.seeds_needed(column, delta / sd)
    if p is None:  # too few seeds for the exact test at this level
        finding.verdict = (
            PROVISIONAL
            if (excludes or inside or beyond)
            else (INCONCLUSIVE if delta is not None else UNDECIDED)
        )
    elif inside:
        finding.verdict = EQUIVALENT
    elif excludes:
        # With a delta declared, "decided" alone would claim relevance the interval does not show.
        finding.verdict = DECIDED if delta is None else LARGER if beyond else NONZERO
    else:
        finding.verdict = INCONCLUSIVE if delta is not None else UNDECIDED
    if finding.verdict in OPEN and estimate.value != 0:
        # The seeds at which half the studies of an effect this large would decide it; never
        # the seeds it already has (this study is one that did not): at least one more.
        needed = power.seeds_needed(column, estimate.value / sd, power=0.5)
        finding.seeds_to_decide = None if needed is None else max(needed, estimate.n + 1)
