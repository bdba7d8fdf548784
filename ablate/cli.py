"""The ``ablate`` command line: thin Typer commands over the library."""

from __future__ import annotations

import ast
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ablate.discovery import Plugins, describe, get_plugins

app = typer.Typer(help="Run ablation studies of image classifiers and report what each factor does.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# Messages are never hard-wrapped (paths stay whole, output stays grep-able); tables piped to a
# file get a width that fits them rather than rich's default 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
# Options that every command running a study's trials takes, spelled once (plugin commands
# such as lr-range use them too).
PresetOption = Annotated[str | None, typer.Option(help="size preset (default: the study's)")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="override a baseline "
                                                     "parameter: KEY=VALUE (repeatable)")]
ResultsDirOption = Annotated[Path, typer.Option(help="where results go")]
DeviceOption = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, mps")]
DataDirOption = Annotated[Path | None, typer.Option(help="local datasets (else $ABLATE_DATA)")]
INTERRUPTED = ("interrupted: finished trials are saved; run the same command again to train only "
               "the missing ones")


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
            value = text
        parsed[key.strip()] = value
    return parsed


def _report_failures(plugins: Plugins) -> None:
    for failure in plugins.failures:
        err.print(f"[yellow]warning:[/] plugin {failure.name!r} ({failure.distribution} "
                  f"{failure.version}) failed to {failure.stage}: {failure.error}", highlight=False)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupt_on_signals() -> None:
    """Ctrl-C and ``kill`` end the run the same way: the running attempt is recorded.

    A process started in the background by a non-interactive shell inherits SIGINT as
    ignored, and Python then never raises KeyboardInterrupt; install the handlers explicitly.
    """
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def _run_workers(study_file: Path, study: Any, plan: Any, options: Any, plugins: Plugins,
                 workers: int, threads: int | None, preset: str | None,
                 sets: list[str]) -> None:
    """Validate and open the study here (fail fast), then let ``workers`` processes train it."""
    from ablate import studyfile
    from ablate.runner import RunError, Runner
    from ablate.workers import run_workers

    runner = Runner(plan, options, plugins, log=out.print,
                    locate=lambda key, value: studyfile.locate(study, key, value))
    try:
        runner.validate()
        runner.open_storage()
    except RunError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    arguments = [str(study_file), "--results-dir", str(options.results_dir), "--device",
                 options.device, "--retries", str(options.retries)]
    arguments += ["--preset", preset] if preset else []
    arguments += ["--storage", options.storage] if options.storage else []
    arguments += ["--data-dir", str(options.data_dir)] if options.data_dir else []
    for item in sets:
        arguments += ["--set", item]
    code = run_workers(arguments, workers, runner.writer, plan.size, out, threads)
    done = len(runner.writer.complete_trials())
    out.print(f"{min(done, plan.size)}/{plan.size} trials complete; results in {runner.study_dir}")
    if code == 130:
        err.print(INTERRUPTED)
    if code:
        raise typer.Exit(code)


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="the study file, e.g. studies/dropout_gap.py")],
    preset: PresetOption = None,
    results_dir: ResultsDirOption = Path("results"),
    device: DeviceOption = "auto",
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: a journal "
                                                        "file in the study's results folder)")] = None,
    set_: SetOption = None,
    data_dir: DataDirOption = None,
    retries: Annotated[int, typer.Option(min=0, help="extra attempts for a failing trial")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="worker processes sharing the study")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per worker "
                                                              "(default: all cores / workers)")] = None,
    quiet: Annotated[bool, typer.Option(hidden=True, help="no progress display")] = False,
) -> None:
    """Run a study; re-running it trains only the trials that are missing."""
    from ablate import studyfile
    from ablate.progress import ProgressDisplay
    from ablate.runner import RunError, Runner, RunOptions
    from ablate.study import StudyError

    try:
        study = studyfile.load(study_file)
        plan = study.plan(preset, parse_set(set_ or []))
    except (studyfile.StudyFileError, StudyError) as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    plugins = get_plugins()
    _report_failures(plugins)
    out.print(f"study [bold]{plan.name}[/], preset [bold]{plan.preset or '(none)'}[/]: "
              f"{plan.size} trials; {plan.question}", highlight=False)
    options = RunOptions(results_dir, device, storage, data_dir, retries)
    _interrupt_on_signals()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if workers > 1:
        _run_workers(study_file, study, plan, options, plugins, workers, threads, preset,
                     set_ or [])
        return
    with ProgressDisplay(out, enabled=not quiet) as display:
        plugins.manager.register(display, name="ablate:progress")
        runner = Runner(plan, options, plugins, log=display.log, progress=display,
                        locate=lambda key, value: studyfile.locate(study, key, value))
        try:
            summary = runner.run()
        except RunError as error:
            err.print(f"[red]error:[/] {error}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(INTERRUPTED)
            raise typer.Exit(130) from None
        finally:
            plugins.manager.unregister(name="ablate:progress")
    done = summary.done_before + summary.completed
    out.print(f"{done}/{summary.total} trials complete; results in {runner.study_dir}")
    if summary.failed:
        err.print(f"[red]{len(summary.failed)} trials failed after retries:[/] {summary.failed}; "
                  "see the error column of the trials table")
        raise typer.Exit(1)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List installed plugins, their versions and what they register."""
    found = list(describe(get_plugins()))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("plugin", "distribution", "version", "registers / error")
    for entry in found:
        detail = ", ".join(entry["registers"]) if entry["status"] == "loaded" else (
            f"[red]failed to {entry['stage']}:[/] {entry['error']}")
        table.add_row(entry["name"], entry["distribution"], entry["version"], detail)
    out.print(table)


@app.command(name="list")
def list_components(
    kind: Annotated[str | None, typer.Argument(help="dataset, model, augmentation, optimizer, "
                                                       "scheduler or setting")] = None,
) -> None:
    """List components with their parameters and defaults."""
    from ablate.config import SETTINGS
    from ablate.registry import KINDS

    kinds = [*KINDS, "setting"]
    wanted = kind.rstrip("s") if kind else None
    if wanted is not None and wanted not in kinds:
        err.print(f"[red]error:[/] unknown kind {kind!r}; kinds: {', '.join(kinds)}")
        raise typer.Exit(2)
    registry = get_plugins().registry
    for current in kinds:
        if wanted not in (None, current):
            continue
        out.print(f"[bold]{current}s[/]")
        if current == "setting":
            for param in SETTINGS:
                out.print(f"  {param.name} = {param.default!r}  [dim]{param.description}[/]",
                          highlight=False)
            continue
        for component in registry.of_kind(current):
            out.print(f"  [bold]{component.name}[/]  {component.description}  "
                      f"[dim]({component.plugin})[/]", highlight=False)
            for param in component.params:
                out.print(f"      {param.name} = {param.default!r}  [dim]{param.description}[/]",
                          highlight=False)


@app.command()
def report(
    study_dir: Annotated[Path | None, typer.Argument(help="RESULTS_DIR/STUDY; without it, "
                                                         "list the studies under results/")] = None,
    format_: Annotated[str, typer.Option("--format", help="text, markdown, json or html")] = "text",
    metric: Annotated[str | None, typer.Option(help="metric for the effects (default: the "
                                                       "study's)")] = None,
    results_dir: Annotated[Path, typer.Option(help="where to look for studies")] = Path("results"),
) -> None:
    """Answer a study's question: cells, paired effects with intervals, plots, one HTML page."""
    from ablate.report import ReportError, build, list_studies, render

    if format_ not in ("text", "markdown", "json", "html"):
        err.print(f"[red]error:[/] --format must be text, markdown, json or html, not {format_!r}")
        raise typer.Exit(2)
    if study_dir is None:
        studies = list_studies(results_dir)
        if not studies:
            out.print(f"no studies under {results_dir}/ yet: run `ablate run STUDY` first")
        for name, attempts in studies:
            out.print(f"{results_dir / name}  ({attempts} trial attempts)", highlight=False)
        return
    try:
        files = build(study_dir, metric)
    except ReportError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    if format_ == "json":
        print(render.to_json(files.report, files.plots))
    elif format_ == "markdown":
        print(render.markdown(files.report, files.plots))
    elif format_ == "html":
        print(files.html)
    else:
        render.print_text(files.report, out)
    if format_ != "json":
        err.print(f"plots and HTML written to {files.html.parent}", highlight=False)


def main() -> None:
    """Console-script entry point; plugin commands are added before Typer parses."""
    if len(sys.argv) > 1 and sys.argv[1] not in ("run", "plugins", "list", "report"):
        get_plugins().emit("register_commands", app=app)
    app()
