"""Many workers, one queue: against the real PostgreSQL server this project's machines run
(127.0.0.1:5432, user postgres). Each test creates a database of its own and drops it. Where no
server answers, these tests are skipped with the reason, so a fresh machine still passes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import optuna
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from ablate.cli.app import app
from tests.conftest import FAULTS, FaultLog

SERVER = dict(host="127.0.0.1", port=5432, user="postgres")
STUDY = """
from ablate import Study, choice

study = Study(
    name="many",
    question="Do many workers train each trial exactly once?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=EPOCHS, batch_size=64,
                  train_size=TRAIN, test_size=64, train_eval_size=64, lr=0.05),
    factors=dict(dropout=choice(0.0, 0.25, 0.5), augment=choice("none", "crop_flip")),
    seeds=SEEDS,
)
"""


def _server() -> object:
    pytest.importorskip(
        "psycopg", reason="the postgres extra is not installed: pip install 'ablate[postgres]'"
    )
    psycopg2 = pytest.importorskip(
        "psycopg2", reason="the postgres extra is not installed: pip install 'ablate[postgres]'"
    )
    try:
        connection = psycopg2.connect(dbname="postgres", connect_timeout=3, **SERVER)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL server answers at 127.0.0.1:5432 ({str(error).strip()})")
    connection.autocommit = True
    return connection


@pytest.fixture
def database() -> Iterator[str]:
    """A database of the test's own on the real server; its SQLAlchemy URL."""
    admin = _server()
    name = f"ablate_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(f'CREATE DATABASE "{name}"')
    # The URL as users write it: SQLAlchemy 2.1 takes psycopg (3) for it.
    url = f"postgresql://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{name}"
    optuna.storages.RDBStorage(url)  # its tables, before workers race to make them
    try:
        yield url
    finally:
        with admin.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()  # type: ignore[attr-defined]


def study_file(tmp_path: Path, epochs: int = 1, train: int = 128, seeds: int = 3) -> Path:
    path = tmp_path / "many.py"
    path.write_text(
        STUDY.replace("EPOCHS", str(epochs)).replace("TRAIN", str(train)).replace("SEEDS", str(seeds))
    )
    return path


def command(kind: str, study: Path, results: Path | str, url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ablate",
        kind,
        str(study),
        "--results-dir",
        str(results),
        "--storage",
        url,
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]


def rows(folder: Path, table: str) -> list[dict]:
    return ds.dataset(folder / table, format="parquet").to_table().to_pylist()


def assert_each_trial_once(folder: Path, epochs: int, planned: int = 18) -> list[dict]:
    trials = rows(folder, "trials")
    complete = [t for t in trials if t["state"] == "complete"]
    numbers = [t["trial"] for t in complete]
    FAULTS.observe("trials lost", len(set(range(planned)) - set(numbers)))
    FAULTS.observe("trials twice", len(numbers) - len(set(numbers)))
    assert sorted(numbers) == list(range(planned)), "a trial lost or twice"
    kept = {(t["trial"], t["attempt"]) for t in complete}
    epoch_rows = sorted(
        (r["trial"], r["epoch"]) for r in rows(folder, "epochs") if (r["trial"], r["attempt"]) in kept
    )
    assert epoch_rows == [(t, e) for t in range(planned) for e in range(1, epochs + 1)]
    return complete


@pytest.mark.slow
def test_three_runs_started_together_enqueue_once_and_train_each_trial_once(
    tmp_path: Path, database: str, fault_log: FaultLog
) -> None:
    study = study_file(tmp_path)
    processes = [
        subprocess.Popen(
            command("run", study, tmp_path, database),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    fault_log.inject("concurrent runs on PostgreSQL")
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert_each_trial_once(tmp_path / "many", epochs=1)
    stored = optuna.load_study(study_name="many", storage=database)
    numbers = [t.user_attrs["trial"] for t in stored.trials]
    how = [(t.user_attrs["trial"], t.state.name, t.user_attrs.get("state")) for t in stored.trials]
    assert sorted(numbers) == list(range(18)), how  # enqueued once each, none left over
    assert {t.state for t in stored.trials} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.user_attrs["worker"] for t in stored.trials}) >= 2  # the work was shared
    fault_log.verified()


