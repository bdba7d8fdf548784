from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ablate.config import resolve
from ablate.discovery import Plugins
from ablate.trainer import fit, to_device

from .conftest import tiny_data

CPU = torch.device("cpu")


def train(plugins: Plugins, seed: int = 0, **params: object):  # type: ignore[no-untyped-def]
    setup = resolve({"dataset": "tiny", "model": "tiny_mlp", "epochs": 4, "batch_size": 16,
                     "eval_batch_size": 10, "lr": 0.05, **params}, plugins.registry)
    data = to_device(tiny_data(), CPU, setup.settings["train_eval_size"])
    seen = []
    result = fit(setup, data, 3, seed, CPU, seen.append)
    return result, seen


def test_every_epoch_is_measured_and_reported(plugins: Plugins) -> None:
    result, seen = train(plugins, scheduler="multistep", milestones=(2, 3), gamma=0.5)
    assert [e.epoch for e in result.epochs] == [1, 2, 3, 4] and list(result.epochs) == seen
    assert [e.lr for e in result.epochs] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    for record in result.epochs:
        for value in (record.train_acc, record.train_eval_acc, record.test_acc):
            assert 0.0 <= value <= 1.0
        assert math.isfinite(record.train_loss) and record.seconds > 0
    assert result.final.test_acc > 0.6  # the toy classes are easy to separate


def test_piecewise_schedule_holds_each_factor_for_its_block(plugins: Plugins) -> None:
    result, _ = train(plugins, epochs=5, scheduler="piecewise", lr_factors=(1.0, 0.1, 0.5),
                      lr_period=2)
    assert [e.lr for e in result.epochs] == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.025])


def test_plateau_schedule_watches_the_test_accuracy(plugins: Plugins) -> None:
    result, _ = train(plugins, epochs=8, scheduler="plateau", factor=0.5, patience=0)
    # The same scheduler fed the recorded test accuracies must give the recorded rates.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    reference = ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    expected = []
    for record in result.epochs:
        expected.append(optimizer.param_groups[0]["lr"])
        reference.step(record.test_acc)
    recorded = [e.lr for e in result.epochs]
    assert recorded == pytest.approx(expected)
    assert recorded[0] == 0.05 and recorded[-1] < 0.05  # it did reduce the rate


def test_same_seed_same_run_and_other_seed_another(plugins: Plugins) -> None:
    first, _ = train(plugins, seed=5, augment="crop_flip")
    second, _ = train(plugins, seed=5, augment="crop_flip")
    other, _ = train(plugins, seed=6, augment="crop_flip")
    assert first.epochs[-1].train_loss == second.epochs[-1].train_loss
    assert [e.test_loss for e in first.epochs] == [e.test_loss for e in second.epochs]
    assert first.epochs[-1].train_loss != other.epochs[-1].train_loss


def test_confusion_matrix_and_per_class_accuracy_agree(plugins: Plugins) -> None:
    result, _ = train(plugins)
    confusion = torch.tensor(result.confusion)
    assert confusion.sum() == 32 and confusion.shape == (3, 3)
    per_class = (confusion.diag().float() / confusion.sum(1)).tolist()
    assert result.class_acc == pytest.approx(per_class)
    assert confusion.diag().sum().item() / 32 == pytest.approx(result.final.test_acc)


def test_train_eval_subset_is_fixed_and_sized() -> None:
    first = to_device(tiny_data(), CPU, 10)
    second = to_device(tiny_data(), CPU, 10)
    assert first.train_eval_x.shape[0] == 10 and torch.equal(first.train_eval_x, second.train_eval_x)
    assert to_device(tiny_data(), CPU, 10_000).train_eval_x.shape[0] == 64


def test_a_trailing_batch_of_one_is_dropped_for_batchnorm(plugins: Plugins) -> None:
    setup = resolve({"dataset": "tiny", "model": "resnet18", "width": 2, "epochs": 1,
                     "batch_size": 21, "train_size": 64}, plugins.registry)  # 64 = 3 * 21 + 1
    data = to_device(tiny_data().head(64, 0), CPU, 16)
    result = fit(setup, data, 3, 0, CPU)
    assert len(result.epochs) == 1


def test_divergence_stops_training_and_is_reported_not_a_silent_nan(plugins: Plugins) -> None:
    result, seen = train(plugins, lr=1e12, momentum=0.0, epochs=5)
    assert result.diverged and list(result.epochs) == seen
    last = result.epochs[-1]
    assert not math.isfinite(last.train_loss) and len(result.epochs) < 5  # stopped at once
    assert last.test_acc is None and last.test_loss is None  # nothing evaluated on NaN weights
    assert result.class_acc == ()
