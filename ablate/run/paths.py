"""Which trials of an ablation path to train: the rounds so far, replayed from the results
(:func:`ablate.analysis.race.walk`), say which (recipe, seed) pairs are in play; once every one of
them is finished, the walk's next look or round puts new ones in the queue.

Nothing of the path's state is stored apart from the results: a run killed mid-round replays
the same walk from the same trials and goes on where it stopped, training no recipe twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ablate.analysis.race import Walk, replay, selection_scores
from ablate.run.queue import TrialQueue
from ablate.run.seeds import SeedSchedule
from ablate.store.tables import ResultsStore
from ablate.study.factors import AblationPath
from ablate.study.plan import PlannedTrial, StudyPlan
from ablate.study.recipes import path_trial, recipe_name


class PathSchedule:
    """The trials of one path plan that are in play, read from its results."""

    def __init__(
        self,
        plan: StudyPlan,
        store: ResultsStore,
        distributions: Mapping[str, Any],
        log: Callable[[str], None],
    ) -> None:
        assert isinstance(plan.design, AblationPath)
        self.plan, self.design = plan, plan.design
        self.store, self.distributions, self.log = store, distributions, log
        self.settings = len(self.design.target)
        self._cache: tuple[frozenset[str], dict[int, float]] | None = None

    def _scores(self) -> dict[int, float]:
        """Planned trial -> its selection value, for the plan's trials with a result. Read
        again only when the trials files changed: each is written once, under a name of its own
        (a progress display asks many times a second)."""
        from ablate.analysis.load import read_table

        folder = self.store.folder.table("trials")
        names = frozenset(p.name for p in folder.glob("*.parquet"))
        if self._cache is not None and self._cache[0] == names:
            return self._cache[1]
        fingerprint = self.plan.fingerprint()
        rows = [
            row
            for row in read_table(folder, [])
            if row.get("study_fingerprint") == fingerprint and row["state"] in ("complete", "diverged")
        ]
        scores = selection_scores(rows, self.plan.metric, self.plan.direction == "maximize")
        self._cache = (names, scores)
        return scores

    def walk(self) -> Walk:
        return replay(
            self._scores(),
            self.settings,
            len(self.plan.seeds),
            self.design.first,
            self.design.step,
            self.plan.direction == "maximize",
        )

    def _trials(self, walked: Walk) -> list[PlannedTrial]:
        seeds = len(self.plan.seeds)
        return [self.plan.trials[path_trial(mask, place, seeds)] for mask, place in sorted(walked.in_play)]

    def in_play(self, queue: TrialQueue | None = None) -> list[PlannedTrial]:
        """The trials the path needs so far: every look of every round up to the first with a
        trial not finished yet."""
        return self._trials(self.walk())

    def grow(
        self, queue: TrialQueue, finished: Callable[[], set[int]], can_train: Callable[[int], bool]
    ) -> bool:
        """Queue the trials in play that have no result (the next look or round, once the last
        is finished; ``can_train`` leaves out trials that used up their retries). False when
        nothing was added: the path has reached the target, or its trials wait elsewhere."""
        with queue.locked():
            done = finished()
            current = self.walk()
            fresh = [t for t in self._trials(current) if t.index not in done and can_train(t.index)]
            added = queue.enqueue(fresh, self.distributions, holding_lock=True)
        if added:
            last = current.rounds[-1]
            names = list(self.design.target)
            self.log(
                f"path: round {len(current.rounds)} from {recipe_name(names, last.current)}, "
                f"{len(last.candidates) - len(last.stopped)} of {len(last.candidates)} candidates "
                f"in the race: {added} more trial{'s' if added > 1 else ''}"
            )
        return added > 0


def schedule_for(
    plan: StudyPlan, store: ResultsStore, distributions: Mapping[str, Any], log: Callable[[str], None]
) -> SeedSchedule | PathSchedule:
    """Which of a plan's trials are in play: the rounds of a path, else the seeds a seed rule
    has added (all of them without one)."""
    if isinstance(plan.design, AblationPath):
        return PathSchedule(plan, store, distributions, log)
    return SeedSchedule(plan, store, store.folder.root, distributions, log)
