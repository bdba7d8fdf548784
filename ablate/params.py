"""Parameters of components and settings: their values, types and valid ranges (public: ``ablate.param``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Bounds",
    "Param",
    "ParamSpec",
    "ParamValue",
    "coerce_value",
    "column_value",
    "param",
    "param_type",
]

ParamValue = bool | int | float | str | tuple[int | float, ...]


def column_value(value: Any) -> bool | int | float | str:
    """A parameter value as a Parquet scalar: tuples become JSON text."""
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return value  # type: ignore[no-any-return]  # a bool, int, float or str already


def param_type(value: Any) -> Any:
    """The Arrow type (a ``pyarrow.DataType``) of a trials-table column holding ``value``."""
    import pyarrow as pa  # here: declaring a parameter needs no pyarrow

    return pa.array([column_value(value)]).type


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Valid values of a parameter: a range for numbers (for a tuple, each of its numbers) or
    the choices for text. Floats must be finite in any case."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def bounds(self) -> str:
        """The valid values in words (``> 0``, ``>= 0 and < 1``, ``one of a, b``), or ''."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        parts = [
            f"{sign} {limit:g}"
            for sign, limit in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if limit is not None
        ]
        return " and ".join(parts)

    def check(self, name: str, value: Any, given: Any) -> None:
        """Raise ``ValueError`` naming ``name`` if ``value`` (converted from ``given``) is invalid."""
        numbers = value if isinstance(value, tuple) else (value,)
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number):
                raise ValueError(f"parameter {name!r} must be a finite number, got {given!r}")
            if (
                (self.ge is not None and number < self.ge)
                or (self.gt is not None and number <= self.gt)
                or (self.le is not None and number > self.le)
                or (self.lt is not None and number >= self.lt)
            ):
                raise ValueError(f"parameter {name!r} must be {self.bounds}, got {given!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {name!r} must be {self.bounds}, got {given!r}")


@dataclass(frozen=True)
class ParamSpec(Bounds):
    """What a plugin declares of one parameter: a description and its valid values. Made by
    :func:`param`."""

    description: str


def param(
    description: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> ParamSpec:
    """Declare a parameter with its valid values, for ``register(..., params={...})``::

        params={"lr": param("learning rate", gt=0), "dropout": param("probability", ge=0, lt=1)}

    ``ablate run`` refuses a value outside them before anything trains, naming the study file's
    line. A plain string declares a parameter with no bounds (floats must still be finite).
    """
    return ParamSpec(
        description, ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices is not None else None
    )


@dataclass(frozen=True)
class Param(Bounds):
    """One user-settable parameter of a component, with its valid values."""

    name: str
    default: ParamValue
    description: str

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def coerce(self, value: Any) -> ParamValue:
        """Convert ``value`` to this parameter's type and check it, or raise ``ValueError``."""
        coerced: ParamValue = coerce_value(value, self.default, self.name)
        self.check(self.name, coerced, value)
        return coerced


def coerce_value(value: Any, default: Any, name: str) -> Any:
    """Convert ``value`` to the type of ``default``; ints widen to floats, lists to tuples."""
    expected = type(default)
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is tuple:
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return tuple(value)
    elif isinstance(value, expected):
        return value
    raise ValueError(f"parameter {name!r} takes a {expected.__name__} (default {default!r}), got {value!r}")
