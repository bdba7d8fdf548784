"""The rounds of an ablation path and the race within each (issue 28).

One pure function, :func:`walk`, replays the path from the results so far: which recipes each
round tries, how many seeds each has had, which were stopped, and which was kept. The runner
asks it which trials to train next (:mod:`ablate.run.paths`), the report how the path went
(:mod:`ablate.analysis.paths`); both read the same results, so a resumed path picks the same
steps and never trains a recipe twice.

Round r starts from the recipe kept so far (``current``) and tries each recipe that flips one
more remaining setting. Every candidate starts on ``first`` seeds; after each look, a candidate
whose gain is below the best candidate's (their paired difference's interval, at the family's
level over the candidates, excludes zero) stops getting seeds, and the rest get ``step`` more,
up to the study's seeds. The round ends when every candidate still in the race has every seed;
the one with the largest mean gain is kept. ``current`` gets every seed any candidate has, so
each comparison is paired by seed.

The choice is made on the *selection* metric (validation accuracy for a test-accuracy study),
never on the reported one: choosing the largest of k gains on the numbers that then report it
would inflate the kept step's gain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ablate.study.recipes import path_trial

RACE_ALPHA = 0.05  # the race's level, Bonferroni over the candidates compared with the best

Score = Callable[[int, int], float | None]  # (recipe mask, seed's place) -> value, None if not yet


@dataclass
class Round:
    """One round of the path: the candidates tried from ``current``, the seeds each had, which
    stopped early, and the kept one (None while the round is running)."""

    current: int
    candidates: tuple[int, ...]
    seeds: dict[int, int] = field(default_factory=dict)  # candidate -> seeds it had
    stopped: dict[int, int] = field(default_factory=dict)  # candidate -> seeds when it stopped
    kept: int | None = None
    runner_up: int | None = None
    ahead: tuple[int, int] = (0, 0)  # seeds on which the kept gain beat the runner-up's, of shared

    def setting_of(self, candidate: int) -> int:
        """The setting (its index) that ``candidate`` flips beyond ``current``."""
        return (candidate & ~self.current).bit_length() - 1


@dataclass
class Walk:
    rounds: list[Round]
    in_play: set[tuple[int, int]]  # (mask, seed's place) pairs to train
    done: bool


def walk(settings: int, seeds: int, first: int, step: int, score: Score, maximize: bool = True) -> Walk:
    """Replay the path over ``settings`` settings and ``seeds`` seeds from the scores so far."""
    full = (1 << settings) - 1
    in_play: set[tuple[int, int]] = set()
    rounds: list[Round] = []
    current = 0
    sign = 1.0 if maximize else -1.0

    def values(mask: int, n: int) -> np.ndarray | None:
        found = [score(mask, place) for place in range(n)]
        if any(v is None for v in found):
            return None
        return sign * np.array(found, dtype=float)

    while current != full:
        candidates = tuple(current | 1 << bit for bit in range(settings) if not current >> bit & 1)
        step_round = Round(current, candidates)
        rounds.append(step_round)
        racing = list(candidates)
        n = min(first, seeds) if len(candidates) > 1 else seeds
        while True:
            for mask in (current, *racing):
                in_play.update((mask, place) for place in range(n))
            for mask in racing:
                step_round.seeds[mask] = n
            base = values(current, n)
            gains = {
                mask: v - base for mask in racing if base is not None and (v := values(mask, n)) is not None
            }
            if len(gains) < len(racing):
                return Walk(rounds, in_play, False)  # this look's trials are still training
            best = max(racing, key=lambda m: float(gains[m].mean()))
            if n >= seeds:
                step_round.kept = best
                others = [m for m in candidates if m != best]
                if others:
                    _runner_up(step_round, best, others, score, sign)
                break
            behind = [m for m in racing if m != best and _behind(gains[best] - gains[m], len(racing) - 1)]
            for mask in behind:
                step_round.stopped[mask] = n
            racing = [m for m in racing if m not in behind]
            n = seeds if len(racing) == 1 else min(seeds, n + step)
        current = best
    return Walk(rounds, in_play, True)


def replay(
    scores: Mapping[int, float], settings: int, seeds: int, first: int, step: int, maximize: bool
) -> Walk:
    """The walk of a path plan from its trials' selection scores (planned trial -> value, see
    :func:`selection_scores`), its trials numbered as the plan numbers them."""
    return walk(
        settings, seeds, first, step, lambda mask, place: scores.get(path_trial(mask, place, seeds)), maximize
    )


def _behind(difference: np.ndarray, comparisons: int) -> bool:
    """Whether the best candidate's gain is above this one's: the lower end of their paired
    difference's interval (Bonferroni over ``comparisons``) is above zero."""
    n = len(difference)
    mean, sd = float(difference.mean()), float(difference.std(ddof=1))
    if sd == 0:
        return mean > 0
    critical = float(stats.t.ppf(1 - RACE_ALPHA / (2 * comparisons), n - 1))
    return mean - critical * sd / math.sqrt(n) > 0


def _runner_up(step_round: Round, best: int, others: list[int], score: Score, sign: float) -> None:
    """The candidate with the next largest gain over the seeds it shares with the kept one, and
    on how many of them the kept one gained more (what the report states of the choice; the
    recipe both start from cancels out of the difference)."""

    def shared(mask: int) -> list[tuple[float, float]]:
        pairs = []
        for place in range(step_round.seeds[mask]):
            kept, other = score(best, place), score(mask, place)
            if kept is not None and other is not None:
                pairs.append((sign * kept, sign * other))
        return pairs

    runner = max(others, key=lambda m: float(np.mean([o for _, o in shared(m)] or [-math.inf])))
    pairs = shared(runner)
    step_round.runner_up = runner
    step_round.ahead = (sum(k > o for k, o in pairs), len(pairs))


# What a path chooses each step on: never the test set the report states its gains on.
SELECTED_ON = {"test_acc": "val_acc", "test_loss": "val_loss"}


DIVERGED_LOSS = 1e9  # a diverged trial's loss, for a path that minimizes one


def selection_metric(metric: str) -> str:
    """The metric a path's rounds are decided on, for a study's ``metric``."""
    return SELECTED_ON.get(metric, metric)


def selection_scores(rows: Iterable[Mapping[str, Any]], metric: str, maximize: bool) -> dict[int, float]:
    """Planned trial -> its selection value, for trials with a result (``rows``: one result per
    trial, of one plan). A diverged trial scores as badly as possible (0 accuracy, a loss of
    ``DIVERGED_LOSS``): a recipe that diverges is no step forward."""
    from ablate.analysis.metrics import metric_value

    scores: dict[int, float] = {}
    for row in rows:
        value = metric_value(row, selection_metric(metric)) if row["state"] == "complete" else None
        # Finite, so that differences with it stay numbers (an infinite loss minus another is NaN).
        scores[int(row["trial"])] = (
            float(value) if value is not None else (0.0 if maximize else DIVERGED_LOSS)
        )
    return scores
