"""ablate: run ablation studies of PyTorch image classifiers and report what each factor does.

Importing ``ablate`` is cheap: torch and the plugins load only when a study runs.
"""

from __future__ import annotations

import pluggy

from ablate.registry import Registrar, param
from ablate.study import Preset, Study, choice, fractional, integer, sampler, uniform, until

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("ablate")
"""Marker for plugin hook implementations: ``@ablate.hookimpl def register_models(register): ...``"""

__all__ = ["Preset", "Registrar", "Study", "__version__", "choice", "fractional", "hookimpl", "integer",
           "param", "sampler", "uniform", "until"]
