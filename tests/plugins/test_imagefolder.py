"""The ``imagefolder`` dataset: both layouts, the split, the cache, the errors, and a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image
from typer.testing import CliRunner

from ablate import data as data_module
from ablate.cli.app import app
from ablate_plugins import imagefolder as module
from ablate_plugins.imagefolder import ImageFolderError, imagefolder

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


pytestmark = pytest.mark.usefixtures("private_cache")


def photos(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """One folder per colour: noisy photos of varied sizes, JPEG and PNG mixed."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(20, 60, 2)
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (height, width, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_one_folder_per_class_is_split_per_class_and_resized(tmp_path: Path) -> None:
    root = photos(tmp_path / "photos")
    (root / ".hidden").mkdir()
    (root / "red" / "notes.txt").write_text("not an image")
    data = imagefolder(data_dir=root, size=16, test_fraction=0.2)
    assert data.classes == ("blue", "green", "red")  # sorted, as torchvision's ImageFolder
    assert data.train_images.shape == (24, 3, 16, 16) and data.test_images.shape == (6, 3, 16, 16)
    assert data.test_labels.bincount().tolist() == [2, 2, 2]  # 20 % of each class
    assert len(set(data.train_labels[:6].tolist())) > 1  # stored mixed, so train_size samples all
    red = data.train_images[data.train_labels == 2].float().mean((0, 2, 3))
    assert red[0] > 150 and red[1] < 90 and red[2] < 90  # labels follow the folders
    pixels = data.train_images.double() / 255
    assert np.allclose(data.mean, pixels.mean((0, 2, 3)).numpy(), atol=1e-4)
    assert np.allclose(data.std, pixels.std((0, 2, 3), correction=0).numpy(), atol=1e-4)


def test_the_split_follows_its_seed(tmp_path: Path) -> None:
    root = photos(tmp_path / "photos")
    first = imagefolder(data_dir=root, split_seed=0)
    again = imagefolder(data_dir=root, split_seed=0)
    other = imagefolder(data_dir=root, split_seed=1)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert np.array_equal(first.test_images.numpy(), again.test_images.numpy())
    assert not np.array_equal(first.test_images.numpy(), other.test_images.numpy())


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    photos(tmp_path / "set" / "train", per_class=6)
    photos(tmp_path / "set" / "val", per_class=3, seed=1)  # val/ stands for test/
    data = imagefolder(data_dir=tmp_path / "set", test_fraction=0.5)
    assert len(data.train_labels) == 18 and data.test_labels.bincount().tolist() == [3, 3, 3]


def test_a_test_class_without_training_images_is_an_error(tmp_path: Path) -> None:
    photos(tmp_path / "set" / "train")
    photos(tmp_path / "set" / "test")
    (tmp_path / "set" / "train" / "red").rename(tmp_path / "red_elsewhere")
    with pytest.raises(ImageFolderError, match=r"classes \['red'\] have no training images"):
        imagefolder(data_dir=tmp_path / "set")


def test_decoded_once_then_read_from_the_cache_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = photos(tmp_path / "photos")
    first = imagefolder(data_dir=root)
    decoded: list[Path] = []
    real_decode = module._decode
    monkeypatch.setattr(module, "_decode", lambda path, size: decoded.append(path) or real_decode(path, size))
    again = imagefolder(data_dir=root)
    assert decoded == [] and np.array_equal(first.train_images.numpy(), again.train_images.numpy())
    Image.new("RGB", (30, 30), (255, 255, 0)).save(root / "red" / "0.png")
    changed = imagefolder(data_dir=root)
    assert len(decoded) == 30 and changed.fingerprint != first.fingerprint


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="--data-dir PATH or set ABLATE_DATA=PATH"):
        imagefolder(data_dir=None)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "cats" / "a.png")
    with pytest.raises(ImageFolderError, match=r"found 1 class folder\(s\) with images \(cats\)"):
        imagefolder(data_dir=tmp_path / "one")
    root = photos(tmp_path / "photos")
    (root / "green" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageFolderError, match=r"broken\.jpg: not a readable image"):
        imagefolder(data_dir=root)


STUDY = """
from ablate import Study, choice

study = Study(
    name="colours",
    question="Can a small CNN tell the colour folders apart?",
    baseline=dict(dataset="imagefolder", size=32, model="simple_cnn", augment="none",
                  optimizer="sgd", lr=0.05, epochs=4, batch_size=16, eval_batch_size=64),
    factors=dict(augment=choice("none", "crop_flip")),
    seeds=1,
)
"""


def test_a_study_trains_on_a_photo_folder_named_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = photos(tmp_path / "photos", per_class=20)
    monkeypatch.setenv(data_module.DATA_ENV, str(root))
    study = tmp_path / "colours.py"
    study.write_text(STUDY)
    result = CliRunner().invoke(app, ["run", str(study), "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "results" / "colours"
    trials = ds.dataset(folder / "trials").to_table().to_pylist()
    assert len(trials) == 2 and all(t["test_acc"] > 0.8 for t in trials)  # chance is 1/3
    classes = ds.dataset(folder / "classes").to_table().to_pylist()
    assert {c["class_name"] for c in classes} == set(COLOURS)
