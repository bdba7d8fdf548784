"""Fault injection, part three: careless input and hostile files end in one line.

A batch larger than the data, a full disk under a checkpoint, an unreadable trials file seen by
``ablate status``, a crafted weights sidecar, a dataset that breaks its contract, a baseline value
no cell uses, a plugin that registers badly, Ctrl-C in the first moments of a run, and the small
wordings a user reads. Each test fails without the fix it names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ablate
from ablate.components.discovery import load_plugins
from tests.conftest import REPO, FaultLog, tiny_data


def test_a_bad_component_drops_only_itself_and_names_the_plugin_s_own_line(fault_log: FaultLog) -> None:
    """A registration error once dropped every component of the plugin, and named ablate's
    file. Now only the component at fault is dropped, at the line of the plugin's register()."""

    class Careless:
        @ablate.hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register("no_factory", 42, "not a function")  # the line named below
            register("undescribed", lambda *, num_classes, depth=3: None, "a model")
            register("good", lambda *, num_classes: None, "a fine model")

        @ablate.hookimpl
        def register_datasets(self, register):  # type: ignore[no-untyped-def]
            register("toy", lambda *, data_dir: tiny_data(), "a fine dataset")

    plugins = load_plugins(extra={"careless": Careless()})
    fault_log.inject("a plugin registering badly")
    assert not plugins.failures
    info = plugins.loaded["careless"]
    assert set(info.registers) == {"model:good", "dataset:toy"}
    line = next(
        n
        for n, text in enumerate(Path(__file__).read_text().splitlines(), 1)
        if 'register("no_factory"' in text
    )
    assert info.refused["model:no_factory"].endswith(f"({__file__}:{line})")
    assert "'depth' has no description" in info.refused["model:undescribed"]
    assert "ablate/registry.py" not in " ".join(info.refused.values())
    fault_log.verified()


@pytest.mark.slow
def test_the_test_kit_snippet_works_for_a_plugin_that_is_installed_too() -> None:
    """The README's snippet passes the plugin module to load_plugins(extra=...); once the
    plugin is pip-installed, its entry point has loaded that module already, and pluggy refused
    it a second time ('Plugin already registered under a different name')."""
    from ablate.testing import check_component
    from ablate_plugins import models

    plugins = load_plugins(extra={"my-plugin": models})
    assert not plugins.failures, plugins.failures
    check_component(plugins.registry.get("model", "simple_cnn"))


