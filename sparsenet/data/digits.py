"""The embedded 8x8 UCI optical handwritten digits (1797 images, 10 classes).

How digits.npz was produced (once, with scikit-learn 1.9.1; scikit-learn is not a dependency):

    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez_compressed("digits.npz", images=d.images.astype(np.uint8),   # (1797, 8, 8), 0..16
                        labels=d.target.astype(np.uint8))                   # (1797,), 0..9

Attribution and license (CC BY 4.0): see DIGITS_LICENSE.txt next to this file.

Example:
    >>> x, y = load_digits()
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((1797, 1, 8, 8), dtype('float32'), (1797,), dtype('int64'))
    >>> load_digits(flatten=True)[0].shape
    (1797, 64)
"""

from __future__ import annotations

import functools
import io
import os
from importlib import resources

import numpy as np

from ..errors import DataError, DTypeError

__all__ = ["load_digits", "DIGITS_NUM_SAMPLES", "DIGITS_NUM_CLASSES", "DIGITS_MAX_VALUE"]

DIGITS_NUM_SAMPLES = 1797
DIGITS_NUM_CLASSES = 10
DIGITS_MAX_VALUE = 16  # each pixel counts the set pixels of a 4x4 block: 0..16

_RESOURCE = "digits.npz"


def _read_digits_file(source: str | os.PathLike | io.IOBase) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a digits archive; return read-only (images uint8 (N,8,8), labels uint8 (N,)).

    Raises DataError if the archive is unreadable or its contents are not exactly what
    `digits.npz` must hold.
    """
    what = f"digits archive {getattr(source, 'name', source)!s}"
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = {"images", "labels"} - set(z.files)
            if missing:
                raise DataError(f"{what}: expected arrays 'images' and 'labels', "
                                f"missing {sorted(missing)} (found {sorted(z.files)})")
            images, labels = z["images"], z["labels"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError) as exc:  # bad zip, object arrays, truncation...
        raise DataError(f"{what}: cannot be read as an .npz archive ({exc})") from exc

    expected = {"images": (images, (DIGITS_NUM_SAMPLES, 8, 8)), "labels": (labels, (DIGITS_NUM_SAMPLES,))}
    for key, (arr, shape) in expected.items():
        if arr.dtype != np.uint8:
            raise DataError(f"{what}: {key!r} must be uint8, found {arr.dtype}")
        if arr.shape != shape:
            raise DataError(f"{what}: {key!r} must have shape {shape}, found {arr.shape}")
    if images.max() > DIGITS_MAX_VALUE:
        raise DataError(f"{what}: pixel values must lie in 0..{DIGITS_MAX_VALUE}, "
                        f"found maximum {images.max()}")
    if labels.max() >= DIGITS_NUM_CLASSES:
        raise DataError(f"{what}: labels must lie in 0..{DIGITS_NUM_CLASSES - 1}, "
                        f"found maximum {labels.max()}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded archive, read once through importlib.resources (works from an installed wheel)."""
    ref = resources.files(__package__).joinpath(_RESOURCE)
    with ref.open("rb") as fh:
        return _read_digits_file(fh)


def load_digits(*, flatten: bool = False, dtype=np.float32,
                normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return the embedded digits as (images, labels), freshly allocated on each call.

    Args:
        flatten: if True images have shape (1797, 64); else (1797, 1, 8, 8) (a channel axis, for CNNs).
        dtype: a floating dtype for the images (default float32).
        normalize: if True pixels are divided by 16 into [0, 1]; else they keep their 0..16 counts.

    Returns:
        images: `dtype`, (1797, 1, 8, 8) or (1797, 64), C-contiguous.
        labels: int64 (1797,), digits 0..9 (between 174 and 183 images per class).

    Raises:
        DTypeError: `dtype` is not a floating dtype.
        DataError: the embedded file is missing or corrupt.

    Example:
        >>> x, y = load_digits(flatten=True, normalize=False)
        >>> float(x.max()), int(y[0])
        (16.0, 0)
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"load_digits: dtype must be a floating dtype, found {dtype!r}") from exc
    if dt.kind != "f":
        raise DTypeError(f"load_digits: dtype must be a floating dtype such as float32, found {dt}")
    try:
        images, labels = _raw_digits()
    except FileNotFoundError as exc:
        raise DataError(f"the embedded {_RESOURCE} is missing from the sparsenet.data package "
                        f"(a broken install?): {exc}") from exc
    shape = (DIGITS_NUM_SAMPLES, 64) if flatten else (DIGITS_NUM_SAMPLES, 1, 8, 8)
    x = images.reshape(shape).astype(dt)  # astype copies: callers may modify the result freely
    if normalize:
        x /= dt.type(DIGITS_MAX_VALUE)
    return x, labels.astype(np.int64)
