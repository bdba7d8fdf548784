"""MLflow tracking, as a built-in plugin of event hooks: with ``mlflow_uri=http://host:5000``
(``--set mlflow_uri=...``) the study is an MLflow experiment of its name and each trial a run
(named ``trial-NNNNN``) with its parameters, its cell, seed and plan as tags, every epoch's
metrics at their step, and its kept weights as artifacts; ``ablate report`` adds its verdicts to
a ``report`` run of the experiment. Needs ``pip install 'ablate[mlflow]'``.

A trial is one run however many attempts it takes: a retried or resumed trial finds its run by
its tags and continues it. Only MLflow's public client API is used (``MlflowClient``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ablate import hookimpl
from ablate.events import AttemptState, EpochRecord, TrialInfo, TrialOutcome

METRICS = ("train_loss", "train_acc", "train_eval_acc", "test_loss", "test_acc", "val_loss", "val_acc", "lr")
TRIAL, PLAN = "ablate.trial", "ablate.fingerprint"
_runs: dict[tuple[str, int, int], tuple[Any, str]] = {}  # running attempt -> (client, run id)


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, name: str) -> str:
    """The experiment of the study's name, made on first use (by whichever worker is first)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another worker made it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def run_of(client: Any, experiment: str, tags: dict[str, str], name: str) -> str:
    """The run tagged with ``tags`` (a trial's, continued by its next attempt), else a new one."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = client.search_runs([experiment], filter_string=query, max_results=1)
    if found:
        run_id = str(found[0].info.run_id)
        client.update_run(run_id, status="RUNNING")
        return run_id
    return str(client.create_run(experiment, tags=tags, run_name=name).info.run_id)


@hookimpl
def on_trial_start(trial: TrialInfo) -> None:
    uri = trial.params.get("mlflow_uri")
    if not uri:
        return
    from mlflow.entities import Param

    client = client_for(str(uri))
    experiment = experiment_id(client, trial.study)
    tags = {TRIAL: str(trial.trial), PLAN: trial.fingerprint}
    run_id = run_of(client, experiment, tags, f"trial-{trial.trial:05d}")
    client.set_tag(run_id, "ablate.cell", trial.cell)
    client.set_tag(run_id, "ablate.seed", str(trial.seed))
    client.set_tag(run_id, "ablate.attempt", str(trial.attempt))
    params = [Param(k, str(v)) for k, v in sorted(trial.params.items()) if k != "mlflow_uri"]
    for start in range(0, len(params), 100):  # MLflow takes 100 parameters a batch
        client.log_batch(run_id, params=params[start : start + 100])
    _runs[(trial.study, trial.trial, trial.attempt)] = (client, run_id)


@hookimpl
def on_epoch_end(trial: TrialInfo, epoch: EpochRecord) -> None:
    found = _runs.get((trial.study, trial.trial, trial.attempt))
    if found is None:
        return
    from mlflow.entities import Metric

    client, run_id = found
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(value), now, epoch.epoch)
        for name in METRICS
        if (value := getattr(epoch, name)) is not None
    ]
    client.log_batch(run_id, metrics=metrics)


@hookimpl
def on_trial_end(trial: TrialInfo, outcome: TrialOutcome) -> None:
    found = _runs.pop((trial.study, trial.trial, trial.attempt), None)
    if found is None:
        return
    client, run_id = found
    if outcome.state is AttemptState.COMPLETE and trial.folder is not None:
        for path in sorted((trial.folder / "weights").glob(f"trial-{trial.trial:05d}-*")):
            client.log_artifact(run_id, str(path), artifact_path="weights")
    status = {
        AttemptState.COMPLETE: "FINISHED",
        AttemptState.DIVERGED: "FINISHED",
        AttemptState.PRUNED: "FINISHED",
        AttemptState.INTERRUPTED: "KILLED",
    }.get(outcome.state, "FAILED")
    client.set_tag(run_id, "ablate.state", outcome.state.value)
    client.set_terminated(run_id, status=status)


@hookimpl
def on_report(folder: Path, description: Mapping[str, Any], files: Sequence[Path]) -> None:
    """Put a report's files in the experiment's ``report`` run of this plan (made once, its
    files replaced by each report)."""
    uri = (description.get("baseline") or {}).get("mlflow_uri")
    if not uri:
        return
    client = client_for(str(uri))
    experiment = experiment_id(client, str(description.get("name") or folder.name))
    tags = {"ablate.report": "1", PLAN: str(description.get("fingerprint") or "")}
    run_id = run_of(client, experiment, tags, "report")
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="report")
    client.set_terminated(run_id, status="FINISHED")
