"""The options of ``ablate run`` and ``ablate worker``, declared once.

:class:`TrainOptions` is the one place an option is added: both commands take their signatures
from it (``run`` all of them, ``worker`` all but the run-only ones), and the command line of the
worker processes ``ablate run --workers N`` starts is built from it too.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

# Options plugin commands take too (lr-range): spelled once.
PresetOption = Annotated[str | None, typer.Option(help="size preset (default: the study's)")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="override a baseline parameter: KEY=VALUE (repeatable)")
]
ResultsDirOption = Annotated[
    Path, typer.Option(help="where results go: a folder, file:// or s3://bucket/prefix")
]
DeviceOption = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, mps")]
DataDirOption = Annotated[Path | None, typer.Option(help="local datasets (else $ABLATE_DATA)")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL, e.g. postgresql://"
        "user@host/db (default: a journal file in "
        "the study's results folder, one host)"
    ),
]
StudyFileArgument = Annotated[Path, typer.Argument(help="the study file, e.g. studies/dropout_gap.py")]
RUN_ONLY = {"run_only": True}  # field metadata: not an option of `ablate worker`


@dataclass(frozen=True)
class TrainOptions:
    """What ``ablate run`` and ``ablate worker`` are told, besides the study file."""

    preset: PresetOption = None
    results_dir: ResultsDirOption = Path("results")
    device: DeviceOption = "auto"
    storage: StorageOption = None
    set_: SetOption = None
    data_dir: DataDirOption = None
    retries: Annotated[int, typer.Option(min=0, help="extra attempts for a failing trial")] = 1
    retry_failed: Annotated[
        bool, typer.Option(help="try again trials that failed all their attempts in earlier runs")
    ] = field(default=False, metadata=RUN_ONLY)
    tensorboard: Annotated[
        bool,
        typer.Option(
            help="write per-epoch TensorBoard scalars under "
            "RESULTS_DIR/STUDY/tensorboard/ (the setting "
            "tensorboard=True)"
        ),
    ] = False
    workers: Annotated[
        int,
        typer.Option(min=1, help="worker processes sharing the study (on GPUs: spread over them in turn)"),
    ] = field(default=1, metadata=RUN_ONLY)
    gpus: Annotated[
        str | None,
        typer.Option(
            help="run: GPUs to train on, e.g. 0,1,3 (default: "
            "every visible GPU, one worker each); worker: "
            "the one GPU it trains on"
        ),
    ] = None
    workers_per_gpu: Annotated[
        int | None, typer.Option(min=1, help="workers pinned to each GPU (default 1)")
    ] = field(default=None, metadata=RUN_ONLY)
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads per worker (default: all cores / workers)")
    ] = None
    heartbeat_interval: Annotated[
        int, typer.Option(min=1, help="seconds between a running trial's heartbeats (database storages)")
    ] = 60
    grace_period: Annotated[
        int,
        typer.Option(
            min=1,
            help="seconds of silence after which a "
            "trial's worker counts as dead and the "
            "trial goes back in the queue "
            "(database storages)",
        ),
    ] = 300
    quiet: Annotated[bool, typer.Option(hidden=True, help="no progress display")] = False

    @property
    def sets(self) -> list[str]:
        """The ``--set`` items, with ``--tensorboard`` as the setting it stands for."""
        return [*(self.set_ or []), *(["tensorboard=True"] if self.tensorboard else [])]


def command(
    body: Callable[[Path, TrainOptions], None], name: str, doc: str, worker: bool
) -> Callable[..., None]:
    """A Typer command calling ``body(study_file, options)``, its parameters read from
    :class:`TrainOptions` (without the run-only ones for ``worker``)."""
    hints = get_type_hints(TrainOptions, include_extras=True)
    chosen = [f for f in dataclasses.fields(TrainOptions) if not (worker and f.metadata.get("run_only"))]
    parameters = [
        inspect.Parameter("study_file", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=StudyFileArgument)
    ]
    parameters += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in chosen
    ]

    def run(study_file: Path, **values: Any) -> None:
        body(study_file, TrainOptions(**values))

    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__name__, run.__doc__ = name, doc
    return run


def worker_arguments(study_file: Path, options: TrainOptions, skip: set[str]) -> list[str]:
    """The command line that gives a worker process ``options`` (all but ``skip`` and the
    defaults), built field by field so that a new option reaches the workers by itself."""
    arguments = [str(study_file)]
    for option in dataclasses.fields(TrainOptions):
        value = getattr(options, option.name)
        if option.name in skip or value == option.default:
            continue
        flag = "--" + option.name.rstrip("_").replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            for item in value:
                arguments += [flag, str(item)]
        else:
            arguments += [flag, str(value)]
    return arguments
