"""Learning-rate schedulers, stepped once per epoch: constant, multistep, cosine."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, MultiStepLR

from ablate import hookimpl
from ablate.registry import Registrar


def none(*, optimizer: torch.optim.Optimizer, epochs: int) -> LRScheduler:
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def multistep(*, optimizer: torch.optim.Optimizer, epochs: int,
              milestones: tuple[int, ...] = (30, 60, 90), gamma: float = 0.1) -> LRScheduler:
    if any(m != int(m) or m < 1 for m in milestones):
        raise ValueError(f"milestones must be positive epoch numbers, got {milestones}")
    return MultiStepLR(optimizer, milestones=[int(m) for m in milestones], gamma=gamma)


def cosine(*, optimizer: torch.optim.Optimizer, epochs: int, eta_min: float = 0.0) -> LRScheduler:
    return CosineAnnealingLR(optimizer, T_max=epochs, eta_min=eta_min)


@hookimpl
def register_schedulers(register: Registrar) -> None:
    register("none", none, "constant learning rate")
    register("multistep", multistep, "multiply the learning rate by gamma at each milestone epoch",
             params={"milestones": "epochs after which the learning rate drops",
                     "gamma": "factor applied at each milestone"})
    register("cosine", cosine, "cosine annealing from the initial rate to eta_min over the trial",
             params={"eta_min": "learning rate at the last epoch"})
