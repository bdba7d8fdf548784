"""Datasets for a worker's trials: each built once per process, checked against the results
folder's record of its data (see :mod:`ablate.store.identity`), one on the device at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablate.components.setup import TrialSetup
from ablate.data import given_data_dir
from ablate.store.identity import DataGuard


def describe(name: str, values: Any) -> str:
    """A dataset configuration as words: ``'imagefolder' (size=64, split_seed=0)``."""
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()))
    return f"{name!r}" + (f" ({shown})" if shown else "")


class DatasetCache:
    """Builds each dataset once (decoding is the slow part) and keeps the trial-sized copy on the
    training device until a trial asks for another size or dataset."""

    def __init__(
        self, device: Any, data_dir: Path | None, log: Callable[[str], None], guard: DataGuard | None = None
    ) -> None:
        self.device = device
        self.data_dir = data_dir
        self.log = log
        self.guard = guard
        self._built: dict[Any, Any] = {}
        self._on_device: dict[Any, Any] = {}

    def get(self, setup: TrialSetup, seed: int = 0) -> tuple[Any, Any]:
        """The trial's dataset (``ImageData``) and its images on the device (``DeviceData``);
        ``seed`` draws the training subset when ``train_subset`` is ``per_seed``."""
        from ablate.train.placement import trial_data

        dataset = setup.dataset
        key = (dataset.component.name, tuple(sorted(dataset.values.items())))
        if key not in self._built:
            self.log(f"loading dataset {dataset.component.name!r}")
            built = dataset.build(data_dir=self.data_dir)
            if self.guard is not None:
                given = given_data_dir(self.data_dir)
                self.guard.check(
                    describe(dataset.component.name, dataset.values),
                    dataset.component.name,
                    built.fingerprint,
                    str(given.resolve()) if given else "its default location",
                )
            self._built[key] = built
        data = self._built[key]
        sizes = tuple(
            setup.settings[k]
            for k in (
                "classes",
                "val_size",
                "train_size",
                "test_size",
                "train_eval_size",
                "data_placement",
                "data_budget_mb",
                "train_subset",
            )
        ) + ((seed,) if setup.settings.get("train_subset") == "per_seed" else ())
        if (key, sizes) not in self._on_device:
            self._on_device.clear()  # keep one dataset on the device at a time
            self._on_device[(key, sizes)] = trial_data(data, setup.settings, self.device, self.log, seed)
        return data, self._on_device[(key, sizes)]
