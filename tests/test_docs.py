"""The README's plugin guide runs as written, and documents every hook by its signature."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

import pytest

from ablate import hookspecs

README = Path(__file__).resolve().parents[1] / "README.md"


def guide_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README's "Writing a plugin" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Writing a plugin"):text.index("\n## ", text.index("### Writing a plugin"))]
    return [(language, textwrap.dedent(code))
            for language, code in re.findall(r"```(\w+)\n(.*?)^\s*```", section, re.S | re.M)]


def test_every_block_of_the_plugin_guide_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin module block becomes the module ``my_plugin``; the others run after it."""
    blocks = guide_blocks()
    assert [language for language, _ in blocks] == ["toml", "python", "python"]
    tomllib = pytest.importorskip("tomllib")
    entry_points = tomllib.loads(blocks[0][1])["project"]["entry-points"]["ablate"]
    assert entry_points == {"my_plugin": "my_plugin"}
    module = types.ModuleType("my_plugin")
    monkeypatch.setitem(sys.modules, "my_plugin", module)
    exec(compile(blocks[1][1], "README.md (plugin module)", "exec"), module.__dict__)
    exec(compile(blocks[2][1], "README.md (test kit)", "exec"), {"__name__": "readme_test"})


def test_every_hook_is_documented_in_the_readme_by_its_signature() -> None:
    text = README.read_text(encoding="utf-8")
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith(("register_", "on_"))]
    for hook in hooks:
        signature = f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})"
        assert f"`{signature}`" in text, f"README does not document {signature}"
