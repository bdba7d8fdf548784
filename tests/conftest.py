"""Shared fixtures: tiny in-memory datasets and plugins, and a results folder per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ablate
from ablate.components.discovery import Plugins, load_plugins
from ablate.data import CIFAR10_MEAN, CIFAR10_STD, ImageData

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """On a GPU host the unmarked tests would pick CUDA (device auto) and wait, say, for a
    checkpoint that the GPU's 60 s spacing never writes. They run on the CPU, as in CI: the GPUs
    are hidden (from subprocesses too) unless the run selects the gpu-marked tests (-m gpu)."""
    selected = str(config.getoption("markexpr") or "")
    if "gpu" not in selected or "not gpu" in selected:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


SHARED_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"


def tiny_data(train: int = 64, test: int = 32, classes: int = 3, seed: int = 0) -> ImageData:
    """A learnable toy dataset: each class has its own mean colour plus noise."""
    generator = torch.Generator().manual_seed(seed)

    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % classes
        base = (labels.float() / max(classes - 1, 1) * 200 + 20).view(-1, 1, 1, 1)
        noise = torch.randint(-20, 21, (count, 3, 8, 8), generator=generator).float()
        return (base + noise).clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = split(train)
    test_x, test_y = split(test)
    return ImageData(
        "tiny",
        train_x,
        train_y,
        test_x,
        test_y,
        tuple(f"class{i}" for i in range(classes)),
        CIFAR10_MEAN,
        CIFAR10_STD,
        "tiny",
    )


class TinyPlugin:
    """An in-process plugin with a toy dataset and a small linear model."""

    @ablate.hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("tiny", lambda *, data_dir: tiny_data(), "toy colour dataset for tests")

    @ablate.hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        def linear(*, num_classes: int, hidden: int = 8) -> torch.nn.Module:
            return torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(3 * 8 * 8, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, num_classes),
            )

        register("tiny_mlp", linear, "a two-layer perceptron for tests", params={"hidden": "hidden units"})


@pytest.fixture
def plugins() -> Plugins:
    """The installed plugins plus :class:`TinyPlugin`."""
    return load_plugins(extra={"tests:tiny": TinyPlugin()})


@pytest.fixture
def cli_plugins(plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    """Make the CLI use :func:`plugins` (installed plugins plus the tiny test plugin)."""
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
    return plugins


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A decode cache of the test's own, and no $ABLATE_DATA from the environment."""
    from ablate import data as data_module

    cache = tmp_path / "cache"
    monkeypatch.setenv(data_module.CACHE_ENV, str(cache))
    monkeypatch.delenv(data_module.DATA_ENV, raising=False)
    return cache


class FaultLog:
    """Counts the faults the fault-injection tests inject and what their checks found: trials
    lost or recorded twice, numbers that differ from an uninterrupted run, tracebacks shown to
    a user. The checks assert these are zero; the counts make the summary's figures."""

    def __init__(self) -> None:
        self.injected: dict[str, int] = {}
        self.checks = 0
        self.found = {"trials lost": 0, "trials twice": 0, "wrong numbers": 0, "tracebacks": 0}

    def inject(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def observe(self, what: str, count: int) -> None:
        """Record what a check counted (``what`` is one of ``found``'s keys)."""
        self.found[what] += count

    def verified(self) -> None:
        """Called once a test's checks passed: nothing was lost or duplicated."""
        self.checks += 1

    def signals(self, name: str) -> int:
        return sum(n for kind, n in self.injected.items() if name in kind)


FAULTS = FaultLog()


@pytest.fixture
def fault_log() -> FaultLog:
    return FAULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULTS.injected:
        return
    total = sum(FAULTS.injected.values())
    kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(FAULTS.injected.items()))
    terminalreporter.write_line(
        f"fault injection: {total} faults injected ({kinds}); {FAULTS.checks} tests checked "
        "afterwards that nothing was lost or duplicated and every error was one line"
    )
    found = ", ".join(f"{what} {count}" for what, count in FAULTS.found.items())
    terminalreporter.write_line(
        f"fault suite: SIGKILLs {FAULTS.signals('SIGKILL')}, SIGINTs {FAULTS.signals('SIGINT')}, "
        f"SIGTERMs {FAULTS.signals('SIGTERM')}; {found}"
    )


def invoke(*args: str) -> tuple[int, str]:
    """Run ``ablate ARGS...`` in this process: its exit status and what a terminal shows (stdout
    and stderr together)."""
    from typer.testing import CliRunner

    from ablate.cli.app import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def run_smoke(results: Path) -> None:
    """Run ``dropout_gap``'s smoke preset into ``results`` (18 one-epoch trials on the shipped
    subset), in this process; it must succeed."""
    code, output = invoke(
        "run", str(REPO / "studies" / "dropout_gap.py"), "--preset", "smoke", "--results-dir", str(results)
    )
    assert code == 0, output


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """An MLflow tracking server of the test's own: SQLite backend, artifacts in a folder;
    skipped, with the reason, where the mlflow extra is not installed."""
    pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'ablate[mlflow]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None:
                    pytest.fail(f"mlflow server did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "mlflow server did not answer within 120 s"
                time.sleep(0.5)
        yield uri
    finally:
        process.terminate()
        process.wait(timeout=30)