def test_a_batch_larger_than_the_data_trains_as_the_whole_split_and_measures_within_it(
    tmp_path: Path, cli_plugins: object, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    """--set batch_size=100000 once exhausted the machine: precision=auto measured a random
    batch of the full 100,000 images. A batch larger than the split is the split, said once,
    with the same numbers; the measurement is bounded by it too."""
    from ablate.train import precision
    from tests.faults.test_faults import invoke
    from tests.run.test_runner import table, tiny_study

    seen: list[int] = []
    real = precision.measure

    def spy(model, device, batch, image_shape, num_classes):  # type: ignore[no-untyped-def]
        seen.append(batch)
        return real(model, device, batch, image_shape, num_classes)

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure", spy)
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    study = tiny_study(tmp_path)
    huge = tmp_path / "huge"
    code, output = invoke("run", str(study), "--results-dir", str(huge), "--set", "batch_size=100000")
    fault_log.inject("a batch larger than the data")
    assert code == 0, output
    assert "batch_size 100,000 is larger than the training split (64 images)" in output
    assert seen and max(seen) <= 64
    whole = tmp_path / "whole"
    code, output = invoke("run", str(study), "--results-dir", str(whole), "--set", "batch_size=64")
    assert code == 0, output

    def numbers(folder: Path) -> list[tuple]:
        return sorted(
            (r["trial"], r["epoch"], r["train_loss"], r["test_acc"])
            for r in table(folder / "tiny_study", "epochs")
        )

    fault_log.observe("wrong numbers", len(set(numbers(huge)) ^ set(numbers(whole))))
    assert numbers(huge) == numbers(whole)
    fault_log.verified()


def test_a_step_that_cannot_fit_in_memory_stops_in_one_line_and_is_not_retried(
    tmp_path: Path, cli_plugins: object, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    from tests.faults.test_faults import invoke, one_line_error
    from tests.run.test_runner import tiny_study

    monkeypatch.setattr("ablate.train.trainer.free_memory", lambda device: 10_000)  # 10 kB free
    code, output = invoke("run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path))
    fault_log.inject("a batch that cannot fit")
    assert code == 2, output
    line = one_line_error(output)
    assert "batch_size 16 of model 'tiny_mlp'" in line and "lower batch_size" in line
    assert not list((tmp_path / "tiny_study" / "trials").glob("*.parquet"))  # nothing failed
    fault_log.verified()


def test_a_full_disk_under_a_checkpoint_loses_the_trial_without_using_a_retry(
    tmp_path: Path, cli_plugins: object, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog
) -> None:
    """torch's zip writer turned the full disk under a checkpoint into 'RuntimeError: [enforce
    fail at inline_container.cc] unexpected pos', recorded as the trial's own failure and
    retried, against the promise that such a trial is named as lost and trained by the next run."""
    import errno

    from ablate.train import checkpoints
    from tests.faults.test_faults import assert_nothing_lost_or_duplicated, invoke, one_line_error
    from tests.run.test_runner import tiny_study

    real = checkpoints.write_file_atomic
    full = {"on": True}

    class FullDisk:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle, self.written = handle, 0

        def write(self, data):  # type: ignore[no-untyped-def]
            self.written += len(data)
            if self.written > 512:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.handle, name)

    def on_a_full_disk(path, write):  # type: ignore[no-untyped-def]
        if full["on"] and "trial-00001" in str(path):
            return real(path, lambda handle: write(FullDisk(handle)))
        return real(path, write)

    monkeypatch.setattr(checkpoints, "write_file_atomic", on_a_full_disk)
    study = tiny_study(tmp_path)
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    fault_log.inject("full disk under a checkpoint")
    assert code == 2, output
    line = " ".join(one_line_error(output).split())
    assert "trial 1 (attempt 1) is lost" in line and "No space left on device" in line
    folder = tmp_path / "tiny_study"
    assert not list((folder / "trials").glob("trial-00001-*"))  # no failed attempt recorded
    full["on"] = False
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    assert_nothing_lost_or_duplicated(folder, trials=4, epochs=2)
    fault_log.verified()


def test_status_and_report_only_read_a_folder_with_a_damaged_file(
    tmp_path: Path, cli_plugins: object, fault_log: FaultLog
) -> None:
    """`ablate status` once moved an unreadable trials file to set-aside/, so a later report no
    longer named it. Both now name it and leave it; the next run sets it aside and trains it."""
    from tests.faults.test_faults import invoke
    from tests.run.test_runner import tiny_study

    study = tiny_study(tmp_path)
    assert invoke("run", str(study), "--results-dir", str(tmp_path))[0] == 0
    folder = tmp_path / "tiny_study"
    damaged = folder / "trials" / "trial-00001-attempt-01.parquet"
    damaged.write_bytes(damaged.read_bytes()[:40])
    before = sorted(p.relative_to(folder) for p in folder.rglob("*") if "report" not in p.parts)
    code, output = invoke("status", str(folder))
    fault_log.inject("a damaged file under status and report")
    assert code == 0, output
    assert f"{damaged} is unreadable" in " ".join(output.split())
    code, output = invoke("report", str(folder), "--no-files")
    assert code == 0 and f"{damaged} is unreadable" in " ".join(output.split()), output
    after = sorted(p.relative_to(folder) for p in folder.rglob("*") if "report" not in p.parts)
    assert after == before and damaged.is_file() and not (folder / "set-aside").exists()
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0 and (folder / "set-aside" / "trials" / damaged.name).is_file(), output
    fault_log.verified()


def test_status_does_not_show_a_dead_journal_worker_s_trial_as_running(
    tmp_path: Path, cli_plugins: object
) -> None:
    import socket

    import optuna

    from ablate.run.liveness import Liveness
    from ablate.run.queue import FINGERPRINT, PLANNED, WORKER
    from ablate.run.storage import make_storage
    from tests.faults.test_faults import invoke
    from tests.run.test_runner import tiny_study

    assert invoke("run", str(tiny_study(tmp_path)), "--results-dir", str(tmp_path))[0] == 0
    folder = tmp_path / "tiny_study"
    study = optuna.load_study(
        study_name="tiny_study", storage=make_storage(None, folder / "optuna.journal", Liveness())
    )
    trial = study.ask()  # a worker took a trial, then its process died
    for key, value in (
        (PLANNED, 3),
        (FINGERPRINT, study.user_attrs["fingerprint"]),
        (WORKER, f"{socket.gethostname()}:999999"),
    ):  # no such process
        trial.set_user_attr(key, value)
    code, output = invoke("status", str(folder))
    assert code == 0, output
    line = [row for row in output.splitlines() if row.startswith("│ trials")][0]
    cells = [cell.strip() for cell in line.strip("│ ").split("│")][1:]
    assert cells[:3] == ["0", "0", "1"]  # waiting, running, abandoned
    assert "(gone: the next run puts it back)" in " ".join(output.split())


ONE_TRIAL = """
from ablate import Study

study = Study(
    name="one",
    question="A single small trial.",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=1, batch_size=32,
                  train_size=64, test_size=32, train_eval_size=32),
    seeds=1,
)
"""


@pytest.mark.parametrize("crafted", [{"width": 1_000_000}, {"width": 4}])
def test_a_crafted_sidecar_is_refused_before_a_model_is_built(
    tmp_path: Path, fault_log: FaultLog, crafted: dict
) -> None:
    """A sidecar saying "width": 1000000 made ablate predict build a model of 36 TB and end in a
    traceback. The sidecar's shapes are checked against the weights file first, on the meta
    device, and a mismatch is one line."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from ablate.cli.app import app, with_plugin_commands
    from tests.faults.test_faults import one_line_error
    from tests.run.test_runner import tiny_study

    study = tiny_study(tmp_path, ONE_TRIAL)
    assert CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)]).exit_code == 0
    sidecar = tmp_path / "one" / "weights" / "trial-00000-final.json"
    description = json.loads(sidecar.read_text())
    description["model"]["params"].update(crafted)
    sidecar.write_text(json.dumps(description))
    picture = tmp_path / "grey.png"
    Image.new("RGB", (32, 32), (128, 128, 128)).save(picture)
    result = CliRunner().invoke(with_plugin_commands(), ["predict", str(tmp_path / "one"), str(picture)])
    fault_log.inject("a crafted weights sidecar")
    assert result.exit_code == 2, result.output
    line = one_line_error(result.output)
    assert "does not describe the weights beside it" in line and "trial-00000-final.json" in line
    fault_log.verified()


def _broken(kind: str):  # type: ignore[no-untyped-def]
    def dataset(*, data_dir: object):  # type: ignore[no-untyped-def]
        data = tiny_data(classes=3)
        if kind == "labels":
            return type(data)(**{**data.__dict__, "train_labels": data.train_labels + 1})
        if kind == "channels last":
            return type(data)(**{**data.__dict__, "train_images": data.train_images.permute(0, 2, 3, 1)})
        grey = data.train_images[:, :1]
        return type(data)(**{**data.__dict__, "train_images": grey.contiguous()})

    class Plugin:
        @ablate.hookimpl
        def register_datasets(self, register):  # type: ignore[no-untyped-def]
            register("broken", dataset, "breaks the ImageData contract")

    return Plugin()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("labels", "train labels must be class indices 0 to 2 (3 classes); got 1 to 3"),
        ("channels last", "got torch.uint8 of shape (64, 8, 8, 3) (channels last?"),
        ("grey", "got torch.uint8 of shape (64, 1, 8, 8) (grey images?"),
    ],
)
def test_data_breaking_its_contract_stops_at_load_time_in_one_line_without_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: FaultLog, kind: str, expected: str
) -> None:
    """Labels beyond the classes once surfaced mid-training as 'IndexError: Target 10 is out of
    bounds' and the trial was retried as if it were flaky."""
    from tests.conftest import TinyPlugin
    from tests.faults.test_faults import invoke, one_line_error
    from tests.run.test_runner import tiny_study

    plugins = load_plugins(extra={"tests:tiny": TinyPlugin(), "broken": _broken(kind)})
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
    study = tiny_study(
        tmp_path,
        """
from ablate import Study
study = Study(name="broken", question="?", baseline=dict(dataset="broken", model="tiny_mlp",
              epochs=1, batch_size=16, train_eval_size=16), seeds=2)
""",
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    fault_log.inject(f"a dataset breaking its contract ({kind})")
    assert code == 2, output
    line = one_line_error(output)
    assert "dataset 'tiny'" in line and expected in line, line
    assert not list((tmp_path / "broken" / "trials").glob("*.parquet"))  # no failed attempt
    fault_log.verified()


def test_a_baseline_value_every_cell_overrides_is_still_checked(
    tmp_path: Path, cli_plugins: object, fault_log: FaultLog
) -> None:
    """strength="high" in the baseline, with every cell setting a strength of its own, once
    trained every trial without a word; the study file says something invalid."""
    from tests.faults.test_faults import invoke, one_line_error
    from tests.run.test_runner import tiny_study

    study = tiny_study(
        tmp_path,
        """
from ablate import Study, choice

study = Study(
    name="jitter",
    question="?",
    baseline=dict(dataset="tiny", model="tiny_mlp", augment="color_jitter", epochs=1,
                  batch_size=16, train_eval_size=16,
                  strength="high"),
    factors=dict(strength=choice(0.2, 0.4)),
    seeds=1,
)
""",
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    fault_log.inject("an invalid baseline value no cell uses")
    assert code == 2, output
    line = one_line_error(output)
    assert f"{study}:9:" in line and "'strength'" in line and "'high'" in line
    assert not (tmp_path / "jitter").exists()  # refused before anything was written
    fault_log.verified()


def _interrupted_at(study: Path, results: Path, delay: float, ignored: bool) -> tuple[int, str]:
    """Start ``ablate run`` as a script would, send SIGINT ``delay`` seconds after its signal
    handlers are in (seen in ``-X importtime``'s output), and return its status and stderr."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    def inherit_ignored() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "ablate",
            "run",
            str(study),
            "--results-dir",
            str(results),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=inherit_ignored if ignored else None,
    )
    assert process.stderr is not None
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "ablate.base.signals" in line:
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert ready.wait(60), "".join(lines[-20:])
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=120)
    reader.join(timeout=10)
    errors = "".join(line for line in lines if not line.startswith("import time:"))
    return code, errors


@pytest.mark.slow
@pytest.mark.parametrize(
    ("delay", "ignored"),
    [
        (0.0, False),
        (0.1, False),
        (0.3, False),
        (0.5, False),
        (0.7, False),
        (1.2, False),
        (2.0, False),
        (0.3, True),
        (2.0, True),
    ],
)
def test_ctrl_c_at_any_moment_of_a_run_ends_with_status_130_and_no_traceback(
    tmp_path: Path, fault_log: FaultLog, delay: float, ignored: bool
) -> None:
    """Ctrl-C 0.3 s after start once landed inside an import before the handlers were in: a
    KeyboardInterrupt traceback and status 1; an interrupt cut a library's import in half
    (numpy then failed with RecursionError, or the run went on). A run started by a script
    (SIGINT inherited as ignored) ignored SIGINT for its first seconds and obeyed it later."""
    from tests.faults.test_faults import FAULT_STUDY, write

    study = write(tmp_path / "faults.py", FAULT_STUDY)
    code, errors = _interrupted_at(study, tmp_path, delay, ignored)
    fault_log.inject("SIGINT in the first moments" + (" (inherited as ignored)" if ignored else ""))
    fault_log.observe("tracebacks", errors.count("Traceback"))
    assert code == 130, errors
    assert "Traceback" not in errors, errors
    assert "interrupted" in errors, errors
    fault_log.verified()


SIGINT_BETWEEN_THE_HANDLERS = """
import os, signal, sys

install = signal.signal


def install_then_interrupt(signum, handler):
    # The user's Ctrl-C lands just after the SIGINT handler is in, before the SIGTERM one.
    previous = install(signum, handler)
    if signum == signal.SIGINT and handler not in (signal.SIG_IGN, signal.SIG_DFL):
        os.kill(os.getpid(), signal.SIGINT)
    return previous


signal.signal = install_then_interrupt
sys.argv = ["ablate", "--help"]
from ablate.entry import main

main()
"""


def test_ctrl_c_between_installing_the_two_handlers_ends_with_130_not_a_traceback(
    fault_log: FaultLog,
) -> None:
    """The moment-0 Ctrl-C test once caught SIGINT landing while the SIGTERM handler was being
    installed: the KeyboardInterrupt came from inside signal.signal, outside any handler (a
    traceback, and the process killed by SIGINT). Here it lands there every time."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SIGINT_BETWEEN_THE_HANDLERS], capture_output=True, text=True, timeout=120
    )
    fault_log.inject("SIGINT between installing the handlers")
    fault_log.observe("tracebacks", done.stderr.count("Traceback"))
    assert done.returncode == 130 and done.stderr == "interrupted\n", done.stderr
    fault_log.verified()


SIGTERM_SWALLOWED_IN_A_CALLBACK = """
import os, signal, sys, weakref

import ablate.train.epoch

real_step, steps = ablate.train.epoch.train_step, []


class Probe:
    pass


def kill(_):
    # The handler runs inside this weakref callback: Python prints "Exception ignored" and
    # drops its KeyboardInterrupt, as when a kill landed in an import's module-lock clean-up.
    os.kill(os.getpid(), signal.SIGTERM)


def step_then_kill(*args, **kwargs):
    steps.append(1)
    if len(steps) == 2:
        probe = Probe()
        keep = weakref.ref(probe, kill)
        del probe
    return real_step(*args, **kwargs)


ablate.train.epoch.train_step = step_then_kill
sys.argv = ["ablate", "run", sys.argv[1], "--results-dir", sys.argv[2], "--quiet"]
from ablate.entry import main

main()
"""


def test_a_kill_whose_interrupt_a_callback_swallowed_still_ends_the_run(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """CI's random-kill test once sent SIGTERM while an import's weakref callback ran: Python
    printed "Exception ignored ... Traceback" and dropped the interrupt, and the run trained all
    its trials. Here the kill lands in a callback during trial 0's second step, every time."""
    import subprocess
    import sys

    from tests.faults.test_faults import FAULT_STUDY, rows, write

    study = write(tmp_path / "faults.py", FAULT_STUDY)
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_SWALLOWED_IN_A_CALLBACK, str(study), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    fault_log.inject("SIGTERM swallowed by a weakref callback")
    output = done.stdout + done.stderr
    fault_log.observe("tracebacks", output.count("Traceback"))
    assert done.returncode == 130, output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert "interrupted" in done.stderr, output
    states = [(t["trial"], t["state"]) for t in rows(tmp_path / "faults", "trials")]
    assert states == [(0, "interrupted")], states  # stopped in its first trial, and recorded it
    fault_log.verified()


def test_a_swallowed_interrupt_is_quiet_while_other_swallowed_errors_still_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only our own interrupt is kept off the screen; a plugin's error in a destructor is still
    printed by the hook that was there before. After an in-process block the caller's handlers
    are back and the signal is forgotten (a test suite goes on after it)."""
    import os
    import signal
    import sys
    import weakref

    from ablate.base import signals

    class Probe:
        pass

    def raising(_: object) -> None:
        raise ValueError("a plugin's destructor failed")

    def kill(_: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    shown: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: shown.append(type(info.exc_value)))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with signals.interrupting():
        for callback in (raising, kill):
            probe = Probe()
            reference = weakref.ref(probe, callback)
            del probe
        assert reference() is None
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            signals.raise_if_stopped()
    assert shown == [ValueError]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    signals.raise_if_stopped()  # the block is over: its signal is forgotten


@pytest.mark.slow
def test_a_worker_whose_device_fails_records_its_trial_and_a_fresh_one_takes_its_place(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """After a sticky CUDA error, empty_cache outside the try raised: the worker died without
    recording its attempt, its trial was requeued, and no worker was started in its place, so
    one bad trial took the workers down one by one. (On the CPU, the release of the device's
    memory is made to fail once, as CUDA's does.)"""
    import os
    import subprocess

    from tests.faults.test_faults import FAULT_STUDY, assert_nothing_lost_or_duplicated, run_command, write

    study = write(tmp_path / "faults.py", FAULT_STUDY)
    helper = REPO / "tests" / "helpers" / "device_fails_once"
    env = {
        **os.environ,
        "ABLATE_TEST_DEVICE_FAILS_ONCE": str(tmp_path / "failed-once"),
        "PYTHONPATH": os.pathsep.join([str(helper), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        run_command(study, tmp_path, "--workers", "2"), capture_output=True, text=True, timeout=600, env=env
    )
    fault_log.inject("a worker's device failing")
    assert (tmp_path / "failed-once").exists(), "the failure was never injected"
    assert done.returncode == 0, done.stdout + done.stderr
    assert "its device failed; a fresh worker takes its place" in done.stdout
    from tests.faults.test_faults import rows

    failed = [t for t in rows(tmp_path / "faults", "trials") if t["state"] == "fail"]
    assert len(failed) == 1 and "illegal memory access" in failed[0]["error"]  # recorded
    assert_nothing_lost_or_duplicated(tmp_path / "faults", trials=8, epochs=3)
    fault_log.verified()
