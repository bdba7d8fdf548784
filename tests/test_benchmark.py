"""The speed benchmark runs from a clean checkout and prints every figure the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_prints_every_figure_as_json() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "trainer_speed.py"), "--json", "--rounds", "1",
         "--batches", "2", "--overhead-preset", "smoke", "--full-epoch", "--epoch-images", "300"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    data = figures["data_path"]
    assert data["users_images_per_s_per_core"] > 0 and data["ablate_images_per_s_per_core"] > 0
    assert data["ratio"] == pytest.approx(data["ablate_images_per_s_per_core"]
                                          / data["users_images_per_s_per_core"])
    steps = {s["model"]: s for s in figures["training_steps"]}
    assert set(steps) == {"resnet18", "simple_cnn"} and steps["resnet18"]["width"] == 16
    for step in steps.values():
        assert step["ratio"] == pytest.approx(step["ablate_images_per_s"] / step["users_images_per_s"])
        assert step["precision"] in ("fp32", "bf16")
    assert figures["full_epoch"]["images"] == 300 and figures["full_epoch"]["seconds"] > 0
    overhead = figures["study_overhead"]
    assert overhead["preset"] == "smoke" and overhead["trials"] == 3
    assert 0 < overhead["training_seconds"] < overhead["wall_seconds"]
    assert 0 < overhead["overhead_share"] < 1
