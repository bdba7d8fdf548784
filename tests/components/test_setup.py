from __future__ import annotations

import pytest

from ablate.components.discovery import Plugins
from ablate.components.setup import ConfigError, resolve


def test_flat_keys_go_to_the_selected_component_that_declares_them(plugins: Plugins) -> None:
    setup = resolve(
        dict(
            model="resnet18", dropout=0.5, lr=0.05, augment="crop_flip+color_jitter", strength=0.2, epochs=3
        ),
        plugins.registry,
    )
    assert setup.model.values == {"width": 64, "dropout": 0.5}
    assert setup.optimizer.component.name == "sgd" and setup.optimizer.values["lr"] == 0.05
    assert [a.component.name for a in setup.augmentations] == ["crop_flip", "color_jitter"]
    assert setup.augmentations[1].values == {"strength": 0.2}
    assert setup.settings["epochs"] == 3


def test_int_widens_to_float_and_is_recorded_with_the_declared_type(plugins: Plugins) -> None:
    setup = resolve(dict(dropout=0), plugins.registry)
    assert setup.model.values["dropout"] == 0.0 and isinstance(setup.model.values["dropout"], float)
    record = setup.recorded_params()
    assert record["dropout"] == 0.0 and record["epochs"] == 10 and record["lr"] == 0.1


def test_key_of_an_unselected_component_is_inactive(plugins: Plugins) -> None:
    setup = resolve(dict(optimizer="adam", momentum=0.9), plugins.registry)
    assert setup.inactive == {"momentum": 0.9}
    assert "momentum" not in setup.optimizer.values
    assert setup.recorded_params()["momentum"] == 0.9


def test_qualified_key_names_the_component(plugins: Plugins) -> None:
    setup = resolve({"augment": "color_jitter", "color_jitter.strength": 0.1}, plugins.registry)
    assert setup.augmentations[0].values == {"strength": 0.1}


def test_unknown_key_is_an_error_with_a_suggestion(plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'dropuot'.*Did you mean 'dropout'"):
        resolve(dict(dropuot=0.5), plugins.registry)


def test_unknown_component_lists_the_available_ones(plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet81'; available: .*resnet18") as info:
        resolve(dict(model="resnet81"), plugins.registry)
    assert info.value.key == "model" and info.value.value == "resnet81"


def test_wrong_type_names_component_and_parameter(plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match="model 'resnet18': parameter 'width' takes a int"):
        resolve(dict(width=8.5), plugins.registry)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=-1), dict(epochs="3")])
def test_settings_are_validated(plugins: Plugins, bad: dict) -> None:
    with pytest.raises(ConfigError):
        resolve(bad, plugins.registry)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(lr=float("nan")), "'lr' must be a finite number"),
        (dict(lr=float("inf")), "'lr' must be a finite number"),
        (dict(lr=-0.1), "'lr' must be > 0"),
        (dict(momentum=-5.0), "'momentum' must be >= 0"),
        (dict(dropout=2.0), "'dropout' must be >= 0 and < 1"),
        (dict(width=0), "'width' must be >= 1"),
        (dict(epochs=0), "'epochs' must be >= 1"),
        (dict(resume="sometimes"), "'resume' must be one of none, full"),
        (dict(scheduler="multistep", milestones=(3, 0)), "'milestones' must be >= 1"),
        (dict(optimizer="adam", momentum=-5.0), "'momentum' must be >= 0"),  # inactive, still checked
    ],
)
def test_values_outside_their_declared_range_are_refused(plugins: Plugins, bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        resolve(bad, plugins.registry)
    assert info.value.key in bad


def test_one_parameter_has_one_column_whatever_its_spelling(plugins: Plugins) -> None:
    """A qualified spelling is recorded under the plain name unless two components of the
    study's trials share the name; then every trial records the qualified name."""
    jitter = resolve({"augment": "crop_flip+color_jitter", "color_jitter.strength": 0.2}, plugins.registry)
    plain = resolve({"augment": "crop_flip", "color_jitter.strength": 0.2}, plugins.registry)
    assert jitter.recorded_params()["strength"] == 0.2
    assert plain.recorded_params()["strength"] == 0.2 and "color_jitter.strength" not in (
        plain.recorded_params()
    )
    assert plain.recorded_params(qualified={"strength"})["color_jitter.strength"] == 0.2
