"""Results as tidy Parquet: one file per trial attempt in ``trials/``, ``epochs/``, ``classes/``
(their columns: :mod:`ablate.store.schema`).

Every file is written atomically (see :mod:`ablate.base.atomic`), so a reader never sees half a file
and a crash never leaves one. Names are unique per (trial, attempt): concurrent workers never
collide and a retried trial never duplicates rows. The ``trials`` file is written last; it is
what marks an attempt as finished. A file that cannot be read (truncated by a full disk, damaged
by hand) is moved to ``set-aside/`` with the rest of its attempt, never deleted, and the trial
counts as missing, so the next run trains it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ablate.base.atomic import fetch, shown, write_parquet_atomic
from ablate.events import AttemptState, EpochRecord
from ablate.params import column_value, param_type
from ablate.store.folder import TABLES, StudyFolder
from ablate.store.schema import CLASS_COLUMNS, EPOCH_COLUMNS, PARAM_PREFIX, TRIAL_COLUMNS


def trial_table(
    row: Mapping[str, Any], params: Mapping[str, Any], types: Mapping[str, pa.DataType]
) -> pa.Table:
    """One trials row: the fixed columns and one ``param_<name>`` column per parameter.

    ``types`` lists the study's parameter columns; those this trial lacks are null.
    """
    fixed = pa.Table.from_pylist(
        [{name: row.get(name) for name in TRIAL_COLUMNS.names}], schema=TRIAL_COLUMNS
    )
    columns = {**{name: None for name in types}, **params}
    for name, value in sorted(columns.items()):
        kind = types.get(name) or param_type(value)
        fixed = fixed.append_column(
            PARAM_PREFIX + name, pa.array([None if value is None else column_value(value)], kind)
        )
    return fixed


def epoch_table(keys: Mapping[str, Any], epochs: Iterable[EpochRecord]) -> pa.Table:
    rows = [{**keys, **asdict(record)} for record in epochs]
    return pa.Table.from_pylist(rows, schema=EPOCH_COLUMNS)


def class_table(
    keys: Mapping[str, Any],
    classes: tuple[str, ...],
    accuracy: tuple[float, ...],
    confusion: tuple[tuple[int, ...], ...],
) -> pa.Table:
    rows = [
        {
            **keys,
            "class_index": index,
            "class_name": name,
            "test_acc": accuracy[index],
            "count": sum(confusion[index]),
            "confusion": list(confusion[index]),
        }
        for index, name in enumerate(classes)
    ]
    return pa.Table.from_pylist(rows, schema=CLASS_COLUMNS)


def final_metrics(epochs: list[EpochRecord]) -> dict[str, Any]:
    """A trial's summary columns from its epochs: the last epoch's metrics and the best one.

    A diverged trial's last epoch has no evaluation; its metrics stay empty (null), and
    ``diverged_epoch`` says when it diverged.
    """
    if not epochs:
        return {"epochs_done": 0}
    last = epochs[-1]
    diverged = not math.isfinite(last.train_loss)
    # The best epoch is chosen on the validation split when the trial has one; on the test set
    # it is only a description (choosing on the test set biases what it reports).
    on = "val" if any(e.val_acc is not None for e in epochs) else "test"
    evaluated = [e for e in epochs if getattr(e, f"{on}_acc") is not None]
    best = max(evaluated, key=lambda e: getattr(e, f"{on}_acc")) if evaluated else None
    return {
        "test_acc": last.test_acc,
        "test_loss": last.test_loss,
        "train_acc": None if diverged else last.train_acc,
        "train_loss": last.train_loss,
        "train_eval_acc": last.train_eval_acc,
        "val_acc": last.val_acc,
        "val_loss": last.val_loss,
        "best_test_acc": best.test_acc if best else None,
        "best_epoch": best.epoch if best else None,
        "best_on": on if best else None,
        "epochs_done": len(epochs),
        "diverged_epoch": last.epoch if diverged else None,
    }


@dataclass(frozen=True)
class Attempt:
    """What the trials table records of one attempt."""

    trial: int
    attempt: int
    state: AttemptState
    fingerprint: str | None


class ResultsStore:
    """Writes the tables of one study folder and reads back which attempts it holds.

    ``read_only`` (``ablate status``): an unreadable file is named and left where it is; only a
    run, which trains its trial again, sets it aside."""

    def __init__(
        self, folder: StudyFolder, log: Callable[[str], None] = print, read_only: bool = False
    ) -> None:
        self.folder = folder
        self.log = log
        self.read_only = read_only
        # An attempt's trials file is written once, atomically, and never changed, so each is
        # read once: the budget check of a sampled design lists the attempts before every trial.
        self._read: dict[Path, Attempt] = {}

    def path(self, table: str, trial: int, attempt: int) -> Path:
        return self.folder.attempt_file(table, trial, attempt)

    def write(
        self,
        trial: int,
        attempt: int,
        trials: pa.Table,
        epochs: pa.Table | None = None,
        classes: pa.Table | None = None,
    ) -> None:
        """Write an attempt's tables; the trials row goes last because it marks completion."""
        if epochs is not None and epochs.num_rows:
            write_parquet_atomic(epochs, self.path("epochs", trial, attempt))
        if classes is not None and classes.num_rows:
            write_parquet_atomic(classes, self.path("classes", trial, attempt))
        write_parquet_atomic(trials, self.path("trials", trial, attempt))

    def attempts(self, trial: int | None = None) -> dict[int, list[Attempt]]:
        """The recorded attempts per trial (of one ``trial`` if given), in attempt order.

        An unreadable trials file is set aside with its attempt's other files (see
        :meth:`set_aside`), so that attempt counts as never run.
        """
        folder = self.folder.table("trials")
        fetch(folder)  # in an object store: the attempts other hosts recorded
        pattern = "trial-*-attempt-*.parquet" if trial is None else f"trial-{trial:05d}-attempt-*.parquet"
        found: dict[int, list[Attempt]] = {}
        for path in sorted(folder.glob(pattern)):
            if path not in self._read:
                try:
                    row = pq.read_table(
                        path, columns=["trial", "attempt", "state", "study_fingerprint"]
                    ).to_pylist()[0]
                except FileNotFoundError:
                    continue  # set aside by another worker meanwhile
                except (OSError, pa.ArrowException, IndexError, KeyError) as error:
                    self._set_aside_unreadable(path, error)
                    continue
                self._read[path] = Attempt(
                    row["trial"], row["attempt"], AttemptState(row["state"]), row["study_fingerprint"]
                )
            record = self._read[path]
            found.setdefault(record.trial, []).append(record)
        return {t: sorted(records, key=lambda r: r.attempt) for t, records in found.items()}

    def data_fingerprints(self, fingerprint: str) -> dict[str, set[str]]:
        """Dataset name -> the data fingerprints the plan's recorded attempts were trained on."""
        found: dict[str, set[str]] = {}
        for path in sorted(self.folder.table("trials").glob("trial-*-attempt-*.parquet")):
            try:
                row = pq.read_table(
                    path, columns=["param_dataset", "data_fingerprint", "study_fingerprint"]
                ).to_pylist()[0]
            except (OSError, pa.ArrowException, IndexError, KeyError):
                continue  # unreadable files are set aside by attempts(); old ones lack columns
            if row["study_fingerprint"] == fingerprint and row["data_fingerprint"]:
                found.setdefault(str(row["param_dataset"]), set()).add(row["data_fingerprint"])
        return found

    def fingerprints(self) -> set[str | None]:
        """The plan fingerprints of every recorded attempt."""
        return {a.fingerprint for records in self.attempts().values() for a in records}

    def finished_trials(self, fingerprint: str | None = None) -> set[int]:
        """The trials with a result (complete or diverged), of one plan if ``fingerprint``."""
        return {
            trial
            for trial, records in self.attempts().items()
            if any(a.state.is_result and fingerprint in (None, a.fingerprint) for a in records)
        }

    def check_files(self) -> None:
        """Read every epochs and classes file once; set aside the attempts of unreadable ones.

        Trials files are checked as :meth:`attempts` reads them. Called when a run starts, so
        that a damaged file costs its trial a re-run instead of a hole in the report.
        """
        self.attempts()
        for table in ("epochs", "classes"):
            for path in sorted(self.folder.table(table).glob("trial-*-attempt-*.parquet")):
                try:
                    pq.read_table(path)
                except FileNotFoundError:
                    continue
                except (OSError, pa.ArrowException) as error:
                    self._set_aside_unreadable(path, error)

    def _set_aside_unreadable(self, path: Path, error: BaseException) -> None:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        trial, attempt = _numbers(path.name)
        if self.read_only:
            self.log(
                f"warning: {shown(path)} is unreadable ({reason}); `ablate run` sets it aside and "
                f"trains trial {trial} again"
            )
            return
        moved = self.set_aside(trial, attempt)
        where = f"; moved with its attempt's other files to {shown(self.folder.set_aside)}" if moved else ""
        self.log(
            f"warning: {shown(path)} is unreadable ({reason}){where}; trial {trial} counts as "
            "missing and is trained again"
        )

    def set_aside_attempts(self) -> frozenset[tuple[int, int]]:
        """(trial, attempt) of every attempt whose files were set aside as unreadable."""
        return frozenset(
            _numbers(path.name)
            for table in TABLES
            for path in (self.folder.set_aside / table).glob("trial-*-attempt-*.parquet*")
        )

    def set_aside(self, trial: int, attempt: int) -> list[Path]:
        """Move every file of one attempt under ``set-aside/``; returns where they went."""
        moved = []
        for table in TABLES:
            path = self.path(table, trial, attempt)
            self._read.pop(path, None)
            if path.exists():
                target = self.folder.move_aside(path)
                if target is not None:
                    moved.append(target)
        return moved


def _numbers(name: str) -> tuple[int, int]:
    """(trial, attempt) from ``trial-NNNNN-attempt-NN.parquet``."""
    parts = name.split(".")[0].split("-")
    return int(parts[1]), int(parts[3])
