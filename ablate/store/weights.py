"""Kept weights: a finished trial's model as safetensors, with a JSON sidecar that holds
everything needed to rebuild it without the study file.

    results/STUDY/weights/trial-00007-final.safetensors   the weights (safetensors: no pickle)
    results/STUDY/weights/trial-00007-final.json          model name and parameters, class
                                                          names, image size, normalisation,
                                                          the trial's metrics and provenance
    results/STUDY/weights/samples.safetensors             a few test images, for the report's
                                                          feature-map figure

Both files are written atomically, the weights first: a sidecar means its weights are whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ablate.base.atomic import write_file_atomic, write_text_atomic
from ablate.errors import AblateError

__all__ = [
    "FORMAT",
    "KEEP",
    "SAMPLES",
    "Kept",
    "WeightsError",
    "in_study",
    "kept",
    "read",
    "rebuild",
    "save",
    "save_samples",
    "sidecar_path",
    "weights_path",
]

FORMAT = 1
KEEP = ("final", "best", "both", "none")
SAMPLES = 8  # test images kept for the feature-map figure


class WeightsError(AblateError):
    """Kept weights cannot be found or used (the message names the file and says why)."""


def weights_path(folder: Path, trial: int, which: str) -> Path:
    return folder / f"trial-{trial:05d}-{which}.safetensors"


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def kept(keep: str) -> tuple[str, ...]:
    """Which weights a ``keep_weights`` setting keeps: ``final``, ``best``, both or none."""
    return {"final": ("final",), "best": ("best",), "both": ("final", "best"), "none": ()}[keep]


def save(
    folder: Path, trial: int, which: str, state: Mapping[str, torch.Tensor], sidecar: Mapping[str, Any]
) -> Path:
    """Write one trial's weights and sidecar; returns the weights' path."""
    from safetensors.torch import save as to_bytes

    # safetensors wants contiguous tensors that share no memory: copies on the CPU.
    tensors = {name: value.detach().to("cpu").contiguous().clone() for name, value in state.items()}
    path = weights_path(folder, trial, which)
    write_file_atomic(path, lambda handle: handle.write(to_bytes(tensors, {"format": str(FORMAT)})))
    write_text_atomic(sidecar_path(path), json.dumps({"format": FORMAT, **sidecar}, indent=2, default=str))
    return path


def save_samples(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Keep the first few test images (uint8) once per study, for the feature-map figure."""
    from safetensors.torch import save as to_bytes

    path = folder / "samples.safetensors"
    if path.exists():
        return
    tensors = {
        "images": images[:SAMPLES].to("cpu").contiguous().clone(),
        "labels": labels[:SAMPLES].to("cpu").contiguous().clone(),
    }
    write_file_atomic(path, lambda handle: handle.write(to_bytes(tensors)))


@dataclass(frozen=True)
class Kept:
    """Weights on disk and their sidecar."""

    path: Path
    sidecar: dict[str, Any]

    def state(self) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsError(f"{self.path} is not readable safetensors ({error})") from None

    @property
    def classes(self) -> list[str]:
        return list(self.sidecar["classes"])


def read(path: Path) -> Kept:
    """The weights at ``path`` (a ``.safetensors`` file with its ``.json`` sidecar beside it)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: expected a .safetensors weights file or a study folder")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    side = sidecar_path(path)
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(
            f"{path} has no sidecar {side.name} beside it: ablate cannot tell which "
            "model the weights belong to"
        ) from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"{side} is damaged ({error})") from None
    if not isinstance(sidecar, dict) or "model" not in sidecar or "classes" not in sidecar:
        raise WeightsError(f"{side} is not an ablate weights sidecar")
    return Kept(path, sidecar)


def in_study(study_dir: Path, which: str = "final") -> list[Kept]:
    """Every trial's kept weights of kind ``which`` in a study folder."""
    folder = study_dir / "weights"
    return [
        read(path)
        for path in sorted(folder.glob(f"trial-*-{which}.safetensors"))
        if sidecar_path(path).is_file()
    ]


def rebuild(kept_weights: Kept, registry: Any) -> torch.nn.Module:
    """The model the sidecar describes, built from its registered component, with the weights
    loaded; in eval mode. The sidecar's shapes are checked against the weights file on the
    ``meta`` device first (no memory): a crafted ``"width": 1000000`` asked for 36 TB."""
    model_info = kept_weights.sidecar["model"]
    try:
        component = registry.get("model", model_info["name"])
    except Exception as error:
        raise WeightsError(f"{kept_weights.path}: {error}") from None
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in model_info["params"].items()}
    if isinstance(values.get("pretrained"), bool):
        values["pretrained"] = False  # the kept weights replace ImageNet's: never fetch them
    size = kept_weights.sidecar.get("image_size") or [32, 32]
    channels = len(kept_weights.sidecar.get("mean") or [0, 0, 0])
    context = {"num_classes": len(kept_weights.classes), "image_shape": (channels, *map(int, size))}
    _check_shapes(kept_weights, component, context, values)
    model: torch.nn.Module = component.build(context, values)
    missing, unexpected = model.load_state_dict(kept_weights.state(), strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{kept_weights.path} does not fit model {model_info['name']!r}: missing "
            f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]}"
        )
    model.eval()
    return model


def _check_shapes(
    kept_weights: Kept, component: Any, context: dict[str, Any], values: dict[str, Any]
) -> None:
    """Build the model the sidecar describes on the ``meta`` device and compare every tensor's
    shape with the weights file's header; a model that cannot be built there is not checked."""
    from safetensors import SafetensorError, safe_open

    try:
        with torch.device("meta"):
            planned = {k: tuple(v.shape) for k, v in component.build(context, values).state_dict().items()}
    except Exception:
        return
    try:
        with safe_open(str(kept_weights.path), framework="pt") as handle:
            stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{kept_weights.path} is not readable safetensors ({error})") from None
    wrong = sorted(k for k in planned.keys() & stored.keys() if planned[k] != stored[k])
    if wrong or planned.keys() != stored.keys():
        detail = (
            f"{wrong[0]} is {stored[wrong[0]]} in the file, {planned[wrong[0]]} in the model"
            if wrong
            else f"tensors {sorted(planned.keys() ^ stored.keys())[:3]} are in one and not the other"
        )
        raise WeightsError(
            f"{sidecar_path(kept_weights.path)} does not describe the weights beside it "
            f"({detail}): the sidecar was changed or belongs to other weights"
        )
