"""Fault injection: what a hostile user, a crash or a full disk does to a study.

SIGKILLs at random moments, concurrent runs, a killed parent of workers, corrupt and torn
files, bad declarations, unwritable folders and full disks, plugins that exit. Every test
checks the same invariants at its end: each planned trial has exactly one result, no epoch row
is written twice, nothing was half-written, and every failure a user caused ended in one line
with the documented exit status and no traceback. The session's summary says how many faults
were injected (see ``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

import ablate
from ablate.cli.app import app
from ablate.components.discovery import Plugins, load_plugins
from tests.conftest import FAULTS, FaultLog, TinyPlugin, invoke
from tests.run.test_runner import TINY, FailingModel

# A real study on the shipped data, small enough for many processes: 8 trials of 3 epochs.
FAULT_STUDY = """
from ablate import Study, choice

study = Study(
    name="faults",
    question="Does anything get lost?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=3, batch_size=32,
                  train_size=128, test_size=64, train_eval_size=64, lr=0.05),
    factors=dict(dropout=choice(0.0, 0.5)),
    seeds=4,
)
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(study_dir: Path, table: str) -> list[dict]:
    return ds.dataset(study_dir / table, format="parquet").to_table().to_pylist()


def assert_nothing_lost_or_duplicated(study_dir: Path, trials: int, epochs: int) -> None:
    """Each planned trial has one complete attempt, every epoch row exists once, and no
    temporary or claim file is left behind."""
    complete = [t for t in rows(study_dir, "trials") if t["state"] == "complete"]
    numbers = [t["trial"] for t in complete]
    FAULTS.observe("trials lost", len(set(range(trials)) - set(numbers)))
    FAULTS.observe("trials twice", len(numbers) - len(set(numbers)))
    assert sorted(numbers) == list(range(trials)), "lost or duplicated trial"
    kept = {(t["trial"], t["attempt"]) for t in complete}
    epoch_rows = [
        (r["trial"], r["epoch"]) for r in rows(study_dir, "epochs") if (r["trial"], r["attempt"]) in kept
    ]
    FAULTS.observe("trials twice", len(epoch_rows) - len(set(epoch_rows)))
    assert sorted(epoch_rows) == [(t, e) for t in range(trials) for e in range(1, epochs + 1)]
    assert not list(study_dir.rglob("*.tmp")), "a half-written file was left"
    assert not list((study_dir / "claims").glob("*.lock")), "a stale lock was left"


def one_line_error(output: str) -> str:
    """The single error line of ``output``; fails on a traceback or several errors."""
    FAULTS.observe("tracebacks", output.count("Traceback"))
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def run_command(study: Path, results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ablate",
        "run",
        str(study),
        "--results-dir",
        str(results),
        "--quiet",
        *extra,
    ]


# -- crashes and concurrency (real processes) ---------------------------------------------------


