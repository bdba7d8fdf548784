"""``ablate lr-range``: the learning-rate range test the users run before training.

On a study's baseline (its preset and ``--set`` overrides included), the learning rate grows
exponentially from ``--start`` to ``--end`` over ``--steps`` training steps while the loss is
recorded and smoothed (an exponential moving average, bias-corrected). The suggested rate is
where the smoothed loss falls fastest against log(lr): the users read the same point off
their plot (5e-3 for their ResNet-9). The test stops early once the smoothed loss exceeds
four times its best, as the loss has then diverged. The curve goes to
``<results-dir>/<study>/lr_range.parquet`` and ``lr_range.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from ablate import hookimpl
from ablate.commands import DataDirOption, DeviceOption, PresetOption, ResultsDirOption, SetOption
from ablate.components import TrialSetup
from ablate.train import DeviceData, prepare_batch, resolve_precision, train_step, trial_data

SMOOTHING = 0.98  # weight of the running average: about the last 50 steps count
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its best
SKIP = 0.1  # the first tenth of the curve is the average warming up, not a slope


@dataclass(frozen=True)
class RangeTest:
    """The recorded curve and the rate of steepest descent (None when too short to tell)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float | None


def steepest_descent(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per unit of log(lr)."""
    first = int(len(lrs) * SKIP)
    if len(lrs) - first < 3:
        return None
    slopes = np.gradient(np.asarray(smoothed[first:]), np.log(np.asarray(lrs[first:])))
    return float(lrs[first + int(np.argmin(slopes))])


def check_range(start: float, end: float, steps: int) -> None:
    if not 0 < start < end:
        raise ValueError(f"need 0 < --start < --end, got {start} and {end}")
    if steps < 2:
        raise ValueError(f"need at least 2 steps, got {steps}")


def range_test(
    setup: TrialSetup,
    data: DeviceData,
    num_classes: int,
    device: torch.device,
    start: float = 1e-7,
    end: float = 1.0,
    steps: int = 300,
    seed: int = 0,
) -> RangeTest:
    """Train ``setup`` for up to ``steps`` steps with the rate growing from ``start`` to ``end``."""
    from ablate.train import build_state

    check_range(start, end, steps)
    state = build_state(setup, num_classes, seed, device)
    augmentations = [chosen.build() for chosen in setup.augmentations]
    precision = resolve_precision(setup.settings["precision"], device)
    batch_size = setup.settings["batch_size"]
    count = len(data.train_y)
    state.network.train()
    lrs, losses, smoothed = [], [], []
    average, best, order, position = 0.0, math.inf, torch.empty(0), count
    for step in range(steps):
        lr = start * (end / start) ** (step / (steps - 1))
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        if position + batch_size > count:  # a new pass over the data, in a new order
            order, position = torch.randperm(count, generator=state.generator, device=device), 0
        index = order[position : position + batch_size]
        position += batch_size
        images, labels = prepare_batch(data, index, augmentations, state.generator)
        loss, _ = train_step(state.network, state.optimizer, images, labels, precision)
        value = loss.item()  # needed every step: the test stops when the loss diverges
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        current = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(current)
        best = min(best, current)
        if not math.isfinite(current) or current > DIVERGED * best:
            break
    return RangeTest(lrs, losses, smoothed, steepest_descent(lrs, smoothed))


def write_curve(test: RangeTest, folder: Path) -> tuple[Path, Path]:
    """The curve as Parquet and as a plot, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ablate.base import write_file_atomic

    table = pa.table(
        {
            "step": list(range(len(test.lrs))),
            "lr": test.lrs,
            "loss": test.losses,
            "smoothed_loss": test.smoothed,
        }
    )
    parquet, png = folder / "lr_range.parquet", folder / "lr_range.png"
    write_file_atomic(parquet, lambda handle: pq.write_table(table, handle))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(test.lrs, test.losses, alpha=0.3, label="loss")
    axis.plot(test.lrs, test.smoothed, label="smoothed loss")
    if test.suggested is not None:
        axis.axvline(
            test.suggested, color="red", linestyle="--", label=f"steepest descent: {test.suggested:.2g}"
        )
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.set_ylim(top=min(max(test.smoothed), 4 * min(test.smoothed)) * 1.1)
    axis.legend()
    figure.tight_layout()
    write_file_atomic(png, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)
    return parquet, png


def lr_range(
    study_file: Annotated[Path, typer.Argument(help="the study file whose baseline is tested")],
    preset: PresetOption = None,
    set_: SetOption = None,
    start: Annotated[float, typer.Option(help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option(help="last learning rate")] = 1.0,
    steps: Annotated[int, typer.Option(min=2, help="training steps (the users: 300)")] = 300,
    seed: Annotated[int, typer.Option(help="seed of initialisation, order and augmentation")] = 0,
    results_dir: ResultsDirOption = Path("results"),
    device: DeviceOption = "auto",
    data_dir: DataDirOption = None,
) -> None:
    """Learning-rate range test on a study's baseline: the loss as the rate grows, and the rate
    where it falls fastest."""
    from ablate.commands import fail, load_plan, out, pick_device, resolve_baseline
    from ablate.data import trial_classes
    from ablate.errors import AblateError

    _study, plan, locate = load_plan(study_file, preset, set_ or [])
    setup = resolve_baseline(plan, locate)
    try:
        check_range(start, end, steps)
    except ValueError as error:
        fail(str(error))
    torch_device, why = pick_device(device)
    out.print(
        f"lr range test on the baseline of {plan.name} (preset {plan.preset or '(none)'}): "
        f"{start:.1e} to {end:.1e} over {steps} steps; device: {why}",
        highlight=False,
    )
    try:
        dataset: Any = setup.dataset.build(data_dir=data_dir)
        data = trial_data(dataset, setup.settings, torch_device)
        test = range_test(
            setup, data, len(trial_classes(dataset, setup.settings)), torch_device, start, end, steps, seed
        )
        parquet, png = write_curve(test, results_dir / plan.name)
    except AblateError as error:  # a missing dataset, a full disk
        fail(str(error))
    stopped = f"; stopped at step {len(test.lrs)} (loss diverged)" if len(test.lrs) < steps else ""
    best = test.lrs[int(np.argmin(test.smoothed))]
    suggestion = f"{test.suggested:.2g}" if test.suggested is not None else "none (too few steps to tell)"
    out.print(
        f"steepest descent of the smoothed loss at lr {suggestion}; lowest smoothed loss "
        f"at lr {best:.2g}{stopped}",
        highlight=False,
    )
    out.print(f"curve: {parquet}, plot: {png}", highlight=False)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    app.command("lr-range")(lr_range)
