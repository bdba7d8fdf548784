"""Run in a fresh process by tests/train/test_resume.py: train the tiny trial with checkpoints.

    python -m tests.train.resume_helper CHECKPOINT_DIR STOP_AFTER_EPOCH OUT_FILE

Exits 3 when stopped after STOP_AFTER_EPOCH (0: never stop); otherwise saves the final weights
and the per-epoch metrics to OUT_FILE.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import torch

from ablate.components.discovery import load_plugins
from ablate.components.setup import resolve
from ablate.train.checkpoints import CheckpointStore
from ablate.train.placement import to_device
from ablate.train.trainer import fit
from tests.conftest import TinyPlugin, tiny_data

PARAMS = {
    "dataset": "tiny",
    "model": "resnet18",
    "width": 2,
    "dropout": 0.3,
    "augment": "crop_flip+color_jitter",
    "lr": 0.05,
    "momentum": 0.9,
    "scheduler": "multistep",
    "milestones": (3,),
    "epochs": 4,
    "batch_size": 16,
    "eval_batch_size": 16,
    "train_eval_size": 16,
}


def main(folder: str, stop_after: int, out: str) -> int:
    registry = load_plugins(extra={"tests:tiny": TinyPlugin()}).registry
    setup = resolve(PARAMS, registry)
    data = to_device(tiny_data(), torch.device("cpu"), 16)

    def stop(record):  # type: ignore[no-untyped-def]
        if record.epoch == stop_after:
            raise KeyboardInterrupt

    try:
        result = fit(
            setup, data, 3, 7, torch.device("cpu"), stop, CheckpointStore(Path(folder)), {"trial": 0}
        )
    except KeyboardInterrupt:
        return 3
    epochs = [{k: v for k, v in asdict(e).items() if k != "seconds"} for e in result.epochs]
    torch.save(
        {"weights": result.model.state_dict(), "epochs": epochs, "resumed_from": result.resumed_from}, out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
