"""BSR weights: dense R x C blocks, validated in one place (`_validate`).

Shapes that are not multiples of the block shape: the matrix is covered by ceil(M/R) x ceil(K/C)
blocks; the last block row/column overhangs the logical shape. Overhanging entries are stored (as
zeros, and counted in `nbytes`, because they are really held) but kernels never read or write them,
and validation requires them to be zero.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, FormatError, ShapeError
from ._index import index_dtype, pointer_dtype
from .base import check_float_dtype
from .compressed import CompressedFormat, check_compressed_structure
from .csr import _check_shape

__all__ = ["BSR", "BlockPattern"]


def _check_blocksize(blocksize):
    try:
        r, c = (int(b) for b in blocksize)
    except (TypeError, ValueError):
        raise ShapeError(f"BSR blocksize: expected (rows, cols), found {blocksize!r}") from None
    if r < 1 or c < 1:
        raise ShapeError(f"BSR blocksize: expected positive block dimensions, found {blocksize!r}")
    return r, c


def _grid(shape, blocksize):
    """Number of block rows and block columns covering `shape`."""
    return -(-shape[0] // blocksize[0]), -(-shape[1] // blocksize[1])


def _validate(data, indices, indptr, shape, blocksize, *, full: bool) -> None:
    """The one place BSR invariants are enforced. Cheap checks always; O(stored values) when `full`."""
    r, c = blocksize
    mb, nbc = _grid(shape, blocksize)
    if data.ndim != 3 or data.shape[1:] != (r, c):
        raise FormatError(f"BSR data: expected shape (nblocks, {r}, {c}), found {data.shape}")
    if indices.ndim != 1 or indptr.ndim != 1:
        raise FormatError(f"BSR: expected 1-D indices and indptr, found ndim {indices.ndim}, {indptr.ndim}")
    if indptr.shape[0] != mb + 1:
        raise FormatError(f"BSR indptr: expected {mb + 1} entries (block rows + 1), found {indptr.shape[0]}")
    if indices.shape[0] != data.shape[0]:
        raise FormatError(f"BSR: indices has {indices.shape[0]} entries but data has {data.shape[0]} blocks")
    if int(indptr[0]) != 0 or int(indptr[-1]) != data.shape[0]:
        raise FormatError(f"BSR indptr: expected to run from 0 to nblocks == {data.shape[0]}, "
                          f"found {int(indptr[0])} .. {int(indptr[-1])}")
    if not full:
        return
    check_compressed_structure(indices, indptr, nbc, fmt="BSR", col="block columns", cols="block columns",
                               row="block row", item="block column")
    if not np.all(np.isfinite(data)):
        raise FormatError("BSR data: expected finite values, found NaN or inf")
    m, k = shape
    if data.shape[0] and (m % r or k % c):
        rows = np.repeat(np.arange(mb), np.diff(indptr.astype(np.int64)))
        overhang = np.zeros(data.shape, dtype=bool)
        if m % r:
            overhang[rows == mb - 1, m % r:, :] = True
        if k % c:
            overhang[indices.astype(np.int64) == nbc - 1, :, k % c:] = True
        if np.any(data[overhang] != 0):
            raise FormatError(f"BSR data: expected zeros in the part of edge blocks beyond shape {shape}")


class BlockPattern:
    """What BSR and its int8 twin QBSR share: the pattern of stored blocks.

    Needs ``shape``, ``blocksize``, ``data`` ([nblocks, R, C]), ``indices`` and ``indptr``."""

    def block_mask(self) -> np.ndarray:
        """Boolean [ceil(M/R), ceil(K/C)] array, True where a block is stored."""
        out = np.zeros(_grid(self.shape, self.blocksize), dtype=bool)
        out[np.repeat(np.arange(out.shape[0]), np.diff(self.indptr)), self.indices] = True
        return out

    def mask(self) -> np.ndarray:
        """Boolean [M, K] array, True inside stored blocks (within the logical shape)."""
        r, c = self.blocksize
        full = np.kron(self.block_mask(), np.ones((r, c), dtype=bool)).astype(bool)
        return full[: self.shape[0], : self.shape[1]]

    @property
    def nblocks(self) -> int:
        return int(self.data.shape[0])

    @property
    def nnz(self) -> int:
        """Stored values: nblocks * R * C (overhanging edge entries included)."""
        return int(self.data.size)

    @property
    def density(self) -> float:
        """Stored entries inside the logical shape / (M * K). O(nblocks): each block counts R * C,
        less its overhang in the last block row or column (no [M, K] mask is built; `repr` calls this)."""
        if not self.size:
            return 0.0
        (r, c), (m, k) = self.blocksize, self.shape
        mb, nbc = _grid(self.shape, self.blocksize)
        cols = np.where(self.indices == nbc - 1, k - (nbc - 1) * c, c).astype(np.int64)
        last_row = int(self.indptr[mb - 1])  # blocks from here on sit in the last block row
        inside = r * int(cols[:last_row].sum()) + (m - (mb - 1) * r) * int(cols[last_row:].sum())
        return inside / self.size


class BSR(BlockPattern, CompressedFormat):
    """Block sparse rows with blocks of any shape R x C.

    Block row ``bi`` holds blocks ``data[indptr[bi]:indptr[bi+1]]`` (each [R, C]) at block columns
    ``indices[...]`` (sorted, no duplicates). `nnz` counts stored values (nblocks * R * C), as scipy does.

    >>> w = BSR.from_dense(np.kron(np.eye(2), np.ones((2, 2))).astype(np.float32), blocksize=(2, 2))
    >>> w.nblocks, (w @ np.ones(4)).tolist()
    (2, [2.0, 2.0, 2.0, 2.0])
    """

    format_name = "bsr"

    def __init__(self, data, indices, indptr, shape, *, check: bool = True):
        m, k = _check_shape(shape, "BSR shape")
        data, indices, indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
        check_float_dtype(data.dtype, "BSR data")
        for name, arr in (("indices", indices), ("indptr", indptr)):
            if arr.dtype.kind not in "iu":
                raise DTypeError(f"BSR {name}: expected an integer array, found dtype {arr.dtype}")
        if data.ndim != 3:
            raise FormatError(f"BSR data: expected shape (nblocks, R, C), found {data.shape}")
        blocksize = _check_blocksize(data.shape[1:])
        self.shape = (m, k)
        self.blocksize = blocksize
        self.data = np.ascontiguousarray(data)
        _validate(self.data, indices, indptr, self.shape, blocksize, full=check)
        self.indices = np.ascontiguousarray(indices, dtype=index_dtype(_grid(self.shape, blocksize)[1]))
        self.indptr = np.ascontiguousarray(indptr, dtype=pointer_dtype(self.data.shape[0]))

    def _grid(self) -> tuple[int, int]:
        return _grid(self.shape, self.blocksize)

    def _transposed_data_shape(self) -> tuple:
        return (self.data.shape[0], self.blocksize[1], self.blocksize[0])

    def check(self) -> None:
        """Full validation; raises FormatError naming the first violation."""
        _validate(self.data, self.indices, self.indptr, self.shape, self.blocksize, full=True)

    # -- construction and conversion --------------------------------------------------------------
    @staticmethod
    def _blocks(w, blocksize):
        """View a dense [M, K] array as [mb, nbc, R, C] blocks (zero-padded at the edges)."""
        r, c = blocksize
        mb, nbc = _grid(w.shape, blocksize)
        padded = np.zeros((mb * r, nbc * c), dtype=w.dtype)
        padded[:w.shape[0], :w.shape[1]] = w
        return padded.reshape(mb, r, nbc, c).transpose(0, 2, 1, 3)

    @classmethod
    def from_block_mask(cls, w, block_mask, blocksize, dtype=None) -> "BSR":
        """Store the blocks of `w` where `block_mask` ([ceil(M/R), ceil(K/C)] bool) is True."""
        w = np.asarray(w)
        if w.ndim != 2:
            raise ShapeError(f"BSR: expected a 2-D array, found shape {w.shape}")
        blocksize = _check_blocksize(blocksize)
        dtype = check_float_dtype(dtype or (w.dtype if w.dtype.kind == "f" else np.float32), "BSR")
        block_mask = np.asarray(block_mask, dtype=bool)
        grid = _grid(w.shape, blocksize)
        if block_mask.shape != grid:
            raise ShapeError(f"BSR block mask: expected shape {grid}, found {block_mask.shape}")
        blocks = cls._blocks(w, blocksize)
        rows, cols = np.nonzero(block_mask)
        indptr = np.zeros(grid[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=grid[0]), out=indptr[1:])
        data = blocks[rows, cols].astype(dtype)
        return cls(data.reshape(-1, *blocksize), cols, indptr, w.shape, check=False)

    @classmethod
    def from_dense(cls, w, blocksize=(4, 4), dtype=None) -> "BSR":
        """Store every R x C block of `w` that holds a nonzero."""
        w = np.asarray(w)
        if w.ndim != 2:
            raise ShapeError(f"BSR.from_dense: expected a 2-D array, found shape {w.shape}")
        blocksize = _check_blocksize(blocksize)
        block_mask = np.any(cls._blocks(w, blocksize) != 0, axis=(2, 3))
        return cls.from_block_mask(w, block_mask, blocksize, dtype)

    @classmethod
    def from_scipy(cls, mat, blocksize=None, dtype=None) -> "BSR":
        """From any scipy.sparse matrix/array; `blocksize` defaults to the matrix's own (bsr) or (4, 4)."""
        import scipy.sparse as sp
        if not sp.issparse(mat):
            raise DTypeError(f"BSR.from_scipy: expected a scipy.sparse matrix, found {type(mat).__name__}")
        if blocksize is None:
            blocksize = mat.blocksize if mat.format == "bsr" else (4, 4)
        r, c = _check_blocksize(blocksize)
        m, k = mat.shape
        mb, nbc = _grid(mat.shape, (r, c))
        coo = sp.coo_array(mat)
        padded = sp.coo_array((coo.data, (coo.row, coo.col)), shape=(mb * r, nbc * c))
        b = sp.bsr_array(padded.tocsr(), blocksize=(r, c))
        b.sum_duplicates()
        b.sort_indices()
        data = b.data
        dtype = dtype or (data.dtype if data.dtype.kind == "f" else np.float32)
        return cls(data.astype(dtype), b.indices, b.indptr, (m, k), check=True)

    def to_scipy(self):
        """scipy.sparse.bsr_array when the shape is a multiple of the block, csr_array otherwise."""
        import scipy.sparse as sp
        r, c = self.blocksize
        mb, nbc = _grid(self.shape, self.blocksize)
        b = sp.bsr_array((self.data.copy(), self.indices.astype(np.int32), self.indptr.astype(np.int64)),
                         shape=(mb * r, nbc * c))
        if (mb * r, nbc * c) == self.shape:
            return b
        return sp.csr_array(b.tocsr()[: self.shape[0], : self.shape[1]])

    def to_dense(self) -> np.ndarray:
        r, c = self.blocksize
        mb, nbc = _grid(self.shape, self.blocksize)
        blocks = np.zeros((mb, nbc, r, c), dtype=self.dtype)
        rows = np.repeat(np.arange(mb), np.diff(self.indptr))
        blocks[rows, self.indices] = self.data
        return blocks.transpose(0, 2, 1, 3).reshape(mb * r, nbc * c)[: self.shape[0], : self.shape[1]].copy()

    def with_data(self, data) -> "BSR":
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ShapeError(f"BSR.with_data: expected {self.data.shape}, found {data.shape}")
        return BSR(data, self.indices, self.indptr, self.shape, check=False)

    def astype(self, dtype) -> "BSR":
        return BSR(self.data.astype(check_float_dtype(dtype, "BSR.astype")), self.indices, self.indptr,
                   self.shape, check=False)

    @property
    def nbytes(self) -> int:
        """True bytes held: values + block-column indices + block-row pointers."""
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    def count_nonzero(self) -> int:
        return int(np.count_nonzero(self.data))

    def __repr__(self) -> str:
        return (f"BSR(shape={self.shape}, blocksize={self.blocksize}, nblocks={self.nblocks}, "
                f"density={self.density:.3f}, dtype={self.dtype}, nbytes={self.nbytes})")
