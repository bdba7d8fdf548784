"""How much faster are ablate's trials than the users' own training loop?

    python benchmarks/trainer_speed.py            # a table
    python benchmarks/trainer_speed.py --json     # one JSON object with every figure

In one run, on the same images (the shipped cifar10-mini training set), model and width, it times

(a) the users' loop exactly as their scripts write it, in a process of its own: a torchvision
    ``DataLoader`` (no worker processes) over PIL images with per-image
    ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``;
    float32, NCHW;
(b) ablate's trainer, in this process: uint8 tensors on the device, batched per-image
    augmentation, channels_last, the ``precision`` setting's ``auto`` choice, the allocator
    tuning of ``ablate.allocator`` on CPU;

and prints images/s for the data path alone (per CPU core: both measured on one thread) and for
full training steps, with the ratio (b)/(a), for ``resnet18`` (width 16 on CPU, 64 on GPU) and
``simple_cnn``. Each figure is the median of ``--rounds`` timings, the two sides timed in turns
(a shared machine's busy spells then hit both alike). It also runs three trials of the ``cpu``
preset of ``studies/dropout_gap.py`` and reports the study's overhead (storage, Parquet, set-up,
checkpoints): everything that is not an epoch's training and evaluation, as a share of the run's
wall time.

To show how far each side is from what the machine can do, it counts the floating-point work of
one training step (``torch.utils.flop_counter``), times a large matrix product in fp32 and in
bf16 on the same threads, and prints each side's GFLOP/s as a share of the peak of the precision
it trains in. (A ratio of R needs ablate's whole step, data and BatchNorm included, to run at R
times the users' GFLOP/s: no trainer gets past the bf16 peak.)

On a GPU (or with ``--full-epoch``) it also times one 50,000-image epoch of ``resnet18`` (the
training set repeated to CIFAR-10's size) with ablate's trainer.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ablate.components.discovery import load_plugins
from ablate.components.setup import resolve
from ablate.data import CIFAR10_MEAN, CIFAR10_STD
from ablate.run.device import pick_device
from ablate.train.allocator import keep_freed_memory
from ablate.train.backends import configure
from ablate.train.epoch import prepare_batch, train_epoch
from ablate.train.placement import DeviceData, to_device
from ablate.train.precision import resolve_precision
from ablate.train.state import build_state

REPO = Path(__file__).resolve().parents[1]
BATCH = 128
CIFAR10_TRAIN_IMAGES = 50_000


def users_loader(images: np.ndarray, labels: np.ndarray) -> torch.utils.data.DataLoader:
    """The users' data path: PIL images, per-image torchvision transforms, one process."""
    import torchvision.transforms as T
    from PIL import Image

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return transform(Image.fromarray(images[i].transpose(1, 2, 0))), int(labels[i])

    return torch.utils.data.DataLoader(Images(), batch_size=BATCH, shuffle=True, num_workers=0)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def users_data_path(loader: torch.utils.data.DataLoader) -> float:
    started, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += len(images)
    return rate(seen, time.perf_counter() - started)


def ablate_data_path(data: DeviceData, augmentations: list[Any], device: torch.device) -> float:
    generator = torch.Generator(device=device).manual_seed(0)
    count = len(data.train_y)
    order = torch.randperm(count, generator=generator, device=device)
    prepare_batch(data, order[:BATCH], augmentations, generator)  # warm-up
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        images, _ = prepare_batch(data, order[start : start + BATCH], augmentations, generator)
    images.sum().item()  # wait for the device
    return rate(count, time.perf_counter() - started)


def step_gflop(model: torch.nn.Module) -> float:
    """Floating-point work of one training step (forward and backward) on a batch of BATCH."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def matmul_size(dtype: torch.dtype, device: torch.device, most: int = 3072, seconds: float = 0.25) -> int:
    """The side of the products timed: 3072 on a GPU; on a CPU the largest power of two (up to
    ``most``) whose product takes under ``seconds``. A CPU without native bf16 emulates it at a
    few GFLOP/s, and seven 3072-products took minutes there (the benchmark test timed out)."""
    if device.type == "cuda":
        return most
    size = 256
    while size * 2 <= most:
        a = torch.randn(size, size, device=device, dtype=dtype)
        started = time.perf_counter()
        torch.mm(a, a)
        if (time.perf_counter() - started) * 8 > seconds:  # the next size takes 8 times as long
            break
        size *= 2
    return size


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device) -> float:
    """The best of five timings of a large square matrix product: this machine's practical peak
    (on a GPU timed with CUDA events over many products: the host clock around one product
    measures the launch, not the GPU)."""
    size = matmul_size(dtype, device)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty_like(a)
    if device.type == "cuda":
        repeats = 20
        for _ in range(3):
            torch.mm(a, b, out=out)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = float("inf")
        for _ in range(5):
            start.record()
            for _ in range(repeats):
                torch.mm(a, b, out=out)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000 / repeats)
        return 2 * size**3 / best / 1e9
    best = float("inf")
    for attempt in range(7):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        out.sum().item()  # wait for the device; negligible next to the product
        if attempt >= 2:  # the first two warm up the kernels
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def users_steps(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, batches: int, device: torch.device
) -> float:
    """The users' training step: fp32, NCHW, batches straight from their loader."""
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    seen, started = 0, 0.0
    for step, (images, labels) in enumerate(loader):
        if step == 1:  # the first step warms up allocators and kernels
            started, seen = time.perf_counter(), 0
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # their scripts read the loss every step
        seen += len(images)
        if step == batches:
            break
    return rate(seen, time.perf_counter() - started)


