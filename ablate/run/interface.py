"""What a run is asked to do (:class:`RunOptions`) and what it did (:class:`RunSummary`), and
what it tells a progress display."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ablate.run.liveness import Liveness


class Progress(Protocol):
    """What the runner tells a progress display besides the plugin events."""

    def begin(self, total: int, done: int) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    results_dir: Path = Path("results")
    device: str = "auto"
    storage: str | None = None
    data_dir: Path | None = None
    retries: int = 1
    retry_failed: bool = False  # try again trials that used up their retries in earlier runs
    liveness: Liveness = Liveness()
    join: bool = False  # `ablate worker`: take trials from an existing study, enqueue nothing
    threads: int | None = None  # --threads as given (None: the folder's count, else torch's)


@dataclass
class RunSummary:
    """What a run did, and what the folder holds at its end."""

    total: int
    done_before: int
    completed: list[int] = field(default_factory=list)  # trained to completion by this run
    diverged: list[int] = field(default_factory=list)  # diverged in this run (a result)
    pruned: list[int] = field(default_factory=list)  # stopped early by a sampler's pruner
    failed: list[int] = field(default_factory=list)  # failed every attempt it was given
    not_retried: list[int] = field(default_factory=list)  # failed in earlier runs; left alone
    done_after: int = 0  # trials of the plan with a result at the end, whoever trained them
    elsewhere: int = 0  # trials that other live workers were training when this run ended

    @property
    def trained(self) -> int:
        return len(self.completed) + len(self.diverged) + len(self.pruned)

    @property
    def by_others(self) -> int:
        """Trials that other runs sharing the folder finished while this one ran."""
        return max(0, self.done_after - self.done_before - self.trained)
