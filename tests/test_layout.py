"""The layout shows the pipeline: each stage imports only the stages before it, the built-in
plugins use only the public API a third party has, and no module grows past about 300 lines.

These read the source (every import statement, those inside functions too), so a lazy import
against the pipeline fails here as surely as one at the top of a module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

# The stages in the order a trial travels; a module may import its own stage and those above.
# The package root itself (``import ablate``) is base: it loads nothing until a name is used.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("ablate.errors", "ablate.base", "ablate.params", "ablate.events", "ablate")),
    ("study", ("ablate.study",)),
    ("components", ("ablate.components", "ablate.hookspecs", "ablate.data", "ablate.augment")),
    ("store", ("ablate.store",)),
    ("train", ("ablate.train",)),
    ("analysis", ("ablate.analysis",)),
    ("run", ("ablate.run",)),
    ("report", ("ablate.report",)),
    ("front", ("ablate.cli", "ablate.commands", "ablate.testing", "ablate.entry", "ablate.__main__")),
]

# What a plugin package may import: the names a third party is promised (see docs/plugins.md).
PUBLIC = {
    "ablate",
    "ablate.params",
    "ablate.data",
    "ablate.augment",
    "ablate.events",
    "ablate.errors",
    "ablate.hookspecs",
    "ablate.commands",
    "ablate.testing",
    "ablate.train",
    "ablate.base",
    "ablate.components",
    "ablate.store.weights",
}

# Imports that the stage order alone would allow, but that would give a module a second job.
FORBIDDEN = {
    "ablate.report": ("ablate.components.discovery",),  # a report never loads plugins
    "ablate.analysis": ("ablate.components.discovery",),
    "ablate.train.datasets": ("ablate.train.trainer",),  # the data cache knows no training loop
    "ablate.run": ("ablate.report",),  # the seed rule reads intervals from analysis
}

LIMIT = 320  # lines, formatted: "about 300"; a module past it has two jobs (split it, do not raise this)


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every ablate module ``path`` imports; ``from a import b`` names a.b
    when b is a module."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("ablate", "ablate_plugins"):
                yield node.lineno, name


def stage(module: str) -> int:
    """The stage of ``module``: that of the longest prefix named in STAGES."""
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "ablate" and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"{module} belongs to no stage: add it to STAGES"
    return found


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_every_module_imports_only_its_own_stage_and_those_before_it() -> None:
    against = []
    for path in sources("ablate"):
        here = _module(path)
        if here == "ablate":  # the root's names are the public face, each loaded on first use
            continue
        for line, name in imports(path):
            if name.startswith("ablate_plugins"):
                against.append(f"{path.relative_to(REPO)}:{line} imports the built-in plugins")
            elif stage(name) > stage(here):
                against.append(
                    f"{path.relative_to(REPO)}:{line} ({STAGES[stage(here)][0]}) "
                    f"imports {name} ({STAGES[stage(name)][0]})"
                )
    assert not against, "imports against the pipeline:\n" + "\n".join(against)


def test_no_module_imports_what_would_give_it_a_second_job() -> None:
    found = []
    for path in sources("ablate"):
        here = _module(path)
        for owner, banned in FORBIDDEN.items():
            if here == owner or here.startswith(owner + "."):
                found += [
                    f"{path.relative_to(REPO)}:{line} imports {name}"
                    for line, name in imports(path)
                    if any(name == b or name.startswith(b + ".") for b in banned)
                ]
    assert not found, "\n".join(found)


def test_the_built_in_plugins_use_only_the_public_api() -> None:
    private = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sources("ablate_plugins")
        for line, name in imports(path)
        if not name.startswith("ablate_plugins") and name not in PUBLIC
    ]
    assert not private, (
        "built-in plugins must use what a third party can (tests/test_layout.py "
        "PUBLIC):\n" + "\n".join(private)
    )


@pytest.mark.parametrize("face", sorted(PUBLIC))
def test_each_public_module_says_what_it_offers(face: str) -> None:
    """A public module lists its names in ``__all__`` and each of them is there."""
    import importlib

    module = importlib.import_module(face)
    offered = getattr(module, "__all__", None)
    assert offered, f"{face} has no __all__"
    missing = [name for name in offered if not hasattr(module, name)]
    assert not missing, f"{face}.__all__ names what it lacks: {missing}"


def test_no_module_is_over_about_300_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in sources("ablate") + sources("ablate_plugins")
        if (n := len(p.read_text().splitlines())) > LIMIT
    }
    assert not long, f"split these (each has two jobs): {long}"


def test_the_stage_table_is_a_real_check() -> None:
    """The checker itself: an import against the order is found, one along it is not."""
    assert stage("ablate.run.runner") > stage("ablate.train.trainer")
    assert stage("ablate.report.render") > stage("ablate.run.queue")
    assert stage("ablate.base.atomic") == stage("ablate.errors") == 0
    assert stage("ablate.cli.app") == len(STAGES) - 1
    with pytest.raises(AssertionError, match="no stage"):
        stage("ablate.newstage.module")


def test_the_version_is_written_in_one_place() -> None:
    """pyproject reads it from ``ablate.__version__``; the installed metadata agrees."""
    import importlib.metadata

    import tomllib

    import ablate

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("ablate") == ablate.__version__


def test_every_cross_reference_in_a_docstring_names_something_that_exists() -> None:
    """``:mod:`ablate.x.y``` and the like in comments and docstrings: a module that moves leaves
    none pointing at its old place."""
    import importlib
    import re

    broken = []
    for path in sources("ablate") + sources("ablate_plugins"):
        for name in set(re.findall(r":(?:mod|class|func):`~?(ablate[\w.]*)`", path.read_text())):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found: object = importlib.import_module(".".join(parts[:cut]))
                    break
                except ImportError:
                    continue
            for part in parts[cut:]:
                found = getattr(found, part, None)
            if found is None:
                broken.append(f"{path.relative_to(REPO)}: {name}")
    assert not broken, "\n".join(broken)
