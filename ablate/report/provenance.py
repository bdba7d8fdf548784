"""How a study's trials ran: the device, torch and the precision each model trained in.

``precision=auto`` measures fp32 against bf16 per model on each machine (see
``ablate.precision``), and on CUDA it follows the GPU's compute capability: the same study run
on another machine can train some models in the other precision and land a little elsewhere.
A report that says where and how its trials ran lets a reader tell that from a real change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _listed(words: Iterable[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _device(row: Mapping[str, Any]) -> str:
    """``cpu``, or the GPU's name without its index (``"3 NVIDIA H100"`` is an ``NVIDIA H100``)."""
    gpu = row.get("gpu")
    if gpu:
        index, _, name = str(gpu).partition(" ")
        return name if index.isdigit() and name else str(gpu)
    return str(row.get("device") or "an unrecorded device")


def ran_on(trials: list[Mapping[str, Any]], model_column: str | None) -> str:
    """One sentence: ``Ran on cpu with torch 2.9.1, in bf16 (resnet18, resnet9) and fp32
    (simple_cnn).`` ``model_column`` is the trials table's column of the model: precision is
    chosen per model, so where the trials differ in precision each names its models."""
    if not trials:
        return ""
    devices = _listed(dict.fromkeys(_device(t) for t in trials))
    versions = _listed(dict.fromkeys(str(t.get("torch_version") or "?") for t in trials))
    models: dict[str, dict[str, None]] = {}
    for trial in trials:
        precision = str(trial.get("precision") or "an unrecorded precision")
        model = trial.get(model_column) if model_column else None
        models.setdefault(precision, {})
        if model is not None:
            models[precision][str(model)] = None
    precisions = _listed(
        f"{precision} ({', '.join(names)})" if names and len(models) > 1 else precision
        for precision, names in sorted(models.items()))
    flags = [label for name, label in (("tf32", "TF32"), ("deterministic", "deterministic kernels"))
             if any(t.get(name) for t in trials)]
    return (f"Ran on {devices} with torch {versions}, in {precisions}"
            + (f", with {_listed(flags)}" if flags else "") + ".")
