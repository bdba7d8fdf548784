"""Plugin discovery: entry points, broken plugins, autoload switch, the example package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ablate
from ablate import hookspecs
from ablate.components.discovery import DISABLE_AUTOLOAD_ENV, load_plugins
from tests.conftest import REPO

BUILTIN = {
    "ablate:datasets",
    "ablate:models",
    "ablate:augmentations",
    "ablate:optimizers",
    "ablate:schedulers",
    "ablate:lr_range",
    "ablate:new_plugin",
    "ablate:predict",
    "ablate:tensorboard",
    "ablate:timm",
    "ablate:mlflow",
}


def fake_distribution(site: Path, name: str, module: str, body: str) -> None:
    """Install a minimal distribution (module + dist-info with an entry point) under ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"  # the folder uses the normalised name
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ablate]\n{module} = {module}\n")


def ablate_cli(*args: str, site: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    if site is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(site), environment.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ablate", *args], capture_output=True, text=True, env=environment, timeout=300
    )


def test_builtins_are_entry_point_plugins_and_register_the_first_set() -> None:
    plugins = load_plugins()
    assert BUILTIN <= set(plugins.loaded)
    assert all(plugins.loaded[name].distribution == "ablate" for name in BUILTIN)
    expected = {
        "dataset": {"cifar10", "cifar10-mini"},
        "model": {"resnet18", "simple_cnn"},
        "augmentation": {"none", "crop_flip", "color_jitter"},
        "optimizer": {"sgd", "adam"},
        "scheduler": {"none", "multistep", "piecewise", "cosine", "plateau"},
    }
    for kind, names in expected.items():
        assert names <= set(plugins.registry.names(kind))
        assert all(c.description for c in plugins.registry.of_kind(kind))


def test_every_hook_is_documented() -> None:
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith(("register_", "on_"))]
    assert len(hooks) == 10
    assert all(hook.__doc__ and ":param" in hook.__doc__ for hook in hooks)


@pytest.mark.slow
def test_plugin_failing_at_import_is_reported_and_the_others_still_work(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "ablate-broken", "ablate_broken", "raise ImportError('no such lib')\n")
    result = ablate_cli("plugins", "--json", site=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    broken = entries["ablate-broken:ablate_broken"]
    assert broken["status"] == "failed" and broken["stage"] == "import"
    assert broken["distribution"] == "ablate-broken" and broken["version"] == "1.2.3"
    assert "no such lib" in broken["error"]
    assert all(entries[name]["status"] == "loaded" for name in BUILTIN)
    table = ablate_cli("plugins", site=tmp_path)
    assert "ablate-broken" in table.stdout and "ablate:models" in table.stdout


def test_a_duplicate_name_is_refused_naming_both_plugins_and_the_rest_registers(tmp_path: Path) -> None:
    fake_distribution(
        tmp_path,
        "ablate-dup",
        "ablate_dup",
        """
        import ablate
        @ablate.hookimpl
        def register_models(register):
            register("mlp", lambda *, num_classes: None, "fine on its own")
            register("resnet18", lambda *, num_classes: None, "clashes with the built-in")
    """,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        plugins = load_plugins()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ablate_dup", None)
    assert not [f for f in plugins.failures if f.name == "ablate-dup:ablate_dup"]
    info = plugins.loaded["ablate-dup:ablate_dup"]
    assert info.registers == ("model:mlp",)
    why = info.refused["model:resnet18"]
    assert "'ablate-dup:ablate_dup'" in why and "'ablate:models'" in why
    assert plugins.registry.get("model", "resnet18").plugin == "ablate:models"
    assert plugins.registry.get("model", "mlp").plugin == "ablate-dup:ablate_dup"


def test_a_component_of_a_plugin_that_failed_is_named_with_the_failure(tmp_path: Path) -> None:
    """Not a did-you-mean for a look-alike: the study's component exists, its plugin failed."""

    class HalfBroken:
        @ablate.hookimpl
        def register_optimizers(self, register):  # type: ignore[no-untyped-def]
            register("adamw", lambda *, params: None, "AdamW")
            raise RuntimeError("missing CUDA kernels")

    from typer.testing import CliRunner

    from ablate.cli.app import app

    plugins = load_plugins(extra={"extra-optimizers": HalfBroken()})
    (failure,) = plugins.failures
    assert failure.dropped == ("optimizer:adamw",)
    study = tmp_path / "s.py"
    study.write_text(
        "from ablate import Study\nstudy = Study(name='s', question='?',\n"
        "    baseline=dict(dataset='cifar10-mini', optimizer='adamw'))\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ablate.components.discovery.get_plugins", lambda: plugins)
        result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path)])
        listed = CliRunner().invoke(app, ["list", "optimizer"]).output
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "s.py:3: optimizer 'adamw' is not available: its plugin 'extra-optimizers'" in message
    assert "failed to register: RuntimeError: missing CUDA kernels" in message
    assert "Did you mean" not in message
    assert "adamw dropped" in " ".join(listed.split())


