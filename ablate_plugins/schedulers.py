"""Learning-rate schedulers, stepped once per epoch: constant, multistep, piecewise, cosine, plateau."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
)

from ablate import hookimpl
from ablate.components import Registrar
from ablate.params import param


class PiecewiseLR(LRScheduler):
    """The initial rate times ``factors[k]`` during the k-th period of ``period`` epochs.

    What the users' segmented runs do by hand: a new learning rate at each segment, held for
    the segment; the last factor holds to the end.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factors: tuple[float, ...], period: int) -> None:
        self.factors, self.period = tuple(float(f) for f in factors), int(period)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        segment = min(self.last_epoch // self.period, len(self.factors) - 1)
        return [float(base) * self.factors[segment] for base in self.base_lrs]


def none(*, optimizer: torch.optim.Optimizer, epochs: int) -> LRScheduler:
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def multistep(
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    milestones: tuple[int, ...] = (30, 60, 90),
    gamma: float = 0.1,
) -> LRScheduler:
    if any(m != int(m) or m < 1 for m in milestones):
        raise ValueError(f"milestones must be positive epoch numbers, got {milestones}")
    return MultiStepLR(optimizer, milestones=[int(m) for m in milestones], gamma=gamma)


def piecewise(
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    lr_factors: tuple[float, ...] = (1.0, 0.1, 0.01),
    lr_period: int = 10,
) -> LRScheduler:
    if not lr_factors or any(f <= 0 for f in lr_factors):
        raise ValueError(f"lr_factors must be a non-empty list of positive numbers, got {lr_factors}")
    if lr_period != int(lr_period) or lr_period < 1:
        raise ValueError(f"lr_period must be a positive number of epochs, got {lr_period}")
    return PiecewiseLR(optimizer, lr_factors, lr_period)


def cosine(*, optimizer: torch.optim.Optimizer, epochs: int, eta_min: float = 0.0) -> LRScheduler:
    return CosineAnnealingLR(optimizer, T_max=epochs, eta_min=eta_min)


def plateau(
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    factor: float = 0.5,
    patience: int = 10,
    threshold: float = 1e-4,
    min_lr: float = 0.0,
) -> ReduceLROnPlateau:
    # mode="max": the trainer steps it with the epoch's validation (else test) accuracy.
    return ReduceLROnPlateau(
        optimizer, mode="max", factor=factor, patience=int(patience), threshold=threshold, min_lr=min_lr
    )


@hookimpl
def register_schedulers(register: Registrar) -> None:
    register("none", none, "constant learning rate")
    register(
        "multistep",
        multistep,
        "multiply the learning rate by gamma at each milestone epoch",
        params={
            "milestones": param("epochs after which the learning rate drops", ge=1),
            "gamma": param("factor applied at each milestone", gt=0),
        },
    )
    register(
        "piecewise",
        piecewise,
        "the learning rate times lr_factors[k] in the k-th period of lr_period epochs (rates "
        "set by hand per segment)",
        params={
            "lr_factors": param(
                "one factor of the initial learning rate per period; the last holds to the end", gt=0
            ),
            "lr_period": param("epochs each factor holds", ge=1),
        },
    )
    register(
        "cosine",
        cosine,
        "cosine annealing from the initial rate to eta_min over the trial",
        params={"eta_min": param("learning rate at the last epoch", ge=0)},
    )
    register(
        "plateau",
        plateau,
        "multiply the learning rate by `factor` when validation (else test) accuracy has not "
        "improved for `patience` epochs (ReduceLROnPlateau, mode max)",
        params={
            "factor": param("factor applied at each reduction", gt=0, lt=1),
            "patience": param("epochs without improvement before a reduction", ge=0),
            "threshold": param("relative improvement that counts", ge=0),
            "min_lr": param("lower bound on the learning rate", ge=0),
        },
    )
