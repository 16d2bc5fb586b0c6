"""CSR weights: values, column indices and row pointers, validated in one place (`CSR.check`)."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, FormatError, ShapeError
from ._index import index_dtype, pointer_dtype
from .base import check_float_dtype
from .compressed import CompressedFormat, check_compressed_structure

__all__ = ["CSR"]


def _check_shape(shape, what):
    try:
        m, k = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"{what}: expected shape (rows, cols), found {shape!r}") from None
    if m < 0 or k < 0:
        raise ShapeError(f"{what}: expected non-negative shape, found {shape!r}")
    return m, k


def _validate(data, indices, indptr, shape, *, full: bool) -> None:
    """The one place CSR invariants are enforced. Cheap O(1) checks always; O(nnz) when `full`."""
    m, k = shape
    if data.ndim != 1 or indices.ndim != 1 or indptr.ndim != 1:
        raise FormatError(f"CSR: expected 1-D data, indices and indptr, found ndim "
                          f"{data.ndim}, {indices.ndim}, {indptr.ndim}")
    if indptr.shape[0] != m + 1:
        raise FormatError(f"CSR indptr: expected {m + 1} entries (rows + 1), found {indptr.shape[0]}")
    if indices.shape[0] != data.shape[0]:
        raise FormatError(f"CSR: indices has {indices.shape[0]} entries but data has {data.shape[0]}")
    if int(indptr[0]) != 0:
        raise FormatError(f"CSR indptr: expected indptr[0] == 0, found {int(indptr[0])}")
    if int(indptr[-1]) != data.shape[0]:
        raise FormatError(f"CSR indptr: expected indptr[-1] == nnz == {data.shape[0]}, found {int(indptr[-1])}")
    if not full:
        return
    check_compressed_structure(indices, indptr, k, fmt="CSR", col="column indices", cols="columns", row="row",
                               item="column")
    if not np.all(np.isfinite(data)):
        raise FormatError("CSR data: expected finite values, found NaN or inf")


class CSR(CompressedFormat):
    """Compressed sparse rows. Row i holds ``data[indptr[i]:indptr[i+1]]`` at columns ``indices[...]``.

    Invariants (checked by `check`): ``indptr`` has M + 1 entries, starts at 0, never decreases and
    ends at nnz; ``indices`` are in [0, K) and strictly increasing within a row (sorted, no
    duplicates); ``data`` is float32/float64 with nnz entries. Column indices are stored as uint16
    when K <= 65 536 (int32 otherwise) and pointers as int32 (int64 past 2**31 entries).

    >>> w = CSR.from_dense(np.array([[0, 2.0], [3.0, 0]], dtype=np.float32))
    >>> w.nnz, (w @ np.array([1.0, 1.0])).tolist()
    (2, [2.0, 3.0])
    """

    format_name = "csr"

    def __init__(self, data, indices, indptr, shape, *, check: bool = True):
        """Build from arrays. `check=True` (the default, for anything from outside) runs the full
        O(nnz) validation; internal constructors that built the arrays themselves pass False and get
        the cheap checks only."""
        m, k = _check_shape(shape, "CSR shape")
        data = np.asarray(data)
        indices = np.asarray(indices)
        indptr = np.asarray(indptr)
        check_float_dtype(data.dtype, "CSR data")
        for name, arr in (("indices", indices), ("indptr", indptr)):
            if arr.dtype.kind not in "iu":
                raise DTypeError(f"CSR {name}: expected an integer array, found dtype {arr.dtype}")
        self.shape = (m, k)
        self.data = np.ascontiguousarray(data)
        _validate(self.data, indices, indptr, self.shape, full=check)
        # Narrow index dtypes only after the values are known to be in range.
        self.indices = np.ascontiguousarray(indices, dtype=index_dtype(k))
        self.indptr = np.ascontiguousarray(indptr, dtype=pointer_dtype(self.data.shape[0]))

    def check(self) -> None:
        """Full O(nnz) validation; raises FormatError naming the first violation."""
        _validate(self.data, self.indices, self.indptr, self.shape, full=True)

    # -- construction and conversion --------------------------------------------------------------
    @classmethod
    def from_dense(cls, w, dtype=None) -> "CSR":
        """Store the nonzeros of a dense [M, K] array."""
        w = np.asarray(w)
        if w.ndim != 2:
            raise ShapeError(f"CSR.from_dense: expected a 2-D array, found shape {w.shape}")
        dtype = check_float_dtype(dtype or (w.dtype if w.dtype.kind == "f" else np.float32), "CSR.from_dense")
        rows, cols = np.nonzero(w)
        indptr = np.zeros(w.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
        return cls(w[rows, cols].astype(dtype), cols, indptr, w.shape, check=False)

    @classmethod
    def from_mask(cls, w, mask, dtype=None) -> "CSR":
        """Store the entries of `w` where `mask` is True (zeros included: the pattern is the mask's)."""
        w, mask = np.asarray(w), np.asarray(mask, dtype=bool)
        if w.shape != mask.shape or w.ndim != 2:
            raise ShapeError(f"CSR.from_mask: expected 2-D w and mask of one shape, found {w.shape} and {mask.shape}")
        dtype = check_float_dtype(dtype or (w.dtype if w.dtype.kind == "f" else np.float32), "CSR.from_mask")
        rows, cols = np.nonzero(mask)
        indptr = np.zeros(w.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
        return cls(w[rows, cols].astype(dtype), cols, indptr, w.shape, check=False)

    @classmethod
    def from_scipy(cls, mat, dtype=None) -> "CSR":
        """From any scipy.sparse matrix/array (duplicates summed, indices sorted, full check)."""
        import scipy.sparse as sp
        if not sp.issparse(mat):
            raise DTypeError(f"CSR.from_scipy: expected a scipy.sparse matrix, found {type(mat).__name__}")
        mat = sp.csr_array(mat, copy=True)
        mat.sum_duplicates()
        mat.sort_indices()
        data = mat.data
        dtype = dtype or (data.dtype if data.dtype.kind == "f" else np.float32)
        return cls(data.astype(dtype), mat.indices, mat.indptr, mat.shape, check=True)

    def to_scipy(self):
        import scipy.sparse as sp
        return sp.csr_array((self.data.copy(), self.indices.astype(np.int32),
                             self.indptr.astype(np.int64 if self.indptr.dtype == np.int64 else np.int32)),
                            shape=self.shape)

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    def mask(self) -> np.ndarray:
        """Boolean [M, K] array, True where an entry is stored."""
        out = np.zeros(self.shape, dtype=bool)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = True
        return out

    def with_data(self, data) -> "CSR":
        """Same pattern, new values (validated for length and dtype)."""
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ShapeError(f"CSR.with_data: expected {self.data.shape}, found {data.shape}")
        return CSR(data, self.indices, self.indptr, self.shape, check=False)

    def astype(self, dtype) -> "CSR":
        return CSR(self.data.astype(check_float_dtype(dtype, "CSR.astype")), self.indices, self.indptr,
                   self.shape, check=False)

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def _grid(self) -> tuple[int, int]:
        return self.shape

    def _transposed_data_shape(self) -> tuple:
        return self.data.shape

    @property
    def nbytes(self) -> int:
        """True bytes held: values + column indices + row pointers."""
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    def count_nonzero(self) -> int:
        return int(np.count_nonzero(self.data))