def test_autoload_switch_keeps_only_the_builtins(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "ablate-broken", "ablate_broken", "raise ImportError('x')\n")
    result = ablate_cli("plugins", "--json", site=tmp_path, env={DISABLE_AUTOLOAD_ENV: "1"})
    names = {e["name"] for e in json.loads(result.stdout)}
    assert names == BUILTIN


def test_event_hook_failure_is_reported_once_and_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    class Broken:
        @ablate.hookimpl
        def on_trial_start(self, trial):  # type: ignore[no-untyped-def]
            calls.append("broken")
            raise ValueError("bug")

    class Fine:
        @ablate.hookimpl
        def on_trial_start(self, trial):  # type: ignore[no-untyped-def]
            calls.append("fine")

    plugins = load_plugins(extra={"broken": Broken(), "fine": Fine()})
    plugins.emit("on_trial_start", trial=None)
    plugins.emit("on_trial_start", trial=None)
    assert calls.count("broken") == 1 and calls.count("fine") == 2
    assert "plugin 'broken' raised in on_trial_start" in capsys.readouterr().err


def test_list_shows_parameters_and_defaults() -> None:
    from typer.testing import CliRunner

    from ablate.cli.app import app

    output = CliRunner().invoke(app, ["list", "models"]).output
    assert "resnet18" in output and "width = 64" in output and "dropout = 0.0" in output
    assert "sgd" not in output
    everything = CliRunner().invoke(app, ["list"]).output
    assert "milestones = (30, 60, 90)" in everything and "batch_size" in everything
    assert CliRunner().invoke(app, ["list", "widgets"]).exit_code == 2


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package installed with pip into a private folder."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(REPO / "examples" / "ablate-example-plugin"),
        ],
        check=True,
        timeout=300,
    )
    return site


@pytest.mark.slow
def test_example_plugin_is_listed_and_its_components_train(example_site: Path, tmp_path: Path) -> None:
    listed = json.loads(ablate_cli("plugins", "--json", site=example_site).stdout)
    (example,) = [e for e in listed if e["distribution"] == "ablate-example-plugin"]
    assert example["registers"] == ["model:tiny_convnet", "augmentation:cutout"]
    assert example["version"] == "0.1.0"
    kit = (
        "from ablate.components.discovery import load_plugins; from ablate.testing import check_component;"
        "r = load_plugins().registry; check_component(r.get('model', 'tiny_convnet'));"
        "check_component(r.get('augmentation', 'cutout')); print('conforms')"
    )
    environment = {**os.environ, "PYTHONPATH": str(example_site)}
    checked = subprocess.run(
        [sys.executable, "-c", kit], capture_output=True, text=True, env=environment, timeout=300
    )
    assert checked.stdout.strip() == "conforms", checked.stderr
    study = tmp_path / "example.py"
    study.write_text(
        textwrap.dedent("""
        from ablate import Study, choice
        study = Study(
            name="example", question="Does cutout help a tiny convnet?",
            baseline=dict(dataset="cifar10-mini", model="tiny_convnet", channels=4, epochs=1,
                          train_size=128, test_size=64, train_eval_size=64, batch_size=32),
            factors=dict(augment=choice("none", "crop_flip+cutout")), seeds=1,
        )
    """)
    )
    result = ablate_cli("run", str(study), "--results-dir", str(tmp_path), site=example_site)
    assert result.returncode == 0, result.stdout + result.stderr
    import pyarrow.dataset as ds

    trials = ds.dataset(tmp_path / "example" / "trials").to_table().to_pylist()
    assert sorted(t["param_augment"] for t in trials) == ["crop_flip+cutout", "none"]
    assert {t["param_channels"] for t in trials} == {4}
    assert sorted(t["param_size"] or 0 for t in trials) == [0, 8]


def test_plugins_load_when_the_importlib_metadata_backport_is_imported() -> None:
    """Importing the backport (mlflow does) makes the standard library's entry_points() return
    the backport's EntryPoint class: ablate took those for in-process objects once, registered
    the entry points themselves as plugins, and the next registration crashed comparing them."""
    pytest.importorskip("importlib_metadata", reason="the importlib_metadata backport is not installed")
    code = (
        "import importlib_metadata\n"
        "from ablate.components.discovery import load_plugins\n"
        "plugins = load_plugins()\n"
        "plugins.manager.register(object(), name='another')\n"
        "assert not plugins.failures, plugins.failures\n"
        "print(sorted(c.name for c in plugins.registry.of_kind('model')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resnet18" in done.stdout
