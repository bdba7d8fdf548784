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
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablate.registry import Component, Param, ParamValue, Registry

SETTINGS: tuple[Param, ...] = (
    Param("dataset", "cifar10-mini", "dataset to train and test on"),
    Param("model", "resnet18", "model to train"),
    Param("augment", "none", "training augmentations, joined with '+' and applied in order"),
    Param("optimizer", "sgd", "optimizer"),
    Param("scheduler", "none", "learning-rate scheduler, stepped once per epoch"),
    Param("epochs", 10, "number of passes over the training set"),
    Param("batch_size", 128, "training batch size"),
    Param("eval_batch_size", 1000, "batch size for evaluation (no effect on results)"),
    Param("train_size", 0, "train on the first N training images only (0: all)"),
    Param("test_size", 0, "test on the first N test images only (0: all)"),
    Param("train_eval_size", 10000,
          "size of the fixed, unaugmented train subset measured in eval mode each epoch"),
    Param("checkpoint_every", 1, "save a checkpoint every N epochs for crash recovery (0: never)"),
    Param("keep_checkpoints", 2, "how many of a trial's newest checkpoints to keep"),
    Param("resume", "none", "simulated stop-and-reload every resume_every epochs: none, full, "
          "weights_only, weights_optimizer or weights_scheduler"),
    Param("resume_every", 0, "epochs between simulated restarts (0: never)"),
    Param("precision", "auto", "auto (bf16 autocast on CUDA and on CPUs with native bf16, else "
          "fp32), fp32 or bf16"),
    Param("compile", False, "torch.compile the model (compiled once per architecture per worker)"),
)
SETTING_NAMES = {p.name for p in SETTINGS}
PRECISIONS = ("auto", "fp32", "bf16")
RESUME_MODES = ("none", "full", "weights_only", "weights_optimizer", "weights_scheduler")
# Settings that select components, with the component kind each selects.
SELECTORS = {"dataset": "dataset", "model": "model", "augment": "augmentation",
             "optimizer": "optimizer", "scheduler": "scheduler"}


class ConfigError(ValueError):
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
    inactive: tuple[str, ...]

    @property
    def selected(self) -> tuple[Selected, ...]:
        return (self.dataset, self.model, *self.augmentations, self.optimizer, self.scheduler)

    def recorded_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters to record: settings, every component value, and inactive keys."""
        record: dict[str, Any] = dict(self.settings)
        counts: dict[str, int] = {}
        for chosen in self.selected:
            for name in chosen.values:
                counts[name] = counts.get(name, 0) + 1
        for chosen in self.selected:
            for name, value in chosen.values.items():
                key = name if counts[name] == 1 else f"{chosen.component.name}.{name}"
                record[key] = value
        for key in self.inactive:
            record[key] = given[key]
        return record


def _coerce_setting(key: str, value: Any) -> Any:
    param = next(p for p in SETTINGS if p.name == key)
    try:
        coerced = param.coerce(value)
    except ValueError as error:
        raise ConfigError(str(error), key, value) from None
    if isinstance(coerced, int) and not isinstance(coerced, bool) and coerced < 0:
        raise ConfigError(f"setting {key!r} must not be negative, got {value!r}", key, value)
    if key in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints") and coerced < 1:
        raise ConfigError(f"setting {key!r} must be at least 1, got {value!r}", key, value)
    if key == "precision" and coerced not in PRECISIONS:
        raise ConfigError(f"setting 'precision' must be one of {', '.join(PRECISIONS)}, got "
                          f"{value!r}", key, value)
    if key == "resume" and coerced not in RESUME_MODES:
        raise ConfigError(f"setting 'resume' must be one of {', '.join(RESUME_MODES)}, got "
                          f"{value!r}", key, value)
    return coerced


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
        f"parameters of the selected components: {', '.join(known)}.{hint}", key)


def resolve(params: Mapping[str, Any], registry: Registry) -> TrialSetup:
    """Validate ``params`` against the registry and build a :class:`TrialSetup`."""
    settings = {p.name: p.default for p in SETTINGS}
    for key, value in params.items():
        if key in SETTING_NAMES:
            settings[key] = _coerce_setting(key, value)
    chosen = _select(registry, settings)
    components = [c for group in chosen.values() for c in group]
    values: dict[int, dict[str, ParamValue]] = {id(c): {} for c in components}
    inactive: list[str] = []
    for key, value in params.items():
        if key in SETTING_NAMES:
            continue
        if "." in key:
            owner_name, name = key.split(".", 1)
            owners = [c for c in components if c.name == owner_name and c.param(name)]
            if not owners:
                if any(c.name == owner_name and c.param(name) for c in registry):
                    inactive.append(key)
                    continue
                raise _unknown_key(registry, key, components)
        else:
            name = key
            owners = [c for c in components if c.param(name)]
            if len(owners) > 1:
                qualified = ", ".join(f"{c.name}.{name}" for c in owners)
                raise ConfigError(f"parameter {key!r} is declared by several selected components; "
                                  f"write one of: {qualified}", key, value)
            if not owners:
                if any(c.param(name) for c in registry):
                    inactive.append(key)
                    continue
                raise _unknown_key(registry, key, components)
        owner = owners[0]
        param = owner.param(name)
        assert param is not None
        try:
            values[id(owner)][name] = param.coerce(value)
        except ValueError as error:
            raise ConfigError(f"{owner.kind} {owner.name!r}: {error}", key, value) from None
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
        inactive=tuple(inactive),
    )


def column_value(value: Any) -> bool | int | float | str:
    """A parameter value as a Parquet scalar: tuples become JSON text."""
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return value
