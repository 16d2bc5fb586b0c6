"""`train_test_split`: a deterministic, seeded, optionally stratified train/test split.

Example:
    >>> import numpy as np
    >>> x = np.arange(20, dtype=np.float32).reshape(10, 2)
    >>> y = np.array([0] * 6 + [1] * 4)
    >>> x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.5, seed=0)
    >>> x_tr.shape, x_te.shape, np.bincount(y_te).tolist()
    ((5, 2), (5, 2), [3, 2])
"""

from __future__ import annotations

import numbers

import numpy as np

from .._checks import check_seed
from ..errors import ConfigError, DataError, ShapeError

__all__ = ["train_test_split"]


def _stratified_test_counts(counts: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class test sizes that sum to `n_test`, each within 1 of `counts * n_test / sum(counts)`.

    Largest-remainder apportionment; ties between equal remainders are broken by `rng`.
    """
    expected = counts * (n_test / counts.sum())
    base = np.floor(expected).astype(np.int64)
    extra = n_test - int(base.sum())  # 0 <= extra <= number of classes with a fractional part
    order = rng.permutation(counts.size)  # random tie-break, then a stable sort by remainder
    order = order[np.argsort(-(expected - base)[order], kind="stable")]
    base[order[:extra]] += 1
    return base


def train_test_split(x, y, *, test_fraction: float = 0.25, seed: int = 0,
                     stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (x, y) into shuffled train and test parts; the same seed gives identical arrays.

    The test part holds round(test_fraction * N) samples (at least 1, at most N - 1). With
    `stratify`, each class contributes within 1 sample of its proportional share to the test
    part (the remainder of each class goes to the train part).

    Args:
        x: array-like (N, ...) of samples.
        y: array-like (N,) of labels (any values when stratifying: classes are the unique values).
        test_fraction: share of samples put in the test part, strictly between 0 and 1.
        seed: a non-negative int seeding `np.random.default_rng`.
        stratify: keep class proportions equal in both parts.

    Returns:
        (x_train, x_test, y_train, y_test): new arrays (fancy-indexed copies) of the input dtypes,
        in a seeded random order.

    Raises:
        ShapeError: x and y lengths differ, or y is not 1-D while stratifying.
        ConfigError: test_fraction not in (0, 1), or a bad seed.
        DataError: fewer than 2 samples.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim < 1:
        raise ShapeError(f"train_test_split: x and y must have a sample axis, "
                         f"found shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"train_test_split: x and y must have the same number of samples, "
                         f"found {x.shape[0]} (x) and {y.shape[0]} (y)")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"train_test_split: test_fraction must be a number strictly between 0 and 1, "
                          f"found {test_fraction!r}")
    seed = check_seed(seed, "train_test_split")
    n = x.shape[0]
    if n < 2:
        raise DataError(f"train_test_split: need at least 2 samples to split, found {n}")
    n_test = min(max(int(np.floor(test_fraction * n + 0.5)), 1), n - 1)

    rng = np.random.default_rng(int(seed))
    if stratify:
        if y.ndim != 1:
            raise ShapeError(f"train_test_split: stratifying needs 1-D labels of shape ({n},), "
                             f"found shape {y.shape}")
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        test_counts = _stratified_test_counts(counts, n_test, rng)
        # Shuffle, then group by class (stable): each class's indices come out in random order.
        perm = rng.permutation(n)
        by_class = perm[np.argsort(inverse[perm], kind="stable")]
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        # Rank of each sample inside its class group; the first test_counts[c] go to test.
        rank = np.arange(n) - np.repeat(starts, counts)
        is_test = rank < np.repeat(test_counts, counts)
        test_idx = rng.permutation(by_class[is_test])
        train_idx = rng.permutation(by_class[~is_test])
    else:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]
