"""``ablate run`` and ``ablate worker``: load the plan, then train it here or in workers.

Both take their options from :class:`~ablate.cli.options.TrainOptions`. A run checks and opens
the study here first (a bad file, folder or storage fails in seconds), then trains in this
process with a progress display, or starts worker processes (``--workers``, GPUs) and follows
them; it ends by saying what the folder holds and exits 0 only when every planned trial has a
result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from ablate.base.atomic import shown
from ablate.base.signals import deferred, interrupt_on_signals, raise_if_stopped
from ablate.cli.app import app, err, fail, out, say_interrupted
from ablate.cli.options import TrainOptions, command, worker_arguments
from ablate.cli.plan import Locate, load_plan, report_failures, requirements
from ablate.components import discovery
from ablate.components.discovery import Plugins
from ablate.errors import AblateError, DeviceLost, ExitCode
from ablate.study.plan import StudyPlan


def run(study_file: Path, options: TrainOptions) -> None:
    try:
        with deferred():  # counting GPUs imports torch: seconds, at the very start
            pinned = pinned_workers(options)
    except KeyboardInterrupt:
        raise say_interrupted() from None
    _start(study_file, options, join=False, pinned=pinned)


def worker(study_file: Path, options: TrainOptions) -> None:
    if options.gpus is not None:
        from ablate.run.gpus import VISIBLE, physical

        if not options.gpus.strip().isdigit():
            fail(
                f"--gpus {options.gpus}: a worker trains on one GPU, named by its index (e.g. "
                "--gpus 2); start one `ablate worker` per GPU"
            )
        # Before CUDA starts in this process: the worker sees that GPU alone, as cuda:0.
        os.environ[VISIBLE] = physical(int(options.gpus))
    _start(study_file, options, join=True, pinned=None)


app.command("run")(
    command(
        run,
        "run",
        """Run a study: queue its missing trials and train them;
    re-running it trains only the trials that have no result yet.""",
        worker=False,
    )
)
app.command("worker")(
    command(
        worker,
        "worker",
        """Join a study that `ablate run` started (on
    this or another machine, through its --storage) and train from its queue until the queue is
    empty.""",
        worker=True,
    )
)


def pinned_workers(options: TrainOptions) -> list[str] | None:
    """Each worker's CUDA_VISIBLE_DEVICES, or None to start workers unpinned (a CPU, one GPU
    and one worker, or another --device)."""
    from ablate.run.gpus import assign, parse_gpus, physical, visible_gpu_count

    device, per_gpu = options.device, options.workers_per_gpu
    asked = options.gpus is not None or per_gpu is not None
    if asked and device not in ("auto", "cuda"):
        fail(f"--gpus and --workers-per-gpu choose CUDA GPUs; they cannot go with --device {device}")
    count = visible_gpu_count() if device in ("auto", "cuda") else 0
    if asked:
        return assign(parse_gpus(options.gpus, count), per_gpu or 1)
    if count > 1 and options.workers == 1:
        return assign(tuple(range(count)), 1)  # default: every visible GPU, one worker each
    if count >= 1 and options.workers > 1:
        return [physical(i % count) for i in range(options.workers)]
    return None


def _start(study_file: Path, options: TrainOptions, join: bool, pinned: list[str] | None) -> None:
    """What `ablate run` and `ablate worker` share."""
    interrupt_on_signals()
    try:  # Ctrl-C at any moment, loading included, ends the same way
        with deferred():  # imports, the study file and the plugins load whole (ablate.entry)
            from ablate.run.interface import RunOptions
            from ablate.run.liveness import Liveness
            from ablate.run.runner import Runner
            from ablate.train.backends import prepare_process

            prepare_process()  # before CUDA starts
            study, plan, locate = load_plan(study_file, options.preset, options.sets)
            plugins = discovery.get_plugins()
        report_failures(plugins)
        out.print(
            f"study [bold]{plan.name}[/], preset [bold]{plan.preset or '(none)'}[/]: "
            f"{plan.size_text}; {plan.question}",
            highlight=False,
        )
        heartbeat = options.heartbeat_interval
        run_options = RunOptions(
            options.results_dir,
            options.device,
            options.storage,
            options.data_dir,
            options.retries,
            options.retry_failed,
            Liveness(heartbeat, max(options.grace_period, 2 * heartbeat)),
            join,
            options.threads,
        )
        workers = len(pinned) if pinned else options.workers
        for required, required_plan, required_locate in [] if join else requirements(study_file, study, plan):
            runner = Runner(required_plan, run_options, plugins, log=out.print, locate=required_locate)
            done = runner.count_done(runner.finished())
            if done < required_plan.size:
                out.print(
                    f"study {plan.name} (preset {plan.preset or '(none)'}) needs the results "
                    f"of {required} (preset {required_plan.preset or '(none)'}): "
                    f"{done}/{required_plan.size} of its trials are complete, running it "
                    "first",
                    highlight=False,
                )
                required_options = TrainOptions(
                    **{
                        **vars(options),
                        "preset": required_plan.preset or None,
                        "set_": None,
                        "tensorboard": False,
                    }
                )
                _train(
                    required,
                    required_plan,
                    run_options,
                    required_options,
                    plugins,
                    required_locate,
                    workers,
                    pinned,
                )
        _train(study_file, plan, run_options, options, plugins, locate, workers, pinned)
    except KeyboardInterrupt:
        raise say_interrupted() from None


def _train(
    study_file: Path,
    plan: StudyPlan,
    run_options: Any,
    options: TrainOptions,
    plugins: Plugins,
    locate: Locate,
    workers: int,
    pinned: list[str] | None,
) -> None:
    """Train ``plan`` in this process, or on ``workers`` processes (GPUs: ``pinned``)."""
    if workers > 1 or pinned:  # required studies too: on the same workers (GPUs)
        _run_workers(study_file, plan, run_options, options, plugins, locate, workers, pinned)
    else:
        _run_here(plan, run_options, plugins, locate, options.quiet)


def _run_workers(
    study_file: Path,
    plan: StudyPlan,
    run_options: Any,
    options: TrainOptions,
    plugins: Plugins,
    locate: Locate,
    workers: int,
    pinned: list[str] | None,
) -> None:
    """Check and open the study here (fail fast), then let ``workers`` processes train it."""
    from ablate.run.device import device_kind
    from ablate.run.interface import RunSummary
    from ablate.run.runner import Runner
    from ablate.run.workers import run_workers, threads_per_worker

    runner = Runner(plan, run_options, plugins, log=out.print, locate=locate)
    columns = runner.validate()
    kind = device_kind(run_options.device)  # no CUDA context here: the workers train
    runner.enqueue(runner.prepare(columns), RunSummary(plan.size, 0))
    threads = options.threads
    if pinned is None and kind == "cpu":  # every worker computes as the folder did
        threads = runner.fix_threads(threads or threads_per_worker(workers))
    finished_before = runner.finished()
    # What each worker is told: this run's options, but a worker trains one process's share.
    arguments = worker_arguments(
        study_file, options, skip={"workers", "gpus", "workers_per_gpu", "threads", "quiet"}
    )
    code = run_workers(
        arguments, workers, lambda: runner.count_done(runner.finished()), plan.size, out, threads, pinned
    )
    if code == ExitCode.INTERRUPTED:
        raise say_interrupted()
    finished_after = runner.finished()
    summary = RunSummary(
        runner.total(),
        runner.count_done(finished_before),
        completed=sorted(finished_after - finished_before),
        done_after=runner.count_done(finished_after),
    )
    finish(summary, runner.study_dir, answer=not run_options.join)
    if code:  # the workers said why (failed trials, a lost result)
        raise typer.Exit(code)


def _run_here(plan: StudyPlan, run_options: Any, plugins: Plugins, locate: Locate, quiet: bool) -> None:
    """Train the study in this process, with a progress display."""
    from ablate.cli.progress import ProgressDisplay
    from ablate.run.runner import Runner

    with ProgressDisplay(out, enabled=not quiet) as display:
        plugins.manager.register(display, name="ablate:progress")
        try:
            runner = Runner(plan, run_options, plugins, log=display.log, progress=display, locate=locate)
            summary = runner.run()
        except DeviceLost as lost:
            fail(
                f"{lost}: this process stops, its trial is recorded; run the same command again "
                "(a fresh process continues)",
                ExitCode.DEVICE_LOST,
            )
        finally:
            plugins.manager.unregister(name="ablate:progress")
    finish(summary, runner.study_dir, answer=not run_options.join)


def finish(summary: Any, study_dir: Path, answer: bool) -> None:
    """Say what the folder holds now and exit 0 only when every planned trial has a result;
    ``answer``: end a finished study with its short answer (`ablate run`; a worker only trains)."""
    if summary.done_before >= summary.total:
        out.print(
            f"all {summary.total} trials are complete; nothing to run; results in {shown(study_dir)}",
            highlight=False,
        )
        if answer:
            print_short_answer(study_dir)
        return
    done = f"{summary.done_after}/{summary.total} trials complete"
    if summary.diverged:
        done += f" ({len(summary.diverged)} of them diverged: a result, see the report)"
    if summary.pruned:
        done += f" ({len(summary.pruned)} pruned early by the study's pruner)"
    parts = [done, f"this run trained {summary.trained}"]
    if summary.done_before:  # so that the counts add up to the total
        parts.append(
            f"{summary.done_before} {'was' if summary.done_before == 1 else 'were'} "
            "complete before it started"
        )
    if summary.by_others:
        parts.append(f"{summary.by_others} were finished meanwhile by other runs sharing the folder")
    out.print("; ".join(parts) + f"; results in {shown(study_dir)}", highlight=False)
    code = ExitCode.OK
    if summary.failed:
        err.print(
            f"[red]{len(summary.failed)} trials failed after their retries:[/] "
            f"{summary.failed}; see the error column of the trials table",
            highlight=False,
        )
        code = ExitCode.TRIALS_MISSING
    if summary.not_retried:
        err.print(
            f"[red]trials {summary.not_retried} failed in earlier runs[/] and used up their "
            "retries; pass --retry-failed to try them again",
            highlight=False,
        )
        code = ExitCode.TRIALS_MISSING
    missing = summary.total - summary.done_after
    if missing > 0 and summary.elsewhere >= missing:
        out.print(
            f"{missing} trials are being trained now by other workers sharing the folder", highlight=False
        )
    elif missing > 0 and not code:
        err.print(f"[red]{missing} trials have no result yet:[/] run the same command again", highlight=False)
        code = ExitCode.TRIALS_MISSING
    if code:
        raise typer.Exit(code)
    if missing <= 0 and answer:
        print_short_answer(study_dir)


def print_short_answer(study_dir: Path) -> None:
    """End a finished study's run with its answer (the report's short answer): the user waited
    for it, and a run that ends with a folder name teaches nothing. The tables, plots and HTML
    are ``ablate report``'s."""
    from ablate.report import analyse_folder

    raise_if_stopped()  # a kill whose interrupt was swallowed: the results are whole, the answer waits
    try:
        answer, _ = analyse_folder(study_dir)
    except AblateError as error:  # the results are written; only the summary is missing
        err.print(f"no short answer: {error}; `ablate report` says more", highlight=False)
        return
    out.print("\n[bold]Short answer[/]")
    for line in answer.summary:
        out.print(f"  {line}", highlight=False)
    out.print(f"\nThe whole report (tables, plots, HTML): ablate report {shown(study_dir)}", highlight=False)
