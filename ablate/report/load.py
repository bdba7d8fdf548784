"""Read a study's results folder: its description and the three Parquet tables.

Schemas are unified across files, so files written by different plugin sets (a parameter
column one has and another lacks) still combine; missing values read as null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


class ReportError(Exception):
    """The folder is not a study's results folder, or holds nothing to report."""


def read_table(folder: Path) -> list[dict[str, Any]]:
    """All rows of the Parquet files in ``folder``, with their schemas unified."""
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        return []
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    return ds.dataset(files, schema=schema, format="parquet").to_table().to_pylist()


@dataclass
class StudyResults:
    """Everything stored for one study."""

    folder: Path
    description: dict[str, Any]
    attempts: list[dict[str, Any]]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> list[dict[str, Any]]:
        """The complete attempt of each trial (the last one, should there be several)."""
        chosen: dict[int, dict[str, Any]] = {}
        for row in sorted(self.attempts, key=lambda r: (r["trial"], r["attempt"])):
            if row["state"] == "complete":
                chosen[row["trial"]] = row
        return list(chosen.values())

    def rows_of(self, table: list[dict[str, Any]], trial: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in table if r["trial"] == trial["trial"] and r["attempt"] == trial["attempt"]]


def load(folder: Path) -> StudyResults:
    """Load ``folder`` (``<results-dir>/<study>``)."""
    if not (folder / "trials").is_dir():
        raise ReportError(f"{folder} holds no trials/ folder: is it a study's results folder "
                          "(<results-dir>/<study>)?")
    description_file = folder / "study.json"
    description = json.loads(description_file.read_text()) if description_file.is_file() else {
        "name": folder.name, "question": "", "metric": "test_acc", "direction": "maximize",
        "baseline": {}, "factors": {}, "seeds": [], "trials": None, "design": "grid"}
    attempts = read_table(folder / "trials")
    if not attempts:
        raise ReportError(f"{folder} has no finished trial yet")
    return StudyResults(folder, description, attempts, read_table(folder / "epochs"),
                        read_table(folder / "classes"))


def list_studies(results_dir: Path) -> list[tuple[str, int]]:
    """Studies under ``results_dir`` with their count of recorded attempts."""
    if not results_dir.is_dir():
        return []
    return [(path.name, len(list((path / "trials").glob("*.parquet"))))
            for path in sorted(results_dir.iterdir()) if (path / "trials").is_dir()]
