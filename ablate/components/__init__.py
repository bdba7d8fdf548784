"""Stage 2, what trains: the registry of datasets, models, augmentations, optimizers and
schedulers (:mod:`.registry`), the plugins that fill it (:mod:`.discovery`), one trial's
parameters resolved into components and settings (:mod:`.setup`), and a whole plan checked
against them before anything runs (:mod:`.validate`).

Public for plugins: the names below."""

from ablate.components import discovery  # noqa: I001  (after the registry it imports)
from ablate.components.discovery import Plugins
from ablate.components.registry import KINDS, Component, Registrar, Registry, RegistryError
from ablate.components.setup import Selected, TrialSetup

__all__ = [
    "KINDS",
    "Component",
    "Plugins",
    "Registrar",
    "Registry",
    "RegistryError",
    "Selected",
    "TrialSetup",
    "get_plugins",
]


def get_plugins() -> Plugins:
    """The installed plugins (entry points of group ``ablate``), loaded once per process."""
    return discovery.get_plugins()
