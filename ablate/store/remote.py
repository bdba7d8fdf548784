"""Results in an object store: ``--results-dir s3://bucket/prefix`` (the ``s3`` extra: fsspec, s3fs).

A results folder's guarantees rest on two things an object store does not have: renaming a
finished file into place, and locks. So ablate works in a local mirror of the location (under
the cache folder, one per location) and keeps the store in step with it, file by file:

- Every result has a write-once key: an attempt's tables (``trial-NNNNN-attempt-NN.parquet``)
  and kept weights. Each is put once, with a conditional create
  (``If-None-Match: *``). The store shows an object whole or not at all, so no half-written file
  is ever read; and a second writer of the same key is refused instead of replacing the first,
  so a trial's result is written once. A worker refused so keeps the stored object.
- A folder's records (``study.json``, ``data.json``, ``threads.json``, ``precision.json``) are
  decided by the first process and read by every other. Each is put on the condition that the
  store still holds the version this process read (``If-Match``), so of two hosts deciding at
  once one wins and the other reads its decision before training anything with its own (see
  :func:`ablate.base.choices.remembered`).
- The report's files, and the checkpoints of a running trial (its worker's), are replaced.
- Before reading which trials have results, before continuing a trial from a checkpoint, and
  when a command opens the location, what other hosts stored is fetched.
- The queue is not a file. Hosts share a study through an RDB storage (``--storage
  postgresql://...``); without one, the Optuna journal stays in this machine's mirror, and one
  host at a time runs the study.

Only S3's protocol (AWS, MinIO, Ceph, R2, ...: ``AWS_ENDPOINT_URL`` names another server) is
supported: the conditional writes above are S3's, and no other store's was tested.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ablate.base.atomic import RecordChanged, WriteError, mirror_into, write_file_atomic
from ablate.base.locks import FileLock
from ablate.store.folder import FolderError

SUPPORTED = ("s3",)
URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$")  # pathlib folds "s3://" to "s3:/"
LOCAL_ONLY = ("claims", "optuna.journal")  # the queue's lock and journal: this host's own
# Folders whose files are replaced: the report, written again by every `ablate report`, and
# checkpoints, which are a running trial's, not results: the worker that trains the trial now
# writes them (a trial trained afresh writes its epochs' keys again).
REPLACED = ("report", "checkpoints")
CHECK = ": check the bucket, the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and AWS_ENDPOINT_URL"


class RemoteError(FolderError):
    """An object-store location that cannot be used (the message names it and says what to do)."""


def remote_url(location: Path | str) -> str | None:
    """``s3://bucket/prefix`` for a location in an object store, None for a local one."""
    match = URL.match(str(location))
    if match is None or match.group(1) == "file":
        return None
    return f"{match.group(1)}://{match.group(2).strip('/')}"


def mirrored_study(results: str, study: str) -> Path:
    """The local folder of ``study`` in the object-store location ``results`` (a URL)."""
    return Remote.of(results).open_study(study)


def _is_record(relative: Path) -> bool:
    return len(relative.parts) == 2 and relative.suffix == ".json"  # <study>/*.json


def _area(relative: Path) -> str:
    """The first name under the study's folder (``trials``, ``report``, ``optuna.journal``)."""
    return relative.parts[1] if len(relative.parts) > 1 else ""


