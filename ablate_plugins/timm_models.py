"""Any timm model by name (``model="timm", timm_name="resnet18d"``), an optional extra:
``pip install 'ablate[timm]'``.

The classifier is built for the dataset's classes and its input for the dataset's images: a
model whose input size is fixed (a ViT) is built for the images' size where timm can (else the
trial stops in one line saying which size it takes). Pretrained weights are read from a local
file offline: ``timm_weights=PATH``, else ``$ABLATE_WEIGHTS/timm/<timm_name>.safetensors``, else
timm's own download (Hugging Face), which needs internet.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ablate import hookimpl
from ablate.components import Registrar
from ablate.errors import SetupError
from ablate.params import param
from ablate_plugins.models import WEIGHTS_ENV, WeightsNotFound


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise SetupError("model 'timm' needs the timm package: pip install 'ablate[timm]'") from None
    return timm


def local_weights(timm_name: str, timm_weights: str) -> Path | None:
    """The weights file to read: ``timm_weights`` when given, else the one under
    ``$ABLATE_WEIGHTS/timm/`` named after the model, when it is there."""
    if timm_weights:
        return Path(timm_weights).expanduser()
    folder = os.environ.get(WEIGHTS_ENV)
    if folder:
        found = Path(folder) / "timm" / f"{timm_name}.safetensors"
        if found.is_file():
            return found
    return None


def timm_model(
    *,
    num_classes: int,
    image_shape: tuple[int, ...],
    timm_name: str = "resnet18",
    pretrained: bool = False,
    timm_weights: str = "",
    dropout: float = 0.0,
) -> nn.Module:
    """The timm model ``timm_name`` for ``num_classes`` classes and images of ``image_shape``."""
    timm = _timm()
    if not timm.list_models(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise SetupError(f"timm has no model {timm_name!r}{hint} (timm.list_models() lists them)")
    channels, size = image_shape[0], tuple(image_shape[1:])
    options: dict[str, Any] = {"num_classes": num_classes, "drop_rate": dropout, "in_chans": channels}
    default: nn.Module = timm.create_model(timm_name, pretrained=False, **options)
    config: dict[str, Any] = dict(getattr(default, "pretrained_cfg", {}))  # timm's model card
    if config.get("fixed_input_size") and tuple(config["input_size"][1:]) != size:
        try:  # ViT-like models take their input size as an argument
            default = timm.create_model(timm_name, pretrained=False, img_size=size, **options)
        except TypeError:
            raise SetupError(
                f"timm model {timm_name!r} takes {config['input_size'][1]}x{config['input_size'][2]} "
                f"images only and the dataset's are {size[0]}x{size[1]}: choose another model, or "
                "resize the images (imagefolder's size parameter)"
            ) from None
        options["img_size"] = size
    if not pretrained:
        return default
    path = local_weights(timm_name, timm_weights)
    if path is not None and not path.is_file():
        raise WeightsNotFound(f"timm_weights: no file {path}")
    overlay = {"file": str(path)} if path is not None else None
    try:  # timm keeps the matching tensors and builds the classifier afresh for the classes
        built: nn.Module = timm.create_model(
            timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **options
        )
    except Exception as error:  # offline: timm raises whatever its download raised
        where = f"${WEIGHTS_ENV}/timm/{timm_name}.safetensors"
        raise WeightsNotFound(
            f"pretrained weights of timm model {timm_name!r} could not be read or downloaded "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Offline, "
            f"put them in {where} ({WEIGHTS_ENV}=PATH names the folder) or pass timm_weights=FILE"
        ) from error
    return built


@hookimpl
def register_models(register: Registrar) -> None:
    register(
        "timm",
        timm_model,
        "any timm model by name (pip install 'ablate[timm]'): its classifier built for the "
        "dataset's classes, its input for the dataset's image size",
        params={
            "timm_name": "the timm model's name, as timm.list_models() gives it",
            "pretrained": "start from the model's pretrained weights (timm_weights, "
            f"${WEIGHTS_ENV}/timm/NAME.safetensors or timm's download)",
            "timm_weights": "a local weights file for pretrained=True (empty: look as above)",
            "dropout": param("dropout probability before the classifier (timm's drop_rate)", ge=0, lt=1),
        },
    )
