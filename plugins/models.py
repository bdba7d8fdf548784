"""Models: the CIFAR ResNet-18 of the users' scripts and the PyTorch tutorial CNN."""

from __future__ import annotations

import torch
from torch import nn

from ablate import hookimpl
from ablate.registry import Registrar


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place, as torchvision's BasicBlock: BatchNorm's backward needs its input, not its
        # output, so the output can take the ReLU and the residual without a new tensor.
        out = self.bn1(self.conv1(x)).relu_()
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return out.relu_()


class CifarResNet18(nn.Module):
    """3x3 stem, no max-pool, four stages of two BasicBlocks, global average pool, linear."""

    def __init__(self, num_classes: int, width: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        in_channels = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            out_channels = width * multiplier
            stride = 1 if index == 0 else 2
            stages += [BasicBlock(in_channels, out_channels, stride),
                       BasicBlock(out_channels, out_channels, 1)]
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(features))


class SimpleCNN(nn.Module):
    """The PyTorch tutorial network: conv 3->6 5x5, pool, conv 6->16 5x5, pool, 400-120-84-10."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def resnet18(*, num_classes: int, width: int = 64, dropout: float = 0.0) -> nn.Module:
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return CifarResNet18(num_classes, width, dropout)


def simple_cnn(*, num_classes: int) -> nn.Module:
    return SimpleCNN(num_classes)


@hookimpl
def register_models(register: Registrar) -> None:
    register("resnet18", resnet18, "CIFAR ResNet-18: 3x3 stem, no max-pool, 4 stages of 2 BasicBlocks",
             params={"width": "channels of the first stage (64 in the paper; doubles per stage)",
                     "dropout": "dropout probability before the classifier"})
    register("simple_cnn", simple_cnn,
             "the PyTorch tutorial CNN: two 5x5 convs with max-pool, then 400-120-84-classes")
