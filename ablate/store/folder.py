"""A study's results folder: every path in it, and the guard that it holds one plan only.

    <results-dir>/<study>/
        study.json        the plan the folder belongs to (question, baseline, factors, fingerprint)
        trials/ epochs/ classes/   one Parquet file per trial attempt (see ablate.store.tables)
        checkpoints/trial-NNNNN/   a running trial's checkpoints
        claims/           the lock for queueing trials (with the journal file)
        data.json         the data the trials were trained on (see ablate.store.identity)
        threads.json      the CPU thread count they computed with (see ablate.store.identity)
        precision.json    precision=auto's measured choice (see ablate.train.precision)
        optuna.journal    the default Optuna storage
        set-aside/        files ablate could not read, moved here (never deleted)
        weights/          kept weights of finished trials (see ablate.store.weights)
        report/           plots and report.html

A folder belongs to one plan, identified by its fingerprint (baseline, factors, seeds, design):
``study.json`` records it and every trials row carries it, so a different plan is refused
whichever Optuna storage is used and even when ``study.json`` is gone.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ablate.base.atomic import WriteError, mirror_of, shown, write_text_atomic
from ablate.errors import AblateError

TABLES = ("trials", "epochs", "classes")


class FolderError(AblateError):
    """The results folder cannot be used as asked (the message names it and says what to do)."""


def local_path(location: Path | str) -> Path:
    """A results location as a local path: a ``file://`` URI (which ``pathlib`` folds to
    ``file:/...``) becomes its path; anything else is a path already."""
    text = str(location)
    if text.startswith("file:"):
        return Path(unquote(urlparse(text).path))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", text):  # s3://, gs://: pathlib folds "//" to "/"
        raise FolderError(
            f"{text}: a study's folder in an object store is named by its results location and "
            "the study's name (--results-dir s3://... and the study file)"
        )
    return Path(location)


def study_path(location: Path | str) -> Path:
    """A study's folder (``<results-dir>/<study>``) as a local path; in an object store
    (``s3://bucket/prefix/<study>``), its mirror here, with what the store holds fetched."""
    from ablate.store.remote import remote_url

    url = remote_url(location)
    if url is None:
        return local_path(location)
    results, _, study = url.rpartition("/")
    if "://" not in results or not results.split("://", 1)[1]:
        raise FolderError(f"{url}: name a study's folder in the bucket (s3://bucket/prefix/<study>)")
    return StudyFolder.of(results, study).root


def attempt_file_name(trial: int, attempt: int) -> str:
    return f"trial-{trial:05d}-attempt-{attempt:02d}.parquet"


@dataclass(frozen=True)
class StudyFolder:
    """The results folder of one study, ``<results-dir>/<study>``."""

    root: Path

    @classmethod
    def of(cls, results_dir: Path | str, study: str) -> StudyFolder:
        """``study``'s folder in ``results_dir``: a local folder, or an object store's location
        (``s3://bucket/prefix``), whose mirror here the folder is (see :mod:`ablate.store.remote`)."""
        from ablate.store.remote import mirrored_study, remote_url

        url = remote_url(results_dir)
        if url is not None:
            return cls(mirrored_study(url, study))
        return cls(local_path(results_dir) / study)

    # -- paths -------------------------------------------------------------------------------

    def table(self, name: str) -> Path:
        return self.root / name

    def attempt_file(self, table: str, trial: int, attempt: int) -> Path:
        return self.root / table / attempt_file_name(trial, attempt)

    def checkpoints(self, trial: int) -> Path:
        return self.root / "checkpoints" / f"trial-{trial:05d}"

    @property
    def checkpoint_root(self) -> Path:
        return self.root / "checkpoints"

    @property
    def claims(self) -> Path:
        return self.root / "claims"

    @property
    def set_aside(self) -> Path:
        return self.root / "set-aside"

    @property
    def description_file(self) -> Path:
        return self.root / "study.json"

    @property
    def precision_record(self) -> Path:
        """``precision=auto``'s measured choices, shared by every worker of the study."""
        return self.root / "precision.json"

    @property
    def data_record(self) -> Path:
        """Each dataset configuration's fingerprint and source (see :mod:`ablate.store.identity`)."""
        return self.root / "data.json"

    @property
    def threads_record(self) -> Path:
        """The CPU thread count of the folder's trials (see :mod:`ablate.store.identity`)."""
        return self.root / "threads.json"

    @property
    def journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    # -- checks ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the folder and prove it writable, before anything else is written."""
        for parent in (self.root.parent, self.root):
            if parent.exists() and not parent.is_dir():
                raise FolderError(f"{parent} is a file, not a folder: pass another --results-dir")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            raise FolderError(
                f"cannot write to {self.root} ({error.strerror or error}): free "
                "some space, fix its permissions, or pass another --results-dir"
            ) from None
        mirror = mirror_of(self.root)
        if mirror is not None:  # the object store the folder mirrors must take writes too
            mirror.check_writable(self.root)

    def read_description(self) -> dict[str, Any] | None:
        """``study.json``, or None when there is none; a damaged one is a :class:`FolderError`."""
        path = self.description_file
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise FolderError(f"cannot read {shown(path)}: {error.strerror or error}") from None
        try:
            description = json.loads(text)
        except json.JSONDecodeError as error:
            raise FolderError(
                f"{shown(path)} is damaged ({error.msg} at line {error.lineno}): move it "
                "aside; `ablate run` writes it again from the study file"
            ) from None
        if not isinstance(description, dict):
            raise FolderError(
                f"{shown(path)} is not a study description (a JSON object): move it aside; "
                "`ablate run` writes it again from the study file"
            )
        return description

    def write_description(self, description: Mapping[str, Any]) -> None:
        """Write ``study.json``; the same text again is not written (in an object store each
        write is a conditional put that machines starting together would contend for)."""
        text = json.dumps(description, indent=2)
        try:
            if self.description_file.read_text(encoding="utf-8") == text:
                return
        except OSError:
            pass
        write_text_atomic(self.description_file, text)

    def check_plan(self, fingerprint: str, preset: str, recorded: Iterable[str | None]) -> None:
        """Refuse a plan other than the one whose results the folder holds.

        ``recorded`` are the fingerprints of the trials rows already there; they guard the
        folder when ``study.json`` was deleted, and ``study.json`` guards one with no rows yet.
        """
        others = sorted({f for f in recorded if f and f != fingerprint})
        description = self.read_description()
        if description is not None and description.get("fingerprint") not in (None, fingerprint):
            others.insert(0, str(description["fingerprint"]))
            held = f"preset {description.get('preset') or '(none)'!r}, fingerprint {others[0]}"
        elif others:
            held = f"fingerprint {', '.join(others)}"
        else:
            return
        raise FolderError(
            f"{shown(self.root)} holds results of another plan of this study ({held}; now preset "
            f"{preset or '(none)'!r}, fingerprint {fingerprint}). Results of two plans must not "
            "mix: pass another --results-dir, or move that folder away."
        )

    # -- unreadable files --------------------------------------------------------------------

    def move_aside(self, path: Path) -> Path | None:
        """Move ``path`` under ``set-aside/`` (keeping its table folder); None if it is gone.

        Files are never deleted: a damaged result may still be recovered by hand.
        """
        target_dir = self.set_aside / path.parent.name
        target = target_dir / path.name
        count = 1
        while target.exists():
            target = target_dir / f"{path.name}.{count}"
            count += 1
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except FileNotFoundError:
            return None  # another worker moved it first
        except OSError as error:
            raise WriteError(target, error) from error
        mirror = mirror_of(target)
        if mirror is not None:  # moved in the store too, or the next fetch brings it back
            mirror.put(target)
            mirror.remove(path)
        return target
