"""The ``ablate`` command line: thin Typer commands over the library."""

from __future__ import annotations

import ast
import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ablate.discovery import Plugins, describe, get_plugins
from ablate.errors import DEVICE_LOST_EXIT, DeviceLost
from ablate.signals import deferred, interrupt_on_signals

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
_said_interrupted = False  # whether a command printed INTERRUPTED itself


def say_interrupted() -> typer.Exit:
    """Print INTERRUPTED once; returns the Exit(130) to raise."""
    global _said_interrupted
    if not _said_interrupted:
        err.print(INTERRUPTED)
        _said_interrupted = True
    return typer.Exit(130)


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


def _report_failures(plugins: Plugins) -> None:
    for failure in plugins.failures:
        err.print(f"[yellow]warning:[/] plugin {failure.name!r} ({failure.distribution} "
                  f"{failure.version}) failed to {failure.stage}: {escape(failure.error)}",
                  highlight=False)
    for info in plugins.loaded.values():
        for component, why in info.refused.items():
            err.print(f"[yellow]warning:[/] plugin {info.name!r} ({info.distribution} "
                      f"{info.version}): {component} not registered: {escape(why)}",
                      highlight=False)


def load_plan(study_file: Path, preset: str | None, sets: list[str]) -> tuple[Any, Any, Any]:
    """The study, its plan for ``preset`` and ``--set`` items, and a function that says where a
    value was given (the study file's line, or the ``--set`` item); exits 2 on a bad file."""
    from ablate import studyfile
    from ablate.study import StudyError

    overrides = parse_set(sets)
    given = {item.partition("=")[0].strip(): item for item in sets}
    try:
        study = studyfile.load(study_file)
        plan = study.plan(preset, overrides)
    except (studyfile.StudyFileError, StudyError) as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None

    def locate(key: str | None, value: Any) -> str:
        if key is not None and key in given:
            return f"--set {given[key]}"
        return studyfile.locate(study, key, value)

    return study, plan, locate


def requirements(study_file: Path, study: Any, plan: Any, seen: tuple[Path, ...] = ()
                 ) -> list[tuple[Path, Any, Any]]:
    """The study files the chosen preset ``requires`` (and theirs, first), each with its plan
    (the same preset name when it has one, else its default) and where its values come from;
    exits 2 on a missing or bad file or a cycle."""
    from ablate import studyfile
    from ablate.study import StudyError

    chosen = study.presets.get(plan.preset)
    found: list[tuple[Path, Any, Any]] = []
    for name in (chosen.requires if chosen is not None else ()):
        path = (study_file.parent / name).resolve()
        try:
            if path in seen or path == study_file.resolve():
                raise StudyError(f"requires {name!r} again: the studies require each other in a "
                                 "circle")
            required = studyfile.load(path)
            required_plan = required.plan(plan.preset if plan.preset in required.presets else None)
        except (studyfile.StudyFileError, StudyError) as error:
            err.print(f"[red]error:[/] {studyfile.locate(study, 'requires')}: {error}",
                      highlight=False)
            raise typer.Exit(2) from None
        found += requirements(path, required, required_plan, (*seen, study_file.resolve()))
        if all(p != path for p, _, _ in found):
            found.append((path, required_plan,
                          lambda key, value, s=required: studyfile.locate(s, key, value)))
    return found


def finish(summary: Any, study_dir: Path) -> None:
    """Say what the folder holds now and exit 0 only when every planned trial has a result."""
    if summary.done_before >= summary.total:
        out.print(f"all {summary.total} trials are complete; nothing to run; results in "
                  f"{study_dir}", highlight=False)
        return
    done = f"{summary.done_after}/{summary.total} trials complete"
    if summary.diverged:
        done += f" ({len(summary.diverged)} of them diverged: a result, see the report)"
    if summary.pruned:
        done += f" ({len(summary.pruned)} pruned early by the study's pruner)"
    parts = [done, f"this run trained {summary.trained}"]
    if summary.done_before:  # so that the counts add up to the total
        parts.append(f"{summary.done_before} {'was' if summary.done_before == 1 else 'were'} "
                     "complete before it started")
    if summary.by_others:
        parts.append(f"{summary.by_others} were finished meanwhile by other runs sharing the folder")
    out.print("; ".join(parts) + f"; results in {study_dir}", highlight=False)
    code = 0
    if summary.failed:
        err.print(f"[red]{len(summary.failed)} trials failed after their retries:[/] "
                  f"{summary.failed}; see the error column of the trials table", highlight=False)
        code = 1
    if summary.not_retried:
        err.print(f"[red]trials {summary.not_retried} failed in earlier runs[/] and used up their "
                  "retries; pass --retry-failed to try them again", highlight=False)
        code = 1
    missing = summary.total - summary.done_after
    if missing > 0 and summary.elsewhere >= missing:
        out.print(f"{missing} trials are being trained now by other workers sharing the folder",
                  highlight=False)
    elif missing > 0 and not code:
        err.print(f"[red]{missing} trials have no result yet:[/] run the same command again",
                  highlight=False)
        code = 1
    if code:
        raise typer.Exit(code)