def subset(data: DeviceData, count: int) -> DeviceData:
    """The first ``count`` training images, repeated when there are fewer (same work per image)."""
    index = torch.arange(count, device=data.train_y.device) % len(data.train_y)
    return replace(data, train_x=data.train_x[index], train_y=data.train_y[index])


def ablate_epoch_seconds(
    setup: Any, data: DeviceData, images: int, device: torch.device, precision: str
) -> float:
    """One training epoch of ``images`` images with ablate's trainer, after a short warm-up."""
    state = build_state(setup, 10, 0, device)
    configure(setup.settings, precision, device)  # TF32, determinism and cudnn.benchmark, as fit()
    augmentations = [chosen.build() for chosen in setup.augmentations]
    train_epoch(state, subset(data, min(images, BATCH * 4)), augmentations, BATCH, precision)
    epoch = subset(data, images)
    started = time.perf_counter()
    train_epoch(state, epoch, augmentations, BATCH, precision)  # ends reading its metrics: synced
    return time.perf_counter() - started


def ablate_steps(setup: Any, data: DeviceData, images: int, device: torch.device, precision: str) -> float:
    return rate(images, ablate_epoch_seconds(setup, data, images, device, precision))


def study_overhead(device: str, preset: str = "cpu") -> dict[str, Any]:
    """Three trials of a preset of dropout_gap: wall time against training time."""
    import pyarrow.dataset as ds
    from typer.testing import CliRunner

    from ablate.cli.app import app

    with tempfile.TemporaryDirectory() as results:
        started = time.perf_counter()
        outcome = CliRunner().invoke(
            app,
            [
                "run",
                str(REPO / "studies" / "dropout_gap.py"),
                "--preset",
                preset,
                "--device",
                device,
                "--set",
                "dropout=0.0",
                "--set",
                "augment='crop_flip'",
                "--results-dir",
                results,
            ],
        )
        wall = time.perf_counter() - started
        if outcome.exit_code != 0:
            raise RuntimeError(outcome.output)
        epochs = ds.dataset(Path(results) / "dropout_gap" / "epochs").to_table()
        training = float(sum(epochs.column("seconds").to_pylist()))
    trials = 3
    return {
        "preset": preset,
        "trials": trials,
        "wall_seconds": wall,
        "training_seconds": training,
        "overhead_seconds_per_trial": (wall - training) / trials,
        "overhead_share": (wall - training) / wall,
    }


def model_setup(model_name: str, width: int | None, registry: Any) -> Any:
    params: dict[str, Any] = {"dataset": "cifar10-mini", "model": model_name, "augment": "crop_flip"}
    if width is not None:
        params["width"] = width
    return resolve(params, registry)


@functools.cache
def registry() -> Any:
    return load_plugins().registry


@functools.cache
def mini_dataset() -> Any:
    """The shipped cifar10-mini dataset, loaded once per process."""
    return registry().get("dataset", "cifar10-mini").build({"data_dir": None}, {})


def mini_training_set() -> tuple[np.ndarray, np.ndarray]:
    mini = mini_dataset()
    return mini.train_images.numpy(), mini.train_labels.numpy()


def users_figure(
    model_name: str | None, width: int | None, batches: int, threads: int, device_name: str
) -> float:
    """One timing of the users' loop: the data path alone, or full steps of ``model_name``.

    It runs in a process of its own, as the users' scripts do, so it gets neither ablate's
    allocator tuning nor ablate's warmed-up kernels.
    """
    images, labels = mini_training_set()
    torch.set_num_threads(threads)
    loader = users_loader(images, labels)
    if model_name is None:
        return users_data_path(loader)
    setup = model_setup(model_name, width, registry())
    torch.manual_seed(0)
    return users_steps(setup.model.build(num_classes=10), loader, batches, torch.device(device_name))


