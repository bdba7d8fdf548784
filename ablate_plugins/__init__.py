"""ablate's built-in plugins, installed as ``ablate_plugins``.

They use exactly the public API a third-party plugin uses (``ablate.hookimpl`` and the
``register`` callables) and are registered through the same ``ablate`` entry-point group.
"""
