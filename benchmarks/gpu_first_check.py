"""The first ten minutes on a GPU: does ablate hold there, and what does one GPU give?

    python benchmarks/gpu_first_check.py [--out DIR] [--budget SECONDS] [--full]

Run from the repository's root on a machine with one CUDA GPU. Each check runs in processes of
its own, with a time limit, and ends in one line: ``held``, ``failed`` (and why) or ``skipped``
(and why); then a table of the figures a user asks of a GPU. Logs and every figure go to
``DIR`` (``results/gpu_first_check`` by default; ``gpu_first_check.json`` holds them all).

The checks, in order:

1. ``pytest -m gpu``: bitwise resume and stream = device on the GPU.
2. 4 workers share the GPU (``--workers-per-gpu 4``, the smoke preset of ``dropout_gap``): every
   trial once, the memory of each worker, and none held by their parent.
3. SIGKILL at a checkpoint, then a new process resumes: its numbers equal a straight run's,
   bitwise, across processes.
4. ``resume_jump`` smoke: the ``full`` control equals ``none`` on every seed, one determinism.
5. ``stream_overhead.py --device cuda``: streaming gives the same loss; what it costs.
6. ``gpu_throughput.py``: the matrix-product peak and trials per hour at K workers (1 and 4;
   ``--full``: 1, 2, 4, 8). MPS is not tried: starting it changes how the GPU is shared for every
   process on it, and this script leaves the GPU's settings alone.
7. Figures: ResNet-18 width 64 images per second and seconds per 50,000-image epoch in bf16 and
   in fp32 without TF32, what ``deterministic`` and ``compile`` cost, and each ``full`` preset's
   seconds per trial, estimated from timed training steps of its model.

Without a CUDA GPU it says so, marks every check skipped and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KILL_STUDY = """
from ablate import Study, choice

study = Study(
    name="killed",
    question="Does a SIGKILLed trial resume bitwise on the GPU?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=16, epochs=4, batch_size=128,
                  train_size=4096, test_size=1000, train_eval_size=1000, lr=0.05,
                  augment="crop_flip", checkpoint_seconds=0.0),
    factors=dict(dropout=choice(0.0)),
    seeds=2,
)
"""


@dataclass
class Outcome:
    """How one check ended, with the figures it measured."""

    status: str  # held, failed, skipped
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def run(command: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the repository's root, its output kept in ``log``."""
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return done


def ablate(*args: str) -> list[str]:
    return [sys.executable, "-m", "ablate", *args]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def rows(folder: Path, table: str) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    return ds.dataset(folder / table, format="parquet").to_table().to_pylist()