def _run_workers(study_file: Path, plan: Any, options: Any, plugins: Plugins, locate: Any,
                 workers: int, threads: int | None, preset: str | None, sets: list[str],
                 pinned: list[str] | None = None) -> None:
    """Check and open the study here (fail fast), then let ``workers`` processes train it."""
    from ablate.runner import RunError, Runner, RunSummary, device_kind
    from ablate.workers import run_workers, threads_per_worker

    try:
        runner = Runner(plan, options, plugins, log=out.print, locate=locate)
        columns = runner.validate()
        kind = device_kind(options.device)  # no CUDA context here: the workers train
        runner.enqueue(runner.prepare(columns), RunSummary(plan.size, 0))
        if pinned is None and kind == "cpu":  # every worker computes as the folder did
            threads = runner.fix_threads(threads or threads_per_worker(workers))
    except RunError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    finished_before = runner.finished()
    arguments = [str(study_file), "--results-dir", str(options.results_dir), "--device",
                 options.device, "--retries", str(options.retries), "--heartbeat-interval",
                 str(options.liveness.heartbeat), "--grace-period", str(options.liveness.grace)]
    arguments += ["--preset", preset] if preset else []
    arguments += ["--storage", options.storage] if options.storage else []
    arguments += ["--data-dir", str(options.data_dir)] if options.data_dir else []
    arguments += ["--retry-failed"] if options.retry_failed else []
    for item in sets:
        arguments += ["--set", item]
    code = run_workers(arguments, workers, lambda: runner.count_done(runner.finished()), plan.size,
                       out, threads, pinned)
    if code == 130:
        raise say_interrupted()
    finished_after = runner.finished()
    summary = RunSummary(runner.total(), runner.count_done(finished_before),
                         completed=sorted(finished_after - finished_before),
                         done_after=runner.count_done(finished_after))
    finish(summary, runner.study_dir)
    if code:  # the workers said why (failed trials, a lost result)
        raise typer.Exit(code)


StorageOption = Annotated[str | None, typer.Option(help="Optuna storage URL, e.g. postgresql://"
                                                       "user@host/db (default: a journal file in "
                                                       "the study's results folder, one host)")]
RetriesOption = Annotated[int, typer.Option(min=0, help="extra attempts for a failing trial")]
RetryFailedOption = Annotated[bool, typer.Option(help="try again trials that failed all their "
                                                      "attempts in earlier runs")]
TensorBoardOption = Annotated[bool, typer.Option(help="write per-epoch TensorBoard scalars under "
                                                      "RESULTS_DIR/STUDY/tensorboard/ (the setting "
                                                      "tensorboard=True)")]
ThreadsOption = Annotated[int | None, typer.Option(min=1, help="CPU threads per worker (default: "
                                                               "all cores / workers)")]
HeartbeatOption = Annotated[int, typer.Option(min=1, help="seconds between a running trial's "
                                                          "heartbeats (database storages)")]
GraceOption = Annotated[int, typer.Option(min=1, help="seconds of silence after which a trial's "
                                                      "worker counts as dead and the trial goes "
                                                      "back in the queue (database storages)")]
