"""What computed a results folder's trials beyond its plan, held fixed per folder.

A folder holds one computation. The plan's fingerprint (``study.json``) covers what the study
file declares; two things it cannot see change a trial's numbers too, and are recorded by the
first trial that needs them and checked by every later run and worker:

- ``data.json``: each dataset configuration's content fingerprint and where it was read from.
  Other data (another photo folder, a changed file) is refused in one line naming both; the same
  files at another path are the same data.
- ``threads.json``: how many CPU threads a trial computes with. On a CPU the thread count changes
  how convolutions split their sums, so the same seed gives other numbers with another count
  (up to 2 points of test accuracy on ``dropout_gap``'s smoke preset); every later run and worker
  of the folder uses the recorded count, and a ``--threads`` that differs is refused. On a GPU
  the count changes nothing and is only recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ablate.base.atomic import shown
from ablate.base.choices import read_record, remembered
from ablate.errors import RunError, SetupError
from ablate.store.folder import StudyFolder


class DataMismatch(SetupError):
    """A run reads other data than the folder's trials were trained on."""


@dataclass(frozen=True)
class DataGuard:
    """Checks each dataset a run loads against the folder's record (``data.json``), and, when
    the record was lost, against the data fingerprints its trials rows carry."""

    folder: StudyFolder
    # dataset name -> the data fingerprints of the plan's recorded trials of that dataset
    recorded_rows: Callable[[], dict[str, set[str]]]

    def check(self, key: str, name: str, fingerprint: str, source: str) -> None:
        """Refuse ``fingerprint`` (read from ``source``) for the dataset configuration ``key``
        when the folder's trials were trained on other data."""
        mine = {"fingerprint": fingerprint, "source": source}
        if not self.folder.data_record.is_file():  # a new folder, or its record was deleted
            rows = self.recorded_rows().get(name, set())
            if rows and fingerprint not in rows:
                self._refuse(key, {"fingerprint": ", ".join(sorted(rows)), "source": "its trials rows"}, mine)
        try:
            held = remembered(self.folder.data_record, key, lambda: mine, must_keep=True)
        except OSError as error:
            raise RunError(f"cannot write {self.folder.data_record}: {error}") from None
        if held["fingerprint"] != fingerprint:
            self._refuse(key, held, mine)

    def _refuse(self, key: str, held: dict[str, str], mine: dict[str, str]) -> None:
        changed = " (its files changed)" if held["source"] == mine["source"] else ""
        raise DataMismatch(
            f"{shown(self.folder.root)} holds trials trained on dataset {key} read from "
            f"{held['source']} (data fingerprint {held['fingerprint']}); this run reads "
            f"{mine['source']}{changed} (fingerprint {mine['fingerprint']}). A results folder "
            "holds one computation: run with the data it was started with, or pass another "
            "--results-dir"
        )


def fixed_threads(
    folder: StudyFolder, requested: int | None, default: int, log: Callable[[str], None]
) -> int:
    """The CPU thread count of the folder's trials: the recorded one, else ``requested`` (the
    ``--threads`` given) or ``default``, recorded now; said when it is not ``default`` (what this
    run would have used). A ``requested`` count other than the recorded one is a
    :class:`RunError`."""
    existed = "cpu" in read_record(folder.threads_record)
    try:
        held = remembered(
            folder.threads_record, "cpu", lambda: {"threads": requested or default}, must_keep=True
        )["threads"]
    except OSError as error:
        raise RunError(f"cannot write {folder.threads_record}: {error}") from None
    if requested is not None and requested != held:
        raise RunError(
            f"--threads {requested}: the trials in {shown(folder.root)} computed with {held} CPU "
            f"thread{'s' if held != 1 else ''} each ({shown(folder.threads_record)}), and on a CPU the "
            "thread count changes the numbers. Leave out --threads (the folder's count is used) "
            "or pass another --results-dir"
        )
    if existed and held != default:
        log(
            f"threads: {held} per trial, as this folder's trials computed "
            f"({folder.threads_record}): on a CPU the count changes the numbers"
        )
    return int(held)
