"""Which GPU each worker trains on: ``--gpus 0,1,3`` and ``--workers-per-gpu K``.

Each worker process is pinned to one GPU through ``CUDA_VISIBLE_DEVICES``: inside it that GPU
is the only one (``cuda:0``), so nothing in the trainer needs to know about the others, and K
workers share a GPU by simply being pinned to the same one. Small models (a width-64 ResNet-18
on 32 x 32 images) leave most of a modern GPU idle; K of them at once fill it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ablate.errors import AblateError

VISIBLE = "CUDA_VISIBLE_DEVICES"


class GpuError(AblateError, ValueError):
    """``--gpus`` or ``--workers-per-gpu`` cannot be honoured here (the message says why)."""


def visible_gpu_count() -> int:
    """How many GPUs this process may use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_gpus(text: str | None, visible: int) -> tuple[int, ...]:
    """``"0,1,3"`` as indices among this process's visible GPUs; None: every visible GPU."""
    if visible == 0:
        raise GpuError(
            "--gpus and --workers-per-gpu need CUDA GPUs, and this machine has none "
            "that torch can use; on a CPU, use --workers N"
        )
    if text is None or not text.strip():
        return tuple(range(visible))
    try:
        chosen = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GpuError(f"--gpus {text!r}: give GPU indices separated by commas, e.g. 0,1,3") from None
    wrong = [index for index in chosen if not 0 <= index < visible]
    if wrong:
        raise GpuError(
            f"--gpus {text!r}: no GPU {wrong[0]} here; this machine shows {visible} (indices 0-{visible - 1})"
        )
    if len(set(chosen)) != len(chosen):
        raise GpuError(
            f"--gpus {text!r}: a GPU is listed twice; use --workers-per-gpu for several workers on one GPU"
        )
    return chosen


def physical(index: int, environ: Mapping[str, str] | None = None) -> str:
    """The name the driver knows visible GPU ``index`` by: this process may itself be pinned
    (``CUDA_VISIBLE_DEVICES=2,5`` makes visible GPU 1 the machine's GPU 5)."""
    environ = os.environ if environ is None else environ
    pinned = [part.strip() for part in environ.get(VISIBLE, "").split(",") if part.strip()]
    return pinned[index] if index < len(pinned) else str(index)


def assign(gpus: tuple[int, ...], per_gpu: int, environ: Mapping[str, str] | None = None) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each worker: ``per_gpu`` workers on each of ``gpus``, taken in
    turn (worker 0 on the first GPU, worker 1 on the second, ...), so that with fewer trials
    than workers every GPU still gets work."""
    if per_gpu < 1:
        raise GpuError(f"--workers-per-gpu must be at least 1, got {per_gpu}")
    return [physical(gpu, environ) for _ in range(per_gpu) for gpu in gpus]


def gpu_label(device: torch.device | str) -> str | None:
    """The physical GPU a trial runs on, as ``"INDEX NAME"`` (None on a CPU or MPS)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"{physical(index)} {torch.cuda.get_device_name(index)}"
