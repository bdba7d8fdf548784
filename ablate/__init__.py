"""ablate: run ablation studies of PyTorch image classifiers and report what each factor does.

Importing ``ablate`` costs nothing: its names load on first use (torch and the plugins only when a
study runs), so that the command line can hold Ctrl-C from its first moment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and readers see; at run time __getattr__ loads them
    import pluggy

    from ablate.components.registry import Registrar
    from ablate.params import param
    from ablate.study.declare import Preset, Study
    from ablate.study.factors import (
        choice,
        fractional,
        integer,
        leave_one_out,
        path,
        sampler,
        uniform,
        until,
    )

    hookimpl: pluggy.HookimplMarker

_LAZY = {
    "Registrar": "ablate.components.registry",
    "param": "ablate.params",
    "Preset": "ablate.study.declare",
    "Study": "ablate.study.declare",
    **{
        name: "ablate.study.factors"
        for name in (
            "choice",
            "fractional",
            "integer",
            "leave_one_out",
            "path",
            "sampler",
            "uniform",
            "until",
        )
    },
}

__all__ = [
    "Preset",
    "Registrar",
    "Study",
    "__version__",
    "choice",
    "fractional",
    "hookimpl",
    "integer",
    "leave_one_out",
    "param",
    "path",
    "sampler",
    "uniform",
    "until",
]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        value: Any = pluggy.HookimplMarker("ablate")
        """Marker for plugin hook implementations: ``@ablate.hookimpl def register_models(...)``"""
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'ablate' has no attribute {name!r}")
    globals()[name] = value  # loaded once
    return value
