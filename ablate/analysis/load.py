"""Read a study's results folder: its description and the three Parquet tables.

Schemas are unified across files, so files written by different plugin sets (a parameter
column one has and another lacks) still combine; missing values read as null. A file that
cannot be read is left out and named; rows of another plan (another fingerprint than
``study.json``'s) are left out and counted, never mixed into the answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ablate.base.atomic import shown
from ablate.errors import AblateError
from ablate.events import AttemptState
from ablate.store.folder import FolderError, StudyFolder, study_path
from ablate.study.plan import fingerprint_of


class ReportError(AblateError):
    """The folder is not a study's results folder, or holds nothing to report."""


def read_table(folder: Path, unreadable: list[str] | None = None) -> list[dict[str, Any]]:
    """All rows of the Parquet files in ``folder``, with their schemas unified.

    A file that cannot be read is skipped and, with ``unreadable``, named there with the reason.
    """
    tables = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException) as error:
            if unreadable is None:
                raise
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            unreadable.append(
                f"{path} is unreadable ({reason}): left out; `ablate run` sets it "
                "aside and trains its trial again"
            )
    if not tables:
        return []
    rows: list[dict[str, Any]] = pa.concat_tables(tables, promote_options="permissive").to_pylist()
    return rows


@dataclass
class StudyResults:
    """Everything stored for one study's plan."""

    folder: Path
    description: dict[str, Any]
    attempts: list[dict[str, Any]]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    other_plans: dict[str, int] = field(default_factory=dict)  # fingerprint -> attempts left out

    def _results(self, state: AttemptState) -> list[dict[str, Any]]:
        """The last attempt of each trial that ended in ``state`` (complete, diverged, pruned)."""
        chosen: dict[int, dict[str, Any]] = {}
        for row in sorted(self.attempts, key=lambda r: (r["trial"], r["attempt"])):
            if AttemptState(row["state"]).is_result:
                chosen[row["trial"]] = row
        return [row for row in chosen.values() if row["state"] == state.value]

    @property
    def pruned(self) -> list[dict[str, Any]]:
        """Trials a sampler design's pruner stopped early (left out of the cells)."""
        return self._results(AttemptState.PRUNED)

    @property
    def complete(self) -> list[dict[str, Any]]:
        """The complete attempt of each trial (the last one, should there be several)."""
        return self._results(AttemptState.COMPLETE)

    @property
    def diverged(self) -> list[dict[str, Any]]:
        """The diverged attempt of each trial whose result is a divergence."""
        return self._results(AttemptState.DIVERGED)

    def rows_of(self, table: list[dict[str, Any]], trial: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in table if r["trial"] == trial["trial"] and r["attempt"] == trial["attempt"]]


