"""A test kit for plugin authors: conformance checks for registered components.

Use it in your plugin's tests (pytest or not), for example::

    from ablate.testing import check_component
    from ablate.discovery import load_plugins

    def test_my_components():
        registry = load_plugins().registry
        check_component(registry.get("model", "tiny_convnet"))
        check_component(registry.get("augmentation", "cutout"))

Each check raises ``AssertionError`` with a message saying what a component does wrong.
"""

from __future__ import annotations

import torch

from ablate.data import ImageData
from ablate.registry import Component
from ablate.state import round_trip
from ablate.trainer import step_scheduler

IMAGE_SHAPE = (3, 32, 32)


def _build(component: Component, **context: object) -> object:
    """Build with the declared defaults, and again with every parameter passed explicitly."""
    built = component.build(context, {})
    component.build(context, component.defaults())
    return built


def check_model(component: Component, num_classes: int = 10) -> None:
    """The model builds, maps (N, 3, 32, 32) to (N, classes), trains one step, round-trips."""
    model = _build(component, num_classes=num_classes)
    assert isinstance(model, torch.nn.Module), f"{component.name}: factory must return an nn.Module"
    images = torch.randn(4, *IMAGE_SHAPE)
    logits = model(images)
    assert logits.shape == (4, num_classes), (
        f"{component.name}: expected logits of shape (4, {num_classes}), got {tuple(logits.shape)}")
    logits.float().sum().backward()
    assert any(p.grad is not None for p in model.parameters()), f"{component.name}: no gradients"
    twin = _build(component, num_classes=num_classes)
    twin.load_state_dict(round_trip(model.state_dict()))
    model.eval()
    twin.eval()
    assert torch.equal(model(images), twin(images)), f"{component.name}: state_dict does not round-trip"


def check_augmentation(component: Component) -> None:
    """Keeps shape and range, follows the generator's seed, draws per image."""
    augment = _build(component)
    images = torch.rand(64, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(0))
    first = augment(images, torch.Generator().manual_seed(1))
    again = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape, f"{component.name}: changed the batch shape"
    assert first.min() >= 0 and first.max() <= 1, f"{component.name}: left the [0, 1] range"
    assert torch.equal(first, again), f"{component.name}: the same seed gave different batches"


def check_dataset(component: Component) -> None:
    """Returns an :class:`ImageData` (its constructor validates shapes and dtypes)."""
    data = _build(component, data_dir=None)
    assert isinstance(data, ImageData), f"{component.name}: factory must return ImageData"
    assert len(data.classes) > int(data.train_labels.max()), f"{component.name}: labels beyond classes"


def check_optimizer(component: Component) -> None:
    """Builds on a model's parameters and takes a step that changes them."""
    model = torch.nn.Linear(4, 2)
    optimizer = _build(component, params=list(model.parameters()))
    before = model.weight.detach().clone()
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight), f"{component.name}: a step changed nothing"


def check_scheduler(component: Component, epochs: int = 5) -> None:
    """Builds on an optimizer, steps once per epoch as the trainer does, and its state survives a
    save and a ``weights_only`` load."""
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = _build(component, optimizer=optimizer, epochs=epochs)
    for _ in range(epochs):
        optimizer.step()
        step_scheduler(scheduler, accuracy=0.5)
    state = round_trip(scheduler.state_dict())
    twin = _build(component, optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1),
                  epochs=epochs)
    twin.load_state_dict(state)
    assert twin.get_last_lr() == scheduler.get_last_lr(), f"{component.name}: state does not round-trip"


CHECKS = {"model": check_model, "augmentation": check_augmentation, "dataset": check_dataset,
          "optimizer": check_optimizer, "scheduler": check_scheduler}


def check_component(component: Component) -> None:
    """Run the conformance check for the component's kind."""
    CHECKS[component.kind](component)