@pytest.mark.slow
def test_a_killed_worker_s_trial_goes_back_in_the_queue_and_continues_from_its_checkpoint(
    tmp_path: Path, database: str, fault_log: FaultLog
) -> None:
    study = study_file(tmp_path, epochs=4, train=512)
    liveness = ["--heartbeat-interval", "1", "--grace-period", "4"]
    first = subprocess.Popen(
        command("run", study, tmp_path, database, *liveness),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = tmp_path / "many" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("trial-*/epoch-00002.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    others = [
        subprocess.Popen(
            command("worker", study, tmp_path, database, *liveness),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    (victim,) = [int(p.parent.name.split("-")[1]) for p in checkpoints.glob("trial-*/epoch-00002.pt")][:1]
    first.send_signal(signal.SIGKILL)  # mid-trial: its trial has checkpoints, no result
    first.wait(timeout=60)
    fault_log.inject("SIGKILL of a PostgreSQL worker")
    outputs = [p.communicate(timeout=600)[0] for p in others]
    assert [p.returncode for p in others] == [0, 0], outputs
    complete = assert_each_trial_once(tmp_path / "many", epochs=4)
    resumed = next(t for t in complete if t["trial"] == victim)
    assert resumed["resumed_from_epoch"] >= 2  # continued from the shared checkpoint
    assert any(f"trial {victim} continued from its checkpoint" in o for o in outputs)
    stored = optuna.load_study(study_name="many", storage=database)
    failed = [t for t in stored.trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["trial"] for t in failed] == [victim]  # the stale one, requeued once
    fault_log.verified()


@pytest.mark.slow
def test_the_psycopg2_url_form_runs_a_study_too(tmp_path: Path, database: str) -> None:
    url = database.replace("postgresql://", "postgresql+psycopg2://")
    done = subprocess.run(
        command("run", study_file(tmp_path), tmp_path, url), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_each_trial_once(tmp_path / "many", epochs=1)


@pytest.fixture
def mariadb() -> Iterator[str]:
    """A database of the test's own on the real MariaDB server (127.0.0.1:3306, root)."""
    pymysql = pytest.importorskip(
        "pymysql", reason="the mysql extra is not installed: pip install 'ablate[mysql]'"
    )
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3, autocommit=True)
    except pymysql.err.OperationalError as error:
        pytest.skip(f"no MariaDB/MySQL server answers at 127.0.0.1:3306 ({error})")
    name = f"ablate_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    url = f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    optuna.storages.RDBStorage(url)  # its tables, before workers race to make them
    try:
        yield url
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.mark.slow
def test_a_run_and_a_worker_share_a_mariadb_queue(tmp_path: Path, mariadb: str) -> None:
    study = study_file(tmp_path)
    first = subprocess.Popen(
        command("run", study, tmp_path, mariadb), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "many" / "study.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.Popen(
        command("worker", study, tmp_path, mariadb),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert_each_trial_once(tmp_path / "many", epochs=1)
    stored = optuna.load_study(study_name="many", storage=mariadb)
    assert sorted(t.user_attrs["trial"] for t in stored.trials) == list(range(18))


@pytest.mark.slow
def test_a_missing_database_driver_is_named_with_the_command_that_installs_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(study_file(tmp_path)),
            "--results-dir",
            str(tmp_path),
            "--storage",
            "postgresql+pg8000://postgres@127.0.0.1/x",
        ],
    )
    assert result.exit_code == 2
    FAULTS.observe("tracebacks", result.output.count("Traceback"))
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "driver 'pg8000'" in line and "pip install pg8000" in line


def _running_on(database: str, host: str) -> list[optuna.trial.FrozenTrial]:
    try:
        stored = optuna.load_study(study_name="many", storage=database)
    except KeyError:  # not created yet
        return []
    return [
        t
        for t in stored.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if str(t.user_attrs.get("worker", "")).startswith(f"{host}:")
    ]


@pytest.mark.slow
def test_a_worker_on_another_host_killed_holding_a_trial_is_recovered_by_its_heartbeat(
    tmp_path: Path, database: str, fault_log: FaultLog
) -> None:
    """A worker whose host name is not this machine's (its own UTS namespace) is SIGKILLed
    while it trains a trial: no process check can see it, only the heartbeat. Within the grace
    period the trial goes back in the queue, and the study ends with every trial once."""
    host = "ablate-other-host"
    probe = subprocess.run(["unshare", "-u", "hostname", host], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(
            f"cannot give a process a host name of its own here (unshare -u: "
            f"{probe.stderr.strip() or probe.returncode}); it needs root"
        )
    study = study_file(tmp_path, epochs=3, train=512)
    heartbeat, grace = 1, 5
    liveness = ["--heartbeat-interval", str(heartbeat), "--grace-period", str(grace)]
    here = subprocess.Popen(
        command("run", study, tmp_path, database, *liveness),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "many").glob("study.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    elsewhere = subprocess.Popen(
        [
            "unshare",
            "-u",
            "sh",
            "-c",
            f'hostname {host} && exec "$0" "$@"',
            *command("worker", study, tmp_path, database, *liveness),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held: list[optuna.trial.FrozenTrial] = []
    while not held and time.monotonic() < deadline and elsewhere.poll() is None:
        held = _running_on(database, host)
        time.sleep(0.1)
    assert held, "the other host's worker never took a trial"
    time.sleep(2 * heartbeat)  # it has recorded heartbeats: now only silence can tell
    # Freeze it first, then ask which trial it holds: a trial can finish during the sleep, and
    # only a frozen worker's trial is sure to be the one the kill interrupts.
    held = []
    while not held and time.monotonic() < deadline:
        elsewhere.send_signal(signal.SIGSTOP)
        held = _running_on(database, host)
        if not held:  # between two trials: let it take the next one
            elsewhere.send_signal(signal.SIGCONT)
            time.sleep(0.2)
    assert held, "the other host's worker held no trial when it was to be killed"
    elsewhere.send_signal(signal.SIGKILL)
    killed_at = datetime.now()
    elsewhere.wait(timeout=60)
    fault_log.inject("SIGKILL of a worker on another host")
    output = here.communicate(timeout=600)[0]
    assert here.returncode == 0, output
    assert_each_trial_once(tmp_path / "many", epochs=3)
    stored = optuna.load_study(study_name="many", storage=database)
    (victim,) = [t for t in stored.trials if t.number == held[0].number]
    assert victim.state == optuna.trial.TrialState.FAIL and victim.datetime_complete is not None
    recovered_after = (victim.datetime_complete - killed_at).total_seconds()
    assert recovered_after <= grace + 2 * heartbeat + 5, recovered_after  # within the grace
    copies = [t for t in stored.trials if t.user_attrs["trial"] == victim.user_attrs["trial"]]
    assert sorted(t.state.name for t in copies) == ["COMPLETE", "FAIL"]  # requeued once
    fault_log.verified()


@pytest.mark.slow
def test_a_worker_joins_only_an_existing_study_and_status_shows_the_queue(
    tmp_path: Path, database: str
) -> None:
    study = study_file(tmp_path)
    result = CliRunner().invoke(
        app, ["worker", str(study), "--results-dir", str(tmp_path), "--storage", database]
    )
    assert result.exit_code == 2
    assert "has no study 'many' to join" in " ".join(result.output.split())
    started = CliRunner().invoke(
        app, ["run", str(study), "--results-dir", str(tmp_path), "--storage", database]
    )
    assert started.exit_code == 0, started.output
    assert "\nShort answer\n" in started.output  # `ablate run` ends with the answer ...
    joined = CliRunner().invoke(
        app, ["worker", str(study), "--results-dir", str(tmp_path), "--storage", database]
    )
    assert joined.exit_code == 0 and "nothing to run" in joined.output, joined.output
    assert "Short answer" not in joined.output  # ... a worker only trains
    status = CliRunner().invoke(app, ["status", str(tmp_path / "many"), "--storage", database])
    assert status.exit_code == 0, status.output
    line = [row for row in status.output.splitlines() if row.startswith("│ trials")][0]
    assert [cell.strip() for cell in line.strip("│ ").split("│")][1:] == [
        "0",
        "0",
        "0",
        "18",
        "0",
        "0",
        "0",
    ]  # waiting, running, abandoned, complete, diverged,
    # failed, missing
