"""How a study's trials ran: the device (a CPU's model and threads), torch and the precision
they trained in.

``precision=auto`` measures fp32 against bf16 on the study's first trial on each machine (see
``ablate.train.precision``), and on CUDA it follows the GPU's compute capability: the same study
run on another machine can train in the other precision and land a little elsewhere.
A report that says where and how its trials ran lets a reader tell that from a real change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _listed(words: Iterable[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _device(row: Mapping[str, Any]) -> str | None:
    """The GPU's name without its index (``"3 NVIDIA H100"`` is an ``NVIDIA H100``), or ``cpu``
    with its model and thread count where the row records them (both change a CPU's numbers)."""
    gpu = row.get("gpu")
    if gpu:
        index, _, name = str(gpu).partition(" ")
        return name if index.isdigit() and name else str(gpu)
    device = row.get("device")
    if device != "cpu":
        return device
    threads = row.get("threads")
    details = [str(row["cpu"])] if row.get("cpu") else []
    details += [f"{threads} thread{'s' if threads != 1 else ''}"] if threads else []
    return f"cpu ({', '.join(details)})" if details else device


def _recorded(values: Iterable[Any]) -> list[str]:
    """The distinct values a column holds, in order of first appearance; unrecorded ones left out."""
    return list(dict.fromkeys(str(value) for value in values if value))


def ran_on(trials: Sequence[Mapping[str, Any]], model_column: str | None) -> str:
    """One sentence: ``Ran on cpu with torch 2.9.1, in bf16 (resnet18, resnet9) and fp32
    (simple_cnn).`` ``model_column`` is the trials table's column of the model: where the trials
    differ in precision (a study of the precision, or a folder of an earlier ablate, which chose
    per model), each names its models. A part
    the trials table does not record is left out; '' when it records none."""
    devices = _recorded(_device(t) for t in trials)
    versions = _recorded(t.get("torch_version") for t in trials)
    models = {
        precision: _recorded(t.get(model_column) for t in trials if t.get("precision") == precision)
        if model_column
        else []
        for precision in _recorded(t.get("precision") for t in trials)
    }
    if not (devices or versions or models):
        return ""
    precisions = [
        f"{precision} ({', '.join(names)})" if names and len(models) > 1 else precision
        for precision, names in sorted(models.items())
    ]
    # Switches of GPU kernels: on a CPU, whose kernels are deterministic anyway, they say nothing.
    on_gpu = [t for t in trials if str(t.get("device") or "").startswith("cuda")]
    flags = [
        label
        for name, label in (("tf32", "TF32"), ("deterministic", "deterministic kernels"))
        if any(t.get(name) for t in on_gpu)
    ]
    return (
        "Ran"
        + (f" on {_listed(devices)}" if devices else "")
        + (f" with torch {_listed(versions)}" if versions else "")
        + ("," if precisions and (devices or versions) else "")
        + (f" in {_listed(precisions)}" if precisions else "")
        + (f", with {_listed(flags)}" if flags else "")
        + "."
    )