def gpu_memory_by_pid() -> dict[int, int]:
    """MiB of GPU memory each process holds, by nvidia-smi (empty when it cannot tell)."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for line in listed.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            found[int(parts[0])] = int(parts[1])
    return found


# -- the checks -----------------------------------------------------------------------------


def check_gpu_tests(out: Path, limit: float) -> Outcome:
    done = run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
        out / "pytest_gpu.log",
        limit,
    )
    summary = last_line(done.stdout)
    if done.returncode == 0 and "passed" in summary and "skipped" not in summary:
        return Outcome("held", summary)
    return Outcome("failed", summary)


def check_workers_share(out: Path, limit: float) -> Outcome:
    folder = out / "shared"
    seen: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            for pid, mib in gpu_memory_by_pid().items():
                seen[pid] = max(seen.get(pid, 0), mib)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    command = ablate(
        "run",
        "studies/dropout_gap.py",
        "--preset",
        "smoke",
        "--gpus",
        "0",
        "--workers-per-gpu",
        "4",
        "--results-dir",
        str(folder),
    )
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = process.communicate(timeout=limit)[0]
    finally:
        stop.set()
        watcher.join()
    (out / "workers_share.log").write_text(output)
    trials = [t for t in rows(folder / "dropout_gap", "trials") if t["state"] == "complete"]
    workers = {pid: mib for pid, mib in seen.items() if pid != process.pid}
    figures = {"memory_per_worker_mib": sorted(workers.values()), "parent_gpu_mib": seen.get(process.pid, 0)}
    problems = []
    if process.returncode != 0:
        problems.append(f"exit {process.returncode}: {last_line(output)}")
    if sorted(t["trial"] for t in trials) != list(range(18)):
        problems.append(f"{len(trials)} complete trials of 18")
    if process.pid in seen:
        problems.append(f"the parent holds {seen[process.pid]} MiB on the GPU")
    if problems:
        return Outcome("failed", "; ".join(problems), figures)
    shown = ", ".join(f"{mib} MiB" for mib in figures["memory_per_worker_mib"]) or "not seen"
    return Outcome(
        "held",
        f"18 of 18 trials once, by {len({t['gpu'] for t in trials})} GPU; "
        f"workers held {shown}; the parent none",
        figures,
    )


def check_kill_and_resume(out: Path, limit: float) -> Outcome:
    study = out / "killed.py"
    study.write_text(KILL_STUDY)
    deadline = time.monotonic() + limit
    straight = run(
        ablate("run", str(study), "--results-dir", str(out / "straight"), "--quiet"),
        out / "kill_straight.log",
        limit / 2,
    )
    if straight.returncode != 0:
        return Outcome("failed", f"the straight run: {last_line(straight.stderr or straight.stdout)}")
    process = subprocess.Popen(
        ablate("run", str(study), "--results-dir", str(out / "killed"), "--quiet"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = out / "killed" / "killed" / "checkpoints"
    while time.monotonic() < deadline and process.poll() is None:
        if list(checkpoints.glob("trial-*/epoch-00002.pt")):
            break
        time.sleep(0.05)
    if process.poll() is not None:
        return Outcome("failed", "the run ended before a checkpoint of epoch 2 was written")
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = run(
        ablate("run", str(study), "--results-dir", str(out / "killed"), "--quiet"),
        out / "kill_resumed.log",
        max(10.0, deadline - time.monotonic()),
    )
    if resumed.returncode != 0:
        return Outcome("failed", f"the resumed run: {last_line(resumed.stderr or resumed.stdout)}")

    def numbers(folder: Path) -> dict[tuple[int, int], tuple[Any, ...]]:
        return {
            (r["trial"], r["epoch"]): (r["train_loss"], r["test_acc"], r["train_eval_acc"])
            for r in rows(folder / "killed", "epochs")
        }

    continued = [t for t in rows(out / "killed" / "killed", "trials") if (t["resumed_from_epoch"] or 0) >= 2]
    a, b = numbers(out / "straight"), numbers(out / "killed")
    different = sorted(key for key in a if a[key] != b.get(key))
    if not continued:
        return Outcome("failed", "no trial continued from a checkpoint")
    if different:
        first = different[0]
        return Outcome(
            "failed",
            f"{len(different)} of {len(a)} epochs differ from the straight "
            f"run, first trial {first[0]} epoch {first[1]}: {a[first]} "
            f"against {b.get(first)}",
        )
    return Outcome(
        "held",
        f"trial {continued[0]['trial']} continued after epoch "
        f"{continued[0]['resumed_from_epoch']} in a new process; all {len(a)} "
        "epochs equal the straight run bitwise",
    )


def check_resume_control(out: Path, limit: float) -> Outcome:
    folder = out / "resume"
    done = run(
        ablate("run", "studies/resume_jump.py", "--preset", "smoke", "--results-dir", str(folder), "--quiet"),
        out / "resume_jump.log",
        limit,
    )
    if done.returncode != 0:
        return Outcome("failed", last_line(done.stderr or done.stdout))
    trials = rows(folder / "resume_jump", "trials")
    mode = {t["trial"]: (t["param_resume"], t["seed"]) for t in trials}
    curves: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in sorted(rows(folder / "resume_jump", "epochs"), key=lambda r: (r["trial"], r["epoch"])):
        curves.setdefault(mode[row["trial"]], []).append((row["train_loss"], row["test_acc"]))
    seeds = sorted({seed for _, seed in mode.values()})
    unequal = [seed for seed in seeds if curves.get(("full", seed)) != curves.get(("none", seed))]
    determinism = {(t["param_deterministic"], t["deterministic"]) for t in trials}
    if unequal or len(determinism) != 1:
        return Outcome(
            "failed", f"full differs from none on seeds {unequal}; determinism {sorted(determinism)}"
        )
    return Outcome("held", f"full = none on all {len(seeds)} seeds, bitwise; every cell {determinism.pop()}")


def check_stream(out: Path, limit: float) -> Outcome:
    done = run(
        [sys.executable, "benchmarks/stream_overhead.py", "--device", "cuda", "--json", "--images", "5000"],
        out / "stream_overhead.log",
        limit,
    )
    try:
        figures = json.loads(done.stdout)
    except ValueError:
        return Outcome("failed", last_line(done.stderr or done.stdout))
    seconds = figures["seconds_per_epoch"]
    detail = (
        f"one epoch of 5,000 images: device {seconds['device']:.2f} s, stream "
        f"{seconds['stream']:.2f} s (x{figures['stream_over_device']:.2f})"
    )
    if not figures["same_loss"]:
        return Outcome("failed", "stream and device gave other losses; " + detail, figures)
    return Outcome("held", "the same loss; " + detail, figures)


def check_throughput(out: Path, limit: float, counts: str) -> Outcome:
    done = run(
        [sys.executable, "benchmarks/gpu_throughput.py", "--json", "--workers-per-gpu", counts],
        out / "gpu_throughput.log",
        limit,
    )
    try:
        figures = json.loads(done.stdout)
    except ValueError:
        return Outcome("failed", last_line(done.stderr or done.stdout))
    rates = ", ".join(f"K={k}: {rate:,.0f}/h" for k, rate in figures["trials_per_hour"].items())
    peaks = figures["matmul_tflops"]
    return Outcome(
        "held",
        f"matrix product {peaks['bf16']:.0f} TFLOP/s bf16, {peaks['fp32']:.0f} "
        f"fp32; trials per hour (cpu preset) {rates}",
        figures,
    )


def check_figures(out: Path, limit: float) -> Outcome:
    done = run([sys.executable, __file__, "--measure-figures"], out / "figures.log", limit)
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Outcome("failed", last_line(done.stderr or done.stdout))
    r18 = figures["resnet18_w64"]
    return Outcome(
        "held",
        f"ResNet-18 width 64: {r18['bf16']['images_per_s']:,.0f} images/s "
        f"in bf16, {r18['fp32']['images_per_s']:,.0f} in fp32 (no TF32)",
        figures,
    )


# -- figures, measured in a process of their own --------------------------------------------


def timed_steps(
    model: Any, batch: int, size: int, precision: str, steps: int, deterministic: bool = False
) -> float:
    """Seconds per training step of ``model`` on random images, on the GPU, with ablate's
    switches (TF32 off in fp32), timed with CUDA events after a warm-up."""
    import torch
    import torch.nn.functional as F

    from ablate.train.backends import configure, to_training_layout

    device = torch.device("cuda")
    settings = {"deterministic": "on" if deterministic else "off"}
    configure(settings, precision, device)
    model = to_training_layout(model, device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def full_preset_estimates(registry: Any) -> dict[str, Any]:
    """Seconds per trial of each study's ``full`` preset: its epochs times the steps of one
    epoch, timed on its own model, batch and image size (plus a fifth for evaluation)."""
    import torch

    from ablate.components.setup import resolve
    from ablate.study import load as studyfile
    from ablate.train.precision import resolve_precision

    estimates: dict[str, Any] = {}
    for path in sorted((REPO / "studies").glob("*.py")):
        study = studyfile.load(path)
        if "full" not in study.presets:
            continue
        params = dict(study.plan("full").baseline)
        if "pretrained" in params or params.get("init") == "imagenet":
            params["pretrained"], params["init"] = False, "scratch"  # offline: the same speed
        setup = resolve(params, registry)
        settings = setup.settings
        images = {"cifar10": 50_000}.get(settings["dataset"], 452)  # 452: the users' bird photos
        images = settings["train_size"] or images
        size = 224 if settings["dataset"] == "imagefolder" else 32
        precision = resolve_precision(settings["precision"], torch.device("cuda"))
        model = setup.model.build(num_classes=10)
        batch = min(settings["batch_size"], images)
        step = timed_steps(model, batch, size, precision, steps=10)
        per_epoch = math.ceil(images / batch) * step * 1.2
        estimates[study.name] = {
            "model": setup.model.component.name,
            "epochs": settings["epochs"],
            "batch": batch,
            "images": images,
            "precision": precision,
            "seconds_per_epoch": per_epoch,
            "seconds_per_trial": per_epoch * settings["epochs"],
        }
    return estimates


def measure_figures() -> dict[str, Any]:
    import torch

    from ablate.components.discovery import load_plugins

    registry = load_plugins().registry
    build = registry.get("model", "resnet18")

    def resnet18() -> Any:
        torch.manual_seed(0)
        return build.build({"num_classes": 10}, {"width": 64})

    figures: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "resnet18_w64": {}}
    for precision in ("bf16", "fp32"):
        step = timed_steps(resnet18(), 128, 32, precision, steps=40)
        figures["resnet18_w64"][precision] = {
            "images_per_s": 128 / step,
            "seconds_per_epoch": math.ceil(50_000 / 128) * step,
        }
    plain = timed_steps(resnet18(), 128, 32, "bf16", steps=40)
    exact = timed_steps(resnet18(), 128, 32, "bf16", steps=40, deterministic=True)
    figures["deterministic_cost"] = exact / plain
    from ablate.train.backends import compiled, to_training_layout

    started = time.perf_counter()
    network = compiled(to_training_layout(resnet18(), torch.device("cuda")), False, "figures")
    first = timed_steps(network, 128, 32, "bf16", steps=1)
    figures["compile"] = {
        "seconds_to_compile": time.perf_counter() - started - first,
        "speedup": plain / timed_steps(network, 128, 32, "bf16", steps=40),
    }
    figures["full_presets"] = full_preset_estimates(registry)
    return figures


# -- the run --------------------------------------------------------------------------------

CHECKS: list[tuple[str, float]] = [  # name, its share of the time budget
    ("pytest -m gpu", 0.12),
    ("workers share one GPU", 0.12),
    ("kill and resume bitwise", 0.15),
    ("resume_jump control", 0.10),
    ("stream = device", 0.08),
    ("throughput", 0.23),
    ("speed figures", 0.20),
]


def environment() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, (
            f"GPU: none (torch {torch.__version__}; CUDA not available): every check below needs one"
        )
    props = torch.cuda.get_device_properties(0)
    return True, (
        f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
        f"{props.major}.{props.minor}; torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_first_check")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all checks")
    parser.add_argument("--full", action="store_true", help="trials per hour at K = 1, 2, 4, 8")
    parser.add_argument("--only", help="run these checks alone (names, comma-separated)")
    parser.add_argument("--measure-figures", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_figures:
        print(json.dumps(measure_figures()))
        return 0
    has_gpu, line = environment()
    print(line, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Callable[[Path, float], Outcome]] = {
        "pytest -m gpu": check_gpu_tests,
        "workers share one GPU": check_workers_share,
        "kill and resume bitwise": check_kill_and_resume,
        "resume_jump control": check_resume_control,
        "stream = device": check_stream,
        "throughput": lambda out, limit: check_throughput(out, limit, "1,2,4,8" if args.full else "1,4"),
        "speed figures": check_figures,
    }
    deadline = time.monotonic() + args.budget
    results: dict[str, Any] = {"environment": line}
    chosen = [name.strip() for name in args.only.split(",")] if args.only else [n for n, _ in CHECKS]
    for name, share in CHECKS:
        left = deadline - time.monotonic()
        if name not in chosen:
            continue
        if not has_gpu:
            outcome = Outcome("skipped", "needs a CUDA GPU")
        elif left < 20:
            outcome = Outcome("skipped", "out of time (pass a larger --budget)")
        else:
            limit = max(20.0, min(left, share * args.budget * 1.5 * len(CHECKS) / len(chosen)))
            started = time.monotonic()
            try:
                outcome = runs[name](args.out, limit)
            except subprocess.TimeoutExpired:
                outcome = Outcome("failed", f"not done within {limit:.0f} s")
            except Exception as error:  # a check that breaks says how, and the others still run
                outcome = Outcome("failed", f"{type(error).__name__}: {error}")
            outcome.figures["seconds"] = time.monotonic() - started
        print(f"{outcome.status:7s} {name}: {outcome.detail}", flush=True)
        results[name] = {"status": outcome.status, "detail": outcome.detail, "figures": outcome.figures}
    (args.out / "gpu_first_check.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    held = sum(r["status"] == "held" for k, r in results.items() if k != "environment")
    print(f"{held} of {len(chosen)} checks held; details in {args.out}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    """The figures a user asks of a GPU, as far as they were measured."""
    figures = results.get("speed figures", {}).get("figures", {})
    lines = []
    for precision, label in (("bf16", "bf16"), ("fp32", "fp32, no TF32")):
        r18 = figures.get("resnet18_w64", {}).get(precision)
        if r18:
            lines.append(
                f"ResNet-18 w64, {label}: {r18['images_per_s']:,.0f} images/s, "
                f"{r18['seconds_per_epoch']:.1f} s per 50,000-image epoch"
            )
    if "deterministic_cost" in figures:
        lines.append(f"deterministic=on costs x{figures['deterministic_cost']:.2f} of a step")
    if "compile" in figures:
        lines.append(
            f"compile: {figures['compile']['seconds_to_compile']:.0f} s to compile, "
            f"x{figures['compile']['speedup']:.2f} the speed after"
        )
    for name, estimate in figures.get("full_presets", {}).items():
        lines.append(
            f"{name} full preset: about {estimate['seconds_per_trial'] / 60:.1f} min per "
            f"trial ({estimate['model']}, {estimate['epochs']} epochs, "
            f"{estimate['precision']}; estimated from timed steps)"
        )
    throughput = results.get("throughput", {}).get("figures", {}).get("trials_per_hour", {})
    for k, rate in throughput.items():
        lines.append(f"trials per hour, cpu preset, K={k} workers: {rate:,.0f}")
    memory = results.get("workers share one GPU", {}).get("figures", {})
    if memory.get("memory_per_worker_mib"):
        lines.append(f"memory per worker (smoke preset): {memory['memory_per_worker_mib']} MiB")
    if lines:
        print("figures:")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
