"""Batched augmentations: every image of the batch gets its own random draw.

A torchvision v2 transform called on a batched tensor draws one set of parameters for the
whole batch; these work on the batch as a tensor on the training device and draw per image,
from the trial's seeded generator (the approach of airbench).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate import hookimpl
from ablate.components import Registrar
from ablate.params import param

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    draw = torch.rand(n, generator=generator, device=like.device, dtype=torch.float32)
    return (low + (high - low) * draw).to(like.dtype).view(n, 1, 1, 1)


class Identity:
    """No augmentation."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images


class CropFlip:
    """Zero-pad by ``padding``, take a random crop of the original size, flip with p = 0.5."""

    def __init__(self, padding: int, flip: bool) -> None:
        self.padding = padding
        self.flip = flip

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, channels, height, width = images.shape
        device, pad = images.device, self.padding
        # Draws in a fixed order (row offsets, column offsets, flips): the seed fixes the batch.
        offsets = [
            torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
            if pad > 0
            else torch.zeros(n, dtype=torch.long, device=device)
            for _ in range(2)
        ]
        dy, dx = offsets
        cols = torch.arange(width, device=device).expand(n, width)
        if self.flip:  # a flipped image reads its crop's columns right to left
            flip = torch.rand(n, generator=generator, device=device) < 0.5
            cols = torch.where(flip[:, None], width - 1 - cols, cols)
        # One gather of each output pixel's source in the padded image: crop and flip in a
        # single pass (separate crop, flip and select passes cost about 6x as much on a CPU).
        padded_width = width + 2 * pad
        rows = dy[:, None] + torch.arange(height, device=device)
        source = rows[:, :, None] * padded_width + (dx[:, None] + cols)[:, None, :]
        padded = F.pad(images, (pad, pad, pad, pad)).view(n, channels, -1)
        out = padded.gather(2, source.view(n, 1, -1).expand(n, channels, height * width))
        return out.view(n, channels, height, width)


class ColorJitter:
    """Brightness, contrast and saturation, each scaled by a factor in [1 - s, 1 + s] per image."""

    def __init__(self, strength: float) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.low, self.high = 1.0 - strength, 1.0 + strength
        self._weights: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def gray_weights(self, images: torch.Tensor) -> torch.Tensor:
        """The luma weights on the images' device, built once: a tensor made from a Python list
        each batch would be a blocking host-to-GPU copy every step."""
        key = (images.device, images.dtype)
        if key not in self._weights:
            self._weights[key] = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype).to(images.device)
        return self._weights[key]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        weights = self.gray_weights(images)
        brightness = _uniform(n, self.low, self.high, images, generator)
        contrast = _uniform(n, self.low, self.high, images, generator)
        saturation = _uniform(n, self.low, self.high, images, generator)
        out = (images * brightness).clamp(0, 1)
        gray = (out * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        mean_gray = gray.mean((2, 3), keepdim=True)
        out = ((out - mean_gray) * contrast + mean_gray).clamp(0, 1)
        gray = (out * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        return ((out - gray) * saturation + gray).clamp(0, 1)


def none() -> Identity:
    return Identity()


def crop_flip(*, padding: int = 4, flip: bool = True) -> CropFlip:
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return CropFlip(padding, flip)


def color_jitter(*, strength: float = 0.4) -> ColorJitter:
    return ColorJitter(strength)


@hookimpl
def register_augmentations(register: Registrar) -> None:
    register("none", none, "no augmentation")
    register(
        "crop_flip",
        crop_flip,
        "pad, random crop back to size, random horizontal flip",
        params={
            "padding": param("zero padding on each side before the random crop (4 for CIFAR)", ge=0),
            "flip": "flip each image horizontally with probability 0.5",
        },
    )
    register(
        "color_jitter",
        color_jitter,
        "random brightness, contrast and saturation per image",
        params={
            "strength": param("each factor is drawn uniformly from [1 - strength, 1 + strength]", ge=0, le=1)
        },
    )