QuietOption = Annotated[bool, typer.Option(hidden=True, help="no progress display")]


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="the study file, e.g. studies/dropout_gap.py")],
    preset: PresetOption = None,
    results_dir: ResultsDirOption = Path("results"),
    device: DeviceOption = "auto",
    storage: StorageOption = None,
    set_: SetOption = None,
    data_dir: DataDirOption = None,
    retries: RetriesOption = 1,
    retry_failed: RetryFailedOption = False,
    tensorboard: TensorBoardOption = False,
    workers: Annotated[int, typer.Option(min=1, help="worker processes sharing the study (on "
                                                    "GPUs: spread over them in turn)")] = 1,
    gpus: Annotated[str | None, typer.Option(help="GPUs to train on, e.g. 0,1,3 (default: every "
                                                  "visible GPU, one worker each)")] = None,
    workers_per_gpu: Annotated[int | None, typer.Option(min=1, help="workers pinned to each GPU "
                                                                    "(default 1)")] = None,
    threads: ThreadsOption = None,
    heartbeat_interval: HeartbeatOption = 60,
    grace_period: GraceOption = 300,
    quiet: QuietOption = False,
) -> None:
    """Run a study: queue its missing trials and train them; re-running it trains only the
    trials that have no result yet."""
    try:
        with deferred():  # counting GPUs imports torch: seconds, at the very start
            pinned = _pinned_workers(device, workers, gpus, workers_per_gpu)
    except KeyboardInterrupt:
        raise say_interrupted() from None
    _start(study_file, preset, results_dir, device, storage, set_, data_dir, retries, retry_failed,
           tensorboard, len(pinned) if pinned else workers, threads, heartbeat_interval,
           grace_period, quiet, join=False, pinned=pinned)


def _pinned_workers(device: str, workers: int, gpus: str | None, per_gpu: int | None
                    ) -> list[str] | None:
    """Each worker's CUDA_VISIBLE_DEVICES, or None to start workers unpinned (a CPU, one GPU
    and one worker, or another --device)."""
    from ablate.gpus import GpuError, assign, parse_gpus, physical, visible_gpu_count

    asked = gpus is not None or per_gpu is not None
    if asked and device not in ("auto", "cuda"):
        err.print(f"[red]error:[/] --gpus and --workers-per-gpu choose CUDA GPUs; they cannot go "
                  f"with --device {device}", highlight=False)
        raise typer.Exit(2)
    count = visible_gpu_count() if device in ("auto", "cuda") else 0
    try:
        if asked:
            return assign(parse_gpus(gpus, count), per_gpu or 1)
    except GpuError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    if count > 1 and workers == 1:
        return assign(tuple(range(count)), 1)  # default: every visible GPU, one worker each
    if count >= 1 and workers > 1:
        return [physical(i % count) for i in range(workers)]
    return None


@app.command()
def worker(
    study_file: Annotated[Path, typer.Argument(help="the study file, as given to `ablate run`")],
    preset: PresetOption = None,
    results_dir: ResultsDirOption = Path("results"),
    device: DeviceOption = "auto",
    storage: StorageOption = None,
    set_: SetOption = None,
    data_dir: DataDirOption = None,
    retries: RetriesOption = 1,
    tensorboard: TensorBoardOption = False,
    threads: ThreadsOption = None,
    heartbeat_interval: HeartbeatOption = 60,
    grace_period: GraceOption = 300,
    gpus: Annotated[str | None, typer.Option(help="the one GPU this worker trains on, by index, "
                                                  "e.g. 2 (start one worker per GPU)")] = None,
    quiet: QuietOption = False,
) -> None:
    """Join a study that `ablate run` started (on this or another machine, through its
    --storage) and train from its queue until the queue is empty."""
    if gpus is not None:
        from ablate.gpus import VISIBLE, physical

        if not gpus.strip().isdigit():
            err.print(f"[red]error:[/] --gpus {gpus}: a worker trains on one GPU, named by its "
                      "index (e.g. --gpus 2); start one `ablate worker` per GPU", highlight=False)
            raise typer.Exit(2)
        # Before CUDA starts in this process: the worker sees that GPU alone, as cuda:0.
        os.environ[VISIBLE] = physical(int(gpus))
    _start(study_file, preset, results_dir, device, storage, set_, data_dir, retries, False,
           tensorboard, 1, threads, heartbeat_interval, grace_period, quiet, join=True)


