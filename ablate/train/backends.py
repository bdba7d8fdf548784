"""The numerical switches a trial runs under: determinism and TF32, set explicitly and recorded.

On a GPU, cuDNN's convolution backward and adaptive average pooling's backward are not
deterministic: two runs of one seed differ, so run-to-run noise would be reported as an effect,
a continued trial would not match one that never stopped, and ``resume_jump``'s ``full`` control
would not equal ``none``. ``deterministic`` makes every kernel deterministic, at some speed;
``auto`` is decided once per study (on whenever it writes checkpoints or restarts, which it does
by default: see :func:`ablate.study.plan.one_determinism`), so all its cells compute alike.
Exactness then holds on the same GPU model with the same CUDA, cuDNN and torch versions, not
across them.

TF32 (10-bit mantissa matrix products on Ampere and newer) is on by default for cuDNN
convolutions, so ``precision=fp32`` would not be fp32: here fp32 means TF32 off, and the trials
table records ``tf32``. With bf16 autocast, the few fp32 products left may use TF32.
On a CPU none of this changes anything: its kernels are deterministic and it has no TF32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import torch

# cuBLAS needs this before CUDA starts to be deterministic (see torch's reproducibility notes).
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
DETERMINISTIC = ("auto", "on", "off")


@dataclass(frozen=True)
class Backends:
    deterministic: bool
    tf32: bool


def prepare_process() -> None:
    """Before CUDA starts in this process: what deterministic cuBLAS needs, and one on-disk
    ``torch.compile`` cache for every worker (the second worker reuses the first's kernels)."""
    from ablate.data import cache_dir

    os.environ.setdefault(*CUBLAS_WORKSPACE)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))
    # Many trials of different models in one process: segments that grow and shrink keep the
    # allocator from fragmenting into out-of-memory errors with memory free.
    if "PYTORCH_ALLOC_CONF" not in os.environ and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
        os.environ["PYTORCH_ALLOC_CONF"] = "expandable_segments:True"


def wants_determinism(settings: Mapping[str, Any]) -> bool:
    """``deterministic=on``; a study decides ``auto`` once for all its trials
    (:func:`ablate.study.plan.one_determinism`), and a lone trial the same way: on when it writes
    checkpoints or restarts."""
    setting = settings.get("deterministic", "auto")
    if setting == "auto":
        return bool(settings.get("resume", "none") != "none" or settings.get("checkpoint_every", 1) > 0)
    return bool(setting == "on")


def configure(settings: Mapping[str, Any], precision: str, device: torch.device) -> Backends:
    """Set the process-wide switches for one trial and say what they are."""
    deterministic = wants_determinism(settings)
    tf32 = device.type == "cuda" and precision == "bf16"
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    # warn_only: an op with no deterministic kernel warns instead of failing a whole study.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return Backends(deterministic, tf32)


# oneDNN's backward of a strided 1x1 convolution with an NHWC (channels_last) input writes past
# its workspace when the input has fewer channels per group than its vector block (16 with
# AVX-512, 8 with AVX2): heap corruption, crashes at odd batch sizes, and on AVX2 silently wrong
# weight gradients (uxlfoundation/oneDNN#6035, open in December 2026; seen with torch 2.14.1 on
# this project's CPUs). The downsampling shortcut of a ResNet narrower than 16 channels is one.
ONEDNN_1X1_BLOCK = 16


def to_training_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device`` in channels_last (faster convolutions), except, on a CPU, the
    convolutions oneDNN would compute wrongly in that layout (see ONEDNN_1X1_BLOCK): they
    compute in NCHW. Returns the model; calling it again changes nothing."""
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if device.type == "cpu":
        for module in model.modules():
            if (
                isinstance(module, torch.nn.Conv2d)
                and module.kernel_size == (1, 1)
                and module.stride != (1, 1)
                and module.in_channels // module.groups < ONEDNN_1X1_BLOCK
            ):
                # A (C, c, 1, 1) weight is "contiguous" in both layouts, so only a copy with
                # plain strides makes the convolution choose NCHW.
                module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
                if not getattr(module, "ablate_nchw", False):  # (a deep copy keeps both)
                    module.register_forward_pre_hook(_to_nchw)
                    setattr(module, "ablate_nchw", True)  # noqa: B010 (not a declared attribute)
    return model


def _to_nchw(module: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(t.contiguous() if isinstance(t, torch.Tensor) else t for t in inputs)


NONDETERMINISTIC = "does not have a deterministic implementation"  # torch's warning, warn_only


@contextmanager
def nondeterministic_ops() -> Iterator[set[str]]:
    """The ops that warned they have no deterministic kernel while the block ran (with
    ``deterministic`` on, ``warn_only`` lets such an op run): the trial's row then says which,
    instead of claiming ``deterministic``. Other warnings are shown as usual."""
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=f".*{NONDETERMINISTIC}.*")  # every trial's
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            text = str(message)
            if NONDETERMINISTIC in text:
                found.add(text.split(NONDETERMINISTIC)[0].strip() or "an op")
                return
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield found


_compiled_key: Hashable = None  # the architecture this worker's compiled graphs belong to


def compiled(model: torch.nn.Module, deterministic: bool, key: Hashable) -> Any:
    """``torch.compile`` for a trial: Inductor's own determinism follows ``deterministic``
    (its autotuning picks kernels by timing otherwise), the graphs of another architecture are
    dropped first (``torch.compiler.reset``) so the recompile limit is never reached across
    trials, and reaching it within a trial is an error: Dynamo otherwise runs the model eagerly
    without a word while the row says it ran compiled. (Inductor's and Dynamo's configs are
    torch-private; ``tests/train/test_backends_pins.py`` fails when torch renames them.)"""
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    global _compiled_key
    if key != _compiled_key:
        torch.compiler.reset()
        _compiled_key = key
    known = dynamo.get_config_copy()  # older torch releases lack some of these switches
    if "recompile_limit" in known:
        dynamo.recompile_limit = max(dynamo.recompile_limit, 64)
    if "fail_on_recompile_limit_hit" in known:
        dynamo.fail_on_recompile_limit_hit = True
    if "deterministic" in inductor.get_config_copy():
        inductor.deterministic = deterministic
    return torch.compile(model, dynamic=False)


class GlobalAvgPool(torch.nn.Module):
    """``AdaptiveAvgPool2d(1)`` as a mean: the same numbers, with a deterministic backward on
    CUDA (adaptive pooling's backward uses atomic adds there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def deterministic_pools(model: torch.nn.Module) -> int:
    """Replace every global ``AdaptiveAvgPool2d`` in ``model``; returns how many."""
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                setattr(parent, name, GlobalAvgPool())
                replaced += 1
    return replaced
