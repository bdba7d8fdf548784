"""MLflow tracking (issue 29, item 2), against a real ``mlflow server`` with a SQLite backend
that the test starts on 127.0.0.1: the study is an experiment, each trial a run with its
parameters, tags, every epoch's metrics and its kept weights; ``ablate report`` adds its
verdicts; a trial cut off and resumed continues its run. Skipped, with the reason, where the
mlflow extra is not installed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli.app import app
from ablate.components.discovery import Plugins
from tests.run.test_runner import InterruptAt

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'ablate[mlflow]'")

STUDY = """
from ablate import Study, choice

study = Study(
    name="NAME",
    question="Do the runs reach MLflow?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=2, batch_size=64,
                  train_size=128, test_size=64, train_eval_size=64, lr=0.05, checkpoint_every=1),
    factors=dict(dropout=choice(0.0, 0.5)),
    seeds=1,
)
"""


@pytest.fixture
def server(mlflow_server: str) -> str:
    return mlflow_server


def run(tmp_path: Path, name: str, uri: str) -> tuple[int, str]:
    study = tmp_path / f"{name}.py"
    study.write_text(STUDY.replace("NAME", name))
    result = CliRunner().invoke(
        app, ["run", str(study), "--results-dir", str(tmp_path / "results"), "--set", f"mlflow_uri={uri}"]
    )
    return result.exit_code, result.output


def runs_of(uri: str, name: str) -> list:  # type: ignore[type-arg]
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name}"
    return list(client.search_runs([experiment.experiment_id]))


@pytest.mark.slow
def test_each_trial_is_a_run_with_its_epochs_and_weights_and_the_report_joins_them(
    tmp_path: Path, server: str
) -> None:
    code, output = run(tmp_path, "tracked", server)
    assert code == 0, output
    client = mlflow.tracking.MlflowClient(tracking_uri=server)
    runs = sorted(runs_of(server, "tracked"), key=lambda r: r.data.tags["ablate.trial"])
    assert [r.data.tags["ablate.trial"] for r in runs] == ["0", "1"]
    for number, found in enumerate(runs):
        tags, params = found.data.tags, found.data.params
        assert found.info.status == "FINISHED" and found.info.run_name == f"trial-{number:05d}"
        assert tags["ablate.cell"] == f"dropout={(0.0, 0.5)[number]}" and tags["ablate.seed"] == "0"
        assert params["dropout"] == str((0.0, 0.5)[number]) and params["epochs"] == "2"
        history = client.get_metric_history(found.info.run_id, "test_acc")
        assert sorted(m.step for m in history) == [1, 2]  # every epoch, at its step
        kept = {a.path for a in client.list_artifacts(found.info.run_id, "weights")}
        assert kept == {
            f"weights/trial-{number:05d}-final.safetensors",
            f"weights/trial-{number:05d}-final.json",
        }
    report = CliRunner().invoke(app, ["report", str(tmp_path / "results" / "tracked")])
    assert report.exit_code == 0, report.output
    (summary,) = [r for r in runs_of(server, "tracked") if r.info.run_name == "report"]
    files = {a.path for a in client.list_artifacts(summary.info.run_id, "report")}
    assert {
        "report/report.md",
        "report/report.json",
        "report/report.html",
        "report/learning_curves.png",
    } <= files


@pytest.mark.slow
def test_a_trial_cut_off_and_resumed_continues_its_run(
    tmp_path: Path, server: str, cli_plugins: Plugins
) -> None:
    cli_plugins.manager.register(InterruptAt(1), name="tests:interrupt")
    code, output = run(tmp_path, "resumed", server)
    assert code == 130, output
    cli_plugins.manager.unregister(name="tests:interrupt")
    (cut,) = [r for r in runs_of(server, "resumed") if r.data.tags["ablate.trial"] == "1"]
    assert cut.info.status == "KILLED"
    code, output = run(tmp_path, "resumed", server)
    assert code == 0, output
    runs = [r for r in runs_of(server, "resumed") if r.data.tags["ablate.trial"] == "1"]
    assert len(runs) == 1 and runs[0].info.run_id == cut.info.run_id  # the same run, continued
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["ablate.attempt"] == "2"


def test_a_server_that_does_not_answer_is_refused_before_training(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    code, output = run(tmp_path, "nowhere", f"http://127.0.0.1:{port}")
    assert code == 2
    line = " ".join(output.split())
    assert f"mlflow_uri=http://127.0.0.1:{port}: no MLflow server answers there" in line
    assert not (tmp_path / "results" / "nowhere" / "trials").exists() or not any(
        (tmp_path / "results" / "nowhere" / "trials").iterdir()
    )
