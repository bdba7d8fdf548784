"""The public API for plugin commands (``register_commands``): a command's consoles, its one-line
failure, a study file's plan, and the options every study command spells the same way.

Use these, not the command line's internals::

    from ablate.commands import PresetOption, SetOption, err, fail, load_plan, out
"""

from __future__ import annotations

from typing import Any

from ablate.cli.app import err, fail, out
from ablate.cli.options import DataDirOption, DeviceOption, PresetOption, ResultsDirOption, SetOption
from ablate.cli.plan import load_plan, parse_set
from ablate.components.setup import TrialSetup
from ablate.study.plan import StudyPlan

__all__ = [
    "DataDirOption",
    "DeviceOption",
    "PresetOption",
    "ResultsDirOption",
    "SetOption",
    "err",
    "fail",
    "load_plan",
    "out",
    "parse_set",
    "pick_device",
    "resolve_baseline",
]


def pick_device(requested: str) -> tuple[Any, str]:
    """The torch device ``--device`` names (``auto``: CUDA, then MPS, then the CPU) and why; a
    device that is not there is a one-line error."""
    from ablate.run.device import pick_device as pick

    return pick(requested)


def resolve_baseline(plan: StudyPlan, locate: Any) -> TrialSetup:
    """The components and settings of ``plan``'s baseline, checked against the installed plugins
    (a bad value is a one-line error naming where it was given)."""
    from ablate.components import discovery
    from ablate.components.validate import resolve_located

    return resolve_located(plan.baseline, discovery.get_plugins().registry, locate)