@pytest.mark.slow
def test_kills_at_random_moments_lose_and_repeat_nothing(tmp_path: Path, fault_log: FaultLog) -> None:
    study = write(tmp_path / "faults.py", FAULT_STUDY)
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    moments = random.Random(20261123)
    for kill in [signal.SIGKILL, signal.SIGINT, signal.SIGTERM] * 3:
        process = subprocess.Popen(
            run_command(study, killed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None and process.stdout.readline().startswith("study")
        time.sleep(moments.uniform(0.0, 3.0))  # loading takes ~1.5 s: some kills, most mid-trial
        process.send_signal(kill)
        output = process.communicate(timeout=60)[0]
        fault_log.inject(signal.Signals(kill).name)
        if kill != signal.SIGKILL:  # Ctrl-C and kill: the documented ending, never a traceback
            FAULTS.observe("tracebacks", output.count("Traceback"))
            assert "Traceback" not in output, output
            # A signal that lands while Python shuts down, after the run's last line, ends the
            # process by the signal itself: the run was over by then.
            finished = "trials complete" in output or "trials are complete" in output
            assert process.returncode == 130 or finished, output
    final = subprocess.run(run_command(study, killed), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert subprocess.run(run_command(study, straight), capture_output=True, timeout=300).returncode == 0
    assert_nothing_lost_or_duplicated(killed / "faults", trials=8, epochs=3)

    def metrics(folder: Path) -> dict:
        return {
            (r["trial"], r["epoch"]): (r["test_acc"], r["train_loss"])
            for r in rows(folder / "faults", "epochs")
        }

    resumed, uninterrupted = metrics(killed), metrics(straight)
    FAULTS.observe("wrong numbers", sum(resumed.get(k) != v for k, v in uninterrupted.items()))
    assert resumed == uninterrupted  # resumed trials equal uninterrupted ones
    fault_log.verified()


@pytest.mark.parametrize("where", ["append", "torn tail"])
def test_a_signal_inside_the_journal_lock_ends_as_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog, where: str
) -> None:
    """Ctrl-C landing inside Optuna's lock clean-up, just before it renames the lock file: the
    append or set-aside finishes, the lock is given back, and the run sees the interrupt (exit
    130), not the ``FileNotFoundError`` of the clean-up (exit 2) that a kill test once hit."""
    from ablate.base.signals import interrupting
    from ablate.run.storage import SignalSafeJournal, set_aside_torn_tail

    journal = tmp_path / "optuna.journal"
    journal.write_bytes(b'{"op_code": 0}\n' + (b'{"torn' if where == "torn tail" else b""))
    backend = SignalSafeJournal(str(journal))
    real_rename = os.rename

    def rename_after_a_signal(source: str, target: str) -> None:
        if source.endswith(".lock"):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the rename below
        real_rename(source, target)

    with interrupting():
        monkeypatch.setattr(os, "rename", rename_after_a_signal)
        try:
            with pytest.raises(KeyboardInterrupt):
                if where == "append":
                    backend.append_logs([{"op_code": 1}])
                else:
                    set_aside_torn_tail(journal)
        finally:
            monkeypatch.undo()
    fault_log.inject("SIGINT inside the journal lock")
    assert not list(tmp_path.glob("optuna.journal.lock*")), "the lock was not given back"
    expected = [{"op_code": 0}, {"op_code": 1}] if where == "append" else [{"op_code": 0}]
    assert [json.loads(line) for line in journal.read_text().splitlines()] == expected
    fault_log.verified()


def _one_trial_queue(folder: Path):  # type: ignore[no-untyped-def]
    """A journal-file queue holding one waiting trial of plan ``fp``."""
    import optuna

    from ablate.run.liveness import Liveness
    from ablate.run.queue import FINGERPRINT, PLANNED, TrialQueue
    from ablate.run.storage import make_storage

    storage = make_storage(None, folder / "optuna.journal", Liveness())
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({}, user_attrs={PLANNED: 0, FINGERPRINT: "fp"})
    return TrialQueue(study, storage, "fp", folder / "queue.lock", Liveness())


@pytest.mark.parametrize("how", ["take", "ask_fresh"])
def test_a_signal_while_a_trial_is_taken_puts_it_back_and_the_next_run_trains_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog, how: str
) -> None:
    """Ctrl-C landing between taking a trial (RUNNING) and naming its worker once left a
    running trial nobody owned: the rerun trained every other trial and then waited for it
    forever. Now the signal waits for the name, the trial goes back at once, and a rerun takes
    it; alike for a planned trial and a sampler's new one."""
    from optuna.trial import TrialState

    from ablate.base.signals import interrupting
    from ablate.run.queue import PLANNED, WORKER

    queue = _one_trial_queue(tmp_path)
    owner, name = (queue.storage, "set_trial_state_values") if how == "take" else (queue.study, "ask")
    real = getattr(owner, name)

    def started_then_interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = real(*args, **kwargs)
        if how == "ask_fresh" or args[1] == TrialState.RUNNING:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the worker's name is written
        return started

    with interrupting():
        monkeypatch.setattr(owner, name, started_then_interrupted)
        try:
            with pytest.raises(KeyboardInterrupt):
                queue.take() if how == "take" else queue.ask_fresh(5, {})
        finally:
            monkeypatch.undo()
    fault_log.inject(f"SIGINT while a trial is taken ({how})")
    assert not queue.running_elsewhere(), "a running trial nobody owns: the next run would wait for it"
    again = queue.take()
    assert again is not None and again.user_attrs[PLANNED] == 0 and WORKER in again.user_attrs
    fault_log.verified()


def test_a_sampled_trial_put_back_in_the_queue_does_not_cost_the_budget_a_configuration(
    tmp_path: Path,
) -> None:
    """A sampler's trial interrupted and given back is trained from its copy; the copy is the
    same configuration, so a budget of two still asks for a second one."""
    import optuna
    from optuna.trial import TrialState

    from ablate.run.liveness import Liveness
    from ablate.run.queue import TrialQueue
    from ablate.run.storage import make_storage

    storage = make_storage(None, tmp_path / "optuna.journal", Liveness())
    study = optuna.create_study(storage=storage, study_name="s")
    queue = TrialQueue(study, storage, "fp", tmp_path / "queue.lock", Liveness())
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    first = queue.ask_fresh(2, space)
    assert first is not None
    queue.give_back(first)  # Ctrl-C
    copy = queue.take()
    assert copy is not None and copy.params == first.params
    queue.tell(copy, TrialState.COMPLETE, 1.0, {})
    second = queue.ask_fresh(2, space)
    assert second is not None and second.params != first.params
    queue.tell(second, TrialState.COMPLETE, 1.0, {})
    assert queue.ask_fresh(2, space) is None  # and the budget still holds


def test_a_running_trial_whose_worker_died_before_naming_itself_goes_back_in_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL cannot be held: a nameless running trial older than a live worker needs to name
    itself is failed and a copy queued; a younger one is left to its worker."""
    from optuna.trial import TrialState

    from ablate.run import queue as queue_module
    from ablate.run.queue import PLANNED

    queue = _one_trial_queue(tmp_path)
    (waiting,) = queue._mine((TrialState.WAITING,))
    trial_id = queue.trial_id(waiting.number)
    queue.storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # then killed
    queue.fail_stale()
    assert queue.take() is None and len(queue.running_elsewhere()) == 1  # a live worker's moment
    monkeypatch.setattr(queue_module, "ORPHAN_SECONDS", -1)
    queue.fail_stale()
    assert queue.storage.get_trial(trial_id).state == TrialState.FAIL
    again = queue.take()
    assert again is not None and again.user_attrs[PLANNED] == 0 and not queue.running_elsewhere()


def test_a_trial_told_complete_moments_before_a_run_opened_its_queue_is_not_queued_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker tells the storage first and writes the trial's files next. A run that opened its
    queue in between read no files for the trial; it must not queue it again (three runs started
    together on PostgreSQL trained trial 0 twice so). A trial without files is queued again
    when its teller is a dead process of this host, when its files were set aside as damaged,
    and when it was told longer ago than a write takes."""
    import socket

    import optuna
    from optuna.trial import TrialState

    from ablate.run import queue as queue_module
    from ablate.run.liveness import Liveness
    from ablate.run.queue import FINGERPRINT, PLANNED, WORKER, TrialQueue
    from ablate.run.storage import make_storage
    from ablate.study.plan import PlannedTrial

    storage = make_storage(None, tmp_path / "optuna.journal", Liveness())
    study = optuna.create_study(storage=storage, study_name="s")
    queue = TrialQueue(study, storage, "fp", tmp_path / "queue.lock", Liveness())
    tellers = {0: "elsewhere:1", 1: f"{socket.gethostname()}:999999999", 2: "elsewhere:2"}
    for number, teller in tellers.items():
        study.enqueue_trial({}, user_attrs={PLANNED: number, FINGERPRINT: "fp"})
        trial = queue.take()
        assert trial is not None
        trial.set_user_attr(WORKER, teller)  # the worker that trained it
        queue.tell(trial, TrialState.COMPLETE, 0.5, {"attempt": 1})  # its files not written yet
    later = TrialQueue(study, storage, "fp", tmp_path / "queue.lock", Liveness())
    planned = [PlannedTrial(n, "", {}, {}, 0) for n in tellers]
    assert later.enqueue(planned, {}) == 1 and later.queued() == {1}  # its teller is dead
    assert later.enqueue(planned, {}, set_aside=frozenset({(0, 1)})) == 1 and later.queued() == {0, 1}
    monkeypatch.setattr(queue_module, "WRITE_WAIT", 0.0)  # told longer ago than a write takes
    assert later.enqueue(planned, {}) == 1 and later.queued() == {0, 1, 2}


@pytest.mark.slow
def test_two_runs_started_together_share_the_work_and_say_so(tmp_path: Path, fault_log: FaultLog) -> None:
    study = write(tmp_path / "faults.py", FAULT_STUDY)
    processes = [
        subprocess.Popen(
            run_command(study, tmp_path, "--threads", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    fault_log.inject("concurrent run")
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert_nothing_lost_or_duplicated(tmp_path / "faults", trials=8, epochs=3)
    trained = [int(o.split("this run trained ")[1].split(";")[0]) for o in outputs]
    assert sum(trained) == 8 and all(n > 0 for n in trained), outputs
    assert any("finished meanwhile by other runs" in o for o in outputs), outputs
    fault_log.verified()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death signal is Linux's")
def test_workers_end_when_their_parent_is_killed(tmp_path: Path, fault_log: FaultLog) -> None:
    study = write(tmp_path / "faults.py", FAULT_STUDY.replace("epochs=3", "epochs=30"))
    parent = subprocess.Popen(
        run_command(study, tmp_path, "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    checkpoints = tmp_path / "faults" / "checkpoints"
    deadline = time.monotonic() + 120
    while len(list(checkpoints.glob("trial-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # both workers are training
    workers = [int(pid) for pid in children.read_text().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=60)
    fault_log.inject("SIGKILL of the workers' parent")

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        return not (status.exists() and status.read_text().split()[2] == "Z")  # a zombie is dead

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "workers outlived their killed parent"
    fault_log.verified()


# -- damaged files ------------------------------------------------------------------------------


@pytest.fixture
def tiny_cli(plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
    return plugins


def test_corrupt_parquet_files_are_named_set_aside_and_their_trials_trained_again(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    study = write(tmp_path / "tiny.py", TINY)
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    folder = tmp_path / "tiny_study"
    damaged = [
        folder / "trials" / "trial-00000-attempt-01.parquet",
        folder / "epochs" / "trial-00001-attempt-01.parquet",
        folder / "classes" / "trial-00002-attempt-01.parquet",
    ]
    for path in damaged:
        os.truncate(path, 100)  # what a full disk or a bad copy leaves
        fault_log.inject("truncated Parquet file")
    code, output = invoke("report", str(folder))
    assert code == 0, output
    for path in damaged:
        assert f"{path} is unreadable" in " ".join(output.split())
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    FAULTS.observe("tracebacks", output.count("Traceback"))
    assert "Traceback" not in output
    assert "this run trained 3; 1 was complete before it started" in " ".join(output.split())
    for path in damaged:
        assert str(path) in " ".join(output.split())
        assert (folder / "set-aside" / path.parent.name / path.name).exists()  # kept, not deleted
    assert_nothing_lost_or_duplicated(folder, trials=4, epochs=2)
    fault_log.verified()


def test_a_torn_journal_line_is_set_aside_and_the_study_goes_on(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    study = write(tmp_path / "tiny.py", TINY)
    # A first run, then a writer killed half-way through a line.
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "r"))
    assert code == 0, output
    folder = tmp_path / "r" / "tiny_study"
    journal = folder / "optuna.journal"
    (folder / "trials" / "trial-00003-attempt-01.parquet").unlink()  # one trial to redo
    with journal.open("ab") as handle:
        handle.write(b'{"op_code": 5, "worker_id": "ab')
    fault_log.inject("torn journal line")
    outputs = []
    for _ in range(2):  # the first run repairs; the second finds a sound journal
        code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "r"))
        FAULTS.observe("tracebacks", output.count("Traceback"))
        assert code == 0 and "Traceback" not in output, output
        outputs.append(" ".join(output.split()))
    (side,) = folder.glob("optuna.journal.torn-*")
    assert f"{journal} ended in a torn line" in outputs[0] and str(side) in outputs[0]
    assert "torn line" not in outputs[1]
    assert side.read_bytes() == b'{"op_code": 5, "worker_id": "ab'
    assert journal.read_bytes().endswith(b"\n")
    assert_nothing_lost_or_duplicated(folder, trials=4, epochs=2)
    # Damage in the middle is not a torn tail: one line naming the file and line, exit 2.
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"garbage\n"] + lines[2:]))
    fault_log.inject("garbage journal line")
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "r"))
    assert code == 2
    assert f"{journal}: line 3 is not valid JSON" in " ".join(one_line_error(output).split())
    fault_log.verified()


def test_a_damaged_study_json_gets_a_clear_error(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    study = write(tmp_path / "tiny.py", TINY)
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    description = tmp_path / "tiny_study" / "study.json"
    description.write_text('{"name": "tiny_st')
    fault_log.inject("damaged study.json")
    for command in (
        ["report", str(tmp_path / "tiny_study")],
        ["run", str(study), "--results-dir", str(tmp_path)],
    ):
        code, output = invoke(*command)
        assert code == 2
        assert f"{description} is damaged" in " ".join(one_line_error(output).split())
    fault_log.verified()


# -- two plans, one folder ----------------------------------------------------------------------


@pytest.mark.parametrize("change", [["--set", "epochs=1"], ["--preset", "other"]])
def test_another_plan_is_refused_whatever_the_storage_and_without_study_json(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog, change: list[str]
) -> None:
    text = TINY.replace("seeds=2,", "seeds=2, presets=dict(other=ablate.Preset('x', dict(epochs=1))),")
    study = write(tmp_path / "tiny.py", "import ablate\n" + text)
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    folder = tmp_path / "tiny_study"
    before = sorted(p.name for p in (folder / "trials").iterdir())
    attempts = [["--storage", f"sqlite:///{tmp_path / 'other.db'}"], []]
    for extra in attempts:
        code, output = invoke("run", str(study), "--results-dir", str(tmp_path), *change, *extra)
        fault_log.inject("another plan into the same folder")
        assert code == 2
        assert "holds results of another plan" in " ".join(one_line_error(output).split())
    (folder / "study.json").unlink()
    (folder / "optuna.journal").unlink()
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path), *change)
    assert code == 2 and "holds results of another plan" in " ".join(output.split())
    assert sorted(p.name for p in (folder / "trials").iterdir()) == before  # nothing written
    fault_log.verified()


def test_the_report_separates_rows_of_another_plan(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    study = write(tmp_path / "tiny.py", TINY)
    assert invoke("run", str(study), "--results-dir", str(tmp_path / "a"))[0] == 0
    assert invoke("run", str(study), "--results-dir", str(tmp_path / "b"), "--set", "epochs=1")[0] == 0
    mixed = tmp_path / "a" / "tiny_study" / "trials"
    for path in (tmp_path / "b" / "tiny_study" / "trials").iterdir():  # copied in by hand
        path.rename(mixed / path.name.replace("attempt-01", "attempt-07"))
    fault_log.inject("rows of another plan copied into a folder")
    report = json.loads(
        invoke("report", str(tmp_path / "a" / "tiny_study"), "--format", "json")[1].split("plots and HTML")[0]
    )
    assert report["counts"]["complete"] == 4  # only the folder's own plan
    assert any("another plan" in note and "left out" in note for note in report["missing"])
    fault_log.verified()


# -- bad declarations ---------------------------------------------------------------------------

BAD_DECLARATIONS = [
    ("seeds=2,", 'seeds="3",', "tiny.py:10", "seeds must be a whole number"),
    ("seeds=2,", "seeds=2.5,", "tiny.py:10", "seeds must be a whole number"),
    ("seeds=2,", "seeds=[0, 0],", "tiny.py:10", "lists a seed twice"),
    ('name="tiny_study",', 'name="..",', "tiny.py:5", "must be a plain folder name"),
    ("lr=0.05,", 'lr=float("nan"),', "tiny.py:8", "'lr' must be a finite number"),
    ("lr=0.05,", 'lr=float("inf"),', "tiny.py:8", "'lr' must be a finite number"),
    ("lr=0.05,", "lr=-0.1,", "tiny.py:8", "'lr' must be > 0"),
    ("lr=0.05,", "lr=0.05, momentum=-5.0,", "tiny.py:8", "'momentum' must be >= 0"),
    ("epochs=2,", "epochs=0,", "tiny.py:7", "'epochs' must be >= 1"),
    ("hidden=8,", "hidden=8, model_x=1,", "tiny.py:7", "unknown parameter 'model_x'"),
]


@pytest.mark.parametrize(("old", "new", "where", "message"), BAD_DECLARATIONS)
def test_a_bad_declaration_is_refused_before_anything_is_written(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog, old: str, new: str, where: str, message: str
) -> None:
    assert old in TINY
    study = write(tmp_path / "tiny.py", TINY.replace(old, new))
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "results"))
    fault_log.inject("bad declaration")
    assert code == 2, output
    line = " ".join(one_line_error(output).split())
    assert where in line and message in line
    assert not (tmp_path / "results").exists()  # nothing written
    fault_log.verified()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr=nan", "'lr' must be a finite number"),
        ("epochs=0", "'epochs' must be >= 1"),
        ("width=0", "'width' must be >= 1"),
        ("dropout=2.0", "'dropout' must be >= 0 and < 1"),
    ],
)
def test_a_bad_set_value_is_blamed_on_set_not_on_the_study_file(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog, item: str, message: str
) -> None:
    study = write(tmp_path / "tiny.py", TINY)
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "results"), "--set", item)
    fault_log.inject("bad --set value")
    assert code == 2
    line = " ".join(one_line_error(output).split())
    assert f"--set {item}:" in line and message in line and "tiny.py" not in line
    assert not (tmp_path / "results").exists()
    fault_log.verified()


