"""A trial's training state, its checkpoint form, and the restarts a resume study simulates.

``snapshot`` and ``restore`` round-trip everything that decides what training does next: model,
optimizer, scheduler, the RNG states of Python, NumPy, torch (and CUDA) and the trial's data
generator, and the epoch reached. Restoring all of it continues training exactly as if it had
never stopped. :func:`restart` restores only part of it, as users' scripts do when they save
``net.state_dict()`` alone and start a fresh run from it.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ablate.components.setup import TrialSetup
from ablate.events import EpochRecord
from ablate.train.backends import compiled, deterministic_pools, to_training_layout, wants_determinism
from ablate.train.init import StartingPoint, freeze_backbone, load_into


@dataclass
class TrainingState:
    """Everything that changes while a trial trains."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    network: Any = None  # what runs the batches: the model, or its torch.compile wrapper
    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # tensors a starting point did not provide
    best: dict[str, torch.Tensor] | None = None  # weights of the best epoch, when they are kept
    best_value: float | None = None

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = self.model


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so initialisation does not depend on earlier trials."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_state(
    setup: TrialSetup,
    num_classes: int,
    seed: int,
    device: torch.device,
    start_from: StartingPoint | None = None,
    image_shape: tuple[int, ...] = (3, 32, 32),
) -> TrainingState:
    """A fresh, seeded state: the model (its weights from ``start_from`` where names and shapes
    match, its backbone frozen with ``freeze=backbone``), its optimizer and scheduler, the data
    generator. ``image_shape`` (channels, height, width) is offered to the model's factory,
    for models that need it (a timm ViT is built for its input size)."""
    seed_everything(seed)
    model = setup.model.build(num_classes=num_classes, image_shape=image_shape)
    fresh: list[str] = []
    if start_from is not None:
        _, fresh = load_into(model, start_from)
    if setup.settings["freeze"] == "backbone":
        freeze_backbone(model)
    if device.type == "cuda" and wants_determinism(setup.settings):
        deterministic_pools(model)  # the one backward torch has no deterministic CUDA kernel for
    model = to_training_layout(model, device)
    optimizer = setup.optimizer.build(params=model.parameters())
    scheduler = setup.scheduler.build(optimizer=optimizer, epochs=setup.settings["epochs"])
    # One generator, seeded by the trial, drives data order and every augmentation draw.
    generator = torch.Generator(device=device).manual_seed(seed)
    # torch.compile caches by the model's code: a second model of the same architecture in
    # this process reuses the compiled graphs instead of compiling again.
    # Static shapes: the ragged last batch costs one more graph, not a dynamic-shape recompile.
    network = model
    if setup.settings["compile"]:
        key = (setup.model.component.name, tuple(sorted(setup.model.values.items())), str(device))
        network = compiled(model, wants_determinism(setup.settings), key)
    return TrainingState(model, optimizer, scheduler, generator, network, fresh=fresh)


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    version, numpy_keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    assert not isinstance(numpy_keys, str)  # the legacy tuple: ("MT19937", keys, ...)
    states = {
        "python": random.getstate(),
        "numpy": {
            "version": version,
            "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        # The training device's kind, and on CUDA that device's own stream only: a worker pinned
        # to one GPU sees one device whatever the host has, and get_rng_state_all() would break
        # (or restore another GPU's stream) when the count or the index changes.
        "device_type": generator.device.type,
    }
    if generator.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(generator.device)
    return states


def checkpoint_device(payload: dict[str, Any]) -> str | None:
    """The kind of device a checkpoint was trained on (None: saved before it was recorded)."""
    rng = payload.get("rng")
    return rng.get("device_type") if isinstance(rng, dict) else None


def _set_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state(
        (n["version"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(states["torch"])
    generator.set_state(states["generator"])
    if generator.device.type == "cuda" and isinstance(states.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(states["cuda"], generator.device)


def snapshot(state: TrainingState) -> dict[str, Any]:
    """The state as tensors and plain values (loadable with ``weights_only=True``)."""
    return {
        "epoch": state.epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": None,  # no gradient scaling: bf16 autocast does not need it
        "rng": _rng_states(state.generator),
        "history": [asdict(record) for record in state.history],
        "best": state.best,
        "best_value": state.best_value,
    }


def restore(state: TrainingState, payload: dict[str, Any]) -> None:
    """Put every part of ``payload`` back: training continues exactly where it stopped."""
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    _set_rng_states(payload["rng"], state.generator)
    state.epoch = payload["epoch"]
    state.history = [EpochRecord(**record) for record in payload["history"]]
    state.best, state.best_value = payload.get("best"), payload.get("best_value")


def round_trip(payload: dict[str, Any]) -> dict[str, Any]:
    """Through bytes and back, as a save and a reload in a new process would do."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def restart(state: TrainingState, setup: TrialSetup, mode: str, seed: int, count: int) -> None:
    """Stop and resume ``state`` in place, keeping only what ``mode`` keeps.

    ``full`` keeps everything (a control: it must change nothing). The other modes reload the
    weights (with BatchNorm statistics) and start a fresh optimizer (momentum lost), a fresh
    scheduler (its epoch count restarts), or both, and fresh random streams, as a new process
    that does not restore them would. ``count`` numbers the restart, so each gets new streams.
    """
    saved = round_trip(snapshot(state))
    if mode == "full":
        restore(state, saved)
        return
    state.model.load_state_dict(saved["model"])
    if mode in ("weights_only", "weights_scheduler"):
        state.optimizer = setup.optimizer.build(params=state.model.parameters())
    state.scheduler = setup.scheduler.build(optimizer=state.optimizer, epochs=setup.settings["epochs"])
    if mode == "weights_scheduler":  # the schedule goes on, applied to the fresh optimizer
        state.scheduler.load_state_dict(saved["scheduler"])
        for group, lr in zip(state.optimizer.param_groups, state.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
    fresh = seed + 7919 * count
    seed_everything(fresh)
    state.generator.manual_seed(fresh)
