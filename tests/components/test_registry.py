from __future__ import annotations

import re

import pytest

from ablate.components.registry import Component, Registrar, Registry, RegistryError
from ablate.params import coerce_value, param


def factory(*, num_classes: int, width: int = 64, dropout: float = 0.0) -> tuple[int, int, float]:
    return num_classes, width, dropout


def test_params_come_from_keyword_only_defaults_and_context_is_left_out() -> None:
    register = Registrar("model", "p")
    register("m", factory, "a model", params={"width": "channels", "dropout": "p"})
    (component,) = register.staged
    assert [(p.name, p.default, p.description) for p in component.params] == [
        ("width", 64, "channels"),
        ("dropout", 0.0, "p"),
    ]
    assert component.build({"num_classes": 3}, {"width": 8}) == (3, 8, 0.0)


def refusal(*args: object, **kwargs: object) -> str:
    """Why a Registrar refused the component ``args`` register (it stages nothing)."""
    registrar = Registrar("model", "p")
    registrar(*args, **kwargs)  # type: ignore[arg-type]
    assert not registrar.staged and list(registrar.refused) == [args[0]]
    return registrar.refused[str(args[0])]


def test_every_parameter_needs_a_description() -> None:
    assert "'dropout' has no description" in refusal("m", factory, "a model", params={"width": "channels"})


def test_described_parameter_must_exist() -> None:
    assert "nope" in refusal("m", factory, "d", params={"width": "w", "dropout": "d", "nope": "n"})


def test_description_must_be_one_line() -> None:
    why = refusal("m", lambda: None, "two\nlines")
    assert "one-line" in why and f"{__file__}:" in why  # at the caller's line


def test_duplicate_name_names_both_plugins() -> None:
    registry = Registry()
    registry.add(Component("model", "m", factory, "d", (), "first-plugin"))
    with pytest.raises(RegistryError, match="second-plugin.*already registered by plugin 'first-plugin'"):
        registry.add(Component("model", "m", factory, "d", (), "second-plugin"))


def test_unknown_name_lists_available_and_suggests() -> None:
    registry = Registry()
    registry.add(Component("model", "resnet18", factory, "d", (), "p"))
    with pytest.raises(
        RegistryError,
        match=r"unknown model 'resnet81'; available: resnet18\. "
        r"Did you mean 'resnet18'\?",
    ):
        registry.get("model", "resnet81")


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (1, 0.5, 1.0),
        (True, False, True),
        ((7, 12), (30,), (7, 12)),
        ([1, 2], (3,), (1, 2)),
        ("a", "b", "a"),
        (3, 4, 3),
    ],
)
def test_coercion_accepts_compatible_values(value: object, default: object, expected: object) -> None:
    result = coerce_value(value, default, "x")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "default"), [("0.5", 0.5), (1.5, 4), (True, 4), (1, False), (("a",), (1,))]
)
def test_coercion_rejects_wrong_types(value: object, default: object) -> None:
    with pytest.raises(ValueError, match="parameter 'x' takes"):
        coerce_value(value, default, "x")


def test_declared_ranges_check_values_and_show_in_words() -> None:
    register = Registrar("model", "p")
    register(
        "m",
        factory,
        "a model",
        params={"width": param("channels", ge=1), "dropout": param("probability", ge=0, lt=1)},
    )
    width, dropout = register.staged[0].params
    assert width.bounds == ">= 1" and dropout.bounds == ">= 0 and < 1"
    assert dropout.coerce(0) == 0.0 and width.coerce(8) == 8
    for bad, message in (
        (1.0, "must be >= 0 and < 1"),
        (float("nan"), "finite"),
        (-0.5, "must be >= 0 and < 1"),
    ):
        with pytest.raises(ValueError, match=message):
            dropout.coerce(bad)


def test_a_default_outside_its_own_range_is_refused_at_registration() -> None:
    why = refusal("m", factory, "d", params={"width": param("w", ge=100), "dropout": "d"})
    assert re.search("default is invalid.*'width' must be >= 100", why)


def test_a_dropped_component_is_named_with_its_plugin_not_guessed() -> None:
    registry = Registry()
    registry.add(Component("optimizer", "adam", factory, "d", (), "first"))
    registry.dropped[("optimizer", "adamw")] = "its plugin 'extra' failed to register: boom"
    with pytest.raises(
        RegistryError, match="optimizer 'adamw' is not available: its plugin 'extra' failed to register: boom"
    ):
        registry.get("optimizer", "adamw")
    registry.broken.append("'other' (other-dist) failed to import: ImportError")
    with pytest.raises(RegistryError, match="Did you mean 'adam'.*Plugin 'other' .* failed to import"):
        registry.get("optimizer", "adamx")
