"""optuna-dashboard shows each trial's learning curve (issue 29, item 4): the per-epoch values
every trial reports to its Optuna study, read through the dashboard's own HTTP API, started as
the README says, on the default journal storage and on PostgreSQL."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.run.test_many_machines import database  # noqa: F401  (a fixture)

STUDY = """
from ablate import Study, choice

study = Study(
    name="curves",
    question="Does the dashboard show learning curves?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=3, batch_size=64,
                  train_size=128, test_size=64, train_eval_size=64, lr=0.05),
    factors=dict(dropout=choice(0.0, 0.5)),
    seeds=1,
)
"""


def readme_command() -> list[str]:
    """The README's command that opens the dashboard, as a user would type it."""
    lines = [line.strip() for line in (REPO / "README.md").read_text().splitlines()]
    found = [line.split("#")[0].strip() for line in lines if line.startswith("optuna-dashboard ")]
    assert len(found) == 1, "the README shows one optuna-dashboard command"
    return shlex.split(found[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return dict(json.loads(answer.read()))


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_the_dashboard_shows_every_epoch_of_every_trial(
    tmp_path: Path, storage: str, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip(
        "optuna_dashboard", reason="optuna-dashboard is not installed: pip install 'ablate[dashboard]'"
    )
    url = request.getfixturevalue("database") if storage == "postgresql" else None
    study = tmp_path / "curves.py"
    study.write_text(STUDY)
    run = [sys.executable, "-m", "ablate", "run", str(study), "--results-dir", str(tmp_path), "--quiet"]
    done = subprocess.run(run + (["--storage", url] if url else []), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    command = readme_command()
    journal = "results/dropout_gap/optuna.journal"
    assert journal in command
    port = free_port()
    command = [str(tmp_path / "curves" / "optuna.journal") if part == journal else part for part in command]
    command = [str(port) if part == "8080" else part for part in command]
    if url:  # a shared queue: the --storage URL instead of the journal file
        command[1] = url
    command[0] = str(Path(sys.executable).parent / "optuna-dashboard")
    server = subprocess.Popen(
        command + ["--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get(base)["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        (found,) = [s for s in studies if s["study_name"] == "curves"]
        detail = get(f"{base}/{found['study_id']}?after=0")
        complete = [t for t in detail["trials"] if t["state"] == "Complete"]
        assert len(complete) == 2
        for trial in complete:
            steps = [point["step"] for point in trial["intermediate_values"]]
            assert steps == [1, 2, 3]  # one point per epoch: the learning curve
            values = [point["value"] for point in trial["intermediate_values"]]
            assert all(0.0 <= v <= 1.0 for v in values)
    finally:
        server.terminate()
        server.wait(timeout=10)