def _start(study_file: Path, preset: str | None, results_dir: Path, device: str,
           storage: str | None, set_: list[str] | None, data_dir: Path | None, retries: int,
           retry_failed: bool, tensorboard: bool, workers: int, threads: int | None,
           heartbeat: int, grace: int, quiet: bool, join: bool,
           pinned: list[str] | None = None) -> None:
    """What `ablate run` and `ablate worker` share."""
    interrupt_on_signals()
    sets = [*(set_ or []), *(["tensorboard=True"] if tensorboard else [])]
    try:  # Ctrl-C at any moment, loading included, ends the same way
        with deferred():  # imports, the study file and the plugins load whole (ablate.entry)
            from ablate.backends import prepare_process
            from ablate.queue import Liveness
            from ablate.runner import RunError, Runner, RunOptions

            prepare_process()  # before CUDA starts
            _study, plan, locate = load_plan(study_file, preset, sets)
            plugins = get_plugins()
        _report_failures(plugins)
        out.print(f"study [bold]{plan.name}[/], preset [bold]{plan.preset or '(none)'}[/]: "
                  f"{plan.size} trials; {plan.question}", highlight=False)
        options = RunOptions(results_dir, device, storage, data_dir, retries, retry_failed,
                             Liveness(heartbeat, max(grace, 2 * heartbeat)), join, threads)
        for required, required_plan, required_locate in ([] if join else
                                                         requirements(study_file, _study, plan)):
            try:
                runner = Runner(required_plan, options, plugins, log=out.print,
                                locate=required_locate)
            except RunError as error:
                err.print(f"[red]error:[/] {error}", highlight=False)
                raise typer.Exit(2) from None
            done = runner.count_done(runner.finished())
            if done < required_plan.size:
                out.print(f"study {plan.name} (preset {plan.preset or '(none)'}) needs the results "
                          f"of {required} (preset {required_plan.preset or '(none)'}): "
                          f"{done}/{required_plan.size} of its trials are complete, running it "
                          "first", highlight=False)
                if workers > 1 or pinned:  # on the same workers (GPUs) as the study itself
                    _run_workers(required, required_plan, options, plugins, required_locate,
                                 workers, threads, required_plan.preset or None, [], pinned)
                else:
                    _run_here(required_plan, options, plugins, required_locate, quiet)
        if workers > 1 or pinned:
            _run_workers(study_file, plan, options, plugins, locate, workers, threads, preset, sets,
                         pinned)
        else:
            _run_here(plan, options, plugins, locate, quiet)
    except KeyboardInterrupt:
        raise say_interrupted() from None


def _run_here(plan: Any, options: Any, plugins: Plugins, locate: Any, quiet: bool) -> None:
    """Train the study in this process, with a progress display."""
    from ablate.progress import ProgressDisplay
    from ablate.runner import RunError, Runner

    with ProgressDisplay(out, enabled=not quiet) as display:
        plugins.manager.register(display, name="ablate:progress")
        try:
            runner = Runner(plan, options, plugins, log=display.log, progress=display, locate=locate)
            summary = runner.run()
        except RunError as error:
            err.print(f"[red]error:[/] {error}", highlight=False)
            raise typer.Exit(2) from None
        except DeviceLost as lost:
            err.print(f"[red]error:[/] {escape(str(lost))}: this process stops, its trial is "
                      "recorded; run the same command again (a fresh process continues)",
                      highlight=False)
            raise typer.Exit(DEVICE_LOST_EXIT) from None
        finally:
            plugins.manager.unregister(name="ablate:progress")
    finish(summary, runner.study_dir)


@app.command()
def status(
    study_dir: Annotated[Path, typer.Argument(help="RESULTS_DIR/STUDY")],
    storage: StorageOption = None,
) -> None:
    """How a study stands: its queue (waiting, running with host and last heartbeat, finished
    attempts) and its results (complete, diverged, failed, missing)."""
    with deferred():  # an import cut in half leaves a library broken: the signal waits
        from ablate.status import StatusError, study_status

    try:
        found = study_status(study_dir, storage)
    except StatusError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    for note in found.notes:
        err.print(escape(note), highlight=False)
    out.print(f"study {found.name} (preset {found.preset or '(none)'}), {found.planned} planned "
              f"trials; queue in {found.storage}", highlight=False)
    counts = Table("", *found.counts)
    counts.add_row("trials", *(str(n) for n in found.counts.values()))
    out.print(counts)
    if found.running:
        running = Table("trial", "attempt", "worker (host:pid)", "running for", "last heartbeat")
        for row in found.running:
            running.add_row(*row)
        out.print(running)


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
        detail = escape(", ".join(entry["registers"])) if entry["status"] == "loaded" else (
            f"[red]failed to {entry['stage']}:[/] {escape(entry['error'])}"
            + (f"; dropped {', '.join(entry['dropped'])}" if entry.get("dropped") else ""))
        for component, why in entry.get("refused", {}).items():
            detail += f"\n[red]not registered: {component}:[/] {escape(why)}"
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
    plugins = get_plugins()
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
            out.print(f"  [bold]{escape(component.name)}[/]  {escape(component.description)}  "
                      f"[dim]({escape(component.plugin)})[/]", highlight=False)
            for param in component.params:
                out.print(f"      {_describe_param(param)}", highlight=False)
        for (kind_, name), reason in sorted(registry.dropped.items()):
            if kind_ == current:
                out.print(f"  [red]{escape(name)}  dropped:[/] {escape(reason)}", highlight=False)
    for failure in plugins.failures:
        if failure.stage == "import":
            out.print(f"[red]plugin {failure.name!r} failed to import[/] ({escape(failure.error)}); what it "
                      "provides is missing above", highlight=False)


