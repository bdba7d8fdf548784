"""Where a trial's images live and how batches reach the training device.

``device``: the images are copied to the training device once (fastest). ``stream``: they stay
in the memory-mapped decode cache and each batch is copied over as it is needed (from pinned
memory without waiting, on CUDA). ``auto`` keeps them on the device when they fit its budget:
``data_budget_mb``, else a share of the device's free memory divided among the workers that
share the device; a copy that runs out of memory all the same falls back to streaming. Both
give the same batches, so the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from ablate.data import ImageData, stratified_holdout
from ablate.errors import SetupError

TRAIN_EVAL_SUBSET_SEED = 20240601  # the same train subset for every trial, whatever its seed
# How many worker processes share this process's training device (set by ``ablate run
# --workers``/``--workers-per-gpu`` for each worker it starts): each budgets its share.
SHARING_ENV = "ABLATE_WORKERS_ON_DEVICE"


@dataclass(frozen=True)
class ImageSource:
    """Images read in batches: a tensor on the training device, or (streaming) in host memory,
    read through ``rows`` (positions in ``images``) when given."""

    images: torch.Tensor
    rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images) if self.rows is None else len(self.rows)

    def batch(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        if self.images.device == device:
            return self.images[start:stop] if self.rows is None else self.images[self.rows[start:stop]]
        rows = torch.arange(start, min(stop, len(self))) if self.rows is None else self.rows[start:stop]
        return gather_to_device(self.images, rows, device)


class PinnedStaging:
    """Two pinned host buffers a streamed batch is gathered into, used in turn: the gather
    writes straight into pinned memory (not into pageable memory first and then a pinned copy),
    and a buffer is reused only once the copy to the GPU that read it has finished (its event),
    so the next gather overlaps the last copy without overwriting it."""

    def __init__(self) -> None:
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.copied: list[Any] = [None, None]
        self.turn = 0

    def to_device(self, source: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        slot, self.turn = self.turn, self.turn ^ 1
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()  # the copy that read this buffer is done
        shape = (len(rows), *source.shape[1:])
        count = len(rows) * source[0].numel() if len(source) else 0
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < count or buffer.dtype != source.dtype:
            # A normal tensor even when first needed while evaluating (inference mode): an
            # inference tensor cannot be written to by the next training step's gather.
            with torch.inference_mode(False):
                buffer = self.buffers[slot] = torch.empty(max(count, 1), dtype=source.dtype, pin_memory=True)
        staged = buffer[:count].view(shape)
        torch.index_select(source, 0, rows, out=staged)
        moved = staged.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        self.copied[slot] = event
        return moved


_staging: dict[torch.device, PinnedStaging] = {}


def gather_to_device(source: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``source[rows]`` (host memory, or its memory map) on ``device``: on CUDA through pinned
    staging buffers without waiting; on a CPU gathered as it is."""
    if device.type != "cuda":
        return source[rows].to(device)
    return _staging.setdefault(device, PinnedStaging()).to_device(source, rows, device)


@dataclass(frozen=True)
class DeviceData:
    """A trial's images and labels, with the normalisation constants. Labels always live on the
    training device; images too, unless ``placement`` is ``stream``: then ``train_x`` is the
    dataset's memory-mapped host array, read through ``train_rows``, and every batch is copied
    over as it is needed."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_eval_index: torch.Tensor  # positions among the training images: no second copy
    mean: torch.Tensor
    std: torch.Tensor
    val_x: torch.Tensor | None = None  # the validation split, when the trial has one
    val_y: torch.Tensor | None = None
    train_rows: torch.Tensor | None = None  # streaming: the row of train_x of each position
    placement: str = "device"

    @property
    def device(self) -> torch.device:
        return self.train_y.device

    def train_batch(self, index: torch.Tensor, host_index: torch.Tensor | None = None) -> torch.Tensor:
        """The training images at positions ``index`` (on the device), on the device; streaming
        reads them through ``host_index``, the same positions in host memory, when given."""
        if self.train_rows is None:
            return self.train_x[index]
        rows = self.train_rows[index.cpu() if host_index is None else host_index]
        return gather_to_device(self.train_x, rows, self.device)

    @property
    def train_eval(self) -> ImageSource:
        """The fixed train subset measured in eval mode, read from the training images."""
        if self.train_rows is None:
            return ImageSource(self.train_x, self.train_eval_index)
        return ImageSource(self.train_x, self.train_rows[self.train_eval_index.cpu()])

    @property
    def train_eval_x(self) -> torch.Tensor:
        source = self.train_eval
        return source.batch(0, len(source), self.device)

    @property
    def train_eval_y(self) -> torch.Tensor:
        return self.train_y[self.train_eval_index]


DEVICE_SHARE = 0.5  # auto keeps the images on the device when they fit in this share of its free memory


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's own count, else the host's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def workers_on_device() -> int:
    """How many worker processes share this one's training device (1 when run alone)."""
    try:
        return max(1, int(os.environ.get(SHARING_ENV, "1")))
    except ValueError:
        return 1


