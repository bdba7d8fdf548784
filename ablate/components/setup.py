"""Turn a trial's flat parameters into the components and settings that train it.

A study writes one flat dictionary per trial, for example
``dict(model="resnet18", dropout=0.5, augment="crop_flip", lr=0.1, epochs=15)``. Keys are either
trainer settings (:data:`SETTINGS`) or parameters of a selected component. A flat key goes to
the one selected component that declares it; ``component.param`` (for example
``color_jitter.strength``) names the component explicitly when two declare the same name. A key
that only an unselected component declares (``momentum`` in a cell that uses Adam) is inactive
for that trial: it is recorded but does nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ablate.components.registry import Component, Registry
from ablate.errors import AblateError
from ablate.params import ParamValue
from ablate.study.settings import SELECTORS, SETTING_NAMES, SETTINGS


class ConfigError(AblateError, ValueError):
    """A trial's parameters do not fit the available components."""

    def __init__(self, message: str, key: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


@dataclass(frozen=True)
class Selected:
    """A chosen component and the parameter values it will be built with."""

    component: Component
    values: Mapping[str, ParamValue]

    def build(self, **context: Any) -> Any:
        return self.component.build(context, self.values)


@dataclass(frozen=True)
class TrialSetup:
    """Everything needed to train one trial, resolved and validated."""

    settings: Mapping[str, Any]
    dataset: Selected
    model: Selected
    augmentations: tuple[Selected, ...]
    optimizer: Selected
    scheduler: Selected
    inactive: Mapping[str, ParamValue]  # parameters of components this trial does not select

    @property
    def selected(self) -> tuple[Selected, ...]:
        return (self.dataset, self.model, *self.augmentations, self.optimizer, self.scheduler)

    def shared_names(self) -> set[str]:
        """Parameter names that two of this trial's components both declare."""
        seen: set[str] = set()
        shared: set[str] = set()
        for chosen in self.selected:
            for name in chosen.values:
                (shared if name in seen else seen).add(name)
        return shared

    def recorded_params(self, qualified: Iterable[str] = ()) -> dict[str, Any]:
        """The parameters to record: settings, every component value, and inactive keys.

        Each parameter has one column name whatever the study's spelling: ``component.param``
        for the names in ``qualified`` (those two components of some trial of the study share:
        see :meth:`shared_names`), the plain name otherwise.
        """
        qualified = set(qualified) | self.shared_names()
        record: dict[str, Any] = dict(self.settings)
        for chosen in self.selected:
            for name, value in chosen.values.items():
                column = f"{chosen.component.name}.{name}" if name in qualified else name
                if column in record:  # the registrar refuses such names; never record two as one
                    raise ConfigError(
                        f"{chosen.component.kind} {chosen.component.name!r}: "
                        f"parameter {name!r} would write the same column as the "
                        f"setting or parameter {column!r}",
                        name,
                    )
                record[column] = value
        for key, value in self.inactive.items():  # recorded, never over an active component's
            name = key.rsplit(".", 1)[-1]
            record.setdefault(key if name in qualified else name, value)
        return record


def _coerce_setting(key: str, value: Any) -> Any:
    param = next(p for p in SETTINGS if p.name == key)
    try:
        return param.coerce(value)
    except ValueError as error:
        raise ConfigError(f"setting {str(error).removeprefix('parameter ')}", key, value) from None


def _select(registry: Registry, settings: Mapping[str, Any]) -> dict[str, list[Component]]:
    chosen: dict[str, list[Component]] = {}
    for key, kind in SELECTORS.items():
        names = [n.strip() for n in str(settings[key]).split("+")] if key == "augment" else [settings[key]]
        try:
            chosen[key] = [registry.get(kind, name) for name in names]
        except Exception as error:
            raise ConfigError(str(error), key, settings[key]) from None
    return chosen


def _unknown_key(registry: Registry, key: str, components: list[Component]) -> ConfigError:
    known = sorted(SETTING_NAMES | {p.name for c in components for p in c.params})
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(
        f"unknown parameter {key!r}: no setting and no component declares it. Settings and "
        f"parameters of the selected components: {', '.join(known)}.{hint}",
        key,
    )


def resolve(params: Mapping[str, Any], registry: Registry) -> TrialSetup:
    """Validate ``params`` against the registry and build a :class:`TrialSetup`."""
    settings = {p.name: p.default for p in SETTINGS}
    for key, value in params.items():
        if key in SETTING_NAMES:
            settings[key] = _coerce_setting(key, value)
    chosen = _select(registry, settings)
    components = [c for group in chosen.values() for c in group]
    values: dict[int, dict[str, ParamValue]] = {id(c): {} for c in components}
    if settings["init"] == "imagenet":  # models that can start from ImageNet say so by a parameter
        model = chosen["model"][0]
        pretrained = model.param("pretrained")
        if pretrained is None or not isinstance(pretrained.default, bool):
            raise ConfigError(
                f"init 'imagenet': model {model.name!r} has no ImageNet weights (it "
                "declares no 'pretrained' parameter)",
                "init",
                "imagenet",
            )
        values[id(model)]["pretrained"] = True
    inactive: dict[str, ParamValue] = {}
    for key, value in params.items():
        if key in SETTING_NAMES:
            continue
        owner_name, _, name = key.rpartition(".")
        owners = [c for c in components if c.param(name) and owner_name in ("", c.name)]
        if len(owners) > 1:
            qualified = ", ".join(f"{c.name}.{name}" for c in owners)
            raise ConfigError(
                f"parameter {key!r} is declared by several selected components; write one of: {qualified}",
                key,
                value,
            )
        if not owners:
            declarers = [c for c in registry if c.param(name) and owner_name in ("", c.name)]
            if not declarers:
                raise _unknown_key(registry, key, components)
            # Inactive in this trial, but recorded: it must still be a valid value.
            inactive[key] = _coerce_param(declarers, name, key, value)
            continue
        values[id(owners[0])][name] = _coerce_param(owners, name, key, value)
    for component in components:  # component defaults complete the record
        values[id(component)] = {**component.defaults(), **values[id(component)]}

    def pick(component: Component) -> Selected:
        return Selected(component, values[id(component)])

    return TrialSetup(
        settings=settings,
        dataset=pick(chosen["dataset"][0]),
        model=pick(chosen["model"][0]),
        augmentations=tuple(pick(c) for c in chosen["augment"]),
        optimizer=pick(chosen["optimizer"][0]),
        scheduler=pick(chosen["scheduler"][0]),
        inactive=inactive,
    )


def _coerce_param(owners: list[Component], name: str, key: str, value: Any) -> ParamValue:
    """``value`` as the first of ``owners`` that accepts it declares it, else its error."""
    errors = []
    for owner in owners:
        param = owner.param(name)
        assert param is not None
        try:
            return param.coerce(value)
        except ValueError as error:
            errors.append(f"{owner.kind} {owner.name!r}: {error}")
    raise ConfigError(errors[0], key, value)


def watches_accuracy(scheduler: Any) -> bool:
    """Whether a built scheduler steps on a measured accuracy (a plateau scheduler, whatever the
    plugin that registered it calls it): what it watches selects, so it must not be the test set."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)
