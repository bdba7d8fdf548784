"""What one GPU gives: trials per hour with K workers sharing it, and its matrix-product peak.

    python benchmarks/gpu_throughput.py [--json] [--workers-per-gpu 1,2,4,8] [--gpu 0]

For each K it runs the `cpu`-sized trials of `dropout_gap` (18 trials of ResNet-18 width 8 on
cifar10-mini) with `ablate run --gpus GPU --workers-per-gpu K` into a fresh folder, and reports
trials per hour from the trials table's training seconds (K workers train at once, each a trial
in its mean seconds; the wall time of 18 short trials is mostly processes starting), so the K at
which the GPU is full shows as the knee; the wall-time rate is printed beside it. The peak is a
large bf16 and fp32 (TF32 off) matrix product on that GPU, repeated many times between CUDA
events: the host clock around one product understates a GPU. Stream against device placement on
CUDA: ``python benchmarks/stream_overhead.py --device cuda``. Without a CUDA GPU it says so and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZE, REPEATS = 8192, 50


def matmul_peak(dtype_name: str, gpu: int) -> float:
    """TFLOP/s of a SIZE^3 product in ``dtype_name`` on GPU ``gpu``, timed with CUDA events over
    REPEATS."""
    import torch

    device = torch.device(f"cuda:{gpu}")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(SIZE, SIZE, device=device, dtype=dtype)
    b = torch.randn(SIZE, SIZE, device=device, dtype=dtype)
    with torch.cuda.device(device):  # events and products on that GPU's stream
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(REPEATS):
            a @ b
        end.record()
        end.synchronize()
    seconds = start.elapsed_time(end) / 1000
    return 2 * SIZE**3 * REPEATS / seconds / 1e12


def trials_per_hour(gpu: int, per_gpu: int, work: Path) -> tuple[float, float]:
    """Trials per hour with ``per_gpu`` workers on GPU ``gpu``: from the trials' own training
    seconds, and from the wall time of the whole run (start-up included)."""
    import pyarrow.dataset as ds

    folder = work / f"k{per_gpu}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ablate",
            "run",
            str(REPO / "studies" / "dropout_gap.py"),
            "--preset",
            "cpu",
            "--gpus",
            str(gpu),
            "--workers-per-gpu",
            str(per_gpu),
            "--results-dir",
            str(folder),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    seconds = [
        row["seconds"]
        for row in ds.dataset(folder / "dropout_gap" / "trials")
        .to_table(columns=["seconds", "state"])
        .to_pylist()
        if row["seconds"]
    ]
    return per_gpu * 3600 / (sum(seconds) / len(seconds)), len(seconds) / wall * 3600


def measure(gpu: int, counts: list[int]) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None, "note": "no CUDA GPU here: nothing measured"}
    figures: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(gpu),
        "matmul_tflops": {p: matmul_peak(p, gpu) for p in ("bf16", "fp32")},
    }
    with tempfile.TemporaryDirectory() as folder:
        rates = {k: trials_per_hour(gpu, k, Path(folder)) for k in counts}
    figures["trials_per_hour"] = {k: training for k, (training, _) in rates.items()}
    figures["trials_per_hour_wall"] = {k: wall for k, (_, wall) in rates.items()}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workers-per-gpu", default="1,2,4,8")
    parser.add_argument("--gpu", type=int, default=0)
    args = parser.parse_args()
    figures = measure(args.gpu, [int(k) for k in args.workers_per_gpu.split(",")])
    if args.json:
        print(json.dumps(figures, indent=2))
    elif figures["gpu"] is None:
        print(figures["note"])
    else:
        peaks = figures["matmul_tflops"]
        print(f"{figures['gpu']}: matrix product {peaks['bf16']:.0f} TFLOP/s bf16, {peaks['fp32']:.0f} fp32")
        for k, rate in figures["trials_per_hour"].items():
            print(
                f"  {k} worker(s) on the GPU: {rate:,.0f} trials per hour (by their training "
                f"seconds; {figures['trials_per_hour_wall'][k]:,.0f} by the wall time)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
