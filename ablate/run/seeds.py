"""The adaptive seed rule (``until=``): which seeds are in play, and when to add one more.

A study with a seed rule starts with ``rule.min`` seeds of every cell; once every trial of the
seeds in play is finished, one more seed of every cell is queued while the widest simultaneous
interval the report prints for the study's question is wider than the target, up to
``rule.max``, unless the test set's own sampling alone (which every seed shares) is wider. The
rule looks at widths only, never at whether an effect looks significant, so adding seeds cannot
bias a verdict. The intervals come from :mod:`ablate.analysis`, the same code the report uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ablate.analysis.metrics import format_half_width, is_accuracy
from ablate.run.queue import TrialQueue
from ablate.store.tables import ResultsStore
from ablate.study.plan import PlannedTrial, StudyPlan


class SeedSchedule:
    """The seeds of one plan that are in play, read from its results and its queue."""

    def __init__(
        self,
        plan: StudyPlan,
        store: ResultsStore,
        root: Path,
        distributions: Mapping[str, Any],
        log: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.store = store
        self.root = root
        self.distributions = distributions
        self.log = log
        self.cells = len(plan.trials) // max(len(plan.seeds), 1)  # trials of one seed

    def planned(self, active: int | None = None) -> list[PlannedTrial]:
        """The plan's trials of its first ``active`` seeds (all of them by default)."""
        if active is None or self.plan.seed_rule is None:
            return list(self.plan.trials)
        return [t for t in self.plan.trials if t.index // self.cells < active]

    def active(self, queue: TrialQueue | None = None) -> int:
        """How many seeds are in play: all of them, or under a seed rule its start and every
        seed already added (a seed with any attempt, queued or recorded trial)."""
        rule = self.plan.seed_rule
        if rule is None:
            return len(self.plan.seeds)
        used = set(self.store.attempts())
        if queue is not None:
            used |= {t for t in queue.queued() | queue.recorded() if t is not None}
        return max(rule.min, max((t // self.cells for t in used), default=-1) + 1)

    def in_play(self, queue: TrialQueue | None = None) -> list[PlannedTrial]:
        """The trials of the seeds in play."""
        return self.planned(self.active(queue))

    def grow(
        self, queue: TrialQueue, finished: Callable[[], set[int]], can_train: Callable[[int], bool]
    ) -> bool:
        """One more seed of every cell, as the rule says (:meth:`add_seed`); every trial of a
        new seed is fresh, so ``can_train`` has nothing to leave out."""
        return self.add_seed(queue, finished)

    def widths(self) -> tuple[float | None, float | None]:
        """From the results so far: the widest half-width of the simultaneous intervals the
        report prints for the study's question (in its metric's units; None when one cannot be
        measured yet), and the widest part of it the shared test set alone gives (None
        without that error), which no seed can narrow."""
        from ablate.analysis import ReportError, analyse_folder
        from ablate.analysis.notes import test_set_floor, widest_half_width

        try:
            report, _ = analyse_folder(self.root)
        except ReportError:
            return None, None
        return widest_half_width(report.findings, self.plan.metric), test_set_floor(
            report.findings, self.plan.metric
        )

    def add_seed(self, queue: TrialQueue, finished: Callable[[], set[int]]) -> bool:
        """With every trial of the seeds in play finished: queue one more seed of every cell
        while the widest interval is wider than the target, up to the cap. False when the rule
        is done (or there is none)."""
        rule = self.plan.seed_rule
        if rule is None:
            return False
        metric = self.plan.metric
        with queue.locked():
            active = self.active(queue)
            if active >= rule.max or not {t.index for t in self.planned(active)} <= finished():
                return False
            widest, floor = self.widths()
            target = rule.halfwidth / 100 if is_accuracy(metric) else rule.halfwidth
            if widest is not None and widest <= target:
                self.log(
                    f"seeds: the widest simultaneous interval on {metric} is "
                    f"+-{format_half_width(metric, widest)}, within the target "
                    f"+-{rule.halfwidth:g}, after {active} seeds: done"
                )
                return False
            if floor is not None and floor >= target:
                self.log(
                    f"seeds: the test set alone gives +-{format_half_width(metric, floor)} on "
                    f"{metric} (every seed shares its images), wider than the target "
                    f"+-{rule.halfwidth:g}: more seeds cannot reach it; done after {active} seeds"
                )
                return False
            queue.enqueue(
                [t for t in self.plan.trials if t.index // self.cells == active],
                self.distributions,
                holding_lock=True,
            )
            shown = "not measurable yet" if widest is None else (f"+-{format_half_width(metric, widest)}")
            self.log(
                f"seeds: the widest simultaneous interval on {metric} is {shown} (target "
                f"+-{rule.halfwidth:g}) after {active} seeds: adding seed {active + 1} of at "
                f"most {rule.max}"
            )
            return True
