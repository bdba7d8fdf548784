"""``ablate new-plugin``: each kind's skeleton installs with ``pip install -e`` and passes its own
test as generated, and ablate then finds it through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli.app import with_plugin_commands
from ablate.components.registry import KINDS


def child_environment(root: Path) -> Path:
    """A virtual environment of its own that also sees this one's packages (ablate, torch,
    pytest, pip), so installing plugins there leaves the test environment untouched."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "parent-environment.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="the child environment's layout is POSIX")
def test_every_kind_of_skeleton_installs_and_passes_its_own_test(tmp_path: Path) -> None:
    for kind in KINDS:
        result = CliRunner().invoke(
            with_plugin_commands(),
            ["new-plugin", f"ablate-my-{kind}", "--kind", kind, "--dir", str(tmp_path)],
        )
        assert result.exit_code == 0, result.output
    python = child_environment(tmp_path / "venv")
    packages = [str(tmp_path / f"ablate-my-{kind}") for kind in KINDS]
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            *sum((["-e", p] for p in packages), []),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *[f"{p}/tests" for p in packages]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert f"{2 * len(KINDS)} passed" in tests.stdout  # the entry-point tests ran: none skipped
    listed = subprocess.run(
        [str(python), "-m", "ablate", "plugins", "--json"], capture_output=True, text=True, timeout=300
    )
    loaded = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    for kind in KINDS:
        entry = loaded[f"ablate-my-{kind}:my_{kind}"]
        assert entry["status"] == "loaded" and entry["registers"] == [f"{kind}:my_{kind}"]


def test_a_bad_name_or_an_existing_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    def new(*args: str) -> object:
        return CliRunner().invoke(with_plugin_commands(), ["new-plugin", *args, "--dir", str(tmp_path)])

    bad = new("9lives")
    assert bad.exit_code == 2 and "does not make a Python module name" in bad.output
    assert new("ablate-x").exit_code == 0
    again = new("ablate-x")
    assert again.exit_code == 2 and "exists already" in again.output
    kind = new("ablate-y", "--kind", "loss")
    assert kind.exit_code == 2 and "--kind must be one of" in kind.output
