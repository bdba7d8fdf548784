"""The columns of the three results tables, each with its type and what it means.

This is the one place a column is defined: the tables are written with these schemas, and the
documentation's results page is generated from the meanings (``docs/results.md``). Accuracies
are fractions in [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

__all__ = [
    "CLASS_COLUMNS",
    "CLASS_FIELDS",
    "EPOCH_COLUMNS",
    "EPOCH_FIELDS",
    "PARAM_PREFIX",
    "TRIAL_COLUMNS",
    "TRIAL_FIELDS",
    "Column",
]

PARAM_PREFIX = "param_"  # trials: one column per setting and component parameter


class Column(NamedTuple):
    name: str
    type: pa.DataType
    meaning: str


_KEYS = [
    Column("study", pa.string(), "the study's name"),
    Column(
        "trial",
        pa.int64(),
        "the (cell, seed) pair's number in the plan (in a sampler design, the order the sampler proposed it)",
    ),
    Column("attempt", pa.int64(), "the attempt at that trial: 1, then 2, ... after a failure"),
]

TRIAL_FIELDS = [
    *_KEYS,
    Column(
        "state",
        pa.string(),
        "complete, diverged, pruned, fail or interrupted; analyses keep complete and count diverged",
    ),
    Column("seed", pa.int64(), "the seed: initialisation, data order, every augmentation draw"),
    Column("cell", pa.string(), "the cell, its factor levels as text (dropout=0.25,augment=none)"),
    Column("preset", pa.string(), "the preset the plan was resolved with"),
    Column("test_acc", pa.float64(), "test accuracy after the last epoch (null if it diverged)"),
    Column("test_loss", pa.float64(), "test loss after the last epoch"),
    Column(
        "test_correct",
        pa.list_(pa.bool_()),
        "per test image, in test-set order: whether the last epoch classified it correctly "
        "(what the report's paired bootstrap over test images resamples; null if it diverged)",
    ),
    Column(
        "train_acc",
        pa.float64(),
        "the last epoch's accuracy measured during training, with augmentation and dropout active",
    ),
    Column("train_loss", pa.float64(), "the last epoch's loss measured during training"),
    Column(
        "train_eval_acc",
        pa.float64(),
        "accuracy after the last epoch in eval mode on a fixed unaugmented subset of the training images",
    ),
    Column("val_acc", pa.float64(), "the last epoch's validation accuracy (null without val_size)"),
    Column("val_loss", pa.float64(), "the last epoch's validation loss (null without val_size)"),
    Column("best_test_acc", pa.float64(), "test accuracy at the best epoch"),
    Column("best_epoch", pa.int64(), "the best epoch, chosen on best_on"),
    Column(
        "best_on",
        pa.string(),
        "what chose the best epoch: val with a validation split, else test (descriptive only)",
    ),
    Column("epochs_done", pa.int64(), "epochs finished"),
    Column(
        "diverged_epoch", pa.int64(), "the epoch whose training loss became NaN or infinite (null if none)"
    ),
    Column("resumed_from_epoch", pa.int64(), "epochs restored from a checkpoint (0: none)"),
    Column("seconds", pa.float64(), "wall time of the attempt"),
    Column("model_params", pa.int64(), "the model's number of parameters"),
    Column("device", pa.string(), "the torch device the attempt trained on"),
    Column("gpu", pa.string(), "the physical GPU, index and name (null on a CPU)"),
    Column("cpu", pa.string(), "the CPU's model name (CPUs differ in bf16 support, so in the numbers)"),
    Column("data_placement", pa.string(), "where the images lived: device or stream"),
    Column("precision", pa.string(), "fp32 or bf16, as used"),
    Column("tf32", pa.bool_(), "whether TF32 was on (CUDA)"),
    Column("deterministic", pa.bool_(), "whether deterministic kernels were on"),
    Column("threads", pa.int64(), "the CPU threads the trial computed with"),
    Column("nondeterministic_ops", pa.string(), "ops that ran without a deterministic kernel"),
    Column("compiled", pa.bool_(), "whether the model ran under torch.compile"),
    Column(
        "step_ms_fp32",
        pa.float64(),
        "the fp32 training-step time precision=auto chose by (null when it did not measure)",
    ),
    Column("step_ms_bf16", pa.float64(), "the bf16 training-step time precision=auto chose by"),
    Column("torch_version", pa.string(), "provenance: torch's version"),
    Column("ablate_version", pa.string(), "provenance: ablate's version"),
    Column("plugin_versions", pa.string(), "provenance: each plugin's distribution and version (JSON)"),
    Column("git_revision", pa.string(), "provenance: the study's git revision, when it has one"),
    Column("data_fingerprint", pa.string(), "hash of the dataset's files"),
    Column("study_fingerprint", pa.string(), "hash of the study plan the trial was planned under"),
    Column("optuna_trial", pa.int64(), "the Optuna trial that carried this attempt"),
    Column("started_at", pa.timestamp("s", tz="UTC"), "when the attempt started (UTC)"),
    Column("error", pa.string(), "the traceback of a failed attempt"),
]

EPOCH_FIELDS = [
    *_KEYS,
    Column("epoch", pa.int64(), "the epoch, from 1"),
    Column("lr", pa.float64(), "the learning rate during the epoch"),
    Column(
        "train_loss",
        pa.float64(),
        "loss measured during training (augmentation and dropout active): what most scripts print",
    ),
    Column("train_acc", pa.float64(), "accuracy measured during training"),
    Column(
        "train_eval_acc",
        pa.float64(),
        "accuracy after the epoch in eval mode on a fixed, "
        "unaugmented subset of the training images (train_eval_size, the same for every "
        "trial): it compares like for like with test_acc",
    ),
    Column("test_loss", pa.float64(), "test loss after the epoch"),
    Column("test_acc", pa.float64(), "test accuracy after the epoch"),
    Column("seconds", pa.float64(), "wall time of the epoch"),
    Column("restart", pa.bool_(), "the first epoch after a restart of a resume study"),
    Column("val_loss", pa.float64(), "validation loss (null without val_size)"),
    Column("val_acc", pa.float64(), "validation accuracy (null without val_size)"),
]

CLASS_FIELDS = [
    *_KEYS,
    Column("class_index", pa.int64(), "the class's label"),
    Column("class_name", pa.string(), "the class's name"),
    Column("test_acc", pa.float64(), "test accuracy on that class after the last epoch"),
    Column("count", pa.int64(), "test images of that class"),
    Column(
        "confusion",
        pa.list_(pa.int64()),
        "the confusion matrix's row for that true class: counts per predicted class",
    ),
]

TRIAL_COLUMNS = pa.schema([(c.name, c.type) for c in TRIAL_FIELDS])
EPOCH_COLUMNS = pa.schema([(c.name, c.type) for c in EPOCH_FIELDS])
CLASS_COLUMNS = pa.schema([(c.name, c.type) for c in CLASS_FIELDS])
