"""Image datasets as uint8 tensors, decoded once and cached on disk (public for plugins).

Every dataset plugin returns an :class:`ImageData`: the whole train and test sets as uint8
tensors of shape (N, 3, H, W). The trainer moves them to the training device once and does
augmentation and normalisation there, per batch, so no per-image Python runs while training.
What the tensors must be is in :mod:`.images`; reading and caching image files in :mod:`.files`.
"""

from ablate.data.files import (
    CACHE_ENV,
    DATA_ENV,
    UnreadableImage,
    cache_dir,
    cached_arrays,
    fingerprint_files,
    given_data_dir,
    load_image,
    load_parquet_pair,
    read_parquet_split,
    update_with_file,
)
from ablate.data.images import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    VAL_SPLIT_SEED,
    DataContractError,
    ImageData,
    image_data,
    stratified_holdout,
    trial_classes,
)

__all__ = [
    "CACHE_ENV",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_ENV",
    "VAL_SPLIT_SEED",
    "DataContractError",
    "ImageData",
    "UnreadableImage",
    "cache_dir",
    "cached_arrays",
    "fingerprint_files",
    "given_data_dir",
    "image_data",
    "load_image",
    "load_parquet_pair",
    "read_parquet_split",
    "stratified_holdout",
    "trial_classes",
    "update_with_file",
]
