"""Where a trial's images live: the budget K workers on one device share, and the fall-back to
streaming when the copy to the device runs out of memory."""

from __future__ import annotations

import pytest
import torch

from ablate.train import placement
from ablate.train.placement import SHARING_ENV, choose_placement, trial_data
from tests.conftest import tiny_data

CPU = torch.device("cpu")
SETTINGS = {
    "classes": (),
    "val_size": 0,
    "train_size": 0,
    "test_size": 0,
    "train_eval_size": 16,
    "data_placement": "auto",
    "data_budget_mb": 0,
}


def test_workers_sharing_a_device_each_budget_their_share_of_its_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """K workers on one GPU once each budgeted half of the same free memory."""
    monkeypatch.setattr(placement, "free_memory", lambda device: 400 * 2**20)  # 400 MB free
    alone = choose_placement("auto", 150 * 2**20, CPU, 0)
    monkeypatch.setenv(SHARING_ENV, "4")
    shared = choose_placement("auto", 150 * 2**20, CPU, 0)
    assert alone[0] == "device" and "200.0 MB budget" in alone[1]
    assert shared[0] == "stream" and "50.0 MB budget" in shared[1]


def test_a_copy_to_the_device_that_runs_out_of_memory_streams_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = placement.to_device

    def no_room(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("placement", args[5] if len(args) > 5 else "device") == "device":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 15.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "to_device", no_room)
    said: list[str] = []
    data = trial_data(tiny_data(), SETTINGS, CPU, said.append)
    assert data.placement == "stream"
    assert said[-1] == "data placement: stream (the copy to the device ran out of memory)"
    streamed = real(tiny_data(), CPU, 16, None, None, "stream")
    assert torch.equal(data.train_y, streamed.train_y)


def test_a_training_subset_drawn_per_seed_depends_on_the_seed_alone() -> None:
    """train_subset="per_seed" lets the seed draw which images a trial trains on (so intervals
    over seeds cover that draw too); the default keeps the first N for every seed."""
    data = tiny_data()
    first = trial_data(data, {**SETTINGS, "train_size": 10, "data_placement": "device"}, CPU, seed=3)
    assert torch.equal(first.train_x, data.train_images[:10])
    drawn = {**SETTINGS, "train_size": 10, "train_subset": "per_seed", "data_placement": "device"}
    one, again, other = (trial_data(data, drawn, CPU, seed=s) for s in (1, 1, 2))
    assert len(one.train_y) == 10 and torch.equal(one.train_x, again.train_x)
    assert not torch.equal(one.train_x, other.train_x) and not torch.equal(one.train_x, first.train_x)
    # The drawn images are the dataset's own, in its order.
    rows = [
        next(i for i in range(len(data.train_images)) if torch.equal(data.train_images[i], x))
        for x in one.train_x
    ]
    assert rows == sorted(rows)
