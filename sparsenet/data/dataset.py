"""`Dataset`: a train/test split of one classification dataset, ready to feed to a model.

Shapes:
    x_train  float32 (N_train, *input_shape), C-contiguous; or int64 token ids (N_train, length)
    y_train  int64   (N_train,)  class indices in [0, num_classes)
    x_test   float32 or int64 like x_train (N_test, *input_shape), C-contiguous
    y_test   int64   (N_test,)

A text dataset's x holds token ids (int64, for an Embedding) and its `tokenizer` turns texts into
such ids (`Tokenizer.encode`) and back; `classes` names the classes when the data has names.

Example:
    >>> import numpy as np
    >>> ds = Dataset(np.zeros((3, 4), np.float32), np.array([0, 1, 1]),
    ...              np.zeros((1, 4), np.float32), np.array([0]), name="toy", num_classes=2)
    >>> ds.input_shape, ds.n_train, ds.n_test
    ((4,), 3, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DTypeError, ShapeError, DataError

__all__ = ["Dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """An immutable bundle of train and test arrays (the fields cannot be rebound).

    Construction validates dtypes (x float32 C-contiguous, y int64), shapes (y 1-D, one label
    per sample, train and test samples of the same shape) and labels (in [0, num_classes)).
    Use `sparsenet.data.load_dataset` to build one from the embedded digits or from files.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    tokenizer: object = None
    classes: tuple = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, (int, np.integer)) or isinstance(self.num_classes, bool) \
                or self.num_classes < 1:
            raise DataError(f"Dataset {self.name!r}: num_classes must be a positive int, "
                            f"found {self.num_classes!r}")
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.int64) or not x.flags.c_contiguous:
                found = f"{type(x).__name__} {getattr(x, 'dtype', '')}".strip()
                raise DTypeError(f"Dataset {self.name!r}: x_{split} must be a C-contiguous float32 ndarray "
                                 f"(np.ascontiguousarray(x, dtype=np.float32)) or int64 token ids, found {found}")
            if not isinstance(y, np.ndarray) or y.dtype != np.int64:
                found = f"{type(y).__name__} {getattr(y, 'dtype', '')}".strip()
                raise DTypeError(f"Dataset {self.name!r}: y_{split} must be an int64 ndarray, "
                                 f"found {found}")
            if x.ndim < 2:
                raise ShapeError(f"Dataset {self.name!r}: x_{split} must have shape (N, features...), "
                                 f"found shape {x.shape}")
            if y.shape != (x.shape[0],):
                raise ShapeError(f"Dataset {self.name!r}: y_{split} must have shape ({x.shape[0]},) "
                                 f"(one label per row of x_{split}), found shape {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"Dataset {self.name!r}: y_{split} labels must lie in "
                                f"[0, {self.num_classes}), found range [{y.min()}, {y.max()}]")
        if self.x_train.dtype != self.x_test.dtype:
            raise DTypeError(f"Dataset {self.name!r}: x_train and x_test must have the same dtype, "
                             f"found {self.x_train.dtype} and {self.x_test.dtype}")
        if self.classes and len(self.classes) != self.num_classes:
            raise DataError(f"Dataset {self.name!r}: expected {self.num_classes} class names, "
                            f"found {len(self.classes)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ShapeError(f"Dataset {self.name!r}: train and test samples must have the same shape, "
                             f"found {self.x_train.shape[1:]} (train) and {self.x_test.shape[1:]} (test)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 8, 8) or (64,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, num_classes={self.num_classes})")
