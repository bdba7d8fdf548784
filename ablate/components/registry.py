"""Typed registries of components (datasets, models, augmentations, optimizers, schedulers).

A component is a frozen record: its name, a factory, a one-line description, the parameters
a study may set (read from the factory's keyword-only arguments that have defaults) and the
plugin it came from. Keyword-only arguments *without* defaults are context the trainer
supplies (for example ``num_classes`` for a model or ``params`` for an optimizer); they are
not user parameters.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ablate.errors import AblateError
from ablate.params import Bounds, Param, ParamSpec, ParamValue

KINDS: tuple[str, ...] = ("dataset", "model", "augmentation", "optimizer", "scheduler")


class RegistryError(AblateError):
    """A component could not be registered or looked up."""


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
        """Call the factory with trainer-supplied ``context`` and user parameter ``values``.
        Only the context the factory asks for is passed: the trainer may offer more (a model is
        offered ``image_shape``, which most models do not need)."""
        wanted = context_names(self.factory)
        given = {k: v for k, v in context.items() if wanted is None or k in wanted}
        return self.factory(**given, **{**self.defaults(), **values})


@functools.cache
def context_names(factory: Callable[..., Any]) -> frozenset[str] | None:
    """The context a factory takes (its keyword-only arguments without defaults); None when it
    takes any keyword (``**kwargs``)."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    )


def params_from_signature(
    factory: Callable[..., Any], descriptions: Mapping[str, str | ParamSpec], where: str
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
        declared = descriptions[arg.name]
        spec = declared if isinstance(declared, ParamSpec) else ParamSpec(str(declared))
        if not spec.description or "\n" in spec.description.strip():
            raise RegistryError(f"{where}: parameter {arg.name!r} needs a one-line description")
        if spec.choices is not None and not isinstance(default, str):
            raise RegistryError(f"{where}: parameter {arg.name!r} has choices but is not text")
        bounds = {f.name: getattr(spec, f.name) for f in fields(Bounds)}
        param_ = Param(arg.name, default, spec.description.strip(), **bounds)
        try:
            param_.coerce(default)
        except ValueError as error:
            raise RegistryError(f"{where}: its default is invalid: {error}") from None
        params.append(param_)
    unknown = set(descriptions) - {p.name for p in params}
    if unknown:
        raise RegistryError(
            f"{where}: described parameters {sorted(unknown)} are not keyword-only arguments "
            "with defaults of the factory"
        )
    return tuple(params)


@dataclass
class Registry:
    """All components of every kind, looked up by (kind, name).

    ``dropped`` remembers the components of plugins that failed to register (with the reason)
    and ``broken`` the plugins that failed to import, so that asking for one of their components
    says so instead of suggesting a look-alike name.
    """

    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    dropped: dict[tuple[str, str], str] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

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
            pass
        if (kind, name) in self.dropped:
            raise RegistryError(f"{kind} {name!r} is not available: {self.dropped[(kind, name)]}")
        available = self.names(kind)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        broken = "".join(f" (Plugin {failure}; it may provide {name!r}.)" for failure in self.broken)
        raise RegistryError(
            f"unknown {kind} {name!r}; available: {', '.join(available) or '(none)'}.{hint}{broken}"
        )

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.components if k == kind)

    def of_kind(self, kind: str) -> list[Component]:
        return [self.components[(kind, n)] for n in self.names(kind)]

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components.values())


class Registrar:
    """The ``register`` callable handed to a plugin's ``register_<kind>s`` hook.

    Components are staged and committed when the plugin's hooks return. A component that cannot
    be registered (no description, a parameter without one, a parameter named like a setting)
    is refused on its own, with the plugin's file and line, and its plugin's other components
    still register.
    """

    def __init__(self, kind: str, plugin: str) -> None:
        self.kind = kind
        self.plugin = plugin
        self.staged: list[Component] = []
        self.attempted: list[str] = []  # every name asked for, even one that failed to register
        self.refused: dict[str, str] = {}  # name -> why, with the plugin's file and line

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        description: str,
        params: Mapping[str, str | ParamSpec] | None = None,
    ) -> None:
        """Register ``factory`` under ``name``; ``params`` maps each parameter to a one-line
        description, or to :func:`param` (a description with the parameter's valid values)."""
        self.attempted.append(name)
        caller = sys._getframe(1)
        try:
            self.staged.append(self._component(name, factory, description, params))
        except Exception as error:  # a factory that is no function, a bad default, ...
            shown = error if isinstance(error, RegistryError) else f"{type(error).__name__}: {error}"
            self.refused[name] = f"{shown} ({caller.f_code.co_filename}:{caller.f_lineno})"

    def _component(
        self,
        name: str,
        factory: Callable[..., Any],
        description: str,
        params: Mapping[str, str | ParamSpec] | None,
    ) -> Component:
        from ablate.study.settings import SETTINGS

        where = f"{self.kind} {name!r} of plugin {self.plugin!r}"
        if not description or "\n" in description.strip():
            raise RegistryError(f"{where}: needs a one-line description")
        declared = params_from_signature(factory, params or {}, where)
        for parameter in declared:
            setting = next((s for s in SETTINGS if s.name == parameter.name), None)
            if setting is not None:
                # Both would write the trials table's column param_<name>: training would use
                # the setting, and the row would say the parameter's value.
                raise RegistryError(
                    f"{where}: parameter {parameter.name!r} has the name of the setting "
                    f"{setting.name!r} ({setting.description}); rename the parameter"
                )
        return Component(self.kind, name, factory, description.strip(), declared, self.plugin)
