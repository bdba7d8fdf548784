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

from ablate.registry import Component, Param, ParamValue, Registry

PRECISIONS = ("auto", "fp32", "bf16")
PLACEMENTS = ("auto", "device", "stream")
KEEP = ("final", "best", "both", "none")
RESUME_MODES = ("none", "full", "weights_only", "weights_optimizer", "weights_scheduler")
SETTINGS: tuple[Param, ...] = (
    Param("dataset", "cifar10-mini", "dataset to train and test on"),
    Param("model", "resnet18", "model to train"),
    Param("augment", "none", "training augmentations, joined with '+' and applied in order"),
    Param("optimizer", "sgd", "optimizer"),
    Param("scheduler", "none", "learning-rate scheduler, stepped once per epoch"),
    Param("epochs", 10, "number of passes over the training set", ge=1),
    Param("batch_size", 128, "training batch size (larger than the training split: the whole "
          "split, one batch per epoch)", ge=1),
    Param("eval_batch_size", 0, "batch size for evaluation (no effect on results; 0: 1,000 "
          "images at 32 x 32, fewer for larger images, halved on running out of GPU memory)",
          ge=0),
    Param("train_size", 0, "train on the first N training images only (0: all)", ge=0),
    Param("test_size", 0, "test on the first N test images only (0: all)", ge=0),
    Param("val_size", 0, "images held out of the training split for validation (stratified by "
          "class, the same for every trial; 0: none): then plateau steps, the best epoch and a "
          "sampler's objective use validation accuracy, never the test set", ge=0),
    Param("train_eval_size", 10000,
          "size of the fixed, unaugmented train subset measured in eval mode each epoch", ge=1),
    Param("checkpoint_every", 1, "save a checkpoint every N epochs for crash recovery (0: never)",
          ge=0),
    Param("checkpoint_seconds", -1.0, "least seconds between two checkpoints of a trial (the "
          "last epoch's is always written; -1: 60 on a GPU, none on a CPU)", ge=-1),
    Param("keep_checkpoints", 2, "how many of a trial's newest checkpoints to keep", ge=1),
    Param("resume", "none", "simulated stop-and-reload every resume_every epochs",
          choices=RESUME_MODES),
    Param("resume_every", 0, "epochs between simulated restarts (0: never)", ge=0),
    Param("precision", "auto", "auto (bf16 autocast on CUDA and on CPUs with native bf16, else "
          "fp32), fp32 or bf16", choices=PRECISIONS),
    Param("deterministic", "auto", "deterministic GPU kernels (slower; exact repeats on the same "
          "GPU and library versions): on, off, or auto (decided once per study: on whenever it "
          "writes checkpoints or restarts, which it does by default); no effect on a CPU",
          choices=("auto", "on", "off")),
    Param("compile", False, "torch.compile the model (compiled once per architecture per worker)"),
    Param("classes", (), "train and test on these classes only, by label (labels renumbered, "
          "names kept; empty: all)", ge=0),
    Param("init", "scratch", "the model's starting weights: scratch, imagenet (models with a "
          "'pretrained' parameter), a .safetensors file, or STUDY or STUDY/CELL (that study's "
          "kept final weights of the trial with the same seed)"),
    Param("freeze", "none", "none, or backbone: train the head (the last linear layer) alone",
          choices=("none", "backbone")),
    Param("keep_weights", "final", "which weights of a finished trial to keep under "
          "results/STUDY/weights/ (safetensors + JSON sidecar)", choices=KEEP),
    Param("data_placement", "auto", "where the training images live: device (copied to the "
          "training device once), stream (read batch by batch from the memory-mapped cache), or "
          "auto (device when they fit data_budget_mb, else stream)", choices=PLACEMENTS),
    Param("data_budget_mb", 0.0, "how much device memory auto may fill with images (0: half of "
          "the device's free memory)", ge=0),
    Param("tensorboard", False, "write each trial's per-epoch metrics as TensorBoard scalars "
          "under results/STUDY/tensorboard/ (needs pip install 'ablate[tensorboard]')"),
)
# Settings that change what is kept or shown, never a trial's result: left out of the plan's
# fingerprint, so turning them on does not make a folder's results "another plan".
OBSERVING = frozenset({"eval_batch_size", "checkpoint_every", "checkpoint_seconds",
                       "keep_checkpoints", "keep_weights",
                       "tensorboard", "data_placement", "data_budget_mb"})
SETTING_NAMES = {p.name for p in SETTINGS}
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
                    raise ConfigError(f"{chosen.component.kind} {chosen.component.name!r}: "
                                      f"parameter {name!r} would write the same column as the "
                                      f"setting or parameter {column!r}", name)
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
    if settings["init"] == "imagenet":  # models that can start from ImageNet say so by a parameter
        model = chosen["model"][0]
        pretrained = model.param("pretrained")
        if pretrained is None or not isinstance(pretrained.default, bool):
            raise ConfigError(f"init 'imagenet': model {model.name!r} has no ImageNet weights (it "
                              "declares no 'pretrained' parameter)", "init", "imagenet")
        values[id(model)]["pretrained"] = True
    inactive: dict[str, ParamValue] = {}
    for key, value in params.items():
        if key in SETTING_NAMES:
            continue
        owner_name, _, name = key.rpartition(".")
        owners = [c for c in components if c.param(name) and owner_name in ("", c.name)]
        if len(owners) > 1:
            qualified = ", ".join(f"{c.name}.{name}" for c in owners)
            raise ConfigError(f"parameter {key!r} is declared by several selected components; "
                              f"write one of: {qualified}", key, value)
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
