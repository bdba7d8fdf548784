"""The rules behind every verdict: one declared family, one procedure that controls it, an
honest small-n policy, and sentences that say what was decided and what was not.

- **The family** is every hypothesis the Answer states: the study's question metrics (its
  ``metrics``, by default its ``metric``) times the comparisons its question asks for (each
  factor level against the baseline; with ``within``, each effect within each level of those
  factors and whether it differs between them; for a fraction, the main effects). Everything
  else the report shows is *exploratory*: Holm-corrected within its metric and kind, never
  called decided.
- **A decision** is the max-T sign-flip test of the whole family
  (:mod:`ablate.analysis.family`): each comparison with its own seed-to-seed variance, every
  seed's signs flipped across the family at once, exact. It is taken on the simultaneous
  interval printed beside it. Below the seeds the exact test needs at the family's level (6 at
  0.05) a verdict is *provisional*.
- **With a smallest effect of interest** ``delta``: "larger than delta", "equivalent within
  +-delta" (the interval inside +-delta), "non-zero, relevance undetermined" (the interval
  excludes zero but not +-delta) or "inconclusive", each with the effect the rule detects with
  80 % power and the seeds it would need to detect delta.
- **Identical** on every one of at least 6 paired seeds (a control such as a resume that
  restores everything) is its own verdict: the two cells ran the same computation, so the
  difference is exactly zero, not an estimate.
- Every interval holds seed-to-seed variation; on test accuracy and the final gaps it also
  holds the test set's own sampling (a paired bootstrap over the test images) where every trial
  recorded which test images it got right (:mod:`ablate.analysis.family`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ablate.analysis.contrasts import AGAINST_BASELINE, ASKED, INTERACTION, MAIN, Contrast
from ablate.analysis.family import exact_floor
from ablate.analysis.metrics import (
    format_difference,
    format_endpoint,
    format_half_width,
    is_ratio,
)
from ablate.analysis.power import SEEDS_CAP
from ablate.analysis.stats import Estimate

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
# The verdicts as a reader groups them (the short answer's sentences, the forest plot's colours).
SETTLED = (DECIDED, LARGER)  # shown to matter
NEGLIGIBLE = (EQUIVALENT, IDENTICAL)  # shown not to
OPEN = (PROVISIONAL, UNDECIDED, INCONCLUSIVE)  # more seeds could decide them


@dataclass
class Finding:
    """One contrast on one metric: its estimate and, once judged, its verdict."""

    contrast: Contrast
    metric: str
    estimate: Estimate | None
    family: bool = False
    left_out: tuple[int, ...] = ()  # seeds that diverged in one of the compared cells
    confidence: float = 0.95  # of the interval shown (simultaneous for the family)
    half_width: float | None = None  # of the interval shown
    critical: float | None = None  # the family's critical value the interval was made with
    p_adjusted: float | None = None  # max-T over the family, else Holm within metric and kind
    verdict: str = EXPLORATORY
    detectable: float | None = None  # smallest true effect found with 80 % power at its level
    seeds_to_decide: int | None = None  # for an effect as large as measured (undecided ones)
    seeds_for_delta: int | None = None
    note: str = ""

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.estimate is None or self.half_width is None:
            return None
        return self.estimate.value - self.half_width, self.estimate.value + self.half_width


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
        tests.append(f"{'max-T adjusted' if finding.family else 'Holm'} p = {finding.p_adjusted:.2g}")
    agreeing = agreement(estimate, " seeds agree")
    if agreeing is not None:  # information, not a gate of its own
        tests.append(agreeing)
    tests.append(f"n = {estimate.n}")
    return f"{span}, {', '.join(tests)}"


def seed_signs(estimate: Estimate) -> tuple[int, int] | None:
    """How many seeds point the way the mean does, and how many are tied (their difference is
    exactly zero); None for a zero mean (no way to point)."""
    if estimate.value == 0 or not estimate.per_seed:
        return None
    return sum(v * estimate.value > 0 for v in estimate.per_seed), sum(v == 0 for v in estimate.per_seed)


def agreement(estimate: Estimate, words: str = "") -> str | None:
    """The seeds that point the way the mean does and those whose difference is exactly zero,
    as "4 of 6<words> (1 tied)": one wording for the verdict line and the family table."""
    signs = seed_signs(estimate)
    if signs is None:
        return None
    agree, tied = signs
    return f"{agree} of {len(estimate.per_seed)}{words}" + (f" ({tied} tied)" if tied else "")


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
        if finding.verdict in OPEN and estimate.value != 0
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
        f"at this level (it needs {exact_floor(1 - finding.confidence)}){note}{more}",
        NONZERO: f"non-zero, relevance undetermined: the interval excludes {no_change} but not +-{delta}",
        UNDECIDED: f"undecided: the interval covers {no_change}{note}{more}",
        INCONCLUSIVE: f"inconclusive for delta = {delta}{note}{detect}",
        EXPLORATORY: "exploratory (corrected within its metric)",
    }
    return words[finding.verdict] + (
        detect if finding.verdict in (DECIDED, LARGER, NONZERO, EQUIVALENT, PROVISIONAL) and delta else ""
    )


def family_contrasts(
    kinds: Mapping[str, Sequence[Contrast]], design: str, asked_within: Sequence[Contrast]
) -> list[Contrast]:
    """The comparisons the Answer states for a design (see the module docstring), and the ones
    the study names (``contrasts=``) that are not among them already.

    ``asked_within`` are the effects within each level of the study's ``within`` factors; with
    them come the interactions of those effects' factors with the ``within`` factors."""
    if design == "fractional":
        default = list(kinds.get(MAIN, ()))
    elif asked_within:
        factors = {c.factor for c in asked_within}
        held = {f for c in asked_within for f in c.condition}
        default = list(asked_within) + [
            c for c in kinds.get(INTERACTION, ()) if c.factor in factors and c.other and c.other[0] in held
        ]
    else:
        default = list(kinds.get(AGAINST_BASELINE, ()))
    # A named pair that is a default comparison or its mirror image adds nothing.
    seen = [dict(c.weights) for c in default]
    named = [
        c
        for c in kinds.get(ASKED, ())
        if dict(c.weights) not in seen and {k: -w for k, w in c.weights.items()} not in seen
    ]
    return default + named


