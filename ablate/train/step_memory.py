"""Will one training step fit in memory? Said before a trial allocates it.

``--set batch_size=100000`` once took a machine's 22 GB and the kernel's out-of-memory killer
fired for the whole machine. A batch larger than the training split is the whole split (it
trains the same: one batch per epoch), and before the first step the activations one image
leaves for the backward pass are measured on a single image; when the batch's share of them
alone exceeds the memory the device has free, the trial stops with one line instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ablate.errors import SetupError


class DoesNotFit(SetupError):
    """One training step would need more memory than the device has free."""


def effective_batch(batch_size: int, split: int, log: Callable[[str], None]) -> int:
    """``batch_size``, or the training split's size when the batch is larger (the same
    training: one batch per epoch), said once."""
    if batch_size <= split or split == 0:
        return batch_size
    log(
        f"batch_size {batch_size:,} is larger than the training split ({split:,} images): each "
        f"epoch is one batch of {split:,}"
    )
    return split


def activation_bytes(
    model: torch.nn.Module, image_shape: tuple[int, ...], device: torch.device, bf16: bool
) -> int | None:
    """Bytes of the outputs of ``model``'s innermost modules for one image: about what a
    training step keeps for its backward pass, per image (a lower bound; under bf16 autocast
    when the trial may train in bf16). Measured in eval mode without gradients, so nothing of
    the model changes; None when it cannot be measured."""
    total = 0

    def count(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(torch.zeros(1, *image_shape, device=device).contiguous(memory_format=torch.channels_last))
    except Exception:  # an unusual model: training will tell
        return None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


def check_fits(
    model: torch.nn.Module,
    batch: int,
    image_shape: tuple[int, ...],
    device: torch.device,
    free: int,
    what: str,
    precision: str,
) -> None:
    """Raise :class:`DoesNotFit` when ``batch`` images' activations alone exceed ``free``
    bytes; ``what`` names the model for the message, ``precision`` is the trial's setting."""
    per_image = activation_bytes(model, image_shape, device, bf16=precision != "fp32")
    if per_image is None or per_image * batch <= free:
        return
    need = per_image * batch / 2**30
    raise DoesNotFit(
        f"batch_size {batch:,} of {what} on {'x'.join(map(str, image_shape[1:]))} images needs "
        f"at least {need:,.1f} GB for one training step's activations, and {device.type} has "
        f"{free / 2**30:,.1f} GB free: lower batch_size (about {max(1, int(free // per_image)):,} "
        "would fit)"
    )
