"""Results in an object store, against a real S3 server: moto's standalone server, started by
the test on 127.0.0.1 and spoken to over HTTP with S3's protocol (nothing of boto is mocked).
Without the ``s3`` extra or moto, these tests skip with the reason.

Two "hosts" are two cache folders: each has its own mirror of the location, as two machines do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from ablate.base.atomic import write_text_atomic
from ablate.base.choices import remembered
from tests.conftest import REPO, invoke
from tests.run.test_many_machines import assert_each_trial_once, command, database, study_file

__all__ = ["database"]  # the PostgreSQL fixture, a database of the test's own


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; its endpoint URL."""
    pytest.importorskip("s3fs", reason="the s3 extra is not installed: pip install 'ablate[s3]'")
    pytest.importorskip("moto.server", reason="moto's server is not installed: pip install 'moto[server]'")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket on the server, this process pointed at it; its s3:// URL."""
    import s3fs

    for name, value in (
        ("AWS_ENDPOINT_URL", s3_server),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("ABLATE_CACHE", str(tmp_path / "host-a")),
    ):
        monkeypatch.setenv(name, value)
    name = f"ablate-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    from ablate.store.remote import Remote

    monkeypatch.setattr(Remote, "_open", {})  # each test's hosts open their own mirrors
    return f"s3://{name}"


def store() -> object:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def as_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str) -> None:
    """Go on as another machine: another cache folder, so another mirror."""
    from ablate.store.remote import Remote

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / host))
    monkeypatch.setattr(Remote, "_open", {})


def trials_of(folder: Path) -> dict[int, float]:
    rows = ds.dataset(folder / "trials").to_table().to_pylist()
    return {r["trial"]: r["test_acc"] for r in rows if r["state"] == "complete"}


