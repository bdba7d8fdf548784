"""Typed registries of components (datasets, models, augmentations, optimizers, schedulers).

A component is a frozen record: its name, a factory, a one-line description, the parameters
a study may set (read from the factory's keyword-only arguments that have defaults) and the
plugin it came from. Keyword-only arguments *without* defaults are context the trainer
supplies (for example ``num_classes`` for a model or ``params`` for an optimizer); they are
not user parameters.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("dataset", "model", "augmentation", "optimizer", "scheduler")

ParamValue = bool | int | float | str | tuple[int | float, ...]


class RegistryError(Exception):
    """A component could not be registered or looked up."""


@dataclass(frozen=True)
class Param:
    """One user-settable parameter of a component."""

    name: str
    default: ParamValue
    description: str

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def coerce(self, value: Any) -> ParamValue:
        """Convert ``value`` to this parameter's type, or raise ``ValueError`` saying why."""
        return coerce_value(value, self.default, self.name)


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
    raise ValueError(
        f"parameter {name!r} takes a {expected.__name__} (default {default!r}), got {value!r}"
    )


@dataclass(frozen=True)
class Component:
    """A registered factory and what a study may set on it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    params: tuple[Param, ...]
    plugin: str

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def build(self, context: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
        """Call the factory with trainer-supplied ``context`` and user parameter ``values``."""
        return self.factory(**context, **{**self.defaults(), **values})


def params_from_signature(
    factory: Callable[..., Any], descriptions: Mapping[str, str], where: str
) -> tuple[Param, ...]:
    """Read user parameters from ``factory``'s keyword-only arguments that have defaults."""
    signature = inspect.signature(factory)
    params = []
    for arg in signature.parameters.values():
        if arg.kind is not inspect.Parameter.KEYWORD_ONLY or arg.default is inspect.Parameter.empty:
            continue
        if arg.name not in descriptions:
            raise RegistryError(f"{where}: parameter {arg.name!r} has no description")
        default = tuple(arg.default) if isinstance(arg.default, list) else arg.default
        if not isinstance(default, (bool, int, float, str, tuple)):
            raise RegistryError(
                f"{where}: parameter {arg.name!r} must default to a bool, int, float, str or "
                f"tuple of numbers, not {type(default).__name__}"
            )
        params.append(Param(arg.name, default, descriptions[arg.name]))
    unknown = set(descriptions) - {p.name for p in params}
    if unknown:
        raise RegistryError(
            f"{where}: described parameters {sorted(unknown)} are not keyword-only arguments "
            "with defaults of the factory"
        )
    return tuple(params)


@dataclass
class Registry:
    """All components of every kind, looked up by (kind, name)."""

    components: dict[tuple[str, str], Component] = field(default_factory=dict)

    def add(self, component: Component) -> None:
        key = (component.kind, component.name)
        existing = self.components.get(key)
        if existing is not None:
            raise RegistryError(
                f"{component.kind} {component.name!r} from plugin {component.plugin!r} is "
                f"already registered by plugin {existing.plugin!r}"
            )
        self.components[key] = component

    def get(self, kind: str, name: str) -> Component:
        try:
            return self.components[(kind, name)]
        except KeyError:
            available = self.names(kind)
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {kind} {name!r}; available: {', '.join(available) or '(none)'}.{hint}"
            ) from None

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.components if k == kind)

    def of_kind(self, kind: str) -> list[Component]:
        return [self.components[(kind, n)] for n in self.names(kind)]

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components.values())


class Registrar:
    """The ``register`` callable handed to a plugin's ``register_<kind>s`` hook.

    Components are staged and committed only when the plugin's hook returns, so a plugin that
    fails half-way registers nothing rather than half of its components.
    """

    def __init__(self, kind: str, plugin: str) -> None:
        self.kind = kind
        self.plugin = plugin
        self.staged: list[Component] = []

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        description: str,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Register ``factory`` under ``name``; ``params`` maps each parameter to a description."""
        where = f"{self.kind} {name!r} of plugin {self.plugin!r}"
        if not description or "\n" in description.strip():
            raise RegistryError(f"{where}: needs a one-line description")
        declared = params_from_signature(factory, params or {}, where)
        self.staged.append(
            Component(self.kind, name, factory, description.strip(), declared, self.plugin)
        )
