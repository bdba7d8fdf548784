"""Helpers for augmentation plugins.

Built-in augmentations work on whole batches on the training device. A transform that only
knows PIL images (most of ``torchvision.transforms``, or your own) still works when wrapped in
:class:`PerImage`: slower, because every image goes to the CPU, through PIL, and back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["PerImage"]


class PerImage:
    """Apply a per-image PIL transform to each image of a batch (the slow path).

    The transform may draw from Python's ``random`` or torch's global generator (as torchvision's
    transforms do); both are seeded from the trial's generator for every batch and restored
    afterwards, so the trial's seed still fixes every draw and nothing else is disturbed.
    """

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor, to_pil_image

        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=images.device))
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
            out = [pil_to_tensor(self.transform(to_pil_image(image))) for image in pixels]
        random.setstate(python_state)
        return torch.stack(out).to(images.device, torch.float32).div_(255)
