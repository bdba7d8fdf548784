"""Issue 17: every GPU busy and correct, and datasets larger than the device.

No test here needs a GPU: the worker-to-GPU assignment takes a stand-in GPU count, the CUDA
switches are process flags torch lets a CPU build set, and streaming is compared with the
default placement on the CPU, where both must give the same numbers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from typer.testing import CliRunner

from ablate.cli.app import app
from ablate.cli.options import TrainOptions
from ablate.cli.train import pinned_workers
from ablate.components.discovery import Plugins
from ablate.components.setup import resolve
from ablate.run import gpus
from ablate.train import backends
from ablate.train.checkpoints import CheckpointStore
from ablate.train.epoch import Evaluator, eval_batch_size
from ablate.train.placement import to_device, trial_data
from ablate.train.state import build_state, snapshot
from ablate.train.trainer import fit
from ablate_plugins import imagefolder as imagefolder_plugin
from ablate_plugins.augmentations import color_jitter
from tests.conftest import REPO, tiny_data

CPU = torch.device("cpu")


# --- one worker per GPU, or several -----------------------------------------------------------


def test_each_worker_is_pinned_to_one_gpu_k_per_gpu_in_turn() -> None:
    assert gpus.assign(gpus.parse_gpus(None, 4), 1, {}) == ["0", "1", "2", "3"]
    # K = 3 on two of four GPUs: six workers, taking the GPUs in turn.
    assert gpus.assign(gpus.parse_gpus("1,3", 4), 3, {}) == ["1", "3", "1", "3", "1", "3"]
    # This process itself pinned to GPUs 2 and 5: visible GPU 1 is the machine's GPU 5.
    assert gpus.assign(gpus.parse_gpus("1", 2), 2, {"CUDA_VISIBLE_DEVICES": "2,5"}) == ["5", "5"]


@pytest.mark.parametrize(
    ("text", "visible", "says"),
    [
        ("0,4", 4, "no GPU 4"),
        ("1,1", 4, "listed twice"),
        ("a", 4, "separated by commas"),
        (None, 0, "on a CPU, use --workers N"),
    ],
)
def test_bad_gpu_lists_are_refused_with_the_reason(text: str | None, visible: int, says: str) -> None:
    with pytest.raises(gpus.GpuError, match=says):
        gpus.parse_gpus(text, visible)


def test_the_cli_spreads_workers_over_the_gpus_it_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "visible_gpu_count", lambda: 4)

    def pinned(**given: object) -> list[str] | None:
        return pinned_workers(TrainOptions(**given))  # type: ignore[arg-type]

    assert pinned() == ["0", "1", "2", "3"]  # default: every GPU
    assert pinned(gpus="0,2", workers_per_gpu=2) == ["0", "2", "0", "2"]
    assert pinned(workers=6) == ["0", "1", "2", "3", "0", "1"]
    assert pinned(device="cpu", workers=3) is None  # --device cpu: plain workers
    monkeypatch.setattr(gpus, "visible_gpu_count", lambda: 1)
    assert pinned() is None  # one GPU, one worker: in-process


@pytest.mark.slow
def test_gpus_on_a_machine_without_cuda_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpus, "visible_gpu_count", lambda: 0)
    result = CliRunner().invoke(
        app, ["run", str(REPO / "studies" / "dropout_gap.py"), "--gpus", "0", "--preset", "smoke"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "need CUDA GPUs" in lines[0] and "--workers N" in lines[0]


# --- correct on CUDA, checked without one ----------------------------------------------------


def test_checkpoints_hold_the_training_devices_own_rng_state(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host that shows GPUs must not put their generators into a CPU trial's checkpoint.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    setup = resolve({"dataset": "tiny", "model": "tiny_mlp", "epochs": 1}, plugins.registry)
    rng = snapshot(build_state(setup, 3, 0, CPU))["rng"]
    assert rng["device_type"] == "cpu" and "cuda" not in rng


def test_a_checkpoint_from_another_kind_of_device_is_named_and_training_starts_afresh(
    plugins: Plugins, tmp_path: Path
) -> None:
    setup = resolve(
        {"dataset": "tiny", "model": "tiny_mlp", "epochs": 3, "batch_size": 16, "precision": "fp32"},
        plugins.registry,
    )
    data = to_device(tiny_data(), CPU, 16)
    store = CheckpointStore(tmp_path / "ckpt", 2, lambda message: None)
    state = build_state(setup, 3, 0, CPU)
    payload = snapshot(state)
    payload["rng"]["device_type"] = "cuda"  # as a GPU worker would have saved it
    store.save(2, {**payload, "epoch": 2, "meta": {}})
    said: list[str] = []
    result = fit(setup, data, 3, 0, CPU, checkpoints=store, checkpoint_meta={}, log=said.append)
    assert result.resumed_from == 0 and len(result.epochs) == 3
    assert any("trained on cuda" in line and "not resumable" in line for line in said)
    clean = fit(setup, data, 3, 0, CPU)  # and it is exactly a fresh trial
    assert [e.test_acc for e in result.epochs] == [e.test_acc for e in clean.epochs]


def test_backend_switches_follow_determinism_and_precision() -> None:
    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.are_deterministic_algorithms_enabled(),
    )
    cuda = torch.device("cuda")
    try:
        chosen = backends.configure({"resume": "full", "deterministic": "auto"}, "fp32", cuda)
        assert chosen == backends.Backends(deterministic=True, tf32=False)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.are_deterministic_algorithms_enabled()
        chosen = backends.configure(
            {"resume": "none", "deterministic": "auto", "checkpoint_every": 0}, "bf16", cuda
        )
        assert chosen == backends.Backends(deterministic=False, tf32=True)
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        assert backends.configure({"deterministic": "on"}, "fp32", CPU).deterministic
        assert not backends.configure({"deterministic": "off"}, "bf16", CPU).tf32  # no TF32 on a CPU
    finally:
        (
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) = saved[:4]
        torch.set_float32_matmul_precision(saved[4])
        torch.use_deterministic_algorithms(saved[5])


def test_the_deterministic_pool_is_the_adaptive_pool(plugins: Plugins) -> None:
    model = resolve({"model": "resnet18", "width": 4}, plugins.registry).model.build(num_classes=10)
    images = torch.randn(4, 3, 32, 32)
    before = model.eval()(images)
    assert backends.deterministic_pools(model) == 1
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    torch.testing.assert_close(model(images), before)


def test_evaluation_halves_its_batch_on_running_out_of_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    data = to_device(tiny_data(), CPU, 16)
    sizes: list[int] = []

    def fake_evaluate(model, images, labels, data, batch_size, precision):  # type: ignore[no-untyped-def]
        sizes.append(batch_size)
        if batch_size > 250:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return 0.0, 1.0, labels

    monkeypatch.setattr("ablate.train.epoch.evaluate", fake_evaluate)
    said: list[str] = []
    measure = Evaluator(data, 1000, "fp32", said.append)
    measure(torch.nn.Identity(), data.test_x, data.test_y)
    assert sizes == [1000, 500, 250] and measure.batch_size == 250 and len(said) == 2
    measure(torch.nn.Identity(), data.test_x, data.test_y)
    assert sizes[-1] == 250  # the smaller size is kept for the next epochs


def test_the_default_eval_batch_scales_with_pixels() -> None:
    small = to_device(tiny_data(), CPU, 16)  # 8 x 8 images
    assert eval_batch_size(0, small) == 16000 and eval_batch_size(64, small) == 64
    big = replace(small, test_x=torch.zeros(2, 3, 224, 224, dtype=torch.uint8))
    assert eval_batch_size(0, big) == 20


def test_color_jitter_builds_its_weights_once_per_device() -> None:
    jitter = color_jitter(strength=0.4)
    images = torch.rand(4, 3, 8, 8)
    jitter(images, torch.Generator().manual_seed(0))
    first = jitter.gray_weights(images)
    jitter(images, torch.Generator().manual_seed(1))
    assert jitter.gray_weights(images) is first


# --- data larger than the device ---------------------------------------------------------------


@pytest.mark.slow
def test_stream_and_device_placement_give_the_same_metrics_trial_by_trial(tmp_path: Path) -> None:
    tables = {}
    for placement in ("device", "stream"):
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(REPO / "studies" / "dropout_gap.py"),
                "--preset",
                "smoke",
                "--results-dir",
                str(tmp_path / placement),
                "--set",
                f"data_placement={placement}",
                "--set",
                "precision=fp32",
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"data placement: {placement} (as set)" in result.output
        folder = tmp_path / placement / "dropout_gap"
        trials = ds.dataset(folder / "trials").to_table().to_pylist()
        epochs = ds.dataset(folder / "epochs").to_table().to_pylist()
        assert {row["data_placement"] for row in trials} == {placement}
        tables[placement] = (
            sorted((r["trial"], r["test_acc"], r["train_acc"], r["train_eval_acc"]) for r in trials),
            sorted((r["trial"], r["epoch"], r["train_loss"], r["test_loss"]) for r in epochs),
        )
    assert tables["stream"] == tables["device"]
    assert len(tables["device"][0]) == 18


def write_photo_folder(root: Path, per_class: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("cats", "dogs")):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8) + label * 120
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")


def test_auto_streams_a_folder_larger_than_its_budget_and_says_so(
    tmp_path: Path, private_cache: Path
) -> None:
    photos = tmp_path / "photos"
    write_photo_folder(photos, 1500)  # 3,000 images: 9.2 MB as uint8, over a 2 MB budget
    study = tmp_path / "photos_study.py"
    study.write_text(
        "from ablate import Study\n"
        "study = Study(name='photos', question='Does it train from a stream?',\n"
        "              baseline=dict(dataset='imagefolder', model='simple_cnn', epochs=1,\n"
        "                            batch_size=64, data_budget_mb=2, train_eval_size=200),\n"
        "              seeds=1)\n"
    )
    result = CliRunner().invoke(
        app, ["run", str(study), "--data-dir", str(photos), "--results-dir", str(tmp_path / "results")]
    )
    assert result.exit_code == 0, result.output
    assert "data placement: stream (auto:" in result.output and "exceed the 2.0 MB budget" in result.output
    (row,) = ds.dataset(tmp_path / "results" / "photos" / "trials").to_table().to_pylist()
    assert row["data_placement"] == "stream" and row["test_acc"] > 0.9  # the colours separate


def test_a_streamed_trial_reads_images_from_the_memory_mapped_cache(
    plugins: Plugins, private_cache: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photo_folder(photos, 20)
    data = imagefolder_plugin.imagefolder(data_dir=photos)
    data = imagefolder_plugin.imagefolder(data_dir=photos)  # the second time from the cache
    assert _is_mapped(data.train_images)
    setup = resolve(
        {"dataset": "tiny", "model": "tiny_mlp", "data_placement": "stream", "train_size": 20},
        plugins.registry,
    )
    streamed = trial_data(data, setup.settings, CPU)
    assert streamed.placement == "stream" and streamed.train_x.data_ptr() == data.train_images.data_ptr()
    assert torch.equal(streamed.train_batch(torch.tensor([3, 1])), data.train_images[[3, 1]])


def _is_mapped(tensor: torch.Tensor) -> bool:
    """Whether the tensor's memory lies in a file mapping of the decode cache."""
    address = tensor.data_ptr()
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            span, *rest = line.split()
            low, high = (int(part, 16) for part in span.split("-"))
            if low <= address < high:
                return "decoded" in line
    return False


