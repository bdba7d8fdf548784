"""Fault injection, part two: what could put a wrong number in a results folder.

Another dataset, thread count or plan finishing a folder; a plugin parameter that shadows a
setting; a hand-edited ``study.json``; a scheduler or optimizer that cannot resume; a duplicate
copy of a trial. Each test fails without the guard it names.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from ablate.components.discovery import Plugins
from tests.conftest import FaultLog
from tests.run.test_runner import TINY, table, tiny_study


def _runner(tmp_path: Path, plugins: Plugins, text: str = TINY):  # type: ignore[no-untyped-def]
    from ablate.run.interface import RunOptions
    from ablate.run.runner import Runner
    from ablate.study import load as studyfile

    plan = studyfile.load(tiny_study(tmp_path, text)).plan()
    return Runner(plan, RunOptions(results_dir=tmp_path / "results"), plugins, log=lambda m: None)


def test_a_duplicate_copy_that_finishes_second_is_failed_in_optuna_not_left_running(
    tmp_path: Path, plugins: Plugins, fault_log: FaultLog
) -> None:
    """A copy of a trial (put back by a crash) that finishes after the original is recorded as
    a duplicate: its Optuna trial ends FAIL. ablate's own state was once passed to Optuna, which
    refused it, the error was swallowed, and the copy stayed RUNNING for good."""
    import torch

    from ablate.run.attempt import AttemptContext, run_attempt
    from ablate.run.interface import RunSummary
    from ablate.run.provenance import provenance
    from ablate.train.datasets import DatasetCache

    runner = _runner(tmp_path, plugins)
    queue = runner.prepare(runner.validate())
    runner.enqueue(queue, RunSummary(runner.total(), 0))
    assert runner.run().completed  # every trial has its result now
    first = next(t for t in queue.study.get_trials() if t.user_attrs["trial"] == 0)
    queue.requeue(first)  # a crash left a copy of trial 0 in the queue
    copy = queue.take()
    assert copy is not None and copy.user_attrs["trial"] == 0
    device = torch.device("cpu")
    checked = runner.validate()
    ctx = AttemptContext(
        runner.plan,
        plugins,
        runner.folder,
        runner.store,
        queue,
        checked.columns,
        device,
        DatasetCache(device, None, lambda m: None),
        runner.options.results_dir,
        lambda key, value: "",
        lambda m: None,
        provenance(runner.plan, plugins, device),
    )
    outcome = run_attempt(ctx, runner.plan.trials[0], checked.trials[0], 2, copy, retry=True)
    fault_log.inject("a duplicate copy finishing second")
    assert not outcome.recorded
    stored = queue.frozen(copy)
    assert stored.state == optuna.trial.TrialState.FAIL, stored.state
    assert stored.user_attrs["state"] == "duplicate"
    assert [t["trial"] for t in table(tmp_path / "results" / "tiny_study", "trials")].count(0) == 1
    fault_log.verified()


def test_the_queue_refuses_ablate_s_own_states_where_optuna_s_are_meant(
    tmp_path: Path, plugins: Plugins
) -> None:
    from ablate.events import AttemptState
    from ablate.run.interface import RunSummary

    runner = _runner(tmp_path, plugins)
    queue = runner.prepare(runner.validate())
    runner.enqueue(queue, RunSummary(runner.total(), 0))
    trial = queue.take()
    assert trial is not None
    with pytest.raises(TypeError, match="optuna.trial.TrialState"):
        queue.tell(trial, AttemptState.FAIL, None, {})  # type: ignore[arg-type]
    assert queue.frozen(trial).state == optuna.trial.TrialState.RUNNING


PHOTO_STUDY = """
from ablate import Study, choice

