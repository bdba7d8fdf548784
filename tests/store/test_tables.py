"""The results writer's view of recorded attempts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ablate.store.tables
from ablate.store.folder import StudyFolder
from ablate.store.tables import ResultsStore


def record(writer: ResultsStore, trial: int, attempt: int, state: str) -> None:
    writer.write(
        trial,
        attempt,
        pa.table({"trial": [trial], "attempt": [attempt], "state": [state], "study_fingerprint": ["plan"]}),
    )


def test_attempts_are_listed_in_order_and_each_file_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    read_table = pq.read_table

    def counting_read(path: Path, **kwargs: object) -> pa.Table:
        reads.append(path)
        return read_table(path, **kwargs)

    monkeypatch.setattr(ablate.store.tables.pq, "read_table", counting_read)
    writer = ResultsStore(StudyFolder(tmp_path))
    record(writer, 0, 2, "complete")
    record(writer, 0, 1, "fail")
    record(writer, 1, 1, "fail")
    assert states(writer.attempts()) == {0: ["fail", "complete"], 1: ["fail"]}
    assert writer.finished_trials("plan") == {0} and len(reads) == 3
    record(writer, 1, 2, "diverged")
    assert writer.finished_trials("plan") == {0, 1} and len(reads) == 4  # only the new file was read
    assert writer.finished_trials("another plan") == set()
    assert states(writer.attempts(1)) == {1: ["fail", "diverged"]}
    writer.path("trials", 0, 2).unlink()  # a file removed by hand is gone from the view
    assert states(writer.attempts()) == {0: ["fail"], 1: ["fail", "diverged"]}


def states(attempts: dict) -> dict[int, list[str]]:
    return {trial: [a.state.value for a in records] for trial, records in attempts.items()}


def test_an_unreadable_file_is_set_aside_with_its_attempt_and_named(tmp_path: Path) -> None:
    logged: list[str] = []
    folder = StudyFolder(tmp_path)
    writer = ResultsStore(folder, log=logged.append)
    for trial in (0, 1):
        writer.write(
            trial,
            1,
            pa.table(
                {"trial": [trial], "attempt": [1], "state": ["complete"], "study_fingerprint": ["plan"]}
            ),
            epochs=pa.table({"trial": [trial], "epoch": [1]}),
        )
    broken = writer.path("epochs", 1, 1)
    broken.write_bytes(broken.read_bytes()[:100])  # truncated, as by a full disk
    writer.check_files()
    assert writer.finished_trials("plan") == {0}
    assert not writer.path("trials", 1, 1).exists() and not broken.exists()
    assert (folder.set_aside / "epochs" / broken.name).read_bytes() == broken_bytes(folder, broken)
    assert (folder.set_aside / "trials" / writer.path("trials", 1, 1).name).exists()
    assert len(logged) == 1 and str(broken) in logged[0] and "trained again" in logged[0]


def broken_bytes(folder: StudyFolder, path: Path) -> bytes:
    return (folder.set_aside / path.parent.name / path.name).read_bytes()[:100]
