"""Results as tidy Parquet: one file per trial attempt in ``trials/``, ``epochs/``, ``classes/``.

Every file is written to a temporary name in its folder, fsynced and renamed, so a reader never
sees half a file and a crash never leaves one. Names are unique per (trial, attempt): concurrent
workers never collide and a retried trial never duplicates rows. The ``trials`` file is written
last; it is what marks an attempt as finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ablate.config import column_value
from ablate.events import EpochRecord

TABLES = ("trials", "epochs", "classes")
PARAM_PREFIX = "param_"

TRIAL_COLUMNS = pa.schema([
    ("study", pa.string()), ("trial", pa.int64()), ("attempt", pa.int64()),
    ("state", pa.string()), ("seed", pa.int64()), ("cell", pa.string()),
    ("preset", pa.string()), ("test_acc", pa.float64()), ("test_loss", pa.float64()),
    ("train_acc", pa.float64()), ("train_loss", pa.float64()),
    ("train_eval_acc", pa.float64()), ("best_test_acc", pa.float64()),
    ("best_epoch", pa.int64()), ("epochs_done", pa.int64()), ("resumed_from_epoch", pa.int64()),
    ("seconds", pa.float64()),
    ("device", pa.string()), ("precision", pa.string()), ("torch_version", pa.string()),
    ("ablate_version", pa.string()),
    ("plugin_versions", pa.string()), ("git_revision", pa.string()),
    ("data_fingerprint", pa.string()), ("study_fingerprint", pa.string()),
    ("optuna_trial", pa.int64()), ("started_at", pa.timestamp("s", tz="UTC")),
    ("error", pa.string()),
])
EPOCH_COLUMNS = pa.schema([
    ("study", pa.string()), ("trial", pa.int64()), ("attempt", pa.int64()), ("epoch", pa.int64()),
    ("lr", pa.float64()), ("train_loss", pa.float64()), ("train_acc", pa.float64()),
    ("train_eval_acc", pa.float64()), ("test_loss", pa.float64()), ("test_acc", pa.float64()),
    ("seconds", pa.float64()), ("restart", pa.bool_()),
])
CLASS_COLUMNS = pa.schema([
    ("study", pa.string()), ("trial", pa.int64()), ("attempt", pa.int64()),
    ("class_index", pa.int64()), ("class_name", pa.string()), ("test_acc", pa.float64()),
    ("count", pa.int64()), ("confusion", pa.list_(pa.int64())),
])


def file_name(trial: int, attempt: int) -> str:
    return f"trial-{trial:05d}-attempt-{attempt:02d}.parquet"


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a temporary file in the same folder, fsync, rename."""
    write_file_atomic(path, lambda handle: pq.write_table(table, handle))


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda handle: handle.write(text.encode()))


def write_file_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(directory)
    finally:
        os.close(directory)


def param_type(value: Any) -> pa.DataType:
    """The Arrow type of a parameter column holding ``value``."""
    return pa.array([column_value(value)]).type


def trial_table(row: Mapping[str, Any], params: Mapping[str, Any],
                types: Mapping[str, pa.DataType]) -> pa.Table:
    """One trials row: the fixed columns and one ``param_<name>`` column per parameter.

    ``types`` lists the study's parameter columns; those this trial lacks are null.
    """
    fixed = pa.Table.from_pylist([{name: row.get(name) for name in TRIAL_COLUMNS.names}],
                                 schema=TRIAL_COLUMNS)
    columns = {**{name: None for name in types}, **params}
    for name, value in sorted(columns.items()):
        kind = types.get(name) or param_type(value)
        fixed = fixed.append_column(PARAM_PREFIX + name,
                                    pa.array([None if value is None else column_value(value)], kind))
    return fixed


def epoch_table(keys: Mapping[str, Any], epochs: Iterable[EpochRecord]) -> pa.Table:
    rows = [{**keys, **asdict(record)} for record in epochs]
    return pa.Table.from_pylist(rows, schema=EPOCH_COLUMNS)


def class_table(keys: Mapping[str, Any], classes: tuple[str, ...], accuracy: tuple[float, ...],
                confusion: tuple[tuple[int, ...], ...]) -> pa.Table:
    rows = [
        {**keys, "class_index": index, "class_name": name, "test_acc": accuracy[index],
         "count": sum(confusion[index]), "confusion": list(confusion[index])}
        for index, name in enumerate(classes)
    ]
    return pa.Table.from_pylist(rows, schema=CLASS_COLUMNS)


class ResultsWriter:
    """Writes the tables of one study folder."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        # An attempt's trials file is written once, atomically, and never changed, so each is
        # read once: the budget check of a sampled design lists the attempts before every trial.
        self._attempt_rows: dict[Path, list[tuple[int, int, str]]] = {}

    def path(self, table: str, trial: int, attempt: int) -> Path:
        return self.study_dir / table / file_name(trial, attempt)

    def write(self, trial: int, attempt: int, trials: pa.Table,
              epochs: pa.Table | None = None, classes: pa.Table | None = None) -> None:
        """Write an attempt's tables; the trials row goes last because it marks completion."""
        if epochs is not None and epochs.num_rows:
            write_atomic(epochs, self.path("epochs", trial, attempt))
        if classes is not None and classes.num_rows:
            write_atomic(classes, self.path("classes", trial, attempt))
        write_atomic(trials, self.path("trials", trial, attempt))

    def attempts(self, trial: int | None = None) -> dict[int, list[str]]:
        """The recorded attempts' states per trial (of one ``trial`` if given), in attempt order."""
        folder = self.study_dir / "trials"
        pattern = "trial-*-attempt-*.parquet" if trial is None else f"trial-{trial:05d}-attempt-*.parquet"
        found: dict[int, list[tuple[int, str]]] = {}
        for path in sorted(folder.glob(pattern)):
            if path not in self._attempt_rows:
                table = pq.read_table(path, columns=["trial", "attempt", "state"])
                columns = (table.column(c).to_pylist() for c in table.column_names)
                self._attempt_rows[path] = list(zip(*columns, strict=True))
            for trial, attempt, state in self._attempt_rows[path]:
                found.setdefault(trial, []).append((attempt, state))
        return {trial: [state for _, state in sorted(states)] for trial, states in found.items()}

    def complete_trials(self) -> set[int]:
        """The trials that have a complete attempt."""
        return {trial for trial, states in self.attempts().items() if "complete" in states}
