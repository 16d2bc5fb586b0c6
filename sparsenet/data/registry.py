"""`load_dataset`: one entry point for the embedded datasets (`DATASETS`: the digits, the census
first names, the MovieLens ratings) and for user-supplied array files.

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

__all__ = ["load_dataset", "classification_dataset", "BUILTIN_DATASETS", "DATASETS"]

# Every embedded dataset: what `sparsenet datasets` lists. The licence files lie next to the data.
DATASETS = {
    "digits": {"task": "image classification, 10 classes (8x8 handwritten digits)", "samples": 1797,
               "split": "stratified, test_fraction 0.25", "licence": "CC BY 4.0 (UCI, Alpaydin & Kaynak 1998)",
               "licence_file": "DIGITS_LICENSE.txt", "default_for": ["mlp", "lenet300", "cnn", "resnet", "mobilenet"]},
    "names": {"task": "text classification, 2 classes (is a first name more often a woman's or a man's; "
                      "characters)", "samples": 5160, "split": "stratified, test_fraction 0.25",
              "licence": "public domain (1990 US Census, via the MIT package names 0.3.0)",
              "licence_file": "CENSUS_NAMES_LICENSE.txt", "default_for": ["transformer"]},
    "movielens": {"task": "ratings 0.5-5 stars and top-k recommendation (671 users, 9 066 movies)",
                  "samples": 100_004, "split": "per user, leave-last-out (each user's latest rating tests)",
                  "licence": "MovieLens terms: research use, credit Harper & Konstan 2015, redistribution "
                             "under the same terms; no commercial use", "licence_file": "MOVIELENS_LICENSE.txt",
                  "default_for": ["recommender"]},
}
BUILTIN_DATASETS = tuple(DATASETS)


def load_dataset(name_or_path, *, flatten: bool = False, test_fraction: float = 0.25,
                 seed: int = 0):
    """Load a dataset by name or from files and return it split into train and test parts.

    Args:
        name_or_path: ``"digits"`` (the embedded 8x8 digits, x (N, 1, 8, 8) in [0, 1]); ``"names"``
            (census first names as character ids, `load_names`); ``"movielens"`` (a
            `RatingsDataset`, `load_movielens`: its split is per user, and `flatten`/`test_fraction`
            do not apply); a path to
            an ``.npz`` archive holding ``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test``;
            or a pair ``(x_path, y_path)`` of ``.npy`` files. See `load_arrays`.
        flatten: reshape every sample to a vector: x becomes (N, features).
        test_fraction: share of samples in the test part when the data is not already split.
        seed: seed of the stratified split when the data is not already split
            (same seed -> identical Dataset). Both are ignored for pre-split archives.

    Returns:
        A `Dataset`: x float32 C-contiguous (int64 token ids for "names"), y int64; num_classes =
        largest label + 1. For "movielens", a `RatingsDataset`.
        Its name is the dataset name, or the stem of the (x) file.

    Raises:
        ConfigError: unknown name, bad split settings (test_fraction, seed).
        DataError: unreadable or invalid files (see `load_arrays`).
    """
    if isinstance(name_or_path, str) and name_or_path == "names":
        from .names import load_names

        return load_names(test_fraction=test_fraction, seed=seed)
    if isinstance(name_or_path, str) and name_or_path == "movielens":
        from .movielens import load_movielens

        if flatten:
            raise ConfigError("load_dataset: 'movielens' holds (user, item, rating) triples: flatten does not apply")
        return load_movielens(seed=seed)  # per-user split: load_movielens(split="random", ...) for another
    if isinstance(name_or_path, str) and name_or_path == "digits":
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


def classification_dataset(name_or_path, where: str, **options) -> Dataset:
    """`load_dataset(name_or_path, **options)` for a caller that needs classes and labels (pruning,
    fine-tuning, sweeps, evaluation by accuracy): a ratings dataset raises ConfigError naming
    `where` (a recommender is trained and evaluated by `sparsenet.recommend`)."""
    ds = load_dataset(name_or_path, **options)
    if not isinstance(ds, Dataset):
        raise ConfigError(f"{where}: expected a classification dataset (x, y), found {ds!r}: ratings train and "
                          f"evaluate with sparsenet.recommend (sparsenet train --model recommender)")
    return ds
