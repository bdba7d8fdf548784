"""The speed benchmark runs from a clean checkout and prints every figure the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_benchmark_prints_every_figure_as_json() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "trainer_speed.py"),
            "--json",
            "--rounds",
            "1",
            "--batches",
            "2",
            "--overhead-preset",
            "smoke",
            "--full-epoch",
            "--epoch-images",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    data = figures["data_path"]
    assert data["users_images_per_s_per_core"] > 0 and data["ablate_images_per_s_per_core"] > 0
    assert data["ratio"] == pytest.approx(
        data["ablate_images_per_s_per_core"] / data["users_images_per_s_per_core"]
    )
    steps = {s["model"]: s for s in figures["training_steps"]}
    assert set(steps) == {"resnet18", "simple_cnn"} and steps["resnet18"]["width"] == 16
    for step in steps.values():
        assert step["ratio"] == pytest.approx(step["ablate_images_per_s"] / step["users_images_per_s"])
        assert step["precision"] in ("fp32", "bf16")
        for side in ("users", "ablate"):
            assert step[f"{side}_gflops"] == pytest.approx(
                step["gflop_per_step"] * step[f"{side}_images_per_s"] / 128
            )
    assert steps["resnet18"]["gflop_per_step"] > 10 * steps["simple_cnn"]["gflop_per_step"]
    peaks = figures["matmul_peak_gflops"]
    assert peaks["fp32"] > 0 and peaks["bf16"] > 0
    assert figures["full_epoch"]["images"] == 300 and figures["full_epoch"]["seconds"] > 0
    overhead = figures["study_overhead"]
    assert overhead["preset"] == "smoke" and overhead["trials"] == 3
    assert 0 < overhead["training_seconds"] < overhead["wall_seconds"]
    assert 0 < overhead["overhead_share"] < 1


def test_step_work_is_three_forwards_less_the_stem_input_gradient() -> None:
    """The benchmark's FLOP count, checked against one computed from the layers' shapes."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import trainer_speed
    finally:
        sys.path.pop(0)
    model = trainer_speed.model_setup("resnet18", 16, trainer_speed.registry()).model.build(num_classes=10)
    forward: list[int] = []  # 2 x outputs x (inputs per output) for every conv and linear layer

    def count(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        forward.append(2 * output.numel() * module.weight[0].numel())

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        model(torch.randn(128, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    # backward = input gradients + weight gradients, each a forward's work; the first layer's
    # input (the images) needs no gradient
    expected = 3 * sum(forward) - forward[0]
    assert trainer_speed.step_gflop(model) == pytest.approx(expected / 1e9, rel=1e-3)


@pytest.mark.slow
def test_storage_benchmark_times_the_queue_on_each_storage() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "storage_overhead.py"),
            "--json",
            "--trials",
            "4",
            "--epochs",
            "2",
            "--rounds",
            "1",
            "--skip-trial",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["trials"] == 4 and figures["storages"]["journal"]["seconds_per_trial"] > 0
    postgres = figures["storages"]["postgresql"]
    assert (
        postgres["seconds_per_trial"] is None
        and postgres["not_measured"]
        or (postgres["seconds_per_trial"] > 0)
    )


@pytest.mark.slow
def test_compute_per_answer_benchmark_compares_in_one_run() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "compute_per_answer.py"),
            "--json",
            "--quick",
            "--parts",
            "pruning,precision",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    pruning = figures["pruning"]
    assert pruning["no_pruner"]["epochs_trained"] == pruning["trials"] * pruning["epochs_per_trial"]
    assert (
        pruning["epochs_saved"]
        == (pruning["no_pruner"]["epochs_trained"] - pruning["median"]["epochs_trained"])
        >= 0
    )
    models = {entry["model"] for entry in figures["precision"]}
    assert {"resnet18", "simple_cnn", "resnet_c3"} <= models
    assert all(entry["precision"] in ("fp32", "bf16") for entry in figures["precision"])


@pytest.mark.slow
def test_stream_benchmark_times_both_placements_on_the_same_batches() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "stream_overhead.py"),
            "--json",
            "--rounds",
            "1",
            "--images",
            "256",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["same_loss"] is True
    assert set(figures["seconds_per_epoch"]) == {"device", "stream"}
    assert figures["stream_over_device"] == pytest.approx(
        figures["seconds_per_epoch"]["stream"] / figures["seconds_per_epoch"]["device"]
    )


@pytest.mark.slow
def test_gpu_benchmark_says_plainly_when_there_is_no_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run benchmarks/gpu_throughput.py itself (minutes per K)")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures == {"gpu": None, "note": "no CUDA GPU here: nothing measured"}


@pytest.mark.slow
def test_the_gpu_first_check_runs_to_its_first_gpu_step_and_says_so(tmp_path: Path) -> None:
    """On a CPU it names what it found, marks every check skipped with the reason, writes its
    JSON and exits 0; on a GPU the same lines say held or failed."""
    import re

    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_first_check.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("GPU: none (torch ") and "every check below needs one" in lines[0]
    checks = [line for line in lines if re.match(r"^(held|failed|skipped) +[^:]+: .+", line)]
    assert [line.split(":")[0].split(None, 1)[1] for line in checks] == [
        "pytest -m gpu",
        "workers share one GPU",
        "kill and resume bitwise",
        "resume_jump control",
        "stream = device",
        "throughput",
        "speed figures",
    ]
    assert all(line.startswith("skipped") and line.endswith("needs a CUDA GPU") for line in checks)
    assert lines[-1] == f"0 of 7 checks held; details in {tmp_path}"
    recorded = json.loads((tmp_path / "gpu_first_check.json").read_text())
    assert recorded["throughput"]["status"] == "skipped"