def choose_placement(requested: str, needed: int, device: torch.device, budget_mb: float) -> tuple[str, str]:
    """Where a trial's images live, and why: ``device`` when asked or when ``needed`` bytes fit
    the budget (``budget_mb``, else DEVICE_SHARE of the device's free memory divided among the
    workers sharing it: K workers once each budgeted half of the same memory), else ``stream``."""
    if requested != "auto":
        return requested, "as set"
    sharing = workers_on_device()
    budget = budget_mb * 2**20 if budget_mb else DEVICE_SHARE * free_memory(device) / sharing
    need, have = needed / 2**20, budget / 2**20
    if needed <= budget:
        return "device", f"auto: {need:,.1f} MB of images fit the {have:,.1f} MB budget"
    return "stream", (
        f"auto: {need:,.1f} MB of images exceed the {have:,.1f} MB budget on "
        f"{device.type}; batches are read from the memory-mapped cache"
    )


def to_device(
    data: ImageData,
    device: torch.device,
    train_eval_size: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    train_rows: torch.Tensor | None = None,
    placement: str = "device",
) -> DeviceData:
    """``data`` for training on ``device``. ``train_rows``: the training positions' rows of
    ``data.train_images`` (all, in order, when None). With ``placement="stream"`` the images
    stay where they are (host memory, or its memory map) and only labels move."""
    rows = torch.arange(len(data.train_labels)) if train_rows is None else train_rows
    subset_generator = torch.Generator().manual_seed(TRAIN_EVAL_SUBSET_SEED)
    count = min(train_eval_size, len(rows))
    subset = torch.randperm(len(rows), generator=subset_generator)[:count]
    streaming = placement == "stream"
    if streaming:
        train_x, kept_rows = data.train_images, rows
    else:
        prefix = len(rows) == 0 or int(rows[-1]) == len(rows) - 1  # rows are sorted, unique
        train_x = data.train_images[: len(rows)] if prefix else data.train_images[rows]
        train_x, kept_rows = train_x.to(device), None

    def stay(images: torch.Tensor) -> torch.Tensor:  # streamed images stay in host memory
        return images if streaming else images.to(device)

    return DeviceData(
        train_x=train_x,
        train_y=data.train_labels[rows].to(device),
        test_x=stay(data.test_images),
        test_y=data.test_labels.to(device),
        train_eval_index=subset.to(device),
        mean=torch.tensor(data.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1),
        std=torch.tensor(data.std, device=device, dtype=torch.float32).view(1, 3, 1, 1),
        val_x=None if val is None else stay(val[0]),
        val_y=None if val is None else val[1].to(device),
        train_rows=kept_rows,
        placement=placement,
    )


def trial_data(
    data: ImageData,
    settings: Mapping[str, Any],
    device: torch.device,
    log: Callable[[str], None] | None = None,
    seed: int = 0,
) -> DeviceData:
    """What a trial trains and tests on, for ``device``: ``val_size`` images held out of the
    training split (stratified, the same for every trial), then ``train_size`` of the rest
    (the first ones, or with ``train_subset="per_seed"`` a subset drawn by ``seed``) and the
    first ``test_size`` test images (0: all), and a fixed ``train_eval_size``
    subset of the training images. ``data_placement`` decides whether the images move to the
    device or stream from host memory; ``log`` hears the choice."""
    data = data.select_classes(tuple(settings["classes"]))
    rows = torch.arange(len(data.train_labels))
    val = None
    if settings["val_size"]:
        try:
            held, rows = stratified_holdout(data.train_labels, settings["val_size"])
        except ValueError as error:
            raise SetupError(f"val_size: {error} in {data.name}") from None
        val = (data.train_images[held], data.train_labels[held])
    if settings["train_size"] and settings.get("train_subset", "first") == "per_seed":
        # Each seed draws its own images (kept in dataset order), so seed-to-seed variation
        # includes which images were drawn; the draw depends on the seed alone.
        drawn = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
        rows = rows[drawn[: settings["train_size"]].sort().values]
    elif settings["train_size"]:
        rows = rows[: settings["train_size"]]
    if settings["test_size"]:
        data = replace(
            data,
            test_images=data.test_images[: settings["test_size"]],
            test_labels=data.test_labels[: settings["test_size"]],
        )
    per_image = data.train_images[0].numel() if len(data.train_images) else 0
    needed = per_image * (len(rows) + len(data.test_labels) + (0 if val is None else len(val[1])))
    placement, why = choose_placement(
        settings.get("data_placement", "auto"), needed, device, settings.get("data_budget_mb", 0)
    )
    if log is not None:
        log(f"data placement: {placement} ({why})")
    try:
        return to_device(data, device, settings["train_eval_size"], val, rows, placement)
    except torch.OutOfMemoryError:
        if placement != "device":
            raise
    # The images did not fit after all (another process took the memory meanwhile): the same
    # batches streamed, instead of a failed trial.
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if log is not None:
        log("data placement: stream (the copy to the device ran out of memory)")
    return to_device(data, device, settings["train_eval_size"], val, rows, "stream")
