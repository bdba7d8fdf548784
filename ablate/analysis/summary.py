"""The short answer a report opens with: two to five plain sentences built from the verdicts of
the question's family, so that a reader knows the answer before the first table.

What was decided comes first, largest effect first (within a metric; effects on different
metrics do not compare), each with its simultaneous interval; then what was shown negligible
(within a declared delta); then what stays open and the seeds it would take. Nothing here is
computed anew: every number is a finding's, as its own sentence in the Answer states it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ablate.analysis.answer import IDENTICAL, NEGLIGIBLE, NONZERO, OPEN, SETTLED, Finding, change
from ablate.analysis.metrics import format_endpoint

__all__ = ["short_answer"]

SHOWN = 3  # decided effects named one by one; the rest are counted


def _effect(finding: Finding) -> str:
    """'dropout = 0.5 (vs 0.0) raises gap_running by 2.6 points [99.2 % interval +0.9 to +4.3]'."""
    metric, size = finding.metric, change(finding)
    interval = finding.interval
    if interval is None:
        return f"{finding.contrast.label} {size}"
    low, high = interval
    level = f"{finding.confidence * 100:.4g} % interval"
    span = f"{format_endpoint(metric, low)} to {format_endpoint(metric, high)}"
    return f"{finding.contrast.label} {size} [{level} {span}]"


def _largest_first(findings: Sequence[Finding]) -> list[Finding]:
    """By metric in the order the question names them, then by the size of the effect."""
    order = {m: i for i, m in enumerate(dict.fromkeys(f.metric for f in findings))}
    return sorted(findings, key=lambda f: (order[f.metric], -abs(f.estimate.value if f.estimate else 0.0)))


def short_answer(
    findings: Sequence[Finding], delta: float | None, preset: str = "", scale: str = ""
) -> list[str]:
    """Two to five sentences from the family's verdicts (an empty family says so in one), and
    what the preset measured (its description says what a larger one adds)."""
    ran = [f"Preset `{preset}`: {scale.rstrip('.')}."] if preset and scale else []
    return _verdicts(findings, delta)[: 5 - len(ran)] + ran


def _verdicts(findings: Sequence[Finding], delta: float | None) -> list[str]:
    family = [f for f in findings if f.family and f.estimate is not None]
    if not family:
        return ["No comparison the question asks for has results in both of its cells yet."]
    decided = _largest_first([f for f in family if f.verdict in SETTLED])
    nonzero = _largest_first([f for f in family if f.verdict == NONZERO])
    negligible = [f for f in family if f.verdict in NEGLIGIBLE]
    open_ = _largest_first([f for f in family if f.verdict in OPEN])
    lines = []
    if decided:
        named = "; ".join(_effect(f) for f in decided[:SHOWN])
        rest = len(decided) - SHOWN
        more = f" (and {rest} more decided effect{'s' if rest > 1 else ''}, below)" if rest > 0 else ""
        lines.append(f"Decided: {named}{more}.")
    else:
        lines.append(f"Nothing the question asks is decided yet ({len(family)} comparisons).")
    if nonzero:
        lines.append(
            f"Not zero, but not shown to exceed delta = {delta:g}: "
            + "; ".join(_effect(f) for f in nonzero[:SHOWN])
            + "."
        )
    if negligible:
        labels = ", ".join(f"{f.contrast.label} on {f.metric}" for f in negligible[:SHOWN])
        within = (
            "identical on every seed"
            if all(f.verdict == IDENTICAL for f in negligible)
            else (f"negligible (within +-{delta:g})" if delta is not None else "negligible")
        )
        lines.append(f"Shown {within}: {labels}{' and more' if len(negligible) > SHOWN else ''}.")
    if open_:
        largest = open_[0]
        seeds = largest.seeds_to_decide
        need = f"; about {seeds} seeds would decide the largest of them" if seeds else ""
        lines.append(
            f"Still open: {len(open_)} comparison{'s' if len(open_) > 1 else ''}, the largest "
            f"{_effect(largest)} ({largest.verdict}){need}."
        )
    return lines[:5]
