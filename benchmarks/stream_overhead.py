"""What streaming the images costs: one training epoch with ``data_placement=device`` against
``stream``, in the same run, on the same images, model and seed.

    python benchmarks/stream_overhead.py [--json] [--rounds 3] [--images 3000] [--device cpu]

On a CPU, ``stream`` gathers each batch from the memory-mapped decode cache instead of from one
array in memory; on CUDA it also copies each batch from pinned host memory. The two placements
take turns, and the median of ``--rounds`` epochs each is reported with their ratio. Both train
on the same batches (the metrics must match, which the benchmark checks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def epoch_seconds(placement: str, images: int, device_name: str) -> tuple[float, float]:
    """Seconds of one epoch of the ``cpu`` preset of ``dropout_gap`` (ResNet-18 width 8,
    crop + flip), and the training loss it ends with."""
    import torch

    from ablate.components.discovery import load_plugins
    from ablate.components.setup import resolve
    from ablate.train.backends import configure
    from ablate.train.epoch import train_epoch
    from ablate.train.placement import trial_data
    from ablate.train.state import build_state
    from ablate_plugins import datasets

    device = torch.device(device_name)
    registry = load_plugins().registry
    setup = resolve(
        {
            "model": "resnet18",
            "width": 8,
            "augment": "crop_flip",
            "epochs": 1,
            "train_size": images,
            "train_eval_size": 100,
            "precision": "fp32",
            "data_placement": placement,
        },
        registry,
    )
    data = trial_data(datasets.cifar10_mini(data_dir=None), setup.settings, device)
    state = build_state(setup, 10, 0, device)
    # As fit() does: deterministic kernels (the study's default), or a GPU's run-to-run noise
    # would differ between the placements and the same-loss check would mean nothing.
    configure(setup.settings, "fp32", device)
    augmentations = [chosen.build() for chosen in setup.augmentations]
    started = time.perf_counter()
    loss, _ = train_epoch(state, data, augmentations, 128, "fp32")
    return time.perf_counter() - started, loss


def measure(rounds: int, images: int, device: str) -> dict[str, Any]:
    times: dict[str, list[float]] = {"device": [], "stream": []}
    losses: dict[str, float] = {}
    epoch_seconds("device", 256, device)  # warm up kernels and the decode cache
    for _ in range(rounds):
        for placement in times:
            seconds, loss = epoch_seconds(placement, images, device)
            times[placement].append(seconds)
            losses[placement] = loss
    medians = {p: statistics.median(t) for p, t in times.items()}
    return {
        "device": device,
        "images": images,
        "rounds": rounds,
        "seconds_per_epoch": medians,
        "stream_over_device": medians["stream"] / medians["device"],
        "same_loss": losses["device"] == losses["stream"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    figures = measure(args.rounds, args.images, args.device)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        s = figures["seconds_per_epoch"]
        print(
            f"one epoch of {figures['images']} images on {figures['device']}: device "
            f"{s['device']:.2f} s, stream {s['stream']:.2f} s, ratio "
            f"{figures['stream_over_device']:.3f}; same loss: {figures['same_loss']}"
        )
    return 0 if figures["same_loss"] else 1


if __name__ == "__main__":
    sys.exit(main())