class Remote:
    """One object-store location and its local mirror."""

    _open: dict[str, Remote] = {}

    @classmethod
    def of(cls, url: str) -> Remote:
        """The location's mirror in this process (one per location: they share versions)."""
        if url not in cls._open:
            cls._open[url] = cls(url)
        return cls._open[url]

    def __init__(self, url: str) -> None:
        from ablate.data import cache_dir

        protocol = url.split("://", 1)[0]
        if protocol not in SUPPORTED:
            raise RemoteError(
                f"{url}: results in {protocol}:// are not supported (only S3 and servers that "
                "speak its protocol, through AWS_ENDPOINT_URL): pass s3://... or a local folder"
            )
        try:
            import fsspec

            # A fresh filesystem object: fsspec's cached one keeps the credentials and endpoint
            # of the environment it was made in.
            self.fs, self.base = fsspec.core.url_to_fs(
                url, use_listings_cache=False, skip_instance_cache=True
            )
        except ImportError:
            raise RemoteError(
                f"{url}: results in an object store need fsspec and s3fs: pip install 'ablate[s3]'"
            ) from None
        self.url = url
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.root = cache_dir() / "remote" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.base)}-{digest}"
        self.versions: dict[Path, str | None] = {}  # each record's version as last read here
        self.root.mkdir(parents=True, exist_ok=True)
        mirror_into(self.root, self)

    # -- keys ------------------------------------------------------------------------------

    def key(self, path: Path) -> str:
        return f"{self.base}/{self.relative(path).as_posix()}"

    def relative(self, path: Path) -> Path:
        return path.resolve().relative_to(self.root.resolve())

    def address(self, path: Path) -> str:
        """``s3://bucket/prefix/...`` of a mirrored path, for messages."""
        return f"{self.url}/{self.relative(path).as_posix()}"

    def _failed(self, path: Path, error: BaseException) -> WriteError:
        return WriteError(self.address(path), OSError(0, _reason(error)))

    # -- opening -----------------------------------------------------------------------------

    def open_study(self, study: str) -> Path:
        """The study's folder in the mirror, with what the store holds of it fetched (not its
        checkpoints: a trial fetches its own when it continues)."""
        folder = self.root / study
        with FileLock(self.root / f".{study}.fetch.lock"):
            if (folder / "study.json").exists() and not self.fs.exists(self.key(folder / "study.json")):
                # The location was emptied or is another: this mirror's files are not its own.
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            self.fetch(folder, skip=("checkpoints",))
        return folder

    def check_writable(self, folder: Path) -> None:
        """Put and delete a probe object, so that a store refusing writes is named before
        anything trains."""
        probe = f"{self.key(folder)}/.write-test"
        try:
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as error:
            raise RemoteError(f"cannot write to {self.address(folder)} ({_reason(error)}){CHECK}") from None

    # -- the Mirror protocol (ablate.base.atomic) --------------------------------------------

    def fetch(self, path: Path, skip: tuple[str, ...] = ()) -> None:
        """Bring the store's objects under ``path`` into the mirror: write-once ones that are
        missing here, records whose version changed."""
        prefix = self.key(path)
        try:
            self.fs.invalidate_cache(prefix)
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            return
        except Exception as error:
            raise RemoteError(f"cannot read {self.address(path)} ({_reason(error)}){CHECK}") from None
        for key, info in found.items():
            local = self.root / key[len(self.base) + 1 :]
            inside = self.relative(local)
            if _area(inside) in skip + LOCAL_ONLY or local.name.startswith(".write-test"):
                continue
            if _is_record(inside) or _area(inside) in REPLACED:
                version = _version(info)
                if self.versions.get(local) == version and local.exists():
                    continue
                self._download(key, local)
                self.versions[local] = version
            elif not local.exists():
                self._download(key, local)

    def put(self, path: Path) -> None:
        """Store a file just written in the mirror (see the module's text for the rules)."""
        relative = self.relative(path)
        if _area(relative) in LOCAL_ONLY:
            return
        key, data = self.key(path), path.read_bytes()
        if _is_record(relative):
            self._put_record(path, key, data)
        elif _area(relative) in REPLACED:
            self.versions[path] = _put_version(self._call(path, lambda: self.fs.pipe_file(key, data)))
        else:
            try:
                self._call(path, lambda: self.fs.pipe_file(key, data, mode="create"))
            except FileExistsError:
                # Another worker stored this attempt first: its copy is the result.
                self._download(key, path)
            except WriteError:
                # Not in the store, so not here either: a result the mirror held alone would
                # count as finished on this machine and be missing everywhere else.
                path.unlink(missing_ok=True)
                raise

    def remove(self, path: Path) -> None:
        """Delete the objects under ``path``; a failure only leaves them taking space (the
        checkpoints of a finished trial, which nothing reads again)."""
        try:
            self.fs.rm(self.key(path), recursive=True)
        except Exception:
            pass

    # -- helpers -----------------------------------------------------------------------------

    def _put_record(self, path: Path, key: str, data: bytes) -> None:
        """Put a record if the store still holds the version this process read; else raise
        :class:`RecordChanged` (another process decided meanwhile: read its decision)."""
        version = self.versions.get(path)
        condition: dict[str, Any] = {"mode": "create"} if version is None else {"IfMatch": version}
        try:
            answer = self._call(path, lambda: self.fs.pipe_file(key, data, **condition))
        except FileExistsError:
            raise RecordChanged(self.address(path)) from None
        self.versions[path] = _put_version(answer)

    def _call(self, path: Path, put: Any) -> Any:
        """``put()``'s answer; a put refused for its condition raises FileExistsError, any other
        failure a :class:`WriteError` naming the object."""
        try:
            return put()
        except Exception as error:
            if _changed(error):
                raise FileExistsError(self.address(path)) from None
            raise self._failed(path, error) from None

    def _download(self, key: str, local: Path) -> None:
        try:
            data = self.fs.cat_file(key)
        except Exception as error:
            where = f"{self.url}/{key[len(self.base) + 1 :]}"
            raise RemoteError(f"cannot read {where} ({_reason(error)}){CHECK}") from None
        write_file_atomic(local, lambda handle: handle.write(data), mirrored=False)


def _version(info: dict[str, Any]) -> str | None:
    version = info.get("ETag") or info.get("etag")
    return str(version) if version else None


def _put_version(answer: Any) -> str | None:
    """The version (ETag) a put's answer gives the object, as listings show it."""
    return str(answer["ETag"]) if isinstance(answer, dict) and answer.get("ETag") else None


def _changed(error: BaseException) -> bool:
    """Whether a put was refused for its condition (S3's 412 PreconditionFailed)."""
    text = str(error)
    return isinstance(error, FileExistsError) or "PreconditionFailed" in text or "pre-condition" in text


def _reason(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
