"""A test kit for plugin authors: conformance checks for registered components.

Use it in your plugin's tests (pytest or not), for example::

    from ablate.testing import check_component, load_plugins

    def test_my_components():
        registry = load_plugins().registry
        check_component(registry.get("model", "tiny_convnet"))
        check_component(registry.get("augmentation", "cutout"))

Each check raises ``AssertionError`` with a message saying what a component does wrong.

What a component must keep in its state: everything that decides what it does next. A trial
that is stopped and continued rebuilds every component from its factory and loads the state
saved in the checkpoint (``state_dict`` of the model, optimizer and scheduler; the random
generator for augmentations), so the kit checks the same: build, step k times, save, rebuild,
load, step on, and compare with a copy that never stopped. A count kept in a closure or an
attribute outside ``state_dict`` passes a single run and silently changes the continued one.
"""

from __future__ import annotations

from typing import Any

import torch

from ablate.components.discovery import DISABLE_AUTOLOAD_ENV, load_plugins
from ablate.components.registry import Component
from ablate.data import ImageData
from ablate.train.epoch import step_scheduler
from ablate.train.state import round_trip

__all__ = [
    "check_augmentation",
    "check_component",
    "check_dataset",
    "check_model",
    "check_optimizer",
    "check_scheduler",
    "DISABLE_AUTOLOAD_ENV",
    "load_plugins",
]

IMAGE_SHAPE = (3, 32, 32)


def _build(component: Component, **context: object) -> Any:
    """Build with the declared defaults, and again with every parameter passed explicitly."""
    built = component.build(context, {})
    component.build(context, component.defaults())
    return built


def check_model(component: Component, num_classes: int = 10) -> None:
    """The model builds, maps (N, 3, 32, 32) to (N, classes), trains one step, round-trips."""
    model = _build(component, num_classes=num_classes, image_shape=IMAGE_SHAPE)
    assert isinstance(model, torch.nn.Module), f"{component.name}: factory must return an nn.Module"
    images = torch.randn(4, *IMAGE_SHAPE)
    logits = model(images)
    assert logits.shape == (4, num_classes), (
        f"{component.name}: expected logits of shape (4, {num_classes}), got {tuple(logits.shape)}"
    )
    logits.float().sum().backward()
    assert any(p.grad is not None for p in model.parameters()), f"{component.name}: no gradients"
    twin = _build(component, num_classes=num_classes, image_shape=IMAGE_SHAPE)
    twin.load_state_dict(round_trip(model.state_dict()))
    model.eval()
    twin.eval()
    assert torch.equal(model(images), twin(images)), f"{component.name}: state_dict does not round-trip"


def check_augmentation(component: Component) -> None:
    """Keeps shape and range, follows the generator's seed, draws per image, and keeps no state
    of its own: a fresh instance given the generator where the first left it does the same
    (a continued trial rebuilds its augmentations and restores only the generator)."""
    augment = _build(component)
    images = torch.rand(64, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(0))
    first = augment(images, torch.Generator().manual_seed(1))
    again = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape, f"{component.name}: changed the batch shape"
    assert first.min() >= 0 and first.max() <= 1, f"{component.name}: left the [0, 1] range"
    assert torch.equal(first, again), f"{component.name}: the same seed gave different batches"
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        augment(images, generator)
    saved = generator.get_state()
    straight = augment(images, generator)
    resumed = _build(component)(images, torch.Generator().set_state(saved))
    assert torch.equal(straight, resumed), (
        f"{component.name}: a fresh instance with the same generator state gave another batch: "
        "it keeps state of its own, which a continued trial loses; draw everything from the "
        "generator"
    )


def check_dataset(component: Component) -> None:
    """Returns an :class:`ImageData` (its constructor validates shapes, dtypes and labels),
    the same data and fingerprint every time it is built."""
    data = _build(component, data_dir=None)
    assert isinstance(data, ImageData), f"{component.name}: factory must return ImageData"
    assert len(data.classes) > int(data.train_labels.max()), f"{component.name}: labels beyond classes"
    twin = component.build({"data_dir": None}, {})
    assert twin.fingerprint == data.fingerprint and torch.equal(twin.train_labels, data.train_labels), (
        f"{component.name}: built twice, it differs"
    )


def _optimizer_run(component: Component, steps: int, resume_at: int | None) -> torch.Tensor:
    """The weights of a small model after ``steps`` steps, stopped and continued (rebuilt from
    the factory, state loaded after a save and a weights_only load) at ``resume_at``."""
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, 4, generator=generator), torch.randint(0, 2, (8,), generator=generator))
        for _ in range(steps)
    ]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = _build(component, params=list(model.parameters()))
    for step, (inputs, labels) in enumerate(batches):
        if step == resume_at:
            saved = round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
            model = torch.nn.Linear(4, 2)
            optimizer = component.build({"params": list(model.parameters())}, {})
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return model.weight.detach().clone()


def check_optimizer(component: Component, steps: int = 6) -> None:
    """Builds on a model's parameters, takes steps that change them, and continues exactly
    after its state is saved and loaded into a fresh instance."""
    model = torch.nn.Linear(4, 2)
    optimizer = _build(component, params=list(model.parameters()))
    before = model.weight.detach().clone()
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight), f"{component.name}: a step changed nothing"
    straight = _optimizer_run(component, steps, None)
    for resume_at in (1, steps // 2):
        assert torch.equal(straight, _optimizer_run(component, steps, resume_at)), (
            f"{component.name}: continued after step {resume_at} from its saved state, it took "
            "other steps than without a stop: keep everything a step depends on in state_dict"
        )


def _scheduler_rates(component: Component, epochs: int, resume_at: int | None) -> list[float]:
    """The learning rate of every epoch, stepped as the trainer steps it (a plateau scheduler
    sees flat then rising accuracy), stopped and continued at ``resume_at`` as a checkpoint
    does: optimizer and scheduler rebuilt from their factories, then their states loaded."""
    accuracies = [0.5] * (epochs // 2) + [0.5 + 0.01 * e for e in range(epochs - epochs // 2)]
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = _build(component, optimizer=optimizer, epochs=epochs)
    rates = []
    for epoch in range(epochs):
        if epoch == resume_at:
            saved = round_trip({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            scheduler = component.build({"optimizer": optimizer, "epochs": epochs}, {})
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_scheduler(scheduler, accuracy=accuracies[epoch])
    return rates


def check_scheduler(component: Component, epochs: int = 24) -> None:
    """Builds on an optimizer, steps once per epoch as the trainer does, and a fresh instance
    that loads its saved state (after a ``weights_only`` load) goes on with the same rates."""
    straight = _scheduler_rates(component, epochs, None)
    for resume_at in (1, epochs // 3, epochs // 2 + 1):
        resumed = _scheduler_rates(component, epochs, resume_at)
        assert resumed == straight, (
            f"{component.name}: continued after epoch {resume_at} from its saved state, its rates "
            f"were {resumed[resume_at : resume_at + 3]}, not {straight[resume_at : resume_at + 3]}: "
            "keep everything the schedule depends on in state_dict (a count in a closure is lost)"
        )


CHECKS = {
    "model": check_model,
    "augmentation": check_augmentation,
    "dataset": check_dataset,
    "optimizer": check_optimizer,
    "scheduler": check_scheduler,
}


def check_component(component: Component) -> None:
    """Run the conformance check for the component's kind."""
    CHECKS[component.kind](component)