def test_a_device_that_is_not_there_is_refused_before_anything_is_written(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, output = invoke(
        "run",
        str(write(tmp_path / "tiny.py", TINY)),
        "--results-dir",
        str(tmp_path / "results"),
        "--device",
        "cuda",
    )
    fault_log.inject("missing device")
    assert code == 2 and "device 'cuda' is not usable here" in one_line_error(output)
    assert not (tmp_path / "results").exists()
    fault_log.verified()


# -- the file system ----------------------------------------------------------------------------


def test_a_results_path_that_is_a_file_is_one_line(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    (tmp_path / "results").write_text("not a folder")
    code, output = invoke(
        "run", str(write(tmp_path / "tiny.py", TINY)), "--results-dir", str(tmp_path / "results")
    )
    fault_log.inject("results path is a file")
    assert code == 2 and "is a file, not a folder" in one_line_error(output)
    fault_log.verified()


def test_an_unwritable_results_folder_is_one_line(
    tmp_path: Path, tiny_cli: Plugins, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    real_write = Path.write_bytes

    def refused(self: Path, data: bytes) -> int:
        if str(self).startswith(str(tmp_path / "results")):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", refused)
    code, output = invoke(
        "run", str(write(tmp_path / "tiny.py", TINY)), "--results-dir", str(tmp_path / "results")
    )
    fault_log.inject("unwritable results folder")
    assert code == 2
    line = " ".join(one_line_error(output).split())
    assert "cannot write to" in line and "Permission denied" in line
    assert not list((tmp_path / "results").rglob("*.parquet"))
    fault_log.verified()


def test_a_full_disk_loses_one_named_trial_and_a_rerun_trains_it(
    tmp_path: Path, tiny_cli: Plugins, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    import ablate.base.atomic

    real_replace = os.replace
    full = {"on": True}

    def disk_full(source: object, target: object) -> None:
        if full["on"] and str(target).endswith("trials/trial-00002-attempt-01.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(ablate.base.atomic.os, "replace", disk_full)
    study = write(tmp_path / "tiny.py", TINY)
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    fault_log.inject("full disk")
    assert code == 2
    line = " ".join(one_line_error(output).split())
    assert "trial 2 (attempt 1) is lost" in line and "No space left on device" in line
    assert "run the same command again" in line
    folder = tmp_path / "tiny_study"
    assert not list(folder.rglob("*.tmp"))  # nothing half-written
    assert not (folder / "trials" / "trial-00002-attempt-01.parquet").exists()
    full["on"] = False
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    assert_nothing_lost_or_duplicated(folder, trials=4, epochs=2)
    fault_log.verified()


def test_a_read_only_report_folder_still_prints_the_text_and_says_what_failed(
    tmp_path: Path, tiny_cli: Plugins, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    import ablate.base.atomic

    assert invoke("run", str(write(tmp_path / "tiny.py", TINY)), "--results-dir", str(tmp_path))[0] == 0
    real_replace = os.replace

    def read_only(source: object, target: object) -> None:
        if "/report/" in str(target):
            raise PermissionError(errno.EROFS, "Read-only file system")
        real_replace(source, target)

    monkeypatch.setattr(ablate.base.atomic.os, "replace", read_only)
    code, output = invoke("report", str(tmp_path / "tiny_study"))
    fault_log.inject("read-only report folder")
    assert code == 2
    assert "Answer" in output and "Cells" in output  # the text report came first
    line = " ".join(one_line_error(output).split())
    assert "plots and report.html not written" in line and "Read-only file system" in line
    assert not list((tmp_path / "tiny_study" / "report").glob("*"))
    assert invoke("report", str(tmp_path / "tiny_study"), "--no-files")[0] == 0
    fault_log.verified()


# -- plugins that misbehave ---------------------------------------------------------------------


class ExitingListener:
    """A plugin that calls sys.exit(0) in an event hook."""

    @ablate.hookimpl
    def on_epoch_end(self, trial, epoch):  # type: ignore[no-untyped-def]
        sys.exit(0)


class ExitingModel:
    """A model factory that calls sys.exit(3)."""

    @ablate.hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        def leaving(*, num_classes: int) -> object:
            sys.exit(3)

        register("leaving", leaving, "calls sys.exit when built")


def test_a_plugin_calling_sys_exit_cannot_end_the_study_early(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    tiny_cli.manager.register(ExitingListener(), name="tests:exiting")
    code, output = invoke("run", str(write(tmp_path / "tiny.py", TINY)), "--results-dir", str(tmp_path))
    fault_log.inject("sys.exit in an event hook")
    assert code == 0, output
    assert "tests:exiting" in output and "SystemExit" in output
    assert_nothing_lost_or_duplicated(tmp_path / "tiny_study", trials=4, epochs=2)
    fault_log.verified()


def test_a_model_calling_sys_exit_is_a_failed_trial_not_the_end_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    loaded = load_plugins(extra={"tests:tiny": TinyPlugin(), "tests:leaving": ExitingModel()})
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: loaded)
    study = write(
        tmp_path / "tiny.py",
        TINY.replace('model="tiny_mlp", hidden=8', 'model="leaving"').replace(
            "factors=dict(hidden=choice(4, 8)),", ""
        ),
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path), "--retries", "0")
    fault_log.inject("sys.exit in a model factory")
    assert code == 1, output
    assert "2 trials failed after their retries" in " ".join(output.split())
    states = sorted((t["trial"], t["state"]) for t in rows(tmp_path / "tiny_study", "trials"))
    assert states == [(0, "fail"), (1, "fail")]
    fault_log.verified()


def test_failed_trials_are_not_retried_on_every_run_unless_asked(
    tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    flaky = FailingModel(100)
    loaded = load_plugins(extra={"tests:tiny": TinyPlugin(), "tests:flaky": flaky})
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: loaded)
    study = write(
        tmp_path / "tiny.py",
        TINY.replace('model="tiny_mlp", hidden=8', 'model="flaky"').replace(
            "factors=dict(hidden=choice(4, 8)),", ""
        ),
    )
    code, _ = invoke("run", str(study), "--results-dir", str(tmp_path))  # 2 attempts each
    fault_log.inject("a trial failing every attempt")
    assert code == 1 and len(rows(tmp_path / "tiny_study", "trials")) == 4
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 1 and "pass --retry-failed" in " ".join(output.split())
    assert len(rows(tmp_path / "tiny_study", "trials")) == 4  # not retried again
    flaky.failures = 0
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path), "--retry-failed")
    assert code == 0, output
    states = sorted((t["trial"], t["attempt"], t["state"]) for t in rows(tmp_path / "tiny_study", "trials"))
    assert states == [
        (0, 1, "fail"),
        (0, 2, "fail"),
        (0, 3, "complete"),
        (1, 1, "fail"),
        (1, 2, "fail"),
        (1, 3, "complete"),
    ]
    fault_log.verified()


def test_the_json_report_is_strict_json_and_deleted_epochs_are_named(
    tmp_path: Path, tiny_cli: Plugins, fault_log: FaultLog
) -> None:
    study = write(tmp_path / "tiny.py", TINY.replace("epochs=2,", "epochs=1,"))
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    (tmp_path / "tiny_study" / "epochs" / "trial-00001-attempt-01.parquet").unlink()
    fault_log.inject("deleted epochs file")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "tiny_study"), "--format", "json"])

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    report = json.loads(result.stdout, parse_constant=no_constants)
    assert all(c["metrics"]["swing_test"]["mean"] is None for c in report["cells"])  # 1 epoch
    assert any("trials [1] have no epochs rows" in note for note in report["missing"])
    fault_log.verified()


def test_a_missing_dataset_stops_the_run_in_one_line_instead_of_failing_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    monkeypatch.delenv("ABLATE_DATA", raising=False)
    study = write(
        tmp_path / "photos.py", FAULT_STUDY.replace('dataset="cifar10-mini"', 'dataset="imagefolder"')
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    fault_log.inject("missing dataset")
    assert code == 2
    assert "imagefolder needs a folder: pass --data-dir PATH" in one_line_error(output)
    assert not list((tmp_path / "faults" / "trials").glob("*.parquet"))  # no trial blamed
    fault_log.verified()
