"""Choices a folder keeps once made: a JSON file of ``key -> value``, shared by processes.

``precision=auto``'s measured choice, a results folder's dataset and its thread count are each
decided by the first process that needs them and then read by every later trial, run and
worker, so that none of them can silently compute differently from the trials already there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def remembered(file: Path, key: str, choose: Callable[[], dict[str, Any]], must_keep: bool) -> dict[str, Any]:
    """``file``'s value for ``key``, else ``choose()``'s, written there (under a lock, so that
    processes starting together choose once). ``must_keep``: a failed write is an error (a
    results folder's record, which keeps its trials alike); else it only costs choosing again."""
    from ablate.base.atomic import RecordChanged, fetch, write_text_atomic
    from ablate.base.locks import FileLock

    with FileLock(file.with_name(file.name + ".lock")):
        value = None
        while True:
            fetch(file)  # in an object store, another host may have decided it already
            known = read_record(file)
            if key in known:
                return dict(known[key])
            value = value if value is not None else choose()
            known[key] = value
            try:
                write_text_atomic(file, json.dumps(known, indent=1, sort_keys=True))
            except RecordChanged:
                continue  # another host decided first: its decision, not this one, is kept
            except OSError:
                if must_keep:
                    raise
            return value


def read_record(file: Path) -> dict[str, Any]:
    """The record's entries; an unreadable one reads as empty (it is written anew)."""
    try:
        known = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
