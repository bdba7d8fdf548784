"""The trainer settings a study may set beside its components' parameters, with their defaults
and valid values (``ablate list setting``)."""

from __future__ import annotations

from ablate.params import Param

PRECISIONS = ("auto", "fp32", "bf16")


PLACEMENTS = ("auto", "device", "stream")


KEEP = ("final", "best", "both", "none")


RESUME_MODES = ("none", "full", "weights_only", "weights_optimizer", "weights_scheduler")


SETTINGS: tuple[Param, ...] = (
    Param("dataset", "cifar10-mini", "dataset to train and test on"),
    Param("model", "resnet18", "model to train"),
    Param("augment", "none", "training augmentations, joined with '+' and applied in order"),
    Param("optimizer", "sgd", "optimizer"),
    Param("scheduler", "none", "learning-rate scheduler, stepped once per epoch"),
    Param("epochs", 10, "number of passes over the training set", ge=1),
    Param(
        "batch_size",
        128,
        "training batch size (larger than the training split: the whole split, one batch per epoch)",
        ge=1,
    ),
    Param(
        "eval_batch_size",
        0,
        "batch size for evaluation (no effect on results; 0: 1,000 "
        "images at 32 x 32, fewer for larger images, halved on running out of GPU memory)",
        ge=0,
    ),
    Param("train_size", 0, "train on N training images only (0: all); which ones: train_subset", ge=0),
    Param(
        "train_subset",
        "first",
        "which train_size images a trial trains on: the first N for every seed, or a subset "
        "drawn by each seed (per_seed: intervals then also cover which images were drawn)",
        choices=("first", "per_seed"),
    ),
    Param("test_size", 0, "test on the first N test images only (0: all)", ge=0),
    Param(
        "val_size",
        0,
        "images held out of the training split for validation (stratified by "
        "class, the same for every trial; 0: none): then plateau steps, the best epoch and a "
        "sampler's objective use validation accuracy, never the test set",
        ge=0,
    ),
    Param(
        "train_eval_size",
        10000,
        "size of the fixed, unaugmented train subset measured in eval mode each epoch",
        ge=1,
    ),
    Param("checkpoint_every", 1, "save a checkpoint every N epochs for crash recovery (0: never)", ge=0),
    Param(
        "checkpoint_seconds",
        -1.0,
        "least seconds between two checkpoints of a trial (the "
        "last epoch's is always written; -1: 60 on a GPU, none on a CPU)",
        ge=-1,
    ),
    Param("keep_checkpoints", 2, "how many of a trial's newest checkpoints to keep", ge=1),
    Param("resume", "none", "simulated stop-and-reload every resume_every epochs", choices=RESUME_MODES),
    Param("resume_every", 0, "epochs between simulated restarts (0: never)", ge=0),
    Param(
        "precision",
        "auto",
        "auto (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), fp32 or bf16",
        choices=PRECISIONS,
    ),
    Param(
        "deterministic",
        "auto",
        "deterministic GPU kernels (slower; exact repeats on the same "
        "GPU and library versions): on, off, or auto (decided once per study: on whenever it "
        "writes checkpoints or restarts, which it does by default); no effect on a CPU",
        choices=("auto", "on", "off"),
    ),
    Param("compile", False, "torch.compile the model (compiled once per architecture per worker)"),
    Param(
        "classes",
        (),
        "train and test on these classes only, by label (labels renumbered, names kept; empty: all)",
        ge=0,
    ),
    Param(
        "init",
        "scratch",
        "the model's starting weights: scratch, imagenet (models with a "
        "'pretrained' parameter), a .safetensors file, or STUDY or STUDY/CELL (that study's "
        "kept final weights of the trial with the same seed)",
    ),
    Param(
        "freeze",
        "none",
        "none, or backbone: train the head (the last linear layer) alone",
        choices=("none", "backbone"),
    ),
    Param(
        "keep_weights",
        "final",
        "which weights of a finished trial to keep under results/STUDY/weights/ (safetensors + JSON sidecar)",
        choices=KEEP,
    ),
    Param(
        "data_placement",
        "auto",
        "where the training images live: device (copied to the "
        "training device once), stream (read batch by batch from the memory-mapped cache), or "
        "auto (device when they fit data_budget_mb, else stream)",
        choices=PLACEMENTS,
    ),
    Param(
        "data_budget_mb",
        0.0,
        "how much device memory auto may fill with images (0: half of the device's free memory)",
        ge=0,
    ),
    Param(
        "tensorboard",
        False,
        "write each trial's per-epoch metrics as TensorBoard scalars "
        "under results/STUDY/tensorboard/ (needs pip install 'ablate[tensorboard]')",
    ),
    Param(
        "mlflow_uri",
        "",
        "an MLflow tracking server (http://host:5000): the study is an experiment, each trial a "
        "run with its epochs' metrics and kept weights (needs pip install 'ablate[mlflow]'; "
        "empty: none)",
    ),
)


# Settings that change what is kept or shown, never a trial's result: left out of the plan's
# fingerprint, so turning them on does not make a folder's results "another plan".
OBSERVING = frozenset(
    {
        "eval_batch_size",
        "checkpoint_every",
        "checkpoint_seconds",
        "keep_checkpoints",
        "keep_weights",
        "tensorboard",
        "mlflow_uri",
        "data_placement",
        "data_budget_mb",
    }
)


SETTING_NAMES = {p.name for p in SETTINGS}


# Settings that select components, with the component kind each selects.
SELECTORS = {
    "dataset": "dataset",
    "model": "model",
    "augment": "augmentation",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
}


def restarts_before(epoch: int, every: int) -> bool:
    """Whether a trial with ``resume_every=every`` stops and reloads right before ``epoch``
    (1-based): after every ``every`` epochs. The trainer restarts there and the report measures
    each restart's jump there, also in continuous trials, where it is a paired difference."""
    return every > 0 and epoch > 1 and (epoch - 1) % every == 0
