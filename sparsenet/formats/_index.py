"""Index dtypes chosen to fit: narrow indices are fewer bytes and faster kernels."""

import numpy as np

__all__ = ["index_dtype", "pointer_dtype"]

_UINT16_LIMIT = np.iinfo(np.uint16).max + 1  # column indices 0..65535
_INT32_MAX = np.iinfo(np.int32).max


def index_dtype(n_cols: int) -> np.dtype:
    """Dtype for column (or block-column) indices of a matrix with `n_cols` columns.

    uint16 when every index fits (n_cols <= 65 536), int32 otherwise.
    """
    return np.dtype(np.uint16) if n_cols <= _UINT16_LIMIT else np.dtype(np.int32)


def pointer_dtype(nnz: int) -> np.dtype:
    """Dtype for a row-pointer array holding values up to `nnz`: int32, or int64 past 2**31 - 1."""
    return np.dtype(np.int32) if nnz <= _INT32_MAX else np.dtype(np.int64)
