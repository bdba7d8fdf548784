"""What the trial queue costs per trial: the journal file against PostgreSQL.

    python benchmarks/storage_overhead.py [--json] [--trials 30] [--epochs 6]

For each storage it enqueues a plan's trials, then takes each trial, records its parameters,
reports one value per epoch (what optuna-dashboard draws) and tells its result: all the queue
work a worker does for a trial, without the training. It also trains one trial of the `cpu`
preset of `dropout_gap` in the same run, and states each storage's cost as a share of that
trial's time. PostgreSQL is the server this project's machines run on 127.0.0.1:5432 (user
postgres); without one (or without the `postgres` extra) its row says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def queue_seconds(storage_url: str | None, folder: Path, trials: int, epochs: int) -> float:
    """Seconds of queue work per trial, averaged over ``trials``."""
    import optuna

    from ablate.run.liveness import Liveness
    from ablate.run.queue import TrialQueue
    from ablate.run.storage import fixed, make_storage
    from ablate.study.declare import Study
    from ablate.study.factors import choice

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    plan = Study(
        name=f"bench{uuid.uuid4().hex[:6]}",
        question="",
        baseline={"dropout": 0.0},
        factors={"dropout": choice(*[i / 100 for i in range(trials)])},
        seeds=1,
    ).plan()
    storage = make_storage(storage_url, folder / "optuna.journal", Liveness())
    study = optuna.create_study(study_name=plan.name, storage=storage)
    queue = TrialQueue(study, storage, plan.fingerprint(), folder / "queue.lock", Liveness())
    from ablate.run.storage import distribution

    distributions = {k: distribution(f) for k, f in plan.factors.items()}
    started = time.perf_counter()
    queue.enqueue(plan.trials, distributions)
    while (trial := queue.take()) is not None:
        fixed(trial, distributions)
        for epoch in range(1, epochs + 1):
            trial.report(0.5, epoch)
        queue.tell(trial, optuna.trial.TrialState.COMPLETE, 0.5, {"attempt": 1})
    return (time.perf_counter() - started) / trials


def postgres_url() -> tuple[str | None, str]:
    """A fresh database on the local server, or None and why not."""
    try:
        import psycopg2
    except ImportError:
        return None, "the postgres extra is not installed"
    try:
        connection = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as error:
        return None, f"no server at 127.0.0.1:5432 ({str(error).strip()})"
    connection.autocommit = True
    name = f"ablate_bench_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", ""


def drop(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()",
            (name,),
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    connection.close()


def trial_seconds() -> float:
    """One trial of the `cpu` preset of dropout_gap, trained here."""
    import torch

    from ablate.components.discovery import load_plugins
    from ablate.components.setup import resolve
    from ablate.study.load import load
    from ablate.train.placement import trial_data
    from ablate.train.trainer import fit

    plan = load(REPO / "studies" / "dropout_gap.py").plan("cpu")
    registry = load_plugins().registry
    setup = resolve({**plan.trials[0].params, "checkpoint_every": 0, "keep_weights": "none"}, registry)
    data = setup.dataset.build(data_dir=None)
    device = torch.device("cpu")
    started = time.perf_counter()
    fit(setup, trial_data(data, setup.settings, device), len(data.classes), 0, device)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="timings per storage (median)")
    parser.add_argument("--skip-trial", action="store_true", help="do not time a real trial")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    figures: dict[str, Any] = {"trials": args.trials, "epochs_reported": args.epochs, "storages": {}}
    with tempfile.TemporaryDirectory() as folder:
        journal = [
            queue_seconds(None, Path(folder) / f"j{r}", args.trials, args.epochs) for r in range(args.rounds)
        ]
        figures["storages"]["journal"] = {"seconds_per_trial": statistics.median(journal)}
    url, why = postgres_url()
    if url is None:
        figures["storages"]["postgresql"] = {"seconds_per_trial": None, "not_measured": why}
    else:
        try:
            with tempfile.TemporaryDirectory() as folder:
                times = [
                    queue_seconds(url, Path(folder), args.trials, args.epochs) for _ in range(args.rounds)
                ]
            figures["storages"]["postgresql"] = {"seconds_per_trial": statistics.median(times)}
        finally:
            drop(url)
    if not args.skip_trial:
        seconds = trial_seconds()
        figures["cpu_trial_seconds"] = seconds
        for entry in figures["storages"].values():
            if entry["seconds_per_trial"] is not None:
                entry["share_of_trial"] = entry["seconds_per_trial"] / seconds
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"queue work per trial ({args.trials} trials, {args.epochs} epoch values each):")
    for name, entry in figures["storages"].items():
        if entry["seconds_per_trial"] is None:
            print(f"  {name}: not measured: {entry['not_measured']}")
            continue
        share = (
            f", {entry['share_of_trial']:.2%} of a {figures['cpu_trial_seconds']:.1f} s trial "
            "of the dropout_gap cpu preset"
            if "share_of_trial" in entry
            else ""
        )
        print(f"  {name}: {entry['seconds_per_trial'] * 1000:.1f} ms{share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
