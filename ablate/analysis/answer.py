"""The rules behind every verdict: one declared family, decisions on simultaneous intervals,
an honest small-n policy, and sentences that say what was decided and what was not.

- **The family** is every hypothesis the Answer states: the study's question metrics (its
  ``metrics``, by default its ``metric``) times the comparisons its question asks for (each
  factor level against the baseline; with ``within``, each effect within each level of those
  factors and whether it differs between them; for a fraction, the main effects). Everything
  else the report shows is *exploratory*: Holm-corrected within its metric and kind, never
  called decided.
- **A decision** is taken on the simultaneous interval of level 1 - 0.05/m (Bonferroni over the
  family of m), the interval printed beside it, with the error pooled over all cells (seed as
  block). It needs at least ``MIN_SEEDS`` seeds and the exact sign-flip test of the per-seed
  differences agreeing (p < 0.05): the t-interval rests on normality, which a handful of seeds
  cannot check. Below ``MIN_SEEDS`` a verdict is *provisional*.
- **With a smallest effect of interest** ``delta``: "larger than delta", "equivalent within
  +-delta" (the interval inside +-delta: two one-sided tests at the same level) or
  "inconclusive", each with the effect the comparison could have detected (80 % power) and the
  seeds it would need to detect delta.
- **Identical** on every one of at least ``MIN_SEEDS`` paired seeds (a control such as a resume
  that restores everything) is its own verdict: the two cells ran the same computation, so the
  difference is exactly zero, not an estimate. The pooled error, which comes from the other
  cells' seed-to-seed spread, says nothing about a pair that has none.
- Every interval describes seed-to-seed variation on this one test set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ablate.analysis.contrasts import AGAINST_BASELINE, INTERACTION, MAIN, Contrast
from ablate.analysis.metrics import (
    format_difference,
    format_endpoint,
    format_half_width,
    is_accuracy,
    is_ratio,
)
from ablate.analysis.stats import SEEDS_CAP, Estimate, PooledError, holm, seeds_needed
from ablate.study.factors import MIN_SEEDS  # below this, no verdict is more than provisional

ALPHA = 0.05

DECIDED = "decided"
LARGER = "larger than delta"
NONZERO = "non-zero"  # with a delta: excludes zero, but not +-delta either way: relevance open
EQUIVALENT = "equivalent"
IDENTICAL = "identical"
PROVISIONAL = "provisional"
UNDECIDED = "undecided"
INCONCLUSIVE = "inconclusive"
CANNOT = "cannot decide"
EXPLORATORY = "exploratory"
ORDER = (
    DECIDED,
    LARGER,
    NONZERO,
    EQUIVALENT,
    IDENTICAL,
    PROVISIONAL,
    UNDECIDED,
    INCONCLUSIVE,
    CANNOT,
    EXPLORATORY,
)


@dataclass
class Finding:
    """One contrast on one metric: its estimate and, once judged, its verdict."""

    contrast: Contrast
    metric: str
    estimate: Estimate | None
    pooled: PooledError | None
    family: bool = False
    left_out: tuple[int, ...] = ()  # seeds that diverged in one of the compared cells
    confidence: float = 0.95  # of the interval shown (simultaneous for the family)
    p_adjusted: float | None = None  # Bonferroni over the family, else Holm within metric and kind
    verdict: str = EXPLORATORY
    detectable: float | None = None  # smallest true effect found with 80 % power at its level
    seeds_to_decide: int | None = None  # for an effect as large as measured (undecided ones)
    seeds_for_delta: int | None = None
    note: str = ""

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.estimate is None else self.estimate.interval(self.confidence)


def judge(findings: Sequence[Finding], delta: float | None, alpha: float = ALPHA) -> int:
    """Set every finding's level, adjusted p and verdict; returns the family's size. ``alpha``
    is the family's error rate: halved (0.025) when seeds were added until the intervals were
    narrow enough, so that the intervals at the stop still cover at 95 % or more."""
    family = [f for f in findings if f.family]
    m = max(1, len(family))
    for finding in family:
        _decide(finding, m, delta, alpha)
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if not finding.family:
            groups.setdefault((finding.metric, finding.contrast.kind), []).append(finding)
    for group in groups.values():
        adjusted = holm([f.estimate.p if f.estimate else None for f in group])
        for finding, p in zip(group, adjusted, strict=True):
            finding.p_adjusted, finding.confidence, finding.verdict = p, 0.95, EXPLORATORY
            if finding.estimate is not None:
                finding.detectable = finding.estimate.detectable(ALPHA)
    return len(family)


def _delta_in_units(metric: str, delta: float | None) -> float | None:
    """``delta`` is in points for accuracies; it does not apply to ratio metrics."""
    if delta is None or is_ratio(metric):
        return None
    return delta / 100 if is_accuracy(metric) else delta


def _decide(finding: Finding, m: int, delta_points: float | None, alpha: float) -> None:
    estimate, pooled = finding.estimate, finding.pooled
    finding.confidence = 1 - alpha / m
    if estimate is None or estimate.p is None or pooled is None:
        finding.verdict = CANNOT
        finding.note = (
            "no seed has both cells"
            if estimate is None
            else "no error estimate: fewer than two seeds in two cells, or no spread at all"
        )
        return
    level = alpha / m
    finding.p_adjusted = min(1.0, estimate.p * m)
    finding.detectable = estimate.detectable(level)
    low, high = estimate.interval(finding.confidence)  # type: ignore[misc]
    excludes = low > 0 or high < 0
    delta = _delta_in_units(finding.metric, delta_points)
    inside = delta is not None and -delta < low and high < delta
    beyond = delta is not None and (low > delta or high < -delta)
    agrees = estimate.p_sign_flip is not None and estimate.p_sign_flip < ALPHA
    if delta is not None:
        needed = seeds_needed(delta, estimate.unit, pooled, level)
        finding.seeds_for_delta = None if needed is None else max(MIN_SEEDS, needed)
    if estimate.n >= MIN_SEEDS and all(v == 0 for v in estimate.per_seed):
        finding.verdict = IDENTICAL
    elif estimate.n < MIN_SEEDS:
        finding.verdict = (
            PROVISIONAL
            if (excludes or inside or beyond)
            else (INCONCLUSIVE if delta is not None else UNDECIDED)
        )
    elif inside:
        finding.verdict = EQUIVALENT
    elif excludes and agrees:
        # With a delta declared, "decided" alone would claim relevance the interval does not show.
        finding.verdict = DECIDED if delta is None else LARGER if beyond else NONZERO
    elif delta is not None:
        finding.verdict = INCONCLUSIVE
    else:
        finding.verdict = UNDECIDED
    if excludes and not agrees and estimate.n >= MIN_SEEDS:
        finding.note = (
            f"the t-interval excludes zero but the exact sign-flip test does not "
            f"agree (p = {estimate.p_sign_flip:.2g})"
        )
    if finding.verdict in (PROVISIONAL, UNDECIDED, INCONCLUSIVE) and estimate.value != 0:
        needed = seeds_needed(estimate.value, estimate.unit, pooled, level, power=0.5)
        finding.seeds_to_decide = max(MIN_SEEDS, needed) if needed else None


def _about(seeds: int | None) -> str:
    return f"about {seeds}" if seeds is not None else f"more than {SEEDS_CAP}"


def _numbers(finding: Finding) -> str:
    estimate = finding.estimate
    assert estimate is not None
    metric = finding.metric
    interval = finding.interval
    span = ""
    if interval is not None:
        low, high = interval
        level = f"{finding.confidence * 100:.4g}% {'simultaneous ' if finding.family else ''}CI"
        if is_ratio(metric):
            span = f" [{level} {format_endpoint(metric, low)}, {format_endpoint(metric, high)}]"
        else:
            half = format_half_width(metric, (high - low) / 2)
            span = f" [{level} {format_endpoint(metric, low)}, {format_endpoint(metric, high)}; +-{half}]"
    tests = []
    if finding.p_adjusted is not None:
        tests.append(f"{'adjusted' if finding.family else 'Holm'} p = {finding.p_adjusted:.2g}")
    if estimate.p_sign_flip is not None:
        tests.append(f"sign-flip p = {estimate.p_sign_flip:.2g}")
    if estimate.value != 0 and estimate.per_seed:  # information, not a gate of its own
        agree = sum(v * estimate.value > 0 for v in estimate.per_seed)
        tests.append(f"{agree} of {len(estimate.per_seed)} seeds agree")
    tests.append(f"n = {estimate.n}")
    return f"{span}, {', '.join(tests)}"


def change(finding: Finding) -> str:
    """The effect in words: "raises test_acc by 5.0 points", "multiplies swing_test by x0.45"."""
    estimate, metric = finding.estimate, finding.metric
    assert estimate is not None
    if is_ratio(metric):
        return f"multiplies {metric} by {format_difference(metric, estimate.value)}"
    # After "raises"/"lowers" the size, not the sign ("lowers it by 4.2 points", never "-4.2").
    verb = "raises" if estimate.value > 0 else "lowers"
    return f"{verb} {metric} by {format_difference(metric, abs(estimate.value), signed=False)}"


def sentence(finding: Finding, delta: float | None = None) -> str:
    """The verdict on one hypothesis, in words, with the numbers behind it."""
    what = finding.contrast.label
    if finding.left_out:
        what += f" [seeds {list(finding.left_out)} diverged in a compared cell and are left out]"
    if finding.estimate is None or finding.verdict == CANNOT:
        return f"{what}, {finding.metric}: cannot decide: {finding.note or 'no data'}."
    estimate = finding.estimate
    if estimate.n >= 1 and all(v == 0 for v in estimate.per_seed):
        head = f"{what}: identical on {finding.metric} on all {estimate.n} paired seeds"
    else:
        head = f"{what} {change(finding)}{_numbers(finding)}"
    return f"{head}: {_verdict_words(finding, delta)}."


def _verdict_words(finding: Finding, delta: float | None) -> str:
    estimate = finding.estimate
    assert estimate is not None
    more = (
        f"; about {finding.seeds_to_decide} seeds would decide an effect this large"
        if finding.seeds_to_decide
        else f"; more than {SEEDS_CAP} seeds would be needed to decide an effect this small"
        if finding.verdict in (PROVISIONAL, UNDECIDED, INCONCLUSIVE) and estimate.value != 0
        else ""
    )
    detect = ""
    if delta is not None and finding.detectable is not None:
        detect = (
            f"; it could detect "
            f"{format_difference(finding.metric, finding.detectable, signed=False)}"
            f" (80% power), and {_about(finding.seeds_for_delta)} seeds would "
            f"detect delta = {delta:g}"
        )
    note = f" ({finding.note})" if finding.note else ""
    no_change = "x1 (no change)" if is_ratio(finding.metric) else "zero"  # ratios compare by log
    words = {
        DECIDED: "decided",
        LARGER: f"decided, larger than delta = {delta}",
        EQUIVALENT: f"equivalent within +-{delta} (two one-sided tests)",
        IDENTICAL: "a difference of exactly zero (the same computation), not an estimate",
        PROVISIONAL: f"provisional: {estimate.n} seeds are too few for the exact sign-flip test "
        f"(it needs {MIN_SEEDS}){more}",
        NONZERO: f"non-zero, relevance undetermined: the interval excludes {no_change} but not +-{delta}",
        UNDECIDED: (
            f"undecided: {finding.note}{more}"  # never "covers zero" under one that does not
            if finding.note.startswith("the t-interval excludes zero")
            else f"undecided: the interval covers {no_change}{note}{more}"
        ),
        INCONCLUSIVE: f"inconclusive for delta = {delta}{note}{detect}",
        EXPLORATORY: "exploratory (corrected within its metric)",
    }
    return words[finding.verdict] + (
        detect if finding.verdict in (DECIDED, LARGER, NONZERO, EQUIVALENT, PROVISIONAL) and delta else ""
    )


def family_contrasts(
    kinds: Mapping[str, Sequence[Contrast]], design: str, asked_within: Sequence[Contrast]
) -> list[Contrast]:
    """The comparisons the Answer states for a design (see the module docstring).

    ``asked_within`` are the effects within each level of the study's ``within`` factors; with
    them come the interactions of those effects' factors with the ``within`` factors."""
    if design == "fractional":
        return list(kinds.get(MAIN, ()))
    if asked_within:
        factors = {c.factor for c in asked_within}
        held = {f for c in asked_within for f in c.condition}
        return list(asked_within) + [
            c for c in kinds.get(INTERACTION, ()) if c.factor in factors and c.other and c.other[0] in held
        ]
    return list(kinds.get(AGAINST_BASELINE, ()))


def describe_family(
    size: int,
    metrics: Sequence[str],
    design: str,
    within: Sequence[str],
    pooled: Mapping[str, PooledError | None],
    alpha: float = ALPHA,
) -> str:
    """The family in one sentence: what it holds, its size, the rule."""
    if design == "fractional":
        what = "each factor's main effect"
    elif within:
        what = (
            f"each effect within each level of {', '.join(within)}, and whether it differs "
            "between those levels (interaction)"
        )
    else:
        what = "each factor level against the baseline"
    errors = ", ".join(f"{metric} {p.df}" for metric, p in pooled.items() if p is not None)
    return (
        f"Family: {size} hypotheses ({what}, on {', '.join(metrics)}). Each is decided on its "
        f"simultaneous interval of level 1 - {alpha:g}/{size} (Bonferroni), with at least "
        f"{MIN_SEEDS} seeds and the exact sign-flip test agreeing; errors pooled over all "
        f"cells with the seed as block (degrees of freedom: {errors or 'none'}). Intervals "
        "describe seed-to-seed variation on this test set."
    )


@dataclass
class Judged:
    """The findings of a report, judged, and the family's description."""

    findings: list[Finding] = field(default_factory=list)
    family_size: int = 0
    family_text: str = ""
