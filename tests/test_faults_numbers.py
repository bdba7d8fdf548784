"""Fault injection, part two: what could put a wrong number in a results folder.

Another dataset, thread count or plan finishing a folder; a plugin parameter that shadows a
setting; a hand-edited ``study.json``; a scheduler or optimizer that cannot resume; a duplicate
copy of a trial. Each test fails without the guard it names.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from ablate.discovery import Plugins
from tests.conftest import FaultLog
from tests.test_run import TINY, table, tiny_study


def _runner(tmp_path: Path, plugins: Plugins, text: str = TINY):  # type: ignore[no-untyped-def]
    from ablate import studyfile
    from ablate.runner import Runner, RunOptions

    plan = studyfile.load(tiny_study(tmp_path, text)).plan()
    return Runner(plan, RunOptions(results_dir=tmp_path / "results"), plugins, log=lambda m: None)


def test_a_duplicate_copy_that_finishes_second_is_failed_in_optuna_not_left_running(
        tmp_path: Path, plugins: Plugins, fault_log: FaultLog) -> None:
    """A copy of a trial (put back by a crash) that finishes after the original is recorded as
    a duplicate: its Optuna trial ends FAIL. ablate's own state was once passed to Optuna, which
    refused it, the error was swallowed, and the copy stayed RUNNING for good."""
    import torch

    from ablate.attempt import AttemptContext, provenance, run_attempt
    from ablate.dataset_cache import DatasetCache
    from ablate.runner import RunSummary

    runner = _runner(tmp_path, plugins)
    queue = runner.prepare(runner.validate())
    runner.enqueue(queue, RunSummary(runner.total(), 0))
    assert runner.run().completed  # every trial has its result now
    first = next(t for t in queue.study.get_trials() if t.user_attrs["trial"] == 0)
    queue.requeue(first)  # a crash left a copy of trial 0 in the queue
    copy = queue.take()
    assert copy is not None and copy.user_attrs["trial"] == 0
    device = torch.device("cpu")
    ctx = AttemptContext(runner.plan, plugins, runner.folder, runner.writer, queue,
                         runner.validate(), device, DatasetCache(device, None, lambda m: None),
                         runner.options.results_dir, lambda key, value: "", lambda m: None,
                         provenance(runner.plan, plugins, device))
    outcome = run_attempt(ctx, runner.plan.trials[0], 2, copy, retry=True)
    fault_log.inject("a duplicate copy finishing second")
    assert not outcome.recorded
    stored = queue.frozen(copy)
    assert stored.state == optuna.trial.TrialState.FAIL, stored.state
    assert stored.user_attrs["state"] == "duplicate"
    assert [t["trial"] for t in table(tmp_path / "results" / "tiny_study", "trials")].count(0) == 1
    fault_log.verified()


def test_the_queue_refuses_ablate_s_own_states_where_optuna_s_are_meant(
        tmp_path: Path, plugins: Plugins) -> None:
    from ablate.events import AttemptState
    from ablate.runner import RunSummary

    runner = _runner(tmp_path, plugins)
    queue = runner.prepare(runner.validate())
    runner.enqueue(queue, RunSummary(runner.total(), 0))
    trial = queue.take()
    assert trial is not None
    with pytest.raises(TypeError, match="optuna.trial.TrialState"):
        queue.tell(trial, AttemptState.FAIL, None, {})  # type: ignore[arg-type]
    assert queue.frozen(trial).state == optuna.trial.TrialState.RUNNING
