from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablate.study import load as studyfile
from tests.conftest import invoke as run_cli

GOOD = """
from ablate import Preset, Study, choice

study = Study(
    name="tiny_study",
    question="Does hidden width matter?",
    baseline=dict(dataset="tiny", model="tiny_mlp", hidden=8, epochs=2, batch_size=16,
                  eval_batch_size=16, lr=0.05),
    factors=dict(hidden=choice(4, 8)),
    seeds=2,
)
"""


def write(tmp_path: Path, text: str, name: str = "study.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_a_study_and_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    study = studyfile.load(path)
    assert study.name == "tiny_study"
    assert study.location == (str(path), 4)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "from ablate import Study\n\nstudy = Study(name='x',\n  baseline=dict(\n)\n")
    with pytest.raises(studyfile.StudyFileError, match=rf"{path}:\d+: syntax error"):
        studyfile.load(path)


def test_exception_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "from ablate import choice\n\nx = 1\nfactors = choice()\n")
    with pytest.raises(studyfile.StudyFileError, match=rf"^{path}:4: choice\(\) needs"):
        studyfile.load(path)  # ablate's own errors without their class name
    python = write(tmp_path, "x = undefined_name\n")
    with pytest.raises(studyfile.StudyFileError, match="NameError: name 'undefined_name'"):
        studyfile.load(python)  # Python's keep it


def test_a_folder_named_as_the_study_file_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(studyfile.StudyFileError, match="is a folder, not a study file"):
        studyfile.load(tmp_path)


def test_missing_study_is_reported(tmp_path: Path) -> None:
    with pytest.raises(studyfile.StudyFileError, match="defines no `study = Study"):
        studyfile.load(write(tmp_path, "x = 1\n"))


def test_locate_finds_the_line_of_a_bad_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace(
            "factors=dict(hidden=choice(4, 8))", 'factors=dict(model=choice("tiny_mlp", "tiny_mpl"))'
        ),
    )
    study = studyfile.load(path)
    assert studyfile.locate(study, "model", "tiny_mpl") == f"{path}:9"
    assert studyfile.locate(study, "hidden", None) == f"{path}:7"


@pytest.mark.parametrize(
    ("replace", "line", "message"),
    [
        (('model="tiny_mlp"', 'model="tiny_mpl"'), 7, "unknown model 'tiny_mpl'; available: .*tiny_mlp"),
        (("choice(4, 8)", 'choice(4, "8")'), 9, "parameter 'hidden' takes a int"),
        (("lr=0.05", "lr=0.05, dropuot=0.1"), 8, "unknown parameter 'dropuot'"),
        (("lr=0.05", "lr=0.05, dropout=0.1"), 8, "'dropout' applies to none of the components"),
    ],
)
def test_bad_study_fails_before_training_naming_file_and_line(
    tmp_path: Path, cli_plugins: object, replace: tuple[str, str], line: int, message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*replace))
    code, output = run_cli("run", str(path), "--results-dir", str(tmp_path / "r"))
    assert code == 2, output
    flat = " ".join(output.split())
    assert f"{path}:{line}:" in flat
    assert re.search(message, flat), flat
    assert not (tmp_path / "r" / "tiny_study" / "trials").exists()


def test_syntax_error_through_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path, "study = (\n")
    code, output = run_cli("run", str(path))
    assert code == 2 and f"{path}:1: syntax error" in " ".join(output.split())