study = Study(
    name="photos",
    question="Does dropout matter on my photos?",
    baseline=dict(dataset="imagefolder", size=16, model="resnet18", width=2, epochs=1,
                  batch_size=8, train_eval_size=8, lr=0.05),
    factors=dict(dropout=choice(0.0, 0.5)),
    seeds=2,
)
"""


def _forget(study_dir: Path, trial: int) -> None:
    """As if the run had been stopped before ``trial`` finished."""
    for path in study_dir.rglob(f"trial-{trial:05d}-attempt-*.parquet"):
        path.unlink()


@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize("how", ["other photos", "a changed photo", "record deleted"])
def test_a_folder_trained_on_one_dataset_refuses_another(
    tmp_path: Path, cli_plugins: Plugins, fault_log: FaultLog, how: str
) -> None:
    """Finishing a folder with other data (another --data-dir, or the same folder with a photo
    changed) once mixed both datasets in one cell; now it is refused in one line naming both,
    whether or not data.json survived."""
    from PIL import Image

    from tests.faults.test_faults import invoke, one_line_error
    from tests.plugins.test_imagefolder import photos

    study = tiny_study(tmp_path, PHOTO_STUDY)
    first = photos(tmp_path / "imgA", per_class=6)
    results = tmp_path / "results"
    code, output = invoke("run", str(study), "--results-dir", str(results), "--data-dir", str(first))
    assert code == 0, output
    recorded = table(results / "photos", "trials")
    assert len({t["data_fingerprint"] for t in recorded}) == 1
    _forget(results / "photos", 3)
    second = first
    if how == "other photos":
        second = photos(tmp_path / "imgB", per_class=6, seed=1)
    elif how == "a changed photo":
        Image.new("RGB", (20, 20), (255, 255, 255)).save(first / "red" / "0.png")
    else:
        second = photos(tmp_path / "imgB", per_class=6, seed=1)
        (results / "photos" / "data.json").unlink()
    code, output = invoke("run", str(study), "--results-dir", str(results), "--data-dir", str(second))
    fault_log.inject(f"another dataset into a folder ({how})")
    assert code == 2, output
    line = one_line_error(output)
    assert "holds trials trained on dataset 'imagefolder'" in line and "another --results-dir" in line
    if how != "record deleted":
        assert str(first.resolve()) in line and str(second.resolve()) in line
    if how == "a changed photo":
        assert "its files changed" in line
    assert len(table(results / "photos", "trials")) == 3  # nothing of the other data written
    code, output = invoke(
        "run",
        str(study),
        "--results-dir",
        str(results),
        "--data-dir",
        str(first if how != "a changed photo" else second),
    )
    if how == "a changed photo":  # the data is gone; it stays refused
        assert code == 2
    else:
        assert code == 0, output
        assert len({t["data_fingerprint"] for t in table(results / "photos", "trials")}) == 1
    fault_log.verified()


THREAD_STUDY = """
from ablate import Study, choice

