"""Which device a run trains on: the one asked for, checked before anything is written, or the
best one here (CUDA, then MPS, then the CPU)."""

from __future__ import annotations

from typing import Any

from ablate.errors import RunError


def device_kind(requested: str) -> str:
    """The kind of device ``requested`` names ('cuda', 'mps', 'cpu'), without starting CUDA:
    the parent of ``--workers`` checks it, and holding a CUDA context of its own would take
    memory on GPU 0 for the whole study."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise RunError(
            f"device {requested!r} is not usable here ({error}); pass --device auto or cpu"
        ) from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RunError(
            f"device {requested!r} is not usable here ({torch.cuda.device_count()} CUDA "
            "GPUs visible); pass --device auto or cpu"
        )
    return device.type


def pick_device(requested: str) -> tuple[Any, str]:
    """The torch device for ``requested`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps') and why."""
    import torch

    if requested != "auto":
        try:
            device = torch.device(requested)
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunError(
                f"device {requested!r} is not usable here ({reason}); pass --device auto or cpu"
            ) from None
        return device, f"{device} (asked for)"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"cuda: {torch.cuda.get_device_name(0)} (auto)"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps"), "mps (auto)"
    return torch.device("cpu"), f"cpu, {torch.get_num_threads()} threads (auto: no CUDA or MPS)"
