from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ablate.components.discovery import Plugins
from ablate.components.setup import resolve
from ablate.data import stratified_holdout
from ablate.store.tables import final_metrics
from ablate.train import epoch
from ablate.train.placement import to_device, trial_data
from ablate.train.trainer import fit
from tests.conftest import tiny_data

CPU = torch.device("cpu")


def train(plugins: Plugins, seed: int = 0, **params: object):  # type: ignore[no-untyped-def]
    setup = resolve(
        {
            "dataset": "tiny",
            "model": "tiny_mlp",
            "epochs": 4,
            "batch_size": 16,
            "eval_batch_size": 10,
            "lr": 0.05,
            **params,
        },
        plugins.registry,
    )
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
    result, _ = train(plugins, epochs=5, scheduler="piecewise", lr_factors=(1.0, 0.1, 0.5), lr_period=2)
    assert [e.lr for e in result.epochs] == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.025])


def plateau_rates(accuracies: list[float], lr: float = 0.05) -> list[float]:
    """The rates a reference ReduceLROnPlateau (factor 0.5, patience 0) fed ``accuracies`` sets,
    each in force during its epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    reference = ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    rates = []
    for accuracy in accuracies:
        rates.append(optimizer.param_groups[0]["lr"])
        reference.step(accuracy)
    return rates


def test_plateau_schedule_watches_the_test_accuracy(plugins: Plugins) -> None:
    result, _ = train(plugins, epochs=8, scheduler="plateau", factor=0.5, patience=0)
    # The same scheduler fed the recorded test accuracies must give the recorded rates.
    recorded = [e.lr for e in result.epochs]
    assert recorded == pytest.approx(plateau_rates([e.test_acc for e in result.epochs]))
    assert recorded[0] == 0.05 and recorded[-1] < 0.05  # it did reduce the rate


def test_with_a_validation_split_plateau_and_the_best_epoch_follow_validation_accuracy(
    plugins: Plugins,
) -> None:
    setup = resolve(
        {
            "dataset": "tiny",
            "model": "tiny_mlp",
            "epochs": 8,
            "batch_size": 16,
            "eval_batch_size": 10,
            "lr": 0.05,
            "scheduler": "plateau",
            "factor": 0.5,
            "patience": 0,
            "val_size": 40,
            "precision": "fp32",
        },
        plugins.registry,
    )
    # Overlapping classes, so the accuracies differ (fp32: the same numbers on every CPU).
    hard = tiny_data(train=200, test=60, classes=10, seed=3)
    data = trial_data(hard, setup.settings, CPU)
    result = fit(setup, data, 10, 0, CPU)
    assert all(e.val_acc is not None for e in result.epochs)
    expected = plateau_rates([e.val_acc for e in result.epochs])  # fed validation accuracy
    assert [e.lr for e in result.epochs] == pytest.approx(expected)
    assert len(set(expected)) > 1  # it did reduce the rate
    # Fed the test accuracy instead, it would have set other rates: the check tells them apart.
    assert plateau_rates([e.test_acc for e in result.epochs]) != pytest.approx(expected)
    metrics = final_metrics(list(result.epochs))
    best = max(result.epochs, key=lambda e: e.val_acc)
    assert metrics["best_on"] == "val" and metrics["best_epoch"] == best.epoch


def test_the_validation_split_is_stratified_fixed_and_disjoint_from_training() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    held, kept = stratified_holdout(labels, 10)
    assert torch.bincount(labels[held]).tolist() == [5, 3, 2]  # each class in its share
    again, _ = stratified_holdout(labels, 10)
    assert torch.equal(held, again)  # the same split for every trial
    assert sorted(held.tolist() + kept.tolist()) == list(range(100))
    uneven, _ = stratified_holdout(labels, 7)  # 3.5, 2.1, 1.4: largest remainders settle it
    assert torch.bincount(uneven).numel() and torch.bincount(labels[uneven]).tolist() == [4, 2, 1]
    with pytest.raises(ValueError, match="needs more than 100 training images"):
        stratified_holdout(labels, 100)
    data = tiny_data()
    split = trial_data(
        data, {"classes": (), "val_size": 12, "train_size": 40, "test_size": 0, "train_eval_size": 8}, CPU
    )
    assert len(split.val_y) == 12 and len(split.train_y) == 40  # train_size counts the rest
    val_rows = {tuple(x.flatten().tolist()) for x in split.val_x}
    assert not val_rows & {tuple(x.flatten().tolist()) for x in split.train_x}


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


def test_each_test_images_correctness_is_recorded_in_test_set_order(plugins: Plugins) -> None:
    result, _ = train(plugins)
    correct = torch.tensor(result.test_correct)
    assert correct.shape == (32,) and correct.float().mean().item() == pytest.approx(result.final.test_acc)
    # Per class, the images of that class that count as correct are the confusion's diagonal.
    labels = tiny_data().test_labels
    for index, row in enumerate(result.confusion):
        assert correct[labels == index].sum().item() == row[index]


def test_train_eval_subset_is_fixed_and_sized() -> None:
    first = to_device(tiny_data(), CPU, 10)
    second = to_device(tiny_data(), CPU, 10)
    assert first.train_eval_x.shape[0] == 10 and torch.equal(first.train_eval_x, second.train_eval_x)
    assert to_device(tiny_data(), CPU, 10_000).train_eval_x.shape[0] == 64


def test_a_trailing_batch_of_one_is_dropped_for_batchnorm(plugins: Plugins) -> None:
    setup = resolve(
        {"dataset": "tiny", "model": "resnet18", "width": 2, "epochs": 1, "batch_size": 21, "train_size": 64},
        plugins.registry,
    )  # 64 = 3 * 21 + 1
    data = to_device(tiny_data().head(64, 0), CPU, 16)
    used: list[torch.Tensor] = []
    original = epoch.prepare_batch

    def watched(data, index, *rest):  # type: ignore[no-untyped-def]
        used.append(index.clone())
        return original(data, index, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(epoch, "prepare_batch", watched)
        result = fit(setup, data, 3, 0, CPU)
    assert len(result.epochs) == 1 and [len(i) for i in used] == [21, 21, 21]
    # Exactly the image the seeded order puts last is left out, each other one used once.
    dropped = int(torch.randperm(64, generator=torch.Generator().manual_seed(0))[-1])
    assert sorted(torch.cat(used).tolist()) == [i for i in range(64) if i != dropped]


def test_divergence_stops_training_and_is_reported_not_a_silent_nan(plugins: Plugins) -> None:
    result, seen = train(plugins, lr=1e12, momentum=0.0, epochs=5)
    assert result.diverged and list(result.epochs) == seen
    last = result.epochs[-1]
    assert not math.isfinite(last.train_loss) and len(result.epochs) < 5  # stopped at once
    assert last.test_acc is None and last.test_loss is None  # nothing evaluated on NaN weights
    assert result.class_acc == ()
