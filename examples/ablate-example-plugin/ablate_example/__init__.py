"""An example ablate plugin: a small all-convolutional model and a batched Cutout augmentation."""

from __future__ import annotations

import torch
from torch import nn

import ablate


def tiny_convnet(*, num_classes: int, channels: int = 16) -> nn.Module:
    """Three 3x3 conv + BN + ReLU layers with stride 2, global average pool, linear."""
    layers: list[nn.Module] = []
    width_in = 3
    for width_out in (channels, channels * 2, channels * 4):
        layers += [
            nn.Conv2d(width_in, width_out, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width_out),
            nn.ReLU(inplace=True),
        ]
        width_in = width_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width_in, num_classes))


class Cutout:
    """Zero one random square per image (DeVries & Taylor, 2017), drawn per image."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        # Every random draw comes from `generator`, so the trial's seed fixes it.
        cy = torch.randint(0, height, (n, 1, 1), generator=generator, device=images.device)
        cx = torch.randint(0, width, (n, 1, 1), generator=generator, device=images.device)
        rows = torch.arange(height, device=images.device).view(1, height, 1)
        cols = torch.arange(width, device=images.device).view(1, 1, width)
        half = self.size // 2
        inside = ((rows - cy).abs() <= half) & ((cols - cx).abs() <= half)
        return images * (~inside).unsqueeze(1).to(images.dtype)


def cutout(*, size: int = 8) -> Cutout:
    return Cutout(size)


@ablate.hookimpl
def register_models(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "tiny_convnet",
        tiny_convnet,
        "three strided conv layers, global pool, linear",
        params={"channels": "channels of the first layer (doubles per layer)"},
    )


@ablate.hookimpl
def register_augmentations(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "cutout",
        cutout,
        "zero a random square of each image",
        params={"size": "side of the square in pixels"},
    )
