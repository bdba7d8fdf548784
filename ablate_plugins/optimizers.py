"""Optimizers: SGD (momentum, Nesterov, weight decay) and Adam."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ablate import hookimpl
from ablate.components import Registrar
from ablate.params import param


def on_cuda(params: list[torch.nn.Parameter]) -> bool:
    """Whether the parameters live on a GPU: there the fused kernels update every parameter in
    one launch instead of several per tensor (on a CPU, fused SGD is no faster)."""
    return bool(params) and all(p.device.type == "cuda" for p in params)


def sgd(
    *,
    params: Iterable[torch.nn.Parameter],
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        fused=on_cuda(params) or None,
    )


def adam(
    *, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=on_cuda(params) or None)


@hookimpl
def register_optimizers(register: Registrar) -> None:
    register(
        "sgd",
        sgd,
        "stochastic gradient descent with momentum",
        params={
            "lr": param("learning rate", gt=0),
            "momentum": param("momentum factor", ge=0),
            "nesterov": "use Nesterov momentum",
            "weight_decay": param("L2 penalty", ge=0),
        },
    )
    register(
        "adam",
        adam,
        "Adam",
        params={"lr": param("learning rate", gt=0), "weight_decay": param("L2 penalty", ge=0)},
    )
