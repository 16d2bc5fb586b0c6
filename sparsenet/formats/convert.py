"""Free conversion functions between formats (formats know nothing of each other's internals)."""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .base import WeightFormat
from .bsr import BSR
from .csr import CSR
from .dense import Dense
from .nm import NM

__all__ = ["as_format", "from_scipy"]


def as_format(w, fmt: str = "dense", *, blocksize=(4, 4), nm=(2, 4), dtype=None) -> WeightFormat:
    """Convert a dense array or any WeightFormat to `fmt` ('dense', 'csr', 'bsr' or 'nm': the `nm`
    (n, m) largest magnitudes of every group, `NM.from_dense`).

    Entries equal to zero are not stored in sparse formats.

    >>> as_format(np.eye(4, dtype=np.float32), "csr").nnz
    4
    """
    if isinstance(w, WeightFormat):
        if w.format_name == fmt and (fmt != "bsr" or tuple(w.blocksize) == tuple(blocksize)) and (
                fmt != "nm" or (w.n, w.m) == tuple(nm)):
            return w if dtype is None or w.dtype == np.dtype(dtype) else w.astype(dtype)
        dtype = dtype or w.dtype
        w = w.to_dense()
    if fmt == "dense":
        return Dense.from_dense(w, dtype)
    if fmt == "csr":
        return CSR.from_dense(w, dtype)
    if fmt == "bsr":
        return BSR.from_dense(w, blocksize, dtype)
    if fmt == "nm":
        return NM.from_dense(w, *nm, dtype=dtype)
    raise FormatError(f"as_format: expected format 'dense', 'csr', 'bsr' or 'nm', found {fmt!r}")


def from_scipy(mat, fmt: str = "csr", *, blocksize=None, dtype=None) -> WeightFormat:
    """Convert a scipy.sparse matrix/array to a sparsenet format (full validation)."""
    if fmt == "csr":
        return CSR.from_scipy(mat, dtype)
    if fmt == "bsr":
        return BSR.from_scipy(mat, blocksize, dtype)
    if fmt == "dense":
        return Dense.from_dense(mat.toarray(), dtype)
    raise FormatError(f"from_scipy: expected format 'dense', 'csr' or 'bsr', found {fmt!r}")
