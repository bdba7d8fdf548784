"""``ablate lr-range``: the schedule of rates, the smoothing, the suggestion, the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ablate.components.discovery import Plugins
from ablate.components.setup import resolve
from ablate.train.placement import to_device
from ablate_plugins.lr_range import range_test, steepest_descent
from tests.conftest import tiny_data


def test_steepest_descent_finds_the_middle_of_a_drop() -> None:
    lrs = list(np.logspace(-7, 0, 200))
    # a loss that falls from 2.3 to 0.3 around lr = 1e-3, like a real curve before divergence
    smoothed = [2.3 - 2.0 / (1 + np.exp(-(np.log10(lr) + 3) * 3)) for lr in lrs]
    assert steepest_descent(lrs, smoothed) == pytest.approx(1e-3, rel=0.1)
    assert steepest_descent(lrs[:2], smoothed[:2]) is None


def test_rates_grow_exponentially_the_loss_is_smoothed_and_divergence_stops_the_test(
    plugins: Plugins,
) -> None:
    setup = resolve(
        {"dataset": "tiny", "model": "tiny_mlp", "optimizer": "sgd", "lr": 0.1, "batch_size": 16},
        plugins.registry,
    )
    device = torch.device("cpu")
    data = to_device(tiny_data(train=64), device, 32)
    test = range_test(setup, data, 3, device, start=1e-4, end=1e4, steps=80)
    assert 10 < len(test.lrs) < 80  # SGD at rates up to 1e4 diverges before the end
    assert test.lrs[0] == pytest.approx(1e-4)
    ratios = np.array(test.lrs[1:]) / np.array(test.lrs[:-1])
    assert np.allclose(ratios, (1e8) ** (1 / 79))
    # Smoothing, by its properties rather than its formula: bias-corrected, so the first value
    # is the first loss (a plain moving average would start at 2 % of it); an average, so
    # within the range of the losses so far; and smoother than the raw losses.
    assert test.smoothed[0] == pytest.approx(test.losses[0])
    finite = [i for i, value in enumerate(test.smoothed) if np.isfinite(value)]
    for i in finite:
        assert min(test.losses[: i + 1]) - 1e-6 <= test.smoothed[i] <= max(test.losses[: i + 1]) + 1e-6
    raw, smooth = np.array(test.losses)[finite], np.array(test.smoothed)[finite]
    assert np.abs(np.diff(smooth)).sum() < np.abs(np.diff(raw)).sum()
    assert test.smoothed[-1] > 4 * min(test.smoothed[:-1]) or not np.isfinite(test.smoothed[-1])
    assert test.suggested == steepest_descent(test.lrs, test.smoothed)
    assert test.lrs[0] <= test.suggested <= test.lrs[-1]


STUDY = """
from ablate import Study

study = Study(name="lr_probe", question="which rate?",
              baseline=dict(dataset="cifar10-mini", model="simple_cnn", optimizer="sgd",
                            batch_size=32, train_size=256, test_size=64, train_eval_size=64))
"""


@pytest.mark.slow
def test_command_writes_the_curve_and_a_plot(tmp_path: Path) -> None:
    study = tmp_path / "probe.py"
    study.write_text(STUDY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ablate",
            "lr-range",
            str(study),
            "--steps",
            "40",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "steepest descent of the smoothed loss at lr" in done.stdout
    folder = tmp_path / "results" / "lr_probe"
    table = pq.read_table(folder / "lr_range.parquet").to_pydict()
    assert table["step"][0] == 0 and len(table["lr"]) <= 40
    assert table["lr"] == sorted(table["lr"])
    assert (folder / "lr_range.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_command_rejects_a_backwards_range(tmp_path: Path) -> None:
    study = tmp_path / "probe.py"
    study.write_text(STUDY)
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "lr-range", str(study), "--start", "1", "--end", "0.1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "need 0 < --start < --end" in done.stderr