def _plan_rows(
    rows: list[dict[str, Any]], fingerprint: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of the plan ``fingerprint`` (else of the newest plan) and the others' counts.

    Rows without a fingerprint (written before ablate recorded it) count as the plan's."""
    if fingerprint is None:
        dated = [r for r in rows if r.get("study_fingerprint")]
        newest = max(dated, key=lambda r: str(r.get("started_at") or ""), default=None)
        fingerprint = newest["study_fingerprint"] if newest else None
    kept = [r for r in rows if r.get("study_fingerprint") in (None, fingerprint)]
    others = Counter(
        r["study_fingerprint"] for r in rows if r.get("study_fingerprint") not in (None, fingerprint)
    )
    return kept, dict(others)


def check_record(file: Path, description: dict[str, Any]) -> None:
    """Refuse a ``study.json`` whose plan fields (baseline, factors, seeds, design, ...) no
    longer give its fingerprint: edited by hand, it would make the report take another cell as
    the baseline, or shrink the family of comparisons, without a word."""
    recorded = description.get("fingerprint")
    if recorded is not None and fingerprint_of(description) != recorded:
        raise ReportError(
            f"{file} does not match its fingerprint {recorded}: its baseline, factors, seeds or "
            "design were changed after the trials ran. Run `ablate run STUDY` with the same "
            "preset and --set options to write it again from the study file (it trains nothing "
            "new)"
        )


def load(path: Path) -> StudyResults:
    """Load ``path`` (``<results-dir>/<study>``, a folder or a ``file://`` URI)."""
    try:
        path = study_path(path)
    except FolderError as error:
        raise ReportError(str(error)) from None
    folder = StudyFolder(path)
    if not folder.table("trials").is_dir():
        raise ReportError(
            f"{shown(path)} holds no trials/ folder: is it a study's results folder (<results-dir>/<study>)?"
        )
    try:
        description = folder.read_description()
    except FolderError as error:
        raise ReportError(str(error).replace("`ablate run` writes", "`ablate run STUDY` writes")) from None
    if description is not None:
        check_record(folder.description_file, description)
    description = description or {
        "name": path.name,
        "question": "",
        "metric": "test_acc",
        "direction": "maximize",
        "baseline": {},
        "factors": {},
        "seeds": [],
        "trials": None,
        "design": "grid",
    }
    unreadable: list[str] = []
    rows = read_table(folder.table("trials"), unreadable)
    attempts, other_plans = _plan_rows(rows, description.get("fingerprint"))
    if not attempts and other_plans:
        raise ReportError(
            f"{folder.description_file} describes the plan {description.get('fingerprint')}, but "
            f"the trials in {path} were planned under {', '.join(sorted(other_plans))}: the record "
            "is not theirs. Run `ablate run STUDY` with the preset and --set options of those "
            "trials to write it again"
        )
    if not attempts:
        raise ReportError(f"{path} has no finished trial of its plan yet")
    _check_test_images(folder, attempts)
    kept = {(r["trial"], r["attempt"]) for r in attempts}

    def of_plan(table: str) -> list[dict[str, Any]]:
        return [r for r in read_table(folder.table(table), unreadable) if (r["trial"], r["attempt"]) in kept]

    return StudyResults(
        path, description, attempts, of_plan("epochs"), of_plan("classes"), unreadable, other_plans
    )


def _check_test_images(folder: StudyFolder, attempts: list[dict[str, Any]]) -> None:
    """Turn each attempt's ``test_correct`` into a boolean array (once, here, not per
    comparison) and refuse a folder whose attempts recorded test sets of different sizes: the
    trials of one plan share their test set, so a record of another length was damaged, and
    comparing per-image parts of different images would be wrong, not merely imprecise."""
    sizes: Counter[int] = Counter()
    for row in attempts:
        if row.get("test_correct"):
            row["test_correct"] = np.asarray(row["test_correct"], dtype=bool)
            sizes[len(row["test_correct"])] += 1
        else:
            row["test_correct"] = None
    if len(sizes) < 2:
        return
    usual = sizes.most_common(1)[0][0]
    odd = next(r for r in attempts if r["test_correct"] is not None and len(r["test_correct"]) != usual)
    file = folder.attempt_file("trials", odd["trial"], odd["attempt"])
    raise ReportError(
        f"{file} records {len(odd['test_correct']):,} test images where the study's other trials "
        f"record {usual:,}: it is damaged. Move it to {folder.root / 'set-aside'} and run "
        "`ablate run STUDY` to train its trial again"
    )


def list_studies(results_dir: Path) -> list[tuple[str, int]]:
    """Studies under ``results_dir`` with their count of recorded attempts."""
    if not results_dir.is_dir():
        return []
    return [
        (path.name, len(list((path / "trials").glob("*.parquet"))))
        for path in sorted(results_dir.iterdir())
        if (path / "trials").is_dir()
    ]


def design_kind(description: Mapping[str, Any]) -> str:
    """``grid``, ``oat``, ``fractional``, ``sampled``, ``path`` or ``leave_one_out`` (as
    ``study.json`` stores the design)."""
    design = description.get("design")
    if isinstance(design, dict):
        if "kind" in design:  # path, leave_one_out
            return str(design["kind"])
        return "sampled" if "trials" in design else "fractional"
    return str(design or "grid")


def is_sampled(description: Mapping[str, Any]) -> bool:
    return design_kind(description) == "sampled"


def factor_column(description: Mapping[str, Any], factor: str) -> str:
    """The trials table's column of ``factor`` (its canonical parameter name, see the runner)."""
    return str(description.get("columns", {}).get(factor, f"param_{factor}"))