def test_a_result_key_is_written_once_and_a_second_writer_keeps_the_stored_one(
    bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ablate.store.folder import StudyFolder

    first = StudyFolder.of(bucket + "/results", "s")
    write_text_atomic(first.attempt_file("trials", 0, 1), "first")
    as_host(monkeypatch, tmp_path, "host-b")
    second = StudyFolder.of(bucket + "/results", "s")
    assert second.root != first.root and second.attempt_file("trials", 0, 1).read_text() == "first"
    write_text_atomic(second.attempt_file("trials", 1, 1), "late")  # a key nobody wrote: stored
    (second.root / "trials").joinpath("trial-00001-attempt-01.parquet").unlink()
    # the same key again, as a worker that thought it owned trial 1 would: refused, stored kept
    write_text_atomic(second.attempt_file("trials", 1, 1), "duplicate")
    assert second.attempt_file("trials", 1, 1).read_text() == "late"
    assert store().cat_file(f"{bucket[5:]}/results/s/trials/trial-00001-attempt-01.parquet") == b"late"


def test_a_result_the_store_refused_is_not_kept_in_the_mirror_either(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put that fails (the network, a full quota) raises, naming the object, and leaves no
    local copy: one would count as finished on this machine and be missing on every other."""
    from ablate.base.atomic import WriteError
    from ablate.store.folder import StudyFolder
    from ablate.store.remote import Remote

    folder = StudyFolder.of(bucket + "/results", "s")
    remote = Remote._open[bucket + "/results"]

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(remote.fs, "pipe_file", refused)
    target = folder.attempt_file("trials", 0, 1)
    with pytest.raises(WriteError, match=f"cannot write {bucket}/results/s/trials/trial-00000"):
        write_text_atomic(target, "result")
    assert not target.exists()


def test_two_hosts_deciding_a_record_at_once_keep_the_first_decision(
    bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Host B reads no precision record, measures, and meanwhile host A stores its choice: B's
    conditional put is refused, and B trains in A's precision, not its own."""
    from ablate.store.folder import StudyFolder

    folder = StudyFolder.of(bucket + "/results", "s")

    def measure_while_another_host_decides() -> dict[str, object]:
        fs = store()
        fs.pipe_file(  # host A's decision lands between B's read and B's write
            f"{bucket[5:]}/results/s/precision.json", json.dumps({"study": {"precision": "fp32"}}).encode()
        )
        return {"precision": "bf16"}

    chosen = remembered(folder.precision_record, "study", measure_while_another_host_decides, True)
    assert chosen == {"precision": "fp32"}
    assert json.loads(folder.precision_record.read_text()) == {"study": {"precision": "fp32"}}
    # and a host that comes later reads the decision rather than choosing
    as_host(monkeypatch, tmp_path, "host-c")
    later = StudyFolder.of(bucket + "/results", "s")
    again = remembered(later.precision_record, "study", lambda: {"precision": "bf16"}, True)
    assert again == {"precision": "fp32"} and later.root != folder.root


def test_a_mirror_whose_location_was_emptied_is_not_taken_for_its_results(
    bucket: str, tmp_path: Path
) -> None:
    from ablate.store.folder import StudyFolder
    from ablate.store.remote import Remote

    folder = StudyFolder.of(bucket + "/results", "s")
    folder.write_description({"name": "s"})
    write_text_atomic(folder.attempt_file("trials", 0, 1), "old")
    store().rm(f"{bucket[5:]}/results", recursive=True)  # the user starts the location afresh
    Remote._open.clear()
    again = StudyFolder.of(bucket + "/results", "s")
    assert again.root == folder.root and not list(again.root.rglob("*.parquet"))


def test_only_s3_and_writable_buckets_are_taken_each_refused_in_one_line(
    bucket: str, cli_plugins: object, tmp_path: Path
) -> None:
    study = str(REPO / "studies" / "dropout_gap.py")
    code, output = invoke("run", study, "--preset", "smoke", "--results-dir", "gs://somewhere/results")
    (line,) = [line for line in output.splitlines() if line.startswith("error")]
    assert code == 2 and "gs://somewhere/results" in line and "only S3" in line, output
    code, output = invoke("run", study, "--preset", "smoke", "--results-dir", "s3://no-such-bucket-here/r")
    (line,) = [line for line in output.splitlines() if line.startswith("error")]
    assert code == 2 and "s3://no-such-bucket-here/r/dropout_gap" in line, output
    assert "AWS_ENDPOINT_URL" in line and "Traceback" not in output


def test_a_second_machine_with_another_plan_is_refused_even_when_both_write_at_once(
    bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Machine B opened the location while it was empty; machine A's study.json lands before
    B writes its own: B's conditional put is refused, and B, reading A's, refuses its plan."""
    from ablate.base.atomic import RecordChanged, fetch
    from ablate.store.folder import FolderError, StudyFolder

    folder = StudyFolder.of(bucket + "/results", "s")  # machine B, before A wrote anything
    theirs = {"name": "s", "fingerprint": "aaaa", "preset": "cpu"}
    store().pipe_file(f"{bucket[5:]}/results/s/study.json", json.dumps(theirs).encode())
    with pytest.raises(RecordChanged):
        folder.write_description({"name": "s", "fingerprint": "bbbb", "preset": "mid"})
    fetch(folder.description_file)
    with pytest.raises(FolderError, match="another plan of this study .*fingerprint aaaa") as refused:
        folder.check_plan("bbbb", "mid", [])
    assert str(refused.value).startswith(f"{bucket}/results/s holds")  # the bucket's, not the mirror's
    assert json.loads(store().cat_file(f"{bucket[5:]}/results/s/study.json")) == theirs


def test_a_damaged_record_in_the_bucket_is_named_by_its_s3_address(bucket: str) -> None:
    """The message says what to move aside where the user can move it: in the bucket, since the
    next fetch would bring the mirror's copy back."""
    from ablate.base.atomic import fetch
    from ablate.store.folder import FolderError, StudyFolder

    folder = StudyFolder.of(bucket + "/results", "s")
    store().pipe_file(f"{bucket[5:]}/results/s/study.json", b'{"name": "s", ')
    fetch(folder.description_file)
    with pytest.raises(FolderError) as damaged:
        folder.read_description()
    assert str(damaged.value).startswith(f"{bucket}/results/s/study.json is damaged"), damaged.value


@pytest.mark.slow
def test_a_smoke_study_in_s3_and_mlflow_gives_a_local_run_s_numbers_and_reports_from_s3(
    bucket: str, mlflow_server: str, cli_plugins: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    study = str(REPO / "studies" / "dropout_gap.py")
    smoke = ("--preset", "smoke", "--set", "dropout=0.0")  # 6 trials: crop + flip or not, 3 seeds
    tracked = ("--set", f"mlflow_uri={mlflow_server}")
    code, output = invoke("run", study, *smoke, "--results-dir", bucket + "/results", *tracked)
    assert code == 0, output
    assert f"results in {bucket}/results/dropout_gap" in output
    code, output = invoke("run", study, *smoke, "--results-dir", str(tmp_path / "local"))
    assert code == 0, output
    local = trials_of(tmp_path / "local" / "dropout_gap")
    as_host(monkeypatch, tmp_path, "reader")  # a machine that has only the bucket
    code, output = invoke("report", f"{bucket}/results/dropout_gap")
    assert code == 0, output
    assert f"plots and HTML written to {bucket}/results/dropout_gap/report" in output
    from ablate.store.folder import study_path

    remote = trials_of(study_path(f"{bucket}/results/dropout_gap"))
    assert len(remote) == 6 and remote == local  # the same numbers, trial by trial
    keys = store().find(f"{bucket[5:]}/results/dropout_gap")
    assert sum("/trials/trial-" in k for k in keys) == 6
    assert any(k.endswith("/report/report.html") for k in keys)
    assert not any("optuna.journal" in k or "/claims/" in k for k in keys)  # this host's own
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("dropout_gap")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name != "report"]
    assert len(runs) == 6
    for run in runs:
        curve = client.get_metric_history(run.info.run_id, "test_acc")
        assert [m.step for m in curve] == [1]  # the smoke preset's one epoch, at its step
        trial = int(run.data.tags["ablate.trial"])
        assert curve[0].value == pytest.approx(local[trial])


@pytest.mark.slow
def test_two_hosts_share_a_postgres_queue_and_s3_results_through_a_sigkill(
    bucket: str, database: str, tmp_path: Path
) -> None:
    """Two machines (two cache folders, so two mirrors) train one study from one PostgreSQL
    queue into one S3 location; one is killed mid-trial; the other continues that trial from
    the checkpoint the first put in S3. Every trial complete once."""
    study = study_file(tmp_path, epochs=4, train=512, seeds=1)  # 6 trials: enough for two hosts
    results = bucket + "/results"

    def host(kind: str) -> list[str]:
        return command(kind, study, results, database, "--heartbeat-interval", "1", "--grace-period", "4")

    env_a = {**os.environ, "ABLATE_CACHE": str(tmp_path / "host-a")}
    env_b = {**os.environ, "ABLATE_CACHE": str(tmp_path / "host-b")}
    first = subprocess.Popen(host("run"), env=env_a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fs = store()
    prefix = f"{bucket[5:]}/results/many/checkpoints"
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline:
        stored = [k for k in fs.find(prefix) if k.endswith("epoch-00002.pt")] if fs.exists(prefix) else []
        if stored:
            victim = int(stored[0].split("trial-")[1].split("/")[0])
        time.sleep(0.1)
    assert victim is not None, "no checkpoint reached the bucket"
    second = subprocess.Popen(
        host("worker"), env=env_b, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output
    reader = tmp_path / "reader"
    env_reader = {**os.environ, "ABLATE_CACHE": str(reader)}
    status = subprocess.run(
        [sys.executable, "-m", "ablate", "status", f"{results}/many", "--storage", database],
        env=env_reader,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    (mirror,) = (reader / "remote").iterdir()
    complete = assert_each_trial_once(mirror / "many", epochs=4, planned=6)
    resumed = next(t for t in complete if t["trial"] == victim)
    assert resumed["resumed_from_epoch"] >= 2, output  # from the checkpoint host A put in S3
    assert f"trial {victim} continued from its checkpoint" in output
