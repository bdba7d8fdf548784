"""End-to-end runs through the CLI on the tiny in-process plugin (fast) and on the smoke preset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import ablate
from ablate.cli.app import app
from ablate.components.discovery import Plugins, load_plugins
from tests.conftest import REPO, TinyPlugin, invoke

TINY = """
from ablate import Study, choice, sampler

study = Study(
    name="tiny_study",
    question="Does hidden width matter?",
    baseline=dict(dataset="tiny", model="tiny_mlp", hidden=8, epochs=2, batch_size=16,
                  eval_batch_size=16, lr=0.05, train_eval_size=32),
    factors=dict(hidden=choice(4, 8)),
    seeds=2,
)
"""


def tiny_study(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "tiny.py"
    path.write_text(text)
    return path


def table(results: Path, name: str) -> list[dict]:
    return ds.dataset(results / name, format="parquet").to_table().to_pylist()


@pytest.mark.slow
def test_smoke_preset_writes_18_trials_with_the_schema_and_rerun_adds_nothing(tmp_path: Path) -> None:
    code, output = invoke(
        "run", str(REPO / "studies" / "dropout_gap.py"), "--preset", "smoke", "--results-dir", str(tmp_path)
    )
    assert code == 0, output
    assert "preset smoke" in output and "device: cpu" in output
    results = tmp_path / "dropout_gap"
    trials = table(results, "trials")
    assert len(trials) == 18 and {t["state"] for t in trials} == {"complete"}
    required = {
        "study",
        "trial",
        "attempt",
        "state",
        "seed",
        "param_dropout",
        "param_augment",
        "test_acc",
        "train_acc",
        "train_eval_acc",
        "seconds",
        "device",
        "torch_version",
        "ablate_version",
    }
    assert required <= set(trials[0])
    cells = {(t["param_dropout"], t["param_augment"]) for t in trials}
    assert cells == {(d, a) for d in (0.0, 0.25, 0.5) for a in ("none", "crop_flip")}
    assert sorted(t["seed"] for t in trials) == [0] * 6 + [1] * 6 + [2] * 6
    assert all(0.0 <= t["test_acc"] <= 1.0 and t["ablate_version"] == ablate.__version__ for t in trials)
    # Which of the 200 test images each trial got right, in test-set order: the report's
    # bootstrap over test images needs it, and it agrees with the stored accuracy.
    for t in trials:
        assert len(t["test_correct"]) == 200 and sum(t["test_correct"]) / 200 == pytest.approx(t["test_acc"])
    epochs = table(results, "epochs")
    assert len(epochs) == 18  # one epoch per trial in the smoke preset
    assert {
        "study",
        "trial",
        "attempt",
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "train_eval_acc",
        "test_loss",
        "test_acc",
        "seconds",
    } <= set(epochs[0])
    classes = table(results, "classes")
    assert len(classes) == 18 * 10
    assert {c["class_name"] for c in classes} >= {"airplane", "truck"}
    # Readable without ablate: pandas straight from the folder.
    pandas = pytest.importorskip("pandas")
    assert len(pandas.read_parquet(results / "trials")) == 18

    code, output = invoke(
        "run", str(REPO / "studies" / "dropout_gap.py"), "--preset", "smoke", "--results-dir", str(tmp_path)
    )
    assert code == 0 and "nothing to run" in output
    assert len(table(results, "trials")) == 18 and len(table(results, "epochs")) == 18


class InterruptAt:
    """A plugin that presses Ctrl-C during the given trial's first epoch."""

    def __init__(self, trial: int) -> None:
        self.trial = trial

    @ablate.hookimpl
    def on_epoch_end(self, trial, epoch):  # type: ignore[no-untyped-def]
        if trial.trial == self.trial:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_only_the_missing_trials(tmp_path: Path, cli_plugins: Plugins) -> None:
    study = tiny_study(tmp_path)
    cli_plugins.manager.register(InterruptAt(2), name="tests:interrupt")
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 130, output
    assert "Short answer" not in output  # only a finished study has an answer
    states = {(t["trial"], t["attempt"]): t["state"] for t in table(tmp_path / "tiny_study", "trials")}
    assert states == {(0, 1): "complete", (1, 1): "complete", (2, 1): "interrupted"}
    cli_plugins.manager.unregister(name="tests:interrupt")

    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    # The run ends with the study's answer, as the report opens with it, and where the rest is.
    said = output.split("\nShort answer\n", 1)[1].splitlines()
    assert said[0].startswith("  Nothing the question asks is decided yet"), output
    assert said[-1] == f"The whole report (tables, plots, HTML): ablate report {tmp_path / 'tiny_study'}"
    trials = table(tmp_path / "tiny_study", "trials")
    complete = sorted(t["trial"] for t in trials if t["state"] == "complete")
    assert complete == [0, 1, 2, 3]  # each exactly once: 0 and 1 were not trained again
    assert {(t["trial"], t["attempt"]) for t in trials if t["state"] == "complete"} == {
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 1),
    }