study = Study(
    name="threads",
    question="Does the thread count stay fixed?",
    baseline=dict(dataset="cifar10-mini", model="resnet18", width=2, epochs=1, batch_size=32,
                  train_size=128, test_size=64, train_eval_size=64, lr=0.05),
    factors=dict(dropout=choice(0.0, 0.5)),
    seeds=2,
)
"""


@pytest.mark.slow
def test_a_folder_keeps_the_thread_count_its_trials_computed_with(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """On a CPU the thread count changes the numbers. A folder started with one thread per
    trial is finished with one, by a plain rerun (the machine's default is more) and by
    --workers 2; a --threads that differs is refused in one line."""
    import subprocess
    import sys

    from tests.faults.test_faults import one_line_error, run_command

    study = tiny_study(tmp_path, THREAD_STUDY)
    results = tmp_path / "results"
    folder = results / "threads"
    done = subprocess.run(
        run_command(study, results, "--threads", "1"), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for trial in (2, 3):
        _forget(folder, trial)
    plain = subprocess.run(run_command(study, results), capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    if (__import__("os").cpu_count() or 1) > 1:
        assert "threads: 1 per trial" in plain.stdout
    _forget(folder, 3)
    workers = subprocess.run(
        run_command(study, results, "--workers", "2"), capture_output=True, text=True, timeout=300
    )
    assert workers.returncode == 0, workers.stdout + workers.stderr
    assert "1 threads each" in workers.stdout
    assert sorted((t["trial"], t["threads"]) for t in table(folder, "trials")) == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    _forget(folder, 3)
    refused = subprocess.run(
        run_command(study, results, "--threads", "2"), capture_output=True, text=True, timeout=300
    )
    fault_log.inject("another thread count into a folder")
    assert refused.returncode == 2
    line = one_line_error(refused.stdout + refused.stderr)
    assert "--threads 2" in line and "computed with 1 CPU thread each" in line
    assert sys.executable  # (subprocesses ran this interpreter)
    fault_log.verified()


NARROW_RESNET = """
import torch
from ablate.train.backends import to_training_layout
from ablate_plugins.models import resnet18

torch.manual_seed(0)
torch.set_num_threads(2)
model = to_training_layout(resnet18(num_classes=3, width=8), torch.device("cpu"))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(150):
    for batch in (8, 7):
        images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(images), torch.randint(0, 3, (batch,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
print("ok")
"""


@pytest.mark.slow
def test_a_narrow_resnet_trains_odd_batches_on_a_cpu_without_corrupting_memory(fault_log: FaultLog) -> None:
    """oneDNN's backward of a strided 1x1 convolution on channels_last input with fewer than 16
    channels writes past its workspace (uxlfoundation/oneDNN#6035): a ResNet of width 8 with an
    odd last batch crashed the process (and on AVX2 CPUs computes wrong gradients). Those
    convolutions now compute in NCHW; the rest of the model stays channels_last."""
    import os
    import subprocess
    import sys

    import torch

    from ablate.train.backends import to_training_layout
    from ablate_plugins.models import resnet18

    model = to_training_layout(resnet18(num_classes=3, width=8), torch.device("cpu"))
    guarded = [m for m in model.modules() if getattr(m, "ablate_nchw", False)]
    assert [m.in_channels for m in guarded] == [8]  # the stage-2 shortcut, 8 -> 16 channels
    assert guarded[0].weight.stride() == (8, 1, 1, 1)
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)
    done = subprocess.run(
        [sys.executable, "-c", NARROW_RESNET],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MALLOC_CHECK_": "3"},
    )
    fault_log.inject("odd batches through a narrow ResNet on a CPU")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    fault_log.verified()


def test_a_plugin_parameter_named_like_a_setting_is_refused_at_registration(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """A dataset parameter ``batch_size`` once registered and passed the test kit; training
    then used the setting's 64 while every trials row said the parameter's 7. Now that
    component is refused (its plugin, its name and the setting named, at the plugin's line),
    and the plugin's other components still register."""
    import ablate
    from ablate.components.discovery import load_plugins
    from tests.conftest import tiny_data

    class Shadowing:
        @ablate.hookimpl
        def register_datasets(self, register):  # type: ignore[no-untyped-def]
            def shadow(*, data_dir: object, batch_size: int = 7) -> object:
                return tiny_data()

            register(
                "shadow",
                shadow,
                "a dataset with a parameter named like a setting",
                params={"batch_size": "how many images per file"},
            )
            register("fine", lambda *, data_dir: tiny_data(), "a dataset without one")

    plugins = load_plugins(extra={"shadowing": Shadowing()})
    fault_log.inject("a plugin parameter named like a setting")
    assert not plugins.failures
    info = plugins.loaded["shadowing"]
    assert info.registers == ("dataset:fine",)
    why = info.refused["dataset:shadow"]
    assert "dataset 'shadow' of plugin 'shadowing'" in why
    assert "parameter 'batch_size' has the name of the setting 'batch_size'" in why
    assert f"{__file__}:" in why  # the plugin's own file and line
    with pytest.raises(Exception, match="could not register it"):
        plugins.registry.get("dataset", "shadow")
    fault_log.verified()


def test_no_two_things_write_one_column_of_the_trials_table() -> None:
    """A setting and a component parameter of one name would both write param_<name>; such a
    trial is refused, whatever let the two in."""
    from ablate.components.discovery import load_plugins
    from ablate.components.registry import Component
    from ablate.components.setup import ConfigError, Selected, TrialSetup, resolve
    from ablate.params import Param

    registry = load_plugins().registry
    setup = resolve({"dataset": "cifar10-mini"}, registry)
    sneaky = Component(
        "model",
        "sneaky",
        lambda **kw: None,
        "bypassed the registrar",
        (Param("epochs", 3, "a parameter named like a setting"),),
        "tests",
    )
    forged = TrialSetup(
        setup.settings,
        setup.dataset,
        Selected(sneaky, {"epochs": 3}),
        setup.augmentations,
        setup.optimizer,
        setup.scheduler,
        {},
    )
    with pytest.raises(ConfigError, match="'epochs'"):
        forged.recorded_params()


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        (lambda d: d["baseline"].update(hidden=4), True),  # another cell as the baseline
        (lambda d: d["factors"].update(hidden=[8]), True),  # the family shrinks with it
        (lambda d: d.update(seeds=[0]), True),
        (lambda d: d.update(fingerprint="0123456789abcdef"), True),  # a record of no trial here
        (lambda d: d.update(question="Reworded?", delta=2.0), False),  # changes no trial
    ],
)
def test_a_hand_edited_study_json_is_refused_by_the_report(
    tmp_path: Path, cli_plugins: Plugins, fault_log: FaultLog, edit, refused
) -> None:  # type: ignore[no-untyped-def]
    """Editing study.json's plan fields once made the report take another cell as the baseline
    or shrink its family, silently. The report now recomputes the record's fingerprint and
    checks it against the trials; only the fields that change no trial may be edited."""
    import json

    from tests.faults.test_faults import invoke, one_line_error

    study = tiny_study(tmp_path)
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    record = tmp_path / "tiny_study" / "study.json"
    description = json.loads(record.read_text())
    edit(description)
    record.write_text(json.dumps(description))
    code, output = invoke("report", str(tmp_path / "tiny_study"), "--no-files")
    fault_log.inject("a hand-edited study.json")
    if refused:
        assert code == 2, output
        line = one_line_error(output)
        assert "study.json" in line and ("fingerprint" in line or "planned under" in line)
    else:
        assert code == 0, output
        assert "Reworded?" in output
    fault_log.verified()


def _counting_scheduler(*, optimizer: object, epochs: int) -> object:
    """Halves the rate each epoch by counting its own calls: resumed, the count starts over."""
    import torch

    calls = [0]

    def factor(epoch: int) -> float:
        calls[0] += 1
        return 0.5 ** (calls[0] - 1)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)  # type: ignore[arg-type]


class _HiddenStepSGD:
    """Plain SGD whose rate decays with a step count kept outside state_dict."""

    def __new__(cls, *, params: object) -> object:
        import torch

        class Decaying(torch.optim.SGD):
            steps = 0

            def step(self, closure=None):  # type: ignore[no-untyped-def,override]
                self.steps += 1
                for group in self.param_groups:
                    group["lr"] = 0.1 / self.steps
                return super().step(closure)

        return Decaying(params, lr=0.1)  # type: ignore[arg-type]


def _counting_augmentation() -> object:
    """Brightens a little more every third batch (a "curriculum" kept in a closure)."""
    count = [0]

    def brighten(images, generator):  # type: ignore[no-untyped-def]
        count[0] += 1
        return (images + 0.01 * (count[0] // 3)).clamp(0, 1)

    return brighten


@pytest.mark.parametrize(
    ("kind", "factory", "message"),
    [
        ("scheduler", _counting_scheduler, "continued after epoch"),
        ("optimizer", _HiddenStepSGD, "continued after step"),
        ("augmentation", _counting_augmentation, "keeps state of its own"),
    ],
)
def test_the_test_kit_refuses_a_component_that_cannot_resume(
    kind: str, factory: object, message: str, fault_log: FaultLog
) -> None:
    """A LambdaLR counting its calls in a closure passed the kit; after a kill and a resume its
    rates were 0.1, 0.1 instead of 0.05, 0.025 and the final accuracy moved 5 points. The kit
    now stops, saves, rebuilds, loads and compares with an uninterrupted copy."""
    from ablate.components.registry import Component
    from ablate.testing import check_component

    fault_log.inject(f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} that cannot resume")
    with pytest.raises(AssertionError, match=message):
        check_component(
            Component(
                kind,
                "stateful",
                factory,
                "keeps state outside state_dict",  # type: ignore[arg-type]
                (),
                "tests",
            )
        )
    fault_log.verified()


def test_a_trial_that_ran_an_op_without_a_deterministic_kernel_does_not_claim_determinism(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With warn_only, such an op merely warned while the trials row said deterministic=true.
    (A stand-in model warns as torch does on a GPU: scatter_add_cuda_kernel has no
    deterministic kernel.)"""
    import warnings

    import torch

    import ablate
    from ablate.components.discovery import load_plugins
    from ablate.train.backends import NONDETERMINISTIC
    from tests.conftest import TinyPlugin
    from tests.faults.test_faults import invoke

    class Warning_:
        @ablate.hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            def model(*, num_classes: int) -> torch.nn.Module:
                class Scatter(torch.nn.Module):
                    def __init__(self) -> None:
                        super().__init__()
                        self.linear = torch.nn.Linear(3 * 8 * 8, num_classes)

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        if self.training:
                            warnings.warn(
                                f"scatter_add_cuda_kernel {NONDETERMINISTIC}, but you "
                                "set 'torch.use_deterministic_algorithms(True, "
                                "warn_only=True)'",
                                UserWarning,
                                stacklevel=1,
                            )
                        return self.linear(x.flatten(1))

                return Scatter()

            register("scatter_model", model, "warns like a non-deterministic CUDA op")

    plugins = load_plugins(extra={"tests:tiny": TinyPlugin(), "warning": Warning_()})
    monkeypatch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
    study = tiny_study(
        tmp_path,
        TINY.replace('model="tiny_mlp", hidden=8', 'model="scatter_model"').replace(
            "factors=dict(hidden=choice(4, 8))", "factors={}"
        ),
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path))
    assert code == 0, output
    rows = table(tmp_path / "tiny_study", "trials")
    assert {(r["param_deterministic"], r["deterministic"], r["nondeterministic_ops"]) for r in rows} == {
        ("on", False, "scatter_add_cuda_kernel")
    }