def test_the_folder_fingerprint_reads_only_new_or_changed_files(
    private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    write_photo_folder(photos, 5)
    train, test = imagefolder_plugin._split(imagefolder_plugin._layout(photos)[0], 0.2, 0)
    first = imagefolder_plugin._fingerprint(train, test, photos, "s")
    read: list[Path] = []
    original = imagefolder_plugin.file_hash
    monkeypatch.setattr(imagefolder_plugin, "file_hash", lambda p: read.append(p) or original(p))
    assert imagefolder_plugin._fingerprint(train, test, photos, "s") == first and read == []
    changed = photos / "dogs" / "0.png"
    changed.write_bytes((photos / "cats" / "0.png").read_bytes())
    assert imagefolder_plugin._fingerprint(train, test, photos, "s") != first
    assert read == [changed]


def test_checkpoints_written_in_the_background_are_whole_and_failures_surface(
    plugins: Plugins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablate.base.atomic import WriteError

    setup = resolve({"dataset": "tiny", "model": "tiny_mlp", "epochs": 1}, plugins.registry)
    state = build_state(setup, 3, 0, CPU)
    store = CheckpointStore(tmp_path / "ckpt", 2, lambda message: None)
    payload = {**snapshot(state), "meta": {}}
    expected = {k: v.clone() for k, v in payload["model"].items()}
    store.save(1, payload, background=True)
    for tensor in state.model.parameters():  # training goes on meanwhile: the copy is unaffected
        tensor.data.add_(1.0)
    store.wait()
    saved = store.latest()
    assert saved is not None and saved["epoch"] == 0
    assert all(torch.equal(saved["model"][k], v) for k, v in expected.items())

    def full_disk(path, write):  # type: ignore[no-untyped-def]
        raise WriteError(path, OSError(28, "No space left on device"))

    monkeypatch.setattr("ablate.train.checkpoints.write_file_atomic", full_disk)
    store.save(2, payload, background=True)
    with pytest.raises(WriteError, match="No space left"):
        store.wait()


def test_checkpoints_are_spaced_in_time_on_a_gpu_and_every_epoch_on_a_cpu(
    plugins: Plugins, tmp_path: Path
) -> None:
    from ablate.train.trainer import checkpoint_spacing

    assert checkpoint_spacing(-1, torch.device("cuda")) == 60 and checkpoint_spacing(-1, CPU) == 0
    assert checkpoint_spacing(5, torch.device("cuda")) == 5
    data = to_device(tiny_data(), CPU, 16)
    for seconds, kept in ((0.0, [3, 4]), (3600.0, [4])):  # keep_checkpoints=2
        setup = resolve(
            {
                "dataset": "tiny",
                "model": "tiny_mlp",
                "epochs": 4,
                "batch_size": 16,
                "checkpoint_seconds": seconds,
            },
            plugins.registry,
        )
        store = CheckpointStore(tmp_path / f"every-{seconds}", 2, lambda message: None)
        fit(setup, data, 3, 0, CPU, checkpoints=store, checkpoint_meta={})
        assert [epoch for epoch, _ in store.files()] == kept


# --- on a GPU, when one is at hand (skipped otherwise) ----------------------------------------

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run pytest -m gpu)")


@pytest.mark.gpu
@needs_gpu
def test_on_a_gpu_a_deterministic_trial_resumes_bitwise(plugins: Plugins, tmp_path: Path) -> None:
    cuda = torch.device("cuda")
    settings = {
        "dataset": "tiny",
        "model": "resnet18",
        "width": 4,
        "batch_size": 16,
        "deterministic": "on",
        "augment": "crop_flip",
        "checkpoint_seconds": 0,
    }
    setup = resolve({**settings, "epochs": 4}, plugins.registry)
    data = to_device(tiny_data(), cuda, 16)
    straight = fit(setup, data, 3, 0, cuda)
    store = CheckpointStore(tmp_path / "ckpt", 2, lambda message: None)
    fit(
        resolve({**settings, "epochs": 2}, plugins.registry),
        data,
        3,
        0,
        cuda,
        checkpoints=store,
        checkpoint_meta={},
    )
    resumed = fit(setup, data, 3, 0, cuda, checkpoints=store, checkpoint_meta={})
    assert resumed.resumed_from == 2 and resumed.backends.deterministic
    assert [e.test_acc for e in resumed.epochs] == [e.test_acc for e in straight.epochs]
    assert [e.train_loss for e in resumed.epochs] == [e.train_loss for e in straight.epochs]


@pytest.mark.gpu
@needs_gpu
def test_on_a_gpu_stream_and_device_placement_agree(plugins: Plugins) -> None:
    cuda = torch.device("cuda")
    results = {}
    for placement in ("device", "stream"):
        setup = resolve(
            {
                "dataset": "tiny",
                "model": "resnet18",
                "width": 4,
                "epochs": 2,
                "batch_size": 16,
                "deterministic": "on",
                "data_placement": placement,
            },
            plugins.registry,
        )
        data = trial_data(tiny_data(), setup.settings, cuda)
        assert data.placement == placement
        results[placement] = [(e.train_loss, e.test_acc) for e in fit(setup, data, 3, 0, cuda).epochs]
    assert results["stream"] == results["device"]


@pytest.mark.slow
def test_unmarked_tests_run_on_the_cpu_even_on_a_gpu_host() -> None:
    """On a GPU host the unmarked tests picked CUDA: the SIGKILL test waited for a checkpoint
    the 60 s GPU spacing never wrote, and stream = device was compared under cudnn.benchmark.
    The GPUs are hidden from them and from what they start (conftest.pytest_configure)."""
    import os
    import subprocess
    import sys

    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    assert not torch.cuda.is_available()
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.stdout.strip() == "False"


def test_a_recorded_trial_writes_no_checkpoint_of_its_last_epoch(
    tmp_path: Path, cli_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner deletes a trial's checkpoints as soon as it is recorded: the last epoch's was
    a whole write of the state (hundreds of MB on a GPU) for nothing."""
    from typer.testing import CliRunner

    from ablate.cli.app import app
    from ablate.train.checkpoints import CheckpointStore
    from tests.run.test_runner import tiny_study

    saved: list[int] = []
    real = CheckpointStore.save

    def save(self, epoch, payload, background=False):  # type: ignore[no-untyped-def]
        saved.append(epoch)
        return real(self, epoch, payload, background)

    monkeypatch.setattr(CheckpointStore, "save", save)
    result = CliRunner().invoke(app, ["run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert saved == [1] * 4  # 4 trials of 2 epochs: epoch 1 each, never the last
