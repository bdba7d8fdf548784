"""The commands that look and say: ``ablate status``, ``plugins``, ``list`` and ``report``.
They only read: nothing in a results folder changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ablate.base.atomic import shown as address
from ablate.base.signals import deferred
from ablate.cli.app import app, err, fail, out
from ablate.cli.options import StorageOption
from ablate.components import discovery
from ablate.components.discovery import describe


@app.command()
def status(
    study_dir: Annotated[Path, typer.Argument(help="RESULTS_DIR/STUDY")], storage: StorageOption = None
) -> None:
    """How a study stands: its queue (waiting, running with host and last heartbeat, finished
    attempts) and its results (complete, diverged, failed, missing)."""
    with deferred():  # an import cut in half leaves a library broken: the signal waits
        from ablate.run.status import study_status

    found = study_status(study_dir, storage)
    for note in found.notes:
        err.print(escape(note), highlight=False)
    out.print(
        f"study {found.name} (preset {found.preset or '(none)'}), {found.planned} planned "
        f"trials; queue in {found.storage}",
        highlight=False,
    )
    counts = Table("", *found.counts)
    counts.add_row("trials", *(str(n) for n in found.counts.values()))
    out.print(counts)
    if found.running:
        running = Table("trial", "attempt", "worker (host:pid)", "running for", "last heartbeat")
        for row in found.running:
            running.add_row(*row)
        out.print(running)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List installed plugins, their versions and what they register."""
    found = list(describe(discovery.get_plugins()))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("plugin", "distribution", "version", "registers / error")
    for entry in found:
        detail = (
            escape(", ".join(entry["registers"]))
            if entry["status"] == "loaded"
            else (
                f"[red]failed to {entry['stage']}:[/] {escape(entry['error'])}"
                + (f"; dropped {', '.join(entry['dropped'])}" if entry.get("dropped") else "")
            )
        )
        for component, why in entry.get("refused", {}).items():
            detail += f"\n[red]not registered: {component}:[/] {escape(why)}"
        table.add_row(entry["name"], entry["distribution"], entry["version"], detail)
    out.print(table)


@app.command(name="list")
def list_components(
    kind: Annotated[
        str | None, typer.Argument(help="dataset, model, augmentation, optimizer, scheduler or setting")
    ] = None,
) -> None:
    """List components with their parameters and defaults."""
    from ablate.components.registry import KINDS
    from ablate.study.settings import SETTINGS

    kinds = [*KINDS, "setting"]
    wanted = kind.rstrip("s") if kind else None
    if wanted is not None and wanted not in kinds:
        fail(f"unknown kind {kind!r}; kinds: {', '.join(kinds)}")
    plugins = discovery.get_plugins()
    registry = plugins.registry
    for current in kinds:
        if wanted not in (None, current):
            continue
        out.print(f"[bold]{current}s[/]")
        if current == "setting":
            for param in SETTINGS:
                out.print(f"  {_describe_param(param)}", highlight=False)
            continue
        for component in registry.of_kind(current):
            out.print(
                f"  [bold]{escape(component.name)}[/]  {escape(component.description)}  "
                f"[dim]({escape(component.plugin)})[/]",
                highlight=False,
            )
            for param in component.params:
                out.print(f"      {_describe_param(param)}", highlight=False)
        for (kind_, name), reason in sorted(registry.dropped.items()):
            if kind_ == current:
                out.print(f"  [red]{escape(name)}  dropped:[/] {escape(reason)}", highlight=False)
    for failure in plugins.failures:
        if failure.stage == "import":
            out.print(
                f"[red]plugin {failure.name!r} failed to import[/] ({escape(failure.error)}); "
                "what it provides is missing above",
                highlight=False,
            )


def _describe_param(param: Any) -> str:
    """One parameter for ``ablate list``; descriptions are text, never rich markup (a
    description holding ``[tensorboard]`` lost it to the markup parser)."""
    bounds = f"; {param.bounds}" if param.bounds else ""
    described = escape(param.description + bounds)
    return f"{escape(param.name)} = {escape(repr(param.default))}  [dim]{described}[/]"


@app.command()
def report(
    study_dir: Annotated[
        Path | None, typer.Argument(help="RESULTS_DIR/STUDY; without it, list the studies under results/")
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="text, markdown, json or html")] = "text",
    metric: Annotated[str | None, typer.Option(help="metric for the effects (default: the study's)")] = None,
    results_dir: Annotated[Path, typer.Option(help="where to look for studies")] = Path("results"),
    files: Annotated[
        bool, typer.Option(help="write the plots and report.html under RESULTS_DIR/STUDY/report/")
    ] = True,
) -> None:
    """Answer a study's question: cells, paired effects with intervals, plots, one HTML page."""
    with deferred():  # an import cut in half leaves a library broken: the signal waits
        from ablate.base.atomic import WriteError
        from ablate.report import analyse_folder, formats, list_studies, write_files

    if format_ not in ("text", "markdown", "json", "html"):
        fail(f"--format must be text, markdown, json or html, not {format_!r}")
    if study_dir is None:
        studies = list_studies(results_dir)
        if not studies:
            out.print(f"no studies under {results_dir}/ yet: run `ablate run STUDY` first")
        for name, attempts in studies:
            out.print(f"{results_dir / name}  ({attempts} trial attempts)", highlight=False)
        return
    answer, results = analyse_folder(study_dir, metric)
    written, problem = None, None
    if files or format_ == "html":
        try:
            written = write_files(answer, results, discovery.get_plugins().registry)
        except WriteError as error:
            problem = error
    plots = written.plots if written else {}
    if format_ == "json":
        print(formats.to_json(answer, plots))
    elif format_ == "markdown":
        print(formats.markdown(answer, plots))
    elif format_ == "html" and written:
        print(written.html)
    elif format_ == "text":
        formats.print_text(answer, out)
    if problem is not None:
        shown = "" if format_ == "html" else "; the report above is complete"
        fail(
            f"plots and report.html not written: {problem}{shown}. Fix the folder's permissions "
            "or free some space, or pass --no-files"
        )
    if written is not None:  # plugins that keep reports (MLflow) take the files
        discovery.get_plugins().emit(
            "on_report", folder=results.folder, description=results.description, files=written.files
        )
    if written and format_ != "json":
        err.print(f"plots and HTML written to {address(written.html.parent)}", highlight=False)