class FailingModel:
    """Registers a model whose first ``failures`` builds raise."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    @ablate.hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        def flaky(*, num_classes: int) -> object:
            if self.failures > 0:
                self.failures -= 1
                raise RuntimeError("simulated out-of-memory")
            from torch import nn

            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))

        register("flaky", flaky, "fails on its first builds")


def test_failed_trial_is_recorded_and_retried(
    tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablate.components.discovery import load_plugins

    loaded = load_plugins(
        extra={"tests:tiny": plugins.manager.get_plugin("tests:tiny"), "tests:flaky": FailingModel(1)}
    )
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: loaded)
    study = tiny_study(
        tmp_path,
        TINY.replace('model="tiny_mlp", hidden=8', 'model="flaky"').replace(
            "factors=dict(hidden=choice(4, 8))", "factors={}"
        ),
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    rows = sorted(table(tmp_path / "tiny_study", "trials"), key=lambda t: (t["trial"], t["attempt"]))
    assert [(t["trial"], t["attempt"], t["state"]) for t in rows] == [
        (0, 1, "fail"),
        (0, 2, "complete"),
        (1, 1, "complete"),
    ]
    assert "simulated out-of-memory" in rows[0]["error"]
    assert rows[1]["error"] is None

    loaded.manager.get_plugin("tests:flaky").failures = 10
    other = tmp_path / "other"
    code, output = invoke("run", str(study), "--results-dir", str(other), "--retries", "0")
    assert code == 1 and "trials failed after their retries" in output
    assert "Short answer" not in output
    assert [t["state"] for t in table(other / "tiny_study", "trials")] == ["fail", "fail"]


def test_changed_study_refuses_to_mix_results(tmp_path: Path, cli_plugins: Plugins) -> None:
    study = tiny_study(tmp_path)
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path), "--set", "epochs=1")
    assert code == 2 and "holds results of another plan" in " ".join(output.split())


class BrokenListener:
    @ablate.hookimpl
    def on_epoch_end(self, trial, epoch):  # type: ignore[no-untyped-def]
        raise RuntimeError("listener bug")


def test_a_plugin_raising_in_an_event_hook_does_not_stop_the_study(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    cli_plugins.manager.register(BrokenListener(), name="tests:broken-listener")
    code, output = invoke("run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path))
    assert code == 0, output
    assert "tests:broken-listener" in output and "listener bug" in output
    assert len(table(tmp_path / "tiny_study", "trials")) == 4


def test_sampler_design_with_configure_and_an_sqlite_storage(tmp_path: Path, cli_plugins: Plugins) -> None:
    text = TINY.replace("factors=dict(hidden=choice(4, 8)),", 'design=sampler("random", trials=3),')
    text = text.replace("train_eval_size=32)", "train_eval_size=32, val_size=16)")  # a sampler selects
    text += "\n\ndef configure(trial):\n    return {'hidden': trial.suggest_int('hidden', 2, 16)}\n"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    code, output = invoke(
        "run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path), "--storage", storage
    )
    assert code == 0, output
    trials = table(tmp_path / "tiny_study", "trials")
    assert len(trials) == 3 and all(2 <= t["param_hidden"] <= 16 for t in trials)
    stored = optuna.load_study(study_name="tiny_study", storage=storage)
    finished = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3
    assert [t.params["hidden"] for t in finished] == [
        t["param_hidden"] for t in sorted(trials, key=lambda t: t["trial"])
    ]
    assert (
        invoke("run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path), "--storage", storage)[
            0
        ]
        == 0
    )
    assert len(table(tmp_path / "tiny_study", "trials")) == 3


def test_grid_trials_are_recorded_in_the_default_journal_storage(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    assert invoke("run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path))[0] == 0
    journal = tmp_path / "tiny_study" / "optuna.journal"
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    stored = optuna.load_study(
        study_name="tiny_study", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    assert sorted((t.user_attrs["trial"], t.params["hidden"]) for t in stored.trials) == [
        (0, 4),
        (1, 8),
        (2, 4),
        (3, 8),
    ]
    file = tmp_path / "tiny_study" / "trials" / "trial-00000-attempt-01.parquet"
    assert pq.read_table(file).column("param_hidden").to_pylist() == [4]


@pytest.mark.slow
def test_ctrl_c_on_the_real_command_then_rerun_completes_without_repeats(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "ablate",
        "run",
        str(REPO / "studies" / "dropout_gap.py"),
        "--preset",
        "smoke",
        "--results-dir",
        str(tmp_path),
    ]
    trials_dir = tmp_path / "dropout_gap" / "trials"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(list(trials_dir.glob("*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "run the same command again" in output
    before = {(t["trial"], t["attempt"]): t["state"] for t in table(tmp_path / "dropout_gap", "trials")}
    finished_before = {trial for (trial, _), state in before.items() if state == "complete"}
    assert 3 <= len(finished_before) < 18

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = table(tmp_path / "dropout_gap", "trials")
    complete = [t for t in trials if t["state"] == "complete"]
    assert sorted(t["trial"] for t in complete) == list(range(18))
    # Trials finished before the interruption kept their first attempt: none ran twice.
    assert all(t["attempt"] == 1 for t in complete if t["trial"] in finished_before)


def test_a_cpu_run_tunes_the_allocator_before_training(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ablate.run.runner

    calls: list[int] = []
    monkeypatch.setattr(ablate.run.runner, "keep_freed_memory", lambda: calls.append(1) or True)
    code, output = invoke("run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path), "--device", "cpu")
    assert code == 0, output
    assert calls == [1]


def test_a_sampled_design_whose_every_trial_fails_ends(
    tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablate.components.discovery import load_plugins

    loaded = load_plugins(
        extra={"tests:tiny": plugins.manager.get_plugin("tests:tiny"), "tests:flaky": FailingModel(100)}
    )
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: loaded)
    text = (
        TINY.replace('model="tiny_mlp", hidden=8', 'model="flaky"')
        .replace("factors=dict(hidden=choice(4, 8)),", 'design=sampler("random", trials=2),')
        .replace("train_eval_size=32)", "train_eval_size=32, val_size=16)")
    )
    text += "\n\ndef configure(trial):\n    return {'lr': trial.suggest_float('lr', 0.01, 0.1)}\n"
    code, output = invoke(
        "run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path), "--retries", "0"
    )
    assert code == 1, output  # the run stops after the budget's worth of failures
    trials = table(tmp_path / "tiny_study", "trials")
    assert len(trials) == 2 and {t["state"] for t in trials} == {"fail"}


def test_a_diverged_trial_is_a_result_recorded_once_with_its_epochs(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    study = tiny_study(tmp_path, TINY.replace("lr=0.05", "lr=1e30"))
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    assert "4 of them diverged" in output
    trials = table(tmp_path / "tiny_study", "trials")
    assert sorted((t["trial"], t["attempt"], t["state"]) for t in trials) == [
        (n, 1, "diverged") for n in range(4)
    ]  # once each: never retried
    assert all(t["diverged_epoch"] == 1 and t["test_acc"] is None and t["error"] is None for t in trials)
    assert all(t["test_correct"] is None for t in trials)  # nothing was evaluated
    epochs = table(tmp_path / "tiny_study", "epochs")
    assert len(epochs) == 4 and all(e["test_acc"] is None for e in epochs)
    assert all(not math.isfinite(e["train_loss"]) for e in epochs)
    # A re-run finds every trial done: divergence is not retried on the next run either.
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0 and "nothing to run" in output
    assert len(table(tmp_path / "tiny_study", "trials")) == 4
    # The report counts divergence per cell as an outcome.
    report = json.loads(
        CliRunner().invoke(app, ["report", str(tmp_path / "tiny_study"), "--format", "json"]).stdout
    )
    assert report["counts"]["diverged"] == 4
    assert all(c["metrics"]["diverged"]["mean"] == 1.0 for c in report["cells"])


def test_a_parameter_keeps_one_column_whatever_its_spelling(tmp_path: Path) -> None:
    """``color_jitter.strength`` in the baseline: one ``param_strength`` column in every cell,
    and the report's cells carry the parameters."""
    study = tiny_study(
        tmp_path,
        """
from ablate import Study, choice

study = Study(
    name="jitter", question="?",
    baseline={"dataset": "cifar10-mini", "model": "simple_cnn", "epochs": 1, "train_size": 64,
              "test_size": 32, "train_eval_size": 32, "color_jitter.strength": 0.2},
    factors=dict(augment=choice("crop_flip", "crop_flip+color_jitter")),
    seeds=1,
)
""",
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    for file in (tmp_path / "jitter" / "trials").iterdir():
        names = pq.read_schema(file).names
        assert "param_strength" in names and "param_color_jitter.strength" not in names
        assert pq.read_table(file).column("param_strength").to_pylist() == [0.2]
    report = json.loads(
        CliRunner().invoke(app, ["report", str(tmp_path / "jitter"), "--format", "json"]).stdout
    )
    assert {c["params"]["augment"]: c["params"]["strength"] for c in report["cells"]} == {
        "crop_flip": 0.2,
        "crop_flip+color_jitter": 0.2,
    }


def test_a_sampler_tunes_on_validation_accuracy_when_there_is_a_split(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    text = TINY.replace("factors=dict(hidden=choice(4, 8)),", 'design=sampler("random", trials=3),')
    text += "\n\ndef configure(trial):\n    return {'hidden': trial.suggest_int('hidden', 2, 16)}\n"
    code, output = invoke("run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path / "a"))
    said = " ".join(output.split())
    # Tuning on the test set would bias every test number after it: refused before training.
    assert code == 2 and "the random sampler tunes on test accuracy, and there is no validation split" in said
    assert "--set val_size=N" in said and "Traceback" not in output
    assert not list((tmp_path / "a").rglob("*.parquet"))
    validated = text.replace("train_eval_size=32)", "train_eval_size=32, val_size=16)")
    code, output = invoke("run", str(tiny_study(tmp_path, validated)), "--results-dir", str(tmp_path / "b"))
    assert code == 0 and "no validation split" not in output
    trials = {t["trial"]: t for t in table(tmp_path / "b" / "tiny_study", "trials")}
    journal = tmp_path / "b" / "tiny_study" / "optuna.journal"
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    stored = optuna.load_study(
        study_name="tiny_study", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    for trial in stored.trials:
        row = trials[trial.number]
        assert trial.value == pytest.approx(row["val_acc"]) and row["best_on"] == "val"
    assert any(t["val_acc"] != t["test_acc"] for t in trials.values())  # the check tells them apart


def test_a_file_uri_results_location_gives_the_tables_a_plain_path_gives(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    study = tiny_study(tmp_path)
    assert invoke("run", str(study), "--results-dir", str(tmp_path / "plain"))[0] == 0
    code, output = invoke("run", str(study), "--results-dir", (tmp_path / "uri").as_uri())
    assert code == 0, output
    varying = {"seconds", "started_at", "git_revision", "plugin_versions"}

    def tables(folder: Path) -> dict[str, list[dict]]:
        found = {}
        for name in ("trials", "epochs", "classes"):
            found[name] = sorted(
                (
                    {k: v for k, v in row.items() if k not in varying}
                    for row in table(folder / "tiny_study", name)
                ),
                key=lambda r: (r["trial"], r.get("epoch") or 0, r.get("class_index") or 0),
            )
        return found

    assert tables(tmp_path / "plain") == tables(tmp_path / "uri")
    code, output = invoke("report", (tmp_path / "uri" / "tiny_study").as_uri(), "--no-files")
    assert code == 0 and "Answer" in output
    code, output = invoke("run", str(study), "--results-dir", "gs://bucket/results")
    assert code == 2 and "gs:// are not supported (only S3" in output  # tests/store/test_remote.py


def test_a_pruned_search_records_pruned_trials_once_and_every_trial_reports_each_epoch(
    tmp_path: Path, cli_plugins: Plugins
) -> None:
    text = (
        TINY.replace(
            "factors=dict(hidden=choice(4, 8)),", 'design=sampler("tpe", trials=12), pruner="median",'
        )
        .replace("epochs=2,", "epochs=4,")
        .replace("train_eval_size=32)", "train_eval_size=32, val_size=16)")
    )
    text += "\n\ndef configure(trial):\n    return {'lr': trial.suggest_float('lr', 1e-4, 0.5, log=True)}\n"
    code, output = invoke("run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path))
    assert code == 0, output
    trials = table(tmp_path / "tiny_study", "trials")
    assert len(trials) == 12 and len({t["trial"] for t in trials}) == 12  # none retried
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and all(t["epochs_done"] < 4 for t in pruned)
    epochs = table(tmp_path / "tiny_study", "epochs")
    for trial in pruned:  # a pruned trial keeps the epochs it ran
        assert len([e for e in epochs if e["trial"] == trial["trial"]]) == trial["epochs_done"]
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    stored = optuna.load_study(
        study_name="tiny_study",
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "tiny_study" / "optuna.journal"))),
    )
    assert all(t.intermediate_values for t in stored.trials)  # what optuna-dashboard draws
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in stored.trials) == len(pruned)
    again = invoke("run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path))
    assert again[0] == 0 and len(table(tmp_path / "tiny_study", "trials")) == 12


def test_a_planned_design_never_prunes() -> None:
    from ablate.study.declare import Study
    from ablate.study.factors import StudyError

    with pytest.raises(StudyError, match="pruner='median' needs design=sampler"):
        Study(name="s", question="?", baseline={}, pruner="median")


class PatiencePlugin:
    """A third-party plateau scheduler under a name of its own."""

    @ablate.hookimpl
    def register_schedulers(self, register):  # type: ignore[no-untyped-def]
        def patience(*, optimizer, epochs):  # type: ignore[no-untyped-def]
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=1)

        register("patience", patience, "steps the rate down when accuracy stalls")


def test_a_plugins_plateau_scheduler_is_refused_without_a_validation_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known by what the scheduler is, not by the built-in's name: it would step on test
    accuracy as the built-in plateau does."""
    plugins = load_plugins(extra={"tests:tiny": TinyPlugin(), "tests:patience": PatiencePlugin()})
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
    text = TINY.replace("lr=0.05,", 'lr=0.05, scheduler="patience",')
    code, output = invoke("run", str(tiny_study(tmp_path, text)), "--results-dir", str(tmp_path / "a"))
    said = " ".join(output.split())
    assert code == 2 and "the patience scheduler steps on test accuracy" in said, output
    assert not list((tmp_path / "a").rglob("*.parquet"))
    validated = text.replace("train_eval_size=32)", "train_eval_size=32, val_size=16)")
    code, output = invoke("run", str(tiny_study(tmp_path, validated)), "--results-dir", str(tmp_path / "b"))
    assert code == 0, output
