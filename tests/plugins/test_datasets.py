"""Dataset plugins: the shipped subset, both local CIFAR-10 layouts, and the offline message."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ablate_plugins import datasets
from tests.conftest import REPO, SHARED_CIFAR10

pytestmark = pytest.mark.usefixtures("private_cache")


def random_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count)


def write_hf_parquet(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    from io import BytesIO

    from PIL import Image

    blobs = []
    for image in images:
        buffer = BytesIO()
        Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="PNG")  # lossless
        blobs.append({"bytes": buffer.getvalue(), "path": None})
    pq.write_table(pa.table({"img": blobs, "label": labels}), path)


def test_mini_is_the_first_images_of_cifar10_and_shipped(private_cache: Path) -> None:
    mini = datasets.cifar10_mini(data_dir=None)
    assert mini.train_images.shape == (5000, 3, 32, 32) and mini.test_images.shape == (1000, 3, 32, 32)
    assert mini.train_images.dtype == torch.uint8
    assert mini.classes[0] == "airplane" and len(mini.classes) == 10
    assert set(mini.train_labels.tolist()) == set(range(10))
    size = sum(p.stat().st_size for p in datasets.MINI_DIR.glob("*.parquet"))
    assert size < 3_000_000
    assert list((private_cache / "decoded").glob("*/train_x.npy"))  # decoded once, cached
    again = datasets.cifar10_mini(data_dir=None)
    assert torch.equal(again.train_images, mini.train_images)


def test_cifar10_reads_the_hugging_face_parquet_layout(tmp_path: Path) -> None:
    train_x, train_y = random_images(20, 0)
    test_x, test_y = random_images(10, 1)
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    write_hf_parquet(folder / "train.parquet", train_x, train_y)
    write_hf_parquet(folder / "test.parquet", test_x, test_y)
    loaded = datasets.cifar10(data_dir=tmp_path / "data")
    assert torch.equal(loaded.train_images, torch.from_numpy(train_x))
    assert loaded.test_labels.tolist() == test_y.tolist()


def test_cifar10_reads_the_torchvision_batches_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = []
    for index, name in enumerate(datasets.BATCH_FILES):
        images, labels = random_images(4, index)
        expected.append(images)
        with (folder / name).open("wb") as handle:
            pickle.dump({"data": images.reshape(4, -1), "labels": labels.tolist()}, handle)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))  # the environment variable works too
    loaded = datasets.cifar10(data_dir=None)
    assert loaded.train_images.shape == (20, 3, 32, 32)
    assert torch.equal(loaded.train_images[:4], torch.from_numpy(expected[0]))
    assert torch.equal(loaded.test_images, torch.from_numpy(expected[-1]))


def test_offline_without_local_data_says_how_to_point_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.CIFAR10.__init__", no_network)
    with pytest.raises(datasets.DatasetNotFound) as info:
        datasets.cifar10(data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "--data-dir" in message and datasets.DATA_ENV in message and "cifar10-mini" in message


def test_a_damaged_decode_cache_is_rebuilt(private_cache: Path) -> None:
    datasets.cifar10_mini(data_dir=None)
    (cached,) = (private_cache / "decoded").glob("*/train_x.npy")
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated, as a full disk leaves it
    assert datasets.cifar10_mini(data_dir=None).train_images.shape[0] == 5000
    (cached,) = (private_cache / "decoded").glob("*/train_x.npy")
    cached.write_bytes(b"not an array")
    again = datasets.cifar10_mini(data_dir=None)
    assert again.train_images.shape[0] == 5000 and int(again.train_images[0].sum()) > 0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="needs ../shared/datasets/cifar10")
def test_full_cifar10_from_the_shared_copy() -> None:
    full = datasets.cifar10(data_dir=SHARED_CIFAR10)
    assert full.train_images.shape == (50000, 3, 32, 32) and full.test_images.shape == (10000, 3, 32, 32)
    assert np.bincount(full.test_labels.numpy()).tolist() == [1000] * 10
    mini = datasets.cifar10_mini(data_dir=None)
    assert torch.equal(full.train_images[:5000], mini.train_images)


DECODE_ONCE = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
from ablate.data import cached_arrays

def decode():
    with open(sys.argv[1], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)
    return {"train_x": np.zeros((4, 3, 2, 2), dtype=np.uint8)}

arrays = cached_arrays("shared-fingerprint", decode)
assert arrays["train_x"].shape == (4, 3, 2, 2)
"""


@pytest.mark.slow
def test_workers_starting_together_decode_a_dataset_once(tmp_path: Path) -> None:
    """32 workers on a GPU host once decoded (or downloaded) the same dataset at the same time,
    each holding its own copy in memory; the cache is built under a lock, once."""
    import os
    import subprocess
    import sys

    log = tmp_path / "decodes.txt"
    env = {**os.environ, "ABLATE_CACHE": str(tmp_path / "cache")}
    workers = [
        subprocess.Popen([sys.executable, "-c", DECODE_ONCE, str(log), str(REPO)], env=env) for _ in range(4)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
