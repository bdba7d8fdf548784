"""From a study file and the command line's ``--preset`` and ``--set`` to the plan to run, and
the plans of the studies its preset requires first."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ablate.cli.app import err
from ablate.components.discovery import Plugins
from ablate.study import load as studyfile
from ablate.study.factors import StudyError
from ablate.study.plan import StudyPlan

Locate = Any  # (key, value) -> "file:line" or "--set KEY=VALUE"


def parse_set(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals (``0.5``, ``(7, 12)``, ``True``) or text."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            try:
                value = float(text)  # nan and inf, which are no Python literals
            except ValueError:
                value = text
        parsed[key.strip()] = value
    return parsed


def load_plan(study_file: Path, preset: str | None, sets: list[str]) -> tuple[Any, StudyPlan, Locate]:
    """The study, its plan for ``preset`` and ``--set`` items, and a function that says where a
    value was given (the study file's line, or the ``--set`` item). A bad file raises its
    :class:`~ablate.errors.AblateError` (one line, exit 2)."""
    overrides = parse_set(sets)
    given = {item.partition("=")[0].strip(): item for item in sets}
    study = studyfile.load(study_file)
    plan = study.plan(preset, overrides)

    def locate(key: str | None, value: Any) -> str:
        if key is not None and key in given:
            return f"--set {given[key]}"
        return studyfile.locate(study, key, value)

    return study, plan, locate


def requirements(
    study_file: Path, study: Any, plan: StudyPlan, seen: tuple[Path, ...] = ()
) -> list[tuple[Path, StudyPlan, Locate]]:
    """The study files the chosen preset ``requires`` (and theirs, first), each with its plan
    (the same preset name when it has one, else its default) and where its values come from; a
    missing or bad file, or a cycle, is a :class:`~ablate.study.factors.StudyError` naming the
    ``requires`` line."""
    chosen = study.presets.get(plan.preset)
    found: list[tuple[Path, StudyPlan, Locate]] = []
    for name in chosen.requires if chosen is not None else ():
        path = (study_file.parent / name).resolve()
        try:
            if path in seen or path == study_file.resolve():
                raise StudyError(f"requires {name!r} again: the studies require each other in a circle")
            required = studyfile.load(path)
            required_plan = required.plan(plan.preset if plan.preset in required.presets else None)
        except (studyfile.StudyFileError, StudyError) as error:
            raise StudyError(f"{studyfile.locate(study, 'requires')}: {error}") from None
        found += requirements(path, required, required_plan, (*seen, study_file.resolve()))
        if all(p != path for p, _, _ in found):
            found.append(
                (path, required_plan, lambda key, value, s=required: studyfile.locate(s, key, value))
            )
    return found


def report_failures(plugins: Plugins) -> None:
    """A warning line for each plugin that failed and each component that was refused."""
    for failure in plugins.failures:
        err.print(
            f"[yellow]warning:[/] plugin {failure.name!r} ({failure.distribution} "
            f"{failure.version}) failed to {failure.stage}: {escape(failure.error)}",
            highlight=False,
        )
    for info in plugins.loaded.values():
        for component, why in info.refused.items():
            err.print(
                f"[yellow]warning:[/] plugin {info.name!r} ({info.distribution} "
                f"{info.version}): {component} not registered: {escape(why)}",
                highlight=False,
            )