def interleaved(rounds: int, users: Callable[[], float], ours: Callable[[], float]) -> tuple[float, float]:
    """Median timings of both sides, taken in turns so that a busy spell hits both alike."""
    pairs = [(users(), ours()) for _ in range(rounds)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=20, help="training steps timed per model")
    parser.add_argument("--rounds", type=int, default=3, help="timings per figure; the median is reported")
    parser.add_argument(
        "--full-epoch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time one 50,000-image epoch of resnet18 (default: on a GPU)",
    )
    parser.add_argument("--epoch-images", type=int, default=CIFAR10_TRAIN_IMAGES, help="images in that epoch")
    parser.add_argument(
        "--overhead-preset", default="cpu", help="preset of dropout_gap for the overhead figure"
    )
    parser.add_argument("--skip-overhead", action="store_true", help="skip the study-overhead run")
    args = parser.parse_args()

    device, why = pick_device(args.device)
    mini = mini_dataset()
    data = to_device(mini, device, 1000)
    augmentations = [registry().get("augmentation", "crop_flip").build({}, {})]
    precision = resolve_precision("auto", device)
    width = 64 if device.type == "cuda" else 16
    threads, rounds = torch.get_num_threads(), args.rounds
    if device.type == "cpu":
        keep_freed_memory()  # as the runner does on CPU

    def ours_data_path() -> float:
        torch.set_num_threads(1)  # the data path per core: both sides on one thread
        try:
            return ablate_data_path(data, augmentations, device)
        finally:
            torch.set_num_threads(threads)

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as users_process:

        def users(model_name: str | None, model_width: int | None, use_threads: int) -> float:
            return users_process.submit(
                users_figure, model_name, model_width, args.batches, use_threads, str(device)
            ).result()

        users_data, ours_data = interleaved(rounds, lambda: users(None, None, 1), ours_data_path)
        steps = []
        for name, model_width in [("resnet18", width), ("simple_cnn", None)]:
            setup = model_setup(name, model_width, registry())
            users_rate, ours = interleaved(
                rounds,
                functools.partial(users, name, model_width, threads),
                functools.partial(ablate_steps, setup, data, BATCH * args.batches, device, precision),
            )
            gflop = step_gflop(setup.model.build(num_classes=10))
            steps.append(
                {
                    "model": name,
                    "width": model_width,
                    "precision": precision,
                    "users_images_per_s": users_rate,
                    "ablate_images_per_s": ours,
                    "ratio": ours / users_rate,
                    "gflop_per_step": gflop,
                    "users_gflops": gflop * users_rate / BATCH,
                    "ablate_gflops": gflop * ours / BATCH,
                }
            )
    peaks = {
        "fp32": matmul_peak_gflops(torch.float32, device),
        "bf16": matmul_peak_gflops(torch.bfloat16, device),
    }
    figures: dict[str, Any] = {
        "device": why,
        "threads": threads,
        "torch": torch.__version__,
        "data_path": {
            "images": len(mini.train_labels),
            "users_images_per_s_per_core": users_data,
            "ablate_images_per_s_per_core": ours_data,
            "ratio": ours_data / users_data,
        },
        "rounds": rounds,
        "training_steps": steps,
        "matmul_peak_gflops": peaks,
    }
    if args.full_epoch if args.full_epoch is not None else device.type == "cuda":
        setup = model_setup("resnet18", width, registry())
        seconds = ablate_epoch_seconds(setup, data, args.epoch_images, device, precision)
        figures["full_epoch"] = {
            "model": "resnet18",
            "width": width,
            "images": args.epoch_images,
            "seconds": seconds,
        }
    if not args.skip_overhead:
        figures["study_overhead"] = study_overhead(args.device, args.overhead_preset)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"device: {why}; {threads} threads; torch {torch.__version__}")
    d = figures["data_path"]
    print(
        f"data path (crop_flip, per core): users {d['users_images_per_s_per_core']:,.0f} img/s, "
        f"ablate {d['ablate_images_per_s_per_core']:,.0f} img/s, ratio {d['ratio']:.1f}x"
    )
    for m in steps:
        name = m["model"] + (f" width {m['width']}" if m["width"] else "")
        print(
            f"training steps, {name} ({m['precision']}): users {m['users_images_per_s']:,.0f} "
            f"img/s, ablate {m['ablate_images_per_s']:,.0f} img/s, ratio {m['ratio']:.1f}x"
        )
        print(
            f"  {m['gflop_per_step']:.1f} GFLOP per step of {BATCH}: users "
            f"{m['users_gflops']:,.0f} GFLOP/s ({m['users_gflops'] / peaks['fp32']:.0%} of the "
            f"fp32 peak), ablate {m['ablate_gflops']:,.0f} GFLOP/s "
            f"({m['ablate_gflops'] / peaks[m['precision']]:.0%} of the {m['precision']} peak)"
        )
    print(f"matrix-product peak here: fp32 {peaks['fp32']:,.0f} GFLOP/s, bf16 {peaks['bf16']:,.0f} GFLOP/s")
    if "full_epoch" in figures:
        e = figures["full_epoch"]
        print(f"one epoch of {e['images']:,} images, resnet18 width {e['width']}: {e['seconds']:.2f} s")
    if "study_overhead" in figures:
        o = figures["study_overhead"]
        print(
            f"study overhead ({o['preset']} preset, {o['trials']} trials): "
            f"{o['overhead_seconds_per_trial']:.2f} s per trial, {o['overhead_share']:.1%} of wall time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
