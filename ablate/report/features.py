"""The feature-map figure of the tutorial write-up, from kept weights: the first convolution's
filters, and what the first two convolutions make of a few test images, for the best cell."""

from __future__ import annotations

from typing import Any

import numpy as np

from ablate.analysis.findings import Cell, Report
from ablate.analysis.load import StudyResults

IMAGES = 3  # test images shown
MAPS = 6  # feature maps shown per layer and image
FILTERS = 16  # first-layer filters shown


def _kept_weights(results: StudyResults, cell: Cell) -> Any | None:
    from ablate.store import weights

    for trial in cell.trials:
        path = weights.weights_path(results.folder / "weights", trial["trial"], "final")
        if path.is_file() and weights.sidecar_path(path).is_file():
            return weights.read(path)
    return None


def _as_picture(array: np.ndarray) -> np.ndarray:
    """Any (C, H, W) or (H, W) array scaled to [0, 1] for display."""
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return scaled.transpose(1, 2, 0) if scaled.ndim == 3 else scaled


def feature_maps(report: Report, results: StudyResults, best: Cell, registry: Any) -> Any | None:
    """The figure for ``best``'s first trial with kept final weights; None without weights,
    samples, or a model the ``registry`` of installed components can build."""
    import matplotlib.pyplot as plt
    import torch

    from ablate.store import weights

    kept = _kept_weights(results, best)
    samples_file = results.folder / "weights" / "samples.safetensors"
    if kept is None or not samples_file.is_file():
        return None
    try:
        from safetensors.torch import load_file

        model = weights.rebuild(kept, registry)
        samples = load_file(str(samples_file))
    except (weights.WeightsError, OSError, ValueError):
        return None
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][:2]
    if not convolutions:
        return None
    captured: list[torch.Tensor] = []
    hooks = [
        c.register_forward_hook(lambda _m, _i, output: captured.append(output.detach())) for c in convolutions
    ]
    images = samples["images"][:IMAGES]
    mean = torch.tensor(kept.sidecar["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(kept.sidecar["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        model(((images.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    filters = convolutions[0].weight.detach().float().numpy()[:FILTERS]
    shown = [min(MAPS, output.shape[1]) for output in captured]  # maps per layer
    starts = [1 + sum(shown[:layer]) for layer in range(len(shown))]
    columns = max(len(filters), 1 + sum(shown))
    figure, axes = plt.subplots(
        1 + len(images), columns, figsize=(columns * 0.9, 1.1 * (1 + len(images))), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for index, kernel in enumerate(filters):
        axes[0, index].imshow(
            _as_picture(kernel) if kernel.shape[0] == 3 else _as_picture(kernel[0]),
            cmap=None if kernel.shape[0] == 3 else "gray",
        )
    axes[0, 0].set_title("first-layer filters", fontsize=7, loc="left")
    classes = kept.classes
    for row, image in enumerate(images, start=1):
        axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
        label = int(samples["labels"][row - 1])
        axes[row, 0].set_title(classes[label] if label < len(classes) else "", fontsize=7)
        for layer, output in enumerate(captured):
            for channel in range(shown[layer]):
                axis = axes[row, starts[layer] + channel]
                axis.imshow(_as_picture(output[row - 1, channel].float().numpy()), cmap="viridis")
                if row == 1 and channel == 0:
                    axis.set_title(f"conv {layer + 1} maps", fontsize=7, loc="left")
    provenance = kept.sidecar.get("provenance", {})
    figure.suptitle(
        f"feature maps of {best.name} (trial {provenance.get('trial')}, seed {provenance.get('seed')})",
        fontsize=9,
    )
    return figure
