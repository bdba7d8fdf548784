"""``precision=auto``: a choice that measures.

bf16 autocast is not faster for every model on every CPU: a ResNet-18 step runs about twice as
fast in bf16 on a CPU with AVX512-BF16, while a depthwise-convolution network (MobileNet-style)
ran twice as slow. So on a CPU with native bf16, ``auto`` times a few training steps of the
trial's model in fp32 and in bf16 and keeps the faster; the choice is made once per architecture
and input shape on each machine (kept in the cache folder, so the same study run twice trains
the same way), and recorded with both timings. On CUDA, ``auto`` is bf16 where the trial's GPU
computes it natively (compute capability 8.0 or newer), else fp32.

A study decides once. With a ``record`` file (the study folder's ``precision.json``) the first
trial that trains makes the choice for its model and batch, it is written there, and every
later trial and worker of the study trains in it, whatever its own model, batch or GPU. Chosen
per model and batch, a study whose factor is the batch size or the model would compare two
precisions along with the factor (an oscillation run trained batch 8 in fp32 and batches 16 and
64 in bf16); a model that is slower in the study's precision only costs time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ablate.base.atomic import shown
from ablate.base.choices import read_record, remembered
from ablate.errors import SetupError
from ablate.train.backends import to_training_layout

MEASURED_STEPS = 3
STUDY_CHOICE = "study"  # the record's entry every trial of a study trains in


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    step_ms: dict[str, float] | None = None  # fp32 and bf16 milliseconds per step, when measured


_chosen: dict[Hashable, PrecisionChoice] = {}


def _cpuinfo() -> list[str]:
    """The lines of Linux's /proc/cpuinfo; none elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.readlines()
    except OSError:
        return []


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16, AMX or Arm BF16)."""
    flags = {word for line in _cpuinfo() if line.startswith(("flags", "Features")) for word in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether the trial's own GPU computes bf16 natively: compute capability 8.0 (Ampere) or
    newer. ``torch.cuda.is_bf16_supported`` also counts emulated bf16 (slow on a V100 or T4) and
    asks about the current device, not the trial's."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index) >= (8, 0)


def resolve_precision(requested: str, device: torch.device) -> str:
    """Without measuring: ``auto`` becomes bf16 where the hardware does bf16 natively."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp32"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def step_seconds(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str) -> float:
    """Seconds of one forward and backward pass of ``model`` on one batch."""
    device = images.device
    started = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def compare_steps(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> dict[str, float]:
    """Milliseconds per step in each precision: the fastest of a few, the precisions taking
    turns, so that other work on the machine slows both alike (it can only add time, so the
    minimum is the figure it disturbs least)."""
    for precision in precisions:
        step_seconds(model, images, labels, precision)  # warm the kernels up
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(MEASURED_STEPS):
        for precision in precisions:
            times[precision].append(step_seconds(model, images, labels, precision))
    return {p: min(seconds) * 1000 for p, seconds in times.items()}


def choose_precision(
    requested: str,
    device: torch.device,
    model: torch.nn.Module,
    batch: int,
    image_shape: tuple[int, ...],
    num_classes: int,
    key: Hashable,
    record: Path | None = None,
) -> PrecisionChoice:
    """The precision a trial trains in. ``model`` is only copied, never trained; ``key`` names
    the architecture. Without ``record`` (a lone trial) the choice is this trial's model's and
    batch's, cached per architecture and input shape in this process; with one, it is the
    study's (see the module's text)."""
    if requested != "auto":
        return PrecisionChoice(requested)
    name = repr((key, batch, image_shape))

    def measured(choice: PrecisionChoice) -> dict[str, Any]:
        return {**asdict(choice), "measured": name}

    def this_trials() -> PrecisionChoice:
        if device.type != "cpu" or not cpu_has_native_bf16():
            return PrecisionChoice(resolve_precision(requested, device))
        return machine_choice(name, model, device, batch, image_shape, num_classes)

    if record is not None:  # the study's choice: every cell and worker trains alike
        study = remembered(
            record, STUDY_CHOICE, lambda: earlier_choice(record) or measured(this_trials()), True
        )
        # the timings describe the model and batch they were measured on, no other trial's
        timings = study.get("step_ms") if study.get("measured") == name else None
        return PrecisionChoice(study["precision"], timings)
    cached = _chosen.get(name)
    if cached is None:
        cached = _chosen[name] = this_trials()
    return cached


def earlier_choice(record: Path) -> dict[str, Any] | None:
    """The one precision a folder kept per model and batch (ablate did so until December 2026),
    if it kept any; a folder whose trials already differ is refused: continuing it would add trials
    to comparisons that compare two precisions."""
    kept = {name: entry for name, entry in read_record(record).items() if name != STUDY_CHOICE}
    precisions = sorted({str(entry.get("precision")) for entry in kept.values()})
    if len(precisions) > 1:
        raise SetupError(
            f"{shown(record.parent)}: its trials were trained in {' and '.join(precisions)} (an earlier "
            "precision=auto chose per model and batch: see its precision.json), so its "
            "comparisons mix precisions: run the study into a new results folder"
        )
    name, entry = next(iter(kept.items()), (None, None))
    return {**entry, "measured": name} if entry is not None else None


def machine_choice(
    name: str,
    model: torch.nn.Module,
    device: torch.device,
    batch: int,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> PrecisionChoice:
    """The choice this machine made before for ``name`` (kept in the cache folder under its CPU
    and torch version), else a new measurement, kept there. Measured anew in every study, a
    model whose two timings are close could train in bf16 in one study and fp32 in the next
    depending on the machine's load, and the same seed would no longer give the same numbers."""
    from ablate.data import cache_dir

    return PrecisionChoice(
        **remembered(
            cache_dir() / "precision.json",
            f"{cpu_name()} | torch {torch.__version__} | {name}",
            lambda: asdict(measure(model, device, batch, image_shape, num_classes)),
            must_keep=False,
        )
    )


def cpu_name() -> str:
    """The CPU's model name (\"AMD EPYC 9R14 96-Core Processor\"): CPUs differ in bf16 support and
    in speed, so it keys the measured precision choice and is recorded with every trial."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def measure(
    model: torch.nn.Module, device: torch.device, batch: int, image_shape: tuple[int, ...], num_classes: int
) -> PrecisionChoice:
    """Time a few steps of a copy of ``model`` in fp32 and in bf16; keep the faster."""
    trial_copy = to_training_layout(copy.deepcopy(model), device).train()
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(batch, *image_shape, generator=generator).to(
        device, memory_format=torch.channels_last
    )
    labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
    with torch.random.fork_rng(devices=[]):  # dropout draws here must not move the trial's streams
        timings = compare_steps(trial_copy, images, labels)
    return PrecisionChoice("bf16" if timings["bf16"] < timings["fp32"] else "fp32", timings)
