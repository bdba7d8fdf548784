"""Every registered component passes the plugin test kit (timm-style, over the registry)."""

from __future__ import annotations

import pytest
import torch

from ablate.components.discovery import load_plugins
from ablate.components.registry import Component
from ablate.testing import check_augmentation, check_component, check_model

REGISTRY = load_plugins().registry
# cifar10 needs a local copy or the network, imagefolder a folder of photos; they are tested
# in test_datasets.py and test_imagefolder.py.
COMPONENTS = [
    c for c in REGISTRY if (c.kind, c.name) not in {("dataset", "cifar10"), ("dataset", "imagefolder")}
]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: f"{c.kind}:{c.name}")
def test_registered_component_conforms(component: Component) -> None:
    if component.name == "timm":  # an optional extra
        pytest.importorskip("timm", reason="timm is not installed: pip install 'ablate[timm]'")
    check_component(component)


def test_the_kit_catches_a_broken_model() -> None:
    def wrong_shape(*, num_classes: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes + 1))

    with pytest.raises(AssertionError, match="expected logits of shape"):
        check_model(Component("model", "bad", wrong_shape, "d", (), "p"))


def test_the_kit_catches_an_augmentation_that_ignores_the_seed() -> None:
    def unseeded() -> object:
        return lambda images, generator: (images + torch.rand(images.shape) * 0.01).clamp(0, 1)

    with pytest.raises(AssertionError, match="same seed"):
        check_augmentation(Component("augmentation", "bad", unseeded, "d", (), "p"))
