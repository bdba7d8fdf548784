"""Load a study file by path, with errors that name the file and line.

A study file is a Python module that defines ``study = Study(...)`` and, optionally, a
define-by-run ``configure(trial) -> dict`` used by sampler designs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from ablate.errors import AblateError
from ablate.study.declare import Study
from ablate.study.factors import StudyError


class StudyFileError(AblateError):
    """A study file cannot be used; the message names the file and line."""


def load(path: str | Path) -> Study:
    """Import the study file at ``path`` and return its ``study``."""
    path = Path(path)
    if path.is_dir():
        raise StudyFileError(
            f"{path} is a folder, not a study file: name the .py file in it, e.g. studies/dropout_gap.py"
        )
    if not path.is_file():
        raise StudyFileError(f"{path}: no such study file")
    source = path.read_text(encoding="utf-8")
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise StudyFileError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    module_name = f"ablate_study_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(code, module.__dict__)
    except Exception as error:
        where = _innermost_line(error, path)
        if isinstance(error, StudyError) and error.key and where != str(path):
            # Point at the field's own line inside the Study(...) call, not at the call.
            start = int(where.rsplit(":", 1)[1])
            lines = source.splitlines()
            pattern = re.compile(rf"\b{re.escape(error.key)}\s*=")
            found = next((n for n in range(start, len(lines) + 1) if pattern.search(lines[n - 1])), None)
            where = f"{path}:{found or start}"
        # ablate's own errors are sentences for the user; Python's keep their class name
        # ("NameError: name 'x' is not defined" says more than its message alone).
        shown = error if isinstance(error, StudyError) else f"{type(error).__name__}: {error}"
        raise StudyFileError(f"{where}: {shown}") from None
    study = getattr(module, "study", None)
    if not isinstance(study, Study):
        raise StudyFileError(f"{path}: defines no `study = Study(...)`")
    configure = getattr(module, "configure", None)
    if configure is not None and study.configure is None:
        if not callable(configure):
            raise StudyFileError(f"{path}: `configure` must be a function configure(trial) -> dict")
        object.__setattr__(study, "configure", configure)
    return study


def _innermost_line(error: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of the traceback that lies in the study file."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def locate(study: Study, key: str | None, value: Any = None) -> str:
    """``file:line`` where the study file sets ``key`` (to ``value`` if found), else the Study."""
    filename, study_line = study.location
    if key is None:
        return f"{filename}:{study_line}"
    try:
        lines = Path(filename).read_text(encoding="utf-8").splitlines()
    except OSError:
        return f"{filename}:{study_line}"
    key_pattern = re.compile(rf"""(\b{re.escape(key)}\s*=|["']{re.escape(key)}["']\s*:)""")
    with_key = [n for n, text in enumerate(lines, 1) if key_pattern.search(text)]
    # Exact spellings of the value first ('x', "x"), then its bare text.
    spellings = [[repr(value), json.dumps(value, default=str)], [str(value)]] if value is not None else []
    for texts in spellings:
        with_value = [n for n in with_key if any(t in lines[n - 1] for t in texts)]
        if with_value:
            return f"{filename}:{with_value[0]}"
    found = (with_key or [study_line])[0]
    return f"{filename}:{found}"
