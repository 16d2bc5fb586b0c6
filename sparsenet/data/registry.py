"""`load_dataset`: one entry point for the embedded digits and for user-supplied array files.

Example:
    >>> ds = load_dataset("digits", flatten=True)
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    ((1348, 64), (449, 64), 10)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .arrays import load_arrays
from .dataset import Dataset
from .digits import load_digits
from .split import train_test_split

__all__ = ["load_dataset", "BUILTIN_DATASETS"]

BUILTIN_DATASETS = ("digits",)


def load_dataset(name_or_path, *, flatten: bool = False, test_fraction: float = 0.25,
                 seed: int = 0) -> Dataset:
    """Load a dataset by name or from files and return it split into train and test parts.

    Args:
        name_or_path: ``"digits"`` (the embedded 8x8 digits, x (N, 1, 8, 8) in [0, 1]); a path to
            an ``.npz`` archive holding ``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test``;
            or a pair ``(x_path, y_path)`` of ``.npy`` files. See `load_arrays`.
        flatten: reshape every sample to a vector: x becomes (N, features).
        test_fraction: share of samples in the test part when the data is not already split.
        seed: seed of the stratified split when the data is not already split
            (same seed -> identical Dataset). Both are ignored for pre-split archives.

    Returns:
        A `Dataset`: x float32 C-contiguous, y int64; num_classes = largest label + 1.
        Its name is the dataset name, or the stem of the (x) file.

    Raises:
        ConfigError: unknown name, bad split settings (test_fraction, seed).
        DataError: unreadable or invalid files (see `load_arrays`).
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_DATASETS:
        x, y = load_digits(flatten=flatten)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=test_fraction, seed=seed)
        return Dataset(x_tr, y_tr, x_te, y_te, name=name_or_path, num_classes=int(y.max()) + 1)

    if isinstance(name_or_path, (tuple, list)):
        if not name_or_path:
            raise ConfigError("load_dataset: expected a pair (x_path, y_path), found an empty sequence")
        name = Path(name_or_path[0]).stem
    elif isinstance(name_or_path, (str, os.PathLike)):
        p = Path(name_or_path)
        if p.suffix.lower() not in (".npz", ".npy") and not p.exists():
            raise ConfigError(f"load_dataset: unknown dataset {str(name_or_path)!r}: expected one of "
                              f"{list(BUILTIN_DATASETS)}, a path to an .npz file, or a pair of .npy paths")
        name = p.stem
    else:
        raise ConfigError(f"load_dataset: expected a dataset name, a path or a pair of paths, "
                          f"found {type(name_or_path).__name__}")

    arrays = load_arrays(name_or_path)
    if "x" in arrays:
        x_tr, x_te, y_tr, y_te = train_test_split(arrays["x"], arrays["y"],
                                                  test_fraction=test_fraction, seed=seed)
    else:
        x_tr, y_tr, x_te, y_te = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    if flatten:
        x_tr = x_tr.reshape(x_tr.shape[0], -1)
        x_te = x_te.reshape(x_te.shape[0], -1)
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    return Dataset(np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te,
                   name=name, num_classes=num_classes)
