"""The provenance columns every trials row of a run shares: the device, GPU and CPU, the versions
of torch, ablate and each plugin, the git revision the study is run from, and the plan."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import ablate
from ablate.components.discovery import Plugins
from ablate.run.gpus import gpu_label
from ablate.study.plan import StudyPlan
from ablate.train.precision import cpu_name


def provenance(plan: StudyPlan, plugins: Plugins, device: Any) -> dict[str, Any]:
    """The columns every trials row of the run shares."""
    import torch

    return {
        "device": str(device),
        "gpu": gpu_label(device),
        "cpu": cpu_name(),
        "torch_version": torch.__version__,
        "ablate_version": ablate.__version__,
        "plugin_versions": json.dumps({p.name: p.version for p in plugins.loaded.values()}, sort_keys=True),
        # The revision of the project the study is run from (its working directory).
        "git_revision": _git_revision(Path.cwd()),
        "study_fingerprint": plan.fingerprint(),
        "preset": plan.preset,
    }


def _git_revision(where: Path) -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None
