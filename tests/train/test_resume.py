"""Checkpoints, exact resume, crash recovery and the simulated restarts of resume studies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch
from typer.testing import CliRunner

from ablate.cli.app import app
from ablate.components.discovery import Plugins
from ablate.components.setup import resolve
from ablate.train.checkpoints import CheckpointError, CheckpointStore, read_checkpoint
from ablate.train.placement import to_device
from ablate.train.trainer import fit
from tests.conftest import REPO, tiny_data

CPU = torch.device("cpu")


def helper(folder: Path, stop_after: int, out: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "tests.train.resume_helper", str(folder), str(stop_after), str(out)],
        cwd=REPO,
        timeout=300,
    ).returncode


@pytest.mark.slow
def test_stop_and_resume_in_a_fresh_process_is_bitwise_identical(tmp_path: Path) -> None:
    assert helper(tmp_path / "straight", 0, tmp_path / "straight.pt") == 0
    assert helper(tmp_path / "segmented", 2, tmp_path / "unused.pt") == 3
    assert helper(tmp_path / "segmented", 0, tmp_path / "resumed.pt") == 0
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert resumed["resumed_from"] == 2 and straight["resumed_from"] == 0
    assert straight["epochs"] == resumed["epochs"]
    assert straight["weights"].keys() == resumed["weights"].keys()
    for name, tensor in straight["weights"].items():
        assert torch.equal(tensor, resumed["weights"][name]), name


def test_store_keeps_the_newest_and_falls_back_past_bad_files(tmp_path: Path) -> None:
    logged: list[str] = []
    store = CheckpointStore(tmp_path / "trial", keep=2, log=logged.append)
    for epoch in (1, 2, 3):
        store.save(epoch, {"epoch": epoch, "weights": torch.full((4,), float(epoch))})
    assert [e for e, _ in store.files()] == [2, 3]
    assert not [p for p in (tmp_path / "trial").iterdir() if p.name.startswith(".")]
    newest = store.files()[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a crash mid-copy
    assert store.latest()["epoch"] == 2
    assert str(newest) in logged[0] and "trying the one before it" in logged[0]
    store.files()[0][1].write_bytes(os.urandom(500))  # the other one corrupted too
    logged.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of torch's warnings leak
        assert store.latest() is None
    assert "is damaged or not a checkpoint" in logged[1] and "Python objects" not in logged[1]
    assert logged[1].endswith("no earlier checkpoint: the trial starts from its first epoch")
    store.clear()
    assert not (tmp_path / "trial").exists()


class Payload:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "epoch-00001.pt"
    torch.save({"format": 1, "epoch": 1, "evil": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=str(path)) as refused:
        read_checkpoint(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(refused.value)  # never advise the unsafe load


def lrs_and_restarts(plugins: Plugins, mode: str) -> tuple[list[float], list[bool], list[float]]:
    setup = resolve(
        {
            "dataset": "tiny",
            "model": "tiny_mlp",
            "epochs": 4,
            "batch_size": 16,
            "eval_batch_size": 16,
            "lr": 0.05,
            "scheduler": "multistep",
            "milestones": (1,),
            "gamma": 0.1,
            "resume": mode,
            "resume_every": 2,
        },
        plugins.registry,
    )
    result = fit(setup, to_device(tiny_data(), CPU, 16), 3, 0, CPU)
    return (
        [round(e.lr, 6) for e in result.epochs],
        [e.restart for e in result.epochs],
        [e.test_loss for e in result.epochs],
    )


def test_restart_modes_keep_what_they_say(plugins: Plugins) -> None:
    none_lr, none_marks, none_loss = lrs_and_restarts(plugins, "none")
    assert none_lr == [0.05, 0.005, 0.005, 0.005] and not any(none_marks)
    full_lr, full_marks, full_loss = lrs_and_restarts(plugins, "full")
    assert full_marks == [False, False, True, False]
    assert full_loss == none_loss  # restoring everything changes nothing
    only_lr, only_marks, only_loss = lrs_and_restarts(plugins, "weights_only")
    assert only_lr == [0.05, 0.005, 0.05, 0.005]  # fresh optimizer and schedule: back to 0.05
    assert only_marks == full_marks and only_loss[:2] == none_loss[:2] and only_loss[2] != none_loss[2]
    sched_lr, _, sched_loss = lrs_and_restarts(plugins, "weights_scheduler")
    assert sched_lr == none_lr and sched_loss[2] != none_loss[2]  # same rate, momentum lost
    opt_lr, _, _ = lrs_and_restarts(plugins, "weights_optimizer")
    assert opt_lr == [0.05, 0.005, 0.005, 0.0005]  # the fresh schedule decays again at its step 1


def epochs_of(results: Path) -> dict[tuple[int, int], dict]:
    rows = ds.dataset(results / "epochs").to_table().to_pylist()
    keyed: dict[tuple[int, int], dict] = {}
    for row in rows:
        key = (row["trial"], row["epoch"])
        assert key not in keyed, f"duplicate epoch row {key}"
        keyed[key] = {k: v for k, v in row.items() if k not in ("seconds", "attempt")}
    return keyed


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_gives_exact_rows_and_the_uninterrupted_metrics(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ablate",
        "run",
        str(REPO / "studies" / "dropout_gap.py"),
        "--preset",
        "smoke",
        "--set",
        "dropout=0.0",
        "--set",
        "epochs=4",
        "--set",
        "milestones=(2,)",
    ]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*command, "--results-dir", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = killed / "dropout_gap" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("trial-0000[1-4]/epoch-00002.pt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    (interrupted,) = [p.parent for p in checkpoints.glob("trial-*/epoch-00002.pt")]
    trial = int(interrupted.name.split("-")[1])
    complete_before = len(list((killed / "dropout_gap" / "trials").glob("*.parquet")))
    assert complete_before < 6

    rerun = subprocess.run(
        [*command, "--results-dir", str(killed)], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"trial {trial} continued from its checkpoint after epoch" in rerun.stdout
    straight = tmp_path / "straight"
    assert (
        subprocess.run(
            [*command, "--results-dir", str(straight)], capture_output=True, timeout=300
        ).returncode
        == 0
    )

    trials = ds.dataset(killed / "dropout_gap" / "trials").to_table().to_pylist()
    assert sorted(t["trial"] for t in trials) == list(range(6))  # one attempt each, all complete
    assert {t["state"] for t in trials} == {"complete"}
    resumed = next(t for t in trials if t["trial"] == trial)
    assert resumed["resumed_from_epoch"] >= 2
    rows = epochs_of(killed / "dropout_gap")
    assert sorted(rows) == [(t, e) for t in range(6) for e in range(1, 5)]
    assert rows == epochs_of(straight / "dropout_gap")
    assert not list(checkpoints.glob("trial-*/*.pt"))  # finished trials leave no checkpoints


@pytest.mark.slow
def test_resume_jump_smoke_marks_restarts_per_mode(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(REPO / "studies" / "resume_jump.py"),
            "--preset",
            "smoke",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = ds.dataset(tmp_path / "resume_jump" / "trials").to_table().to_pylist()
    trials = {t["trial"]: t["param_resume"] for t in rows}
    # One determinism for every cell: the `none` cell once trained without it.
    assert {(t["param_deterministic"], t["deterministic"]) for t in rows} == {("on", True)}
    assert sorted(set(trials.values())) == [
        "full",
        "none",
        "weights_only",
        "weights_optimizer",
        "weights_scheduler",
    ]
    marks: dict[str, set[int]] = {}
    for row in ds.dataset(tmp_path / "resume_jump" / "epochs").to_table().to_pylist():
        if row["restart"]:
            marks.setdefault(trials[row["trial"]], set()).add(row["epoch"])
    assert marks == {mode: {3} for mode in ("full", "weights_only", "weights_optimizer", "weights_scheduler")}
    report = CliRunner().invoke(app, ["report", str(tmp_path / "resume_jump"), "--format", "json"])
    data = json.loads(report.stdout)
    assert "restarts" in data["plots"]
    # One restart point (after epoch 2 of 4): the Answer's family is each mode's jump there.
    jumps = {f["level"]: f for f in data["findings"] if f["metric"] == "jump_test@1" and f["family"]}
    assert set(jumps) == {"full", "weights_only", "weights_optimizer", "weights_scheduler"}
    assert {f["metric"] for f in data["findings"] if f["family"]} == {"jump_test@1", "jump_train@1"}
    assert jumps["full"]["estimate"]["value"] == 0.0  # the control restores everything
    assert any("identical on jump_test@1" in line and "full" in line for line in data["answer"])


def test_a_checkpoint_of_another_trial_is_never_restored(plugins: Plugins, tmp_path: Path) -> None:
    setup = resolve({"dataset": "tiny", "model": "tiny_mlp", "epochs": 2, "batch_size": 16}, plugins.registry)
    data = to_device(tiny_data(), CPU, 16)
    store = CheckpointStore(tmp_path / "trial")

    def stop(record):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(setup, data, 3, 0, CPU, stop, store, {"trial": 1})
    assert [e for e, _ in store.files()] == [1]
    other = fit(setup, data, 3, 0, CPU, checkpoints=store, checkpoint_meta={"trial": 2})
    assert other.resumed_from == 0
    same = fit(setup, data, 3, 0, CPU)
    assert [e.test_loss for e in other.epochs] == [e.test_loss for e in same.epochs]
