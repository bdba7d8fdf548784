"""Where a trial's model starts: weights kept by another study or a file, with a new head for
other classes, and a frozen backbone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ablate.store.weights import WeightsError, in_study, read


@dataclass(frozen=True)
class StartingPoint:
    """Weights a trial starts from: the tensors, and whether its head must start afresh (the
    source was trained on other classes, so its classifier means something else)."""

    state: Mapping[str, torch.Tensor]
    new_head: bool


def load_into(model: torch.nn.Module, start: StartingPoint) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``start`` whose name and shape match into ``model`` (the head
    excepted when it must start afresh); returns the names it loaded and the model's tensors
    left as initialised (a head for other classes, layers the source lacks)."""
    own = model.state_dict()
    head = head_prefix(model) if start.new_head else None
    loaded = [
        name
        for name, value in start.state.items()
        if name in own and own[name].shape == value.shape and not (head and name.startswith(head))
    ]
    source = start.state
    model.load_state_dict({name: source[name] for name in loaded}, strict=False)
    fresh = [name for name in own if name not in loaded]
    return loaded, fresh


def head_prefix(model: torch.nn.Module) -> str:
    """The name of the model's last linear layer: the head that ``freeze=backbone`` trains."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        raise WeightsError("freeze=backbone needs a model whose head is a torch.nn.Linear layer")
    return f"{last}."


def freeze_backbone(model: torch.nn.Module) -> list[str]:
    """Train the head alone: every other parameter stops taking gradients. Returns the
    parameters left trainable."""
    head = head_prefix(model)
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(head))
        if parameter.requires_grad:
            trainable.append(name)
    return trainable


def starting_weights(
    init: str, model: str, seed: int, results_dir: Path, classes: Sequence[str]
) -> StartingPoint | None:
    """The weights ``init`` names for a trial of ``model`` with ``seed`` on ``classes``: None
    for ``scratch`` and ``imagenet`` (the model's own ``pretrained`` parameter fetches those); a
    ``.safetensors`` file; or ``STUDY`` / ``STUDY/CELL``: that study's kept final weights of the
    trial with the same seed, so a fine-tuning trial pairs with its own pretraining run."""
    from ablate.errors import SetupError

    if init in ("scratch", "imagenet"):
        return None
    try:
        if init.endswith(".safetensors"):
            chosen = read(Path(init))
        else:
            study, _, cell = init.partition("/")
            folder = results_dir / study
            if not (folder / "weights").is_dir():
                raise WeightsError(
                    f"init {init!r}: {folder} has no kept weights; run that study "
                    "first (its `requires=` does it for you) with keep_weights "
                    "'final' or 'both'"
                )
            found = [
                k
                for k in in_study(folder, "final")
                if k.sidecar["provenance"]["seed"] == seed and cell in ("", k.sidecar["provenance"]["cell"])
            ]
            cells = sorted({k.sidecar["provenance"]["cell"] for k in found})
            if not found:
                raise WeightsError(
                    f"init {init!r}: {folder} has no kept final weights of seed "
                    f"{seed}{f' in cell {cell!r}' if cell else ''}; run that study "
                    "with this seed first"
                )
            if len(cells) > 1:
                raise WeightsError(
                    f"init {init!r}: {folder} has weights of seed {seed} in "
                    f"{len(cells)} cells; write {study}/CELL with one of: "
                    f"{', '.join(cells)}"
                )
            chosen = found[0]
        if chosen.sidecar["model"]["name"] != model:
            raise WeightsError(
                f"init {init!r}: {chosen.path} holds weights of model "
                f"{chosen.sidecar['model']['name']!r}, this trial builds {model!r}"
            )
        return StartingPoint(chosen.state(), list(chosen.classes) != list(classes))
    except WeightsError as error:
        raise SetupError(str(error)) from None
