"""Plugin discovery: entry points of the ``ablate`` group, loaded one at a time.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import, and
one failing hook implementation aborts a whole hook call. Here each entry point is imported on its
own and each plugin's registration hooks are called on their own, so a broken plugin is reported
by its entry-point name and distribution while every other plugin keeps working.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from ablate import hookspecs
from ablate.components.registry import KINDS, Registrar, Registry, RegistryError

ENTRY_POINT_GROUP = "ablate"
DISABLE_AUTOLOAD_ENV = "ABLATE_DISABLE_PLUGIN_AUTOLOAD"
OWN_DISTRIBUTION = "ablate"


@dataclass(frozen=True)
class PluginInfo:
    """A plugin that loaded, what it registered as ``kind:name`` strings, and the components
    it asked for that were refused (``kind:name`` -> why)."""

    name: str
    distribution: str
    version: str
    registers: tuple[str, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or whose registration raised."""

    name: str
    distribution: str
    version: str
    stage: str
    error: str
    dropped: tuple[str, ...] = ()  # ``kind:name`` of the components it tried to register


@dataclass
class Plugins:
    """The plugin manager, the registry it filled, and what loaded or failed."""

    manager: pluggy.PluginManager
    registry: Registry = field(default_factory=Registry)
    loaded: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    _silenced: set[str] = field(default_factory=set)

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        """Call an event hook on every plugin; a plugin that raises is reported and silenced."""
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name in self._silenced:
                continue
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # SystemExit too: a broken plugin must not stop the study
                self._silenced.add(impl.plugin_name)
                print(
                    f"ablate: plugin {impl.plugin_name!r} raised in {hook_name}: {error!r}; "
                    "its event hooks are off for the rest of this run",
                    file=sys.stderr,
                )


def _short_error(error: BaseException) -> str:
    """The error with the plugin's own file and line: the deepest frame outside ablate and
    pluggy (a plugin's mistake is in the plugin, even when ablate's code noticed it)."""
    frames = traceback.extract_tb(error.__traceback__)
    theirs = [f for f in frames if not f.filename.startswith(_OURS)] or frames
    where = f" ({theirs[-1].filename}:{theirs[-1].lineno})" if theirs else ""
    return f"{type(error).__name__}: {error}{where}"


_OURS = (os.path.dirname(hookspecs.__file__) + os.sep, os.path.dirname(pluggy.__file__) + os.sep)


def _distribution(entry_point: EntryPoint) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _selected_entry_points() -> list[EntryPoint]:
    """The group's entry points; only ablate's own when third-party autoload is disabled."""
    # Built-ins first, so that a third-party name clash is reported against the third party.
    found = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (_distribution(ep)[0] != OWN_DISTRIBUTION, ep.name),
    )
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() not in ("", "0"):
        found = [ep for ep in found if _distribution(ep)[0] == OWN_DISTRIBUTION]
    unique: dict[str, EntryPoint] = {}
    for ep in found:  # the same distribution can appear twice on sys.path (editable + copy)
        unique.setdefault(f"{_distribution(ep)[0]}:{ep.name}", ep)
    return list(unique.values())


def _register_components(
    plugins: Plugins, plugin_name: str, registrars: list[Registrar]
) -> tuple[list[str], dict[str, str]]:
    """Call one plugin's registration hooks and commit what they staged, one component at a
    time: a component that is refused (see :class:`Registrar`), or whose name another plugin
    took first, is left out with the reason, and the rest register. Returns the ``kind:name``
    registered and those refused (-> why). ``registrars`` collects what the hooks asked for, so
    that a hook that raises can name the components it drops."""
    staged, refused = [], {}
    for kind in KINDS:
        hook = getattr(plugins.manager.hook, f"register_{kind}s")
        for impl in hook.get_hookimpls():
            if impl.plugin_name == plugin_name:
                registrar = Registrar(kind, plugin_name)
                registrars.append(registrar)
                impl.function(*([registrar] if impl.argnames else []))
                staged.extend(registrar.staged)
                refused.update({f"{kind}:{n}": why for n, why in registrar.refused.items()})
    registered = []
    for component in staged:
        try:
            plugins.registry.add(component)
        except RegistryError as error:
            refused[f"{component.kind}:{component.name}"] = str(error)
            continue
        registered.append(f"{component.kind}:{component.name}")
    for key, why in refused.items():
        kind, _, name = key.partition(":")
        plugins.registry.dropped.setdefault(
            (kind, name), f"plugin {plugin_name!r} could not register it: {why}"
        )
    return registered, refused


def load_plugins(extra: Mapping[str, object] | None = None) -> Plugins:
    """Load every entry-point plugin, then ``extra`` in-process plugins (name -> module/object)."""
    manager = pluggy.PluginManager("ablate")
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    # (name, distribution, version, entry point or object, whether it is an entry point): told
    # apart by where it came from, not by its class, since importing importlib_metadata (the
    # backport, which mlflow brings) makes the standard library's entry_points() return its
    # EntryPoint class instead.
    sources: list[tuple[str, str, str, Any, bool]] = []
    for ep in _selected_entry_points():
        dist, version = _distribution(ep)
        sources.append((f"{dist}:{ep.name}", dist, version, ep, True))
    for name, obj in (extra or {}).items():
        sources.append((name, "(in-process)", "", obj, False))
    for name, dist, version, source, entry_point in sources:
        stage = "import"
        registrars: list[Registrar] = []
        try:
            obj = source.load() if entry_point else source
            if not entry_point and manager.is_registered(obj):
                continue  # an installed plugin passed again in-process (the test kit's snippet)
            stage = "register"
            manager.register(obj, name=name)
            registers, refused = _register_components(plugins, name, registrars)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # SystemExit too: report the plugin; the others keep working
            if manager.has_plugin(name):
                manager.unregister(name=name)
            dropped = tuple(f"{r.kind}:{n}" for r in registrars for n in r.attempted)
            failure = PluginFailure(name, dist, version, stage, _short_error(error), dropped)
            plugins.failures.append(failure)
            reason = f"its plugin {name!r} ({dist}) failed to {stage}: {failure.error}"
            for registrar in registrars:
                for component in registrar.attempted:
                    plugins.registry.dropped.setdefault((registrar.kind, component), reason)
            if stage == "import":
                plugins.registry.broken.append(f"{name!r} ({dist}) failed to import: {failure.error}")
            continue
        plugins.loaded[name] = PluginInfo(name, dist, version, tuple(registers), refused)
    return plugins


@functools.cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use (commands that need none import none)."""
    return load_plugins()


def describe(plugins: Plugins) -> Iterable[dict[str, Any]]:
    """Plugins and failures as plain dictionaries (for ``ablate plugins --json``)."""
    for info in plugins.loaded.values():
        yield {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "status": "loaded",
            "registers": list(info.registers),
            "refused": dict(info.refused),
        }
    for failure in plugins.failures:
        yield {
            "name": failure.name,
            "distribution": failure.distribution,
            "version": failure.version,
            "status": "failed",
            "stage": failure.stage,
            "error": failure.error,
            "dropped": list(failure.dropped),
        }
