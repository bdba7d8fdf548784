"""Checkpoint files of one trial: written atomically, loaded without pickle code execution.

A checkpoint is a dictionary of tensors and plain values (model, optimizer, scheduler and
scaler states, every RNG state, the epoch reached and the metrics so far). It is written to a
temporary file in the same folder, fsynced and renamed, so a crash leaves either the old file
or the new one, never half of one. It is read with ``torch.load(weights_only=True)``: a file
holding a pickle payload that would run code is refused without running it.
"""

from __future__ import annotations

import io
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ablate.base.atomic import fetch, remove_tree, write_file_atomic
from ablate.errors import AblateError

FORMAT = 1
NAME = re.compile(r"epoch-(\d{5})\.pt$")


class CheckpointError(AblateError):
    """A checkpoint file cannot be used; the message names the file."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint safely, or raise :class:`CheckpointError` naming ``path``."""
    if not zipfile.is_zipfile(path):  # torch writes zip archives; anything else is no checkpoint
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a checkpoint (not the archive "
            "torch writes), so it is not used"
        )
    try:
        with warnings.catch_warnings():  # torch's own warnings about a damaged file say no more
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # a payload that would run code when loaded
        raise CheckpointError(
            f"checkpoint {path} holds Python objects that a safe (weights-only) "
            "load refuses: ablate did not write it as it is now, so it is not "
            "used"
        ) from error
    except Exception as error:  # truncated zip, bit flips
        # Never pass on PyTorch's advice to load it with weights_only=False: that would run
        # whatever code the file holds.
        first = str(error).splitlines()[0] if str(error) else ""
        reason = "" if "weights_only" in first else f": {first}"
        raise CheckpointError(f"checkpoint {path} is unusable ({type(error).__name__}{reason})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an ablate checkpoint (format {FORMAT})")
    return payload


class CheckpointStore:
    """The checkpoints of one trial, in ``folder``; the newest ``keep`` are kept."""

    def __init__(self, folder: Path, keep: int = 2, log: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.keep = max(1, keep)
        self.log = log

    def files(self) -> list[tuple[int, Path]]:
        """(epoch, path) of every checkpoint, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := NAME.search(p.name))]
        return sorted(found)

    _pending: threading.Thread | None = None
    _failure: BaseException | None = None

    def save(self, epoch: int, payload: dict[str, Any], background: bool = False) -> Path:
        """Write the checkpoint of ``epoch``. ``background``: copy its tensors to pinned host
        memory without waiting and write the file from a thread while training goes on (on a
        GPU, the foreground copy of a ResNet-50 with Adam is hundreds of MB every time); a
        write that fails is raised by the next ``save`` or ``wait``."""
        path = self.folder / f"epoch-{epoch:05d}.pt"
        self.wait()
        if not background:
            self._write(path, payload, None)
            return path
        copied = _to_host(payload)
        device = _cuda_device(payload)
        ready = None
        if device is not None:
            # The copies were queued on the current stream of the tensors' own GPU: the event
            # must follow that stream (recorded on cuda:0's, a trial on cuda:1 could save
            # half-copied buffers).
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(device))
        self._pending = threading.Thread(
            target=self._write_in_background, args=(path, copied, ready), daemon=False
        )
        self._pending.start()
        return path

    def wait(self) -> None:
        """Until the background write (if any) is on disk; raises its failure."""
        if self._pending is not None:
            self._pending.join()
            self._pending = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _write_in_background(self, path: Path, payload: dict[str, Any], ready: Any) -> None:
        try:
            self._write(path, payload, ready)
        except BaseException as error:  # handed to the trial's thread by wait()
            self._failure = error

    def _write(self, path: Path, payload: dict[str, Any], ready: Any) -> None:
        if ready is not None:
            ready.synchronize()  # the copies to host memory are complete
        # Serialised in memory first: torch's zip writer reports a failed write (a full disk) as
        # "RuntimeError: ... unexpected pos", which a trial would take for its own failure and
        # retry; written as bytes, the failure is the OSError it is (WriteError: the trial is
        # named as lost and the next run trains it).
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, **payload}, buffer)
        write_file_atomic(path, lambda handle: handle.write(buffer.getbuffer()))
        for _, old in self.files()[: -self.keep]:
            remove_tree(old)

    def latest(self) -> dict[str, Any] | None:
        """The newest usable checkpoint; unusable ones are reported and skipped."""
        fetch(self.folder)  # where results are in an object store, another host's may be newer
        found = self.files()
        for place, (_, path) in enumerate(reversed(found)):
            try:
                return read_checkpoint(path)
            except CheckpointError as error:
                then = (
                    "trying the one before it"
                    if place + 1 < len(found)
                    else "no earlier checkpoint: the trial starts from its first epoch"
                )
                self.log(f"{error}; {then}")
        return None

    def clear(self) -> None:
        try:
            self.wait()
        finally:
            remove_tree(self.folder)


def _cuda_device(value: Any) -> torch.device | None:
    """The GPU of the first CUDA tensor in ``value``, or None."""
    if isinstance(value, torch.Tensor):
        return value.device if value.device.type == "cuda" else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = _cuda_device(item)
        if found is not None:
            return found
    return None


def _to_host(value: Any) -> Any:
    """``value`` with every tensor copied to host memory (pinned and without waiting, from a
    GPU), so that training can change the originals while the copy is written."""
    if isinstance(value, torch.Tensor):
        if value.device.type == "cuda":
            # empty_like keeps the layout (a channels_last weight's momentum stays channels_last):
            # restored in plain strides, the fused SGD/Adam kernels refused the first step
            # ("check_fast_path_restrictions"), so every resumed GPU trial failed.
            host = torch.empty_like(value, device="cpu", pin_memory=True)
            return host.copy_(value.detach(), non_blocking=True)
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _to_host(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(item) for item in value)
    return value
