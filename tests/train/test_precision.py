"""``precision=auto`` decides once per study: no comparison compares two precisions.

The timing behind ``auto`` is replaced by a stand-in that prefers bf16 at one batch size and fp32
at the other, as a CPU with native bf16 can (the oscillation study's mid run trained batch 8 in
fp32 and batches 16 and 64 in bf16 before the choice was the study's), so these tests show the rule on
any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch

from ablate.components.discovery import Plugins
from ablate.train import precision
from ablate.train.precision import PrecisionChoice, choose_precision
from tests.conftest import invoke

STUDY = """
from ablate import Study, choice

study = Study(
    name="batches",
    question="Does the batch size matter?",
    baseline=dict(dataset="tiny", model="tiny_mlp", epochs=1, batch_size=8, keep_weights="none"),
    factors=dict(batch_size=choice(8, 16)),
    seeds=2,
)
"""


@pytest.fixture
def prefers_bf16_at_batch_8(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine with native bf16 where bf16 is faster at batch 8 and slower at 16; returns the
    names it was asked to time."""
    timed: list[str] = []

    def timing(name: str, model, device, batch: int, image_shape, num_classes) -> PrecisionChoice:  # type: ignore[no-untyped-def]
        timed.append(name)
        faster = "bf16" if batch == 8 else "fp32"
        return PrecisionChoice(faster, {"fp32": 2.0, "bf16": 1.0 if faster == "bf16" else 3.0})

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "machine_choice", timing)
    monkeypatch.setattr(precision, "_chosen", {})
    return timed


def choose(batch: int, key: str, record: Path | None) -> PrecisionChoice:
    model = torch.nn.Linear(4, 2)
    return choose_precision("auto", torch.device("cpu"), model, batch, (4,), 2, key, record)


def test_a_study_trains_every_model_and_batch_in_its_first_trials_precision(
    prefers_bf16_at_batch_8: list[str], tmp_path: Path
) -> None:
    alone = choose(8, "a", None), choose(16, "b", None)
    assert [c.precision for c in alone] == ["bf16", "fp32"]  # lone trials: each its own

    record = tmp_path / "precision.json"
    first, other, again = choose(8, "a", record), choose(16, "b", record), choose(8, "a", record)
    assert first.precision == other.precision == again.precision == "bf16"
    assert first.step_ms == again.step_ms == {"fp32": 2.0, "bf16": 1.0}
    assert other.step_ms is None  # the timings were of batch 8's model, not this one's
    kept = json.loads(record.read_text())
    assert list(kept) == ["study"] and kept["study"]["precision"] == "bf16"
    assert choose_precision(
        "fp32", torch.device("cpu"), torch.nn.Linear(4, 2), 8, (4,), 2, "a", record
    ).precision == ("fp32")  # an explicit precision is the trial's own


def test_a_batch_size_study_trains_all_its_cells_in_one_precision(
    prefers_bf16_at_batch_8: list[str], cli_plugins: Plugins, tmp_path: Path
) -> None:
    study = tmp_path / "batches.py"
    study.write_text(STUDY)
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "results"))
    assert code == 0, output
    trials = ds.dataset(tmp_path / "results" / "batches" / "trials").to_table().to_pylist()
    assert sorted(t["cell"] for t in trials) == ["batch_size=16"] * 2 + ["batch_size=8"] * 2
    assert {t["precision"] for t in trials} == {"bf16"}  # batch 16 alone would have been fp32
    assert len(prefers_bf16_at_batch_8) == 1  # timed once, for the first trial


def test_a_folder_whose_trials_already_mix_precisions_is_refused_in_one_line(
    prefers_bf16_at_batch_8: list[str], cli_plugins: Plugins, tmp_path: Path
) -> None:
    study = tmp_path / "batches.py"
    study.write_text(STUDY)
    folder = tmp_path / "results" / "batches"
    folder.mkdir(parents=True)
    earlier = {  # what precision=auto kept per model and batch before it decided per study
        "(('tiny_mlp', ()), 8, (3, 8, 8))": {"precision": "bf16", "step_ms": None},
        "(('tiny_mlp', ()), 16, (3, 8, 8))": {"precision": "fp32", "step_ms": None},
    }
    (folder / "precision.json").write_text(json.dumps(earlier))
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "results"))
    assert code == 2, output
    line = output.strip().splitlines()[-1]
    assert str(folder) in line and "bf16 and fp32" in line and "new results folder" in line

    (folder / "precision.json").write_text(
        json.dumps({k: {**v, "precision": "fp32"} for k, v in earlier.items()})
    )
    code, output = invoke("run", str(study), "--results-dir", str(tmp_path / "results"))
    assert code == 0, output  # one precision kept: the study goes on in it
    trials = ds.dataset(folder / "trials").to_table().to_pylist()
    assert {t["precision"] for t in trials} == {"fp32"} and prefers_bf16_at_batch_8 == []