def _describe_param(param: Any) -> str:
    """One parameter for ``ablate list``; descriptions are text, never rich markup (a
    description holding ``[tensorboard]`` lost it to the markup parser)."""
    bounds = f"; {param.bounds}" if param.bounds else ""
    described = escape(param.description + bounds)
    return f"{escape(param.name)} = {escape(repr(param.default))}  [dim]{described}[/]"


@app.command()
def report(
    study_dir: Annotated[Path | None, typer.Argument(help="RESULTS_DIR/STUDY; without it, "
                                                         "list the studies under results/")] = None,
    format_: Annotated[str, typer.Option("--format", help="text, markdown, json or html")] = "text",
    metric: Annotated[str | None, typer.Option(help="metric for the effects (default: the "
                                                       "study's)")] = None,
    results_dir: Annotated[Path, typer.Option(help="where to look for studies")] = Path("results"),
    files: Annotated[bool, typer.Option(help="write the plots and report.html under "
                                             "RESULTS_DIR/STUDY/report/")] = True,
) -> None:
    """Answer a study's question: cells, paired effects with intervals, plots, one HTML page."""
    with deferred():  # an import cut in half leaves a library broken: the signal waits
        from ablate.atomic import WriteError
        from ablate.report import ReportError, analyse_folder, list_studies, render, write_files

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
        answer, results = analyse_folder(study_dir, metric)
    except ReportError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    written, problem = None, None
    if files or format_ == "html":
        try:
            written = write_files(answer, results)
        except WriteError as error:
            problem = error
    plots = written.plots if written else {}
    if format_ == "json":
        print(render.to_json(answer, plots))
    elif format_ == "markdown":
        print(render.markdown(answer, plots))
    elif format_ == "html" and written:
        print(written.html)
    elif format_ == "text":
        render.print_text(answer, out)
    if problem is not None:
        shown = "" if format_ == "html" else "; the report above is complete"
        err.print(f"[red]error:[/] plots and report.html not written: {problem}{shown}. Fix the "
                  "folder's permissions or free some space, or pass --no-files", highlight=False)
        raise typer.Exit(2)
    if written and format_ != "json":
        err.print(f"plots and HTML written to {written.html.parent}", highlight=False)


_plugin_commands_added = False


def with_plugin_commands() -> typer.Typer:
    """The app with the commands plugins add (``lr-range``, ``new-plugin``, third parties')."""
    global _plugin_commands_added
    if not _plugin_commands_added:
        get_plugins().emit("register_commands", app=app)
        _plugin_commands_added = True
    return app


def main() -> None:
    """The command line (its console script is :func:`ablate.entry.main`, which holds Ctrl-C
    from the first moment). Plugin commands are added before Typer parses, unless the command
    is one of the core's (they need no plugin loaded to start). Ctrl-C or SIGTERM at any moment
    ends with status 130: a run records its running trial first."""
    interrupt_on_signals()  # (already, through the console script; not under python -c)
    try:
        core = {command.name or command.callback.__name__ for command in app.registered_commands
                if command.callback is not None}
        if len(sys.argv) > 1 and sys.argv[1] not in core:
            with deferred():
                with_plugin_commands()
        app()
    except KeyboardInterrupt:  # outside a command (loading, parsing)
        _leave_interrupted()
    except SystemExit as leaving:
        if leaving.code != 130:
            raise
        _leave_interrupted()


def _leave_interrupted() -> None:
    """Say so (unless the command did) and exit 130. Typer turns a KeyboardInterrupt outside
    a command's own handling (an import at its start, say) into a silent exit 130."""
    if not _said_interrupted:
        runs = len(sys.argv) > 1 and sys.argv[1] in ("run", "worker")
        err.print(INTERRUPTED if runs else "interrupted")
    _leave(130)


def _leave(code: int) -> None:
    """Exit at once, once every thread that writes a file is done. A Ctrl-C that landed inside
    an import leaves CPython believing a KeyboardInterrupt went unhandled, and it would then end
    the process by SIGINT after a clean exit (status -2, not the documented 130)."""
    for thread in threading.enumerate():  # a checkpoint still being written finishes
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
