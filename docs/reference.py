"""The reference parts of the documentation, generated from the code they describe.

MkDocs loads this file as a hook (``hooks:`` in ``mkdocs.yml``): a page's
``<!-- generated: NAME -->`` marker is replaced by ``GENERATORS[NAME]()`` when the site is built,
so the command line, the settings, the results columns and the hooks can never drift from what
ablate does. ``tests/test_docs.py`` checks each generator covers everything it should.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

MARKER = re.compile(r"<!-- generated: (\w+) -->")


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def cli() -> str:
    """Every command (plugin commands included) with its arguments and options."""
    import typer

    from ablate.cli.app import with_plugin_commands

    # Typer may bring its own copy of click: only the command objects' public methods are used.
    group: Any = typer.main.get_command(with_plugin_commands())
    context = group.context_class(group, info_name="ablate")
    parts = []
    for name in sorted(group.list_commands(context)):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        usage = " ".join(command.collect_usage_pieces(command.context_class(command, info_name=name)))
        usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), usage)
        parts += [
            f"### ablate {name}",
            "",
            f"    ablate {name} {usage}",
            "",
            _cell(command.help or "").split("\\b")[0].strip(),
            "",
        ]
        rows = []
        for param in command.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            if param.param_type_name == "argument":
                spelled = (param.metavar or param.name or "").upper()
                default = ""
            else:
                spelled = ", ".join(param.opts + param.secondary_opts)
                shown = param.default if not callable(param.default) else None
                default = "" if shown in (None, (), [], False) else f"`{_cell(shown)}`"
            help_text = getattr(param, "help", None) or ""
            rows.append(f"| `{_cell(spelled)}` | {_cell(help_text)} | {default} |")
        if rows:
            parts += ["| argument or option | meaning | default |", "| --- | --- | --- |", *rows, ""]
    return "\n".join(parts)


def settings() -> str:
    """The trainer settings with their types, defaults and valid values."""
    from ablate.study.settings import OBSERVING, SETTINGS

    rows = ["| setting | type | default | valid values | meaning |", "| --- | --- | --- | --- | --- |"]
    for setting in SETTINGS:
        meaning = setting.description + (" *(observing)*" if setting.name in OBSERVING else "")
        rows.append(
            f"| `{setting.name}` | {setting.type_name} | `{_cell(repr(setting.default))}` "
            f"| {_cell(setting.bounds) or 'any'} | {_cell(meaning)} |"
        )
    return "\n".join(rows)


def _columns(fields: list[Any]) -> str:
    rows = ["| column | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{c.name}` | {_cell(c.type)} | {_cell(c.meaning)} |" for c in fields]
    return "\n".join(rows)


def trials() -> str:
    from ablate.store.schema import TRIAL_FIELDS

    return _columns(TRIAL_FIELDS)


def epochs() -> str:
    from ablate.store.schema import EPOCH_FIELDS

    return _columns(EPOCH_FIELDS)


def classes() -> str:
    from ablate.store.schema import CLASS_FIELDS

    return _columns(CLASS_FIELDS)


def hooks() -> str:
    """Every hook a plugin may implement, by signature, with its documentation."""
    from ablate import hookspecs

    found = [getattr(hookspecs, name) for name in hookspecs.__all__ if name.startswith(("register_", "on_"))]
    parts = []
    for hook in sorted(found, key=lambda h: inspect.getsourcelines(h)[1]):  # as the file has them
        signature = f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})"
        doc = inspect.cleandoc(hook.__doc__ or "")
        doc = re.sub(r"\n +", " ", doc)  # a parameter's continuation lines join its first
        doc = re.sub(r"^:param (\w+):", r"- `\1`:", doc, flags=re.M)
        doc = re.sub(r":(?:class|func|mod):`~?([\w.]+)`", r"`\1`", doc).replace("``", "`")
        parts += [f"### `{signature}`", "", doc, ""]
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli,
    "settings": settings,
    "trials": trials,
    "epochs": epochs,
    "classes": classes,
    "hooks": hooks,
}


def expand(markdown: str) -> str:
    """``markdown`` with every marker replaced by what its generator writes."""
    return MARKER.sub(lambda match: GENERATORS[match.group(1)](), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs' hook: called with each page's Markdown before it is rendered."""
    return expand(markdown)
