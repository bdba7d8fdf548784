"""Fault injection, part three: careless input and hostile files end in one line.

A batch larger than the data, a full disk under a checkpoint, an unreadable trials file seen by
``ablate status``, a crafted weights sidecar, a dataset that breaks its contract, a baseline value
no cell uses, a plugin that registers badly, Ctrl-C in the first moments of a run, and the small
wordings a user reads. Each test fails without the fix it names.
"""

from __future__ import annotations

from pathlib import Path

import ablate
from ablate.discovery import load_plugins
from tests.conftest import FaultLog, tiny_data


def test_a_bad_component_drops_only_itself_and_names_the_plugin_s_own_line(
        fault_log: FaultLog) -> None:
    """A registration error once dropped every component of the plugin, and named ablate's
    file. Now only the component at fault is dropped, at the line of the plugin's register()."""

    class Careless:
        @ablate.hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register("no_factory", 42, "not a function")  # the line named below
            register("undescribed", lambda *, num_classes, depth=3: None, "a model")
            register("good", lambda *, num_classes: None, "a fine model")

        @ablate.hookimpl
        def register_datasets(self, register):  # type: ignore[no-untyped-def]
            register("toy", lambda *, data_dir: tiny_data(), "a fine dataset")

    plugins = load_plugins(extra={"careless": Careless()})
    fault_log.inject("a plugin registering badly")
    assert not plugins.failures
    info = plugins.loaded["careless"]
    assert set(info.registers) == {"model:good", "dataset:toy"}
    line = next(n for n, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if 'register("no_factory"' in text)
    assert info.refused["model:no_factory"].endswith(f"({__file__}:{line})")
    assert "'depth' has no description" in info.refused["model:undescribed"]
    assert "ablate/registry.py" not in " ".join(info.refused.values())
    fault_log.verified()


def test_the_test_kit_snippet_works_for_a_plugin_that_is_installed_too() -> None:
    """The README's snippet passes the plugin module to load_plugins(extra=...); once the
    plugin is pip-installed, its entry point has loaded that module already, and pluggy refused
    it a second time ('Plugin already registered under a different name')."""
    from ablate_plugins import models

    from ablate.testing import check_component

    plugins = load_plugins(extra={"my-plugin": models})
    assert not plugins.failures, plugins.failures
    check_component(plugins.registry.get("model", "simple_cnn"))
