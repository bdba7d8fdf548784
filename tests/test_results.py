"""The results writer's view of recorded attempts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ablate.results
from ablate.results import ResultsWriter


def record(writer: ResultsWriter, trial: int, attempt: int, state: str) -> None:
    writer.write(trial, attempt, pa.table({"trial": [trial], "attempt": [attempt], "state": [state]}))


def test_attempts_are_listed_in_order_and_each_file_is_read_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    read_table = pq.read_table

    def counting_read(path: Path, **kwargs: object) -> pa.Table:
        reads.append(path)
        return read_table(path, **kwargs)

    monkeypatch.setattr(ablate.results.pq, "read_table", counting_read)
    writer = ResultsWriter(tmp_path)
    record(writer, 0, 2, "complete")
    record(writer, 0, 1, "failed")
    record(writer, 1, 1, "failed")
    assert writer.attempts() == {0: ["failed", "complete"], 1: ["failed"]}
    assert writer.complete_trials() == {0} and len(reads) == 3
    record(writer, 1, 2, "complete")
    assert writer.complete_trials() == {0, 1} and len(reads) == 4  # only the new file was read
    assert writer.attempts(1) == {1: ["failed", "complete"]}
    writer.path("trials", 0, 2).unlink()  # a file removed by hand is gone from the view
    assert writer.attempts() == {0: ["failed"], 1: ["failed", "complete"]}
