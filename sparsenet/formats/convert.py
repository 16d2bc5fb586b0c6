"""Free conversion functions between formats (formats know nothing of each other's internals)."""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .base import WeightFormat
from .bsr import BSR
from .csr import CSR
from .dense import Dense

__all__ = ["as_format", "from_scipy"]


def as_format(w, fmt: str = "dense", *, blocksize=(4, 4), dtype=None) -> WeightFormat:
    """Convert a dense array or any WeightFormat to `fmt` ('dense', 'csr' or 'bsr').

    Entries equal to zero are not stored in sparse formats.

    >>> as_format(np.eye(4, dtype=np.float32), "csr").nnz
    4
    """
    if isinstance(w, WeightFormat):
        if w.format_name == fmt and (fmt != "bsr" or tuple(w.blocksize) == tuple(blocksize)):
            return w if dtype is None or w.dtype == np.dtype(dtype) else w.astype(dtype)
        dtype = dtype or w.dtype
        w = w.to_dense()
    if fmt == "dense":
        return Dense.from_dense(w, dtype)
    if fmt == "csr":
        return CSR.from_dense(w, dtype)
    if fmt == "bsr":
        return BSR.from_dense(w, blocksize, dtype)
    raise FormatError(f"as_format: expected format 'dense', 'csr' or 'bsr', found {fmt!r}")


def from_scipy(mat, fmt: str = "csr", *, blocksize=None, dtype=None) -> WeightFormat:
    """Convert a scipy.sparse matrix/array to a sparsenet format (full validation)."""
    if fmt == "csr":
        return CSR.from_scipy(mat, dtype)
    if fmt == "bsr":
        return BSR.from_scipy(mat, blocksize, dtype)
    if fmt == "dense":
        return Dense.from_dense(mat.toarray(), dtype)
    raise FormatError(f"from_scipy: expected format 'dense', 'csr' or 'bsr', found {fmt!r}")