def describe_family(
    size: int,
    metrics: Sequence[str],
    design: str,
    within: Sequence[str],
    alpha: float = ALPHA,
    named: int = 0,
) -> str:
    """The family in one sentence: what it holds, its size, the rule."""
    if design == "fractional":
        what = "each factor's main effect"
    elif design == "path":
        what = "each step the path kept, and the total from source to target"
    elif design == "leave_one_out":
        what = "each setting added alone to the source and removed alone from the target, and the total"
    elif within:
        what = (
            f"each effect within each level of {', '.join(within)}, and whether it differs "
            "between those levels (interaction)"
        )
    else:
        what = "each factor level against the baseline"
    if named:
        what += (
            "; and the comparison the study names"
            if named == 1
            else f"; and the {named} comparisons the study names"
        )
    return (
        f"Family: {size} hypotheses ({what}, on {', '.join(metrics)}), decided together at "
        f"family-wise level {alpha:g} by the max-T sign-flip test: each comparison with its own "
        "seed-to-seed variance, every seed's signs flipped across the family at once (exact; it "
        f"needs {exact_floor(alpha)} seeds). Each is decided exactly when its simultaneous "
        f"interval of {(1 - alpha) * 100:g} % excludes zero."
    )


@dataclass
class Judged:
    """The findings of a report, judged, and the family's description."""

    findings: list[Finding] = field(default_factory=list)
    family_size: int = 0
    family_text: str = ""
