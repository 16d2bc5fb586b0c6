"""N:M weights: in every group of M consecutive columns of a row, N values and their in-group
positions, validated in one place (`_validate`).

Layout (what `sparsenet.kernels.nm` reads): rows in tiles of 8 (the last tile padded with zero
rows); S = K / M * N slots per row, slot s belonging to group s // N. ``data`` [tiles, S, 8] holds
slot s of row 8t + l at ``data[t, s, l]``; ``codes`` [tiles, S] packs the 8 rows' in-group positions
of slot s, log2(M) bits each (row l's at bit log2(M) * l): for 2:4, 2 bits per stored value, so a
float32 2:4 weight holds 4.25 bytes per stored value, 0.53 of dense. Within a row's group the N
positions strictly increase (a group with fewer than N nonzeros stores zeros at its first unused
positions). M is 2, 4, 8 or 16, 1 <= N < M, and K is a multiple of M (a shape that is not stays in
another format). Its int8 twin `QNM` (`sparsenet.formats.quantized`) shares the layout, the checks
(`validate_nm`) and the kernels.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import FormatError, ShapeError
from ..kernels._blas import quiet_before
from ._index import index_dtype, pointer_dtype
from .base import WeightFormat, check_float_dtype
from .compressed import compressed_kernel, transpose_pattern, transposed_product
from .csr import _check_shape

__all__ = ["NM", "CODE_DTYPES", "nm_fits", "nm_product", "nm_columns", "nm_mask", "nm_to_dense",
           "validate_nm"]

TILE = 8
# the unsigned word holding 8 rows' positions: log2(M) bits each
CODE_DTYPES = {2: np.dtype(np.uint8), 4: np.dtype(np.uint16), 8: np.dtype(np.uint32), 16: np.dtype(np.uint32)}


def _check_nm(n, m) -> tuple[int, int]:
    try:
        n, m = int(n), int(m)
    except (TypeError, ValueError):
        raise ShapeError(f"N:M: expected integers n and m, found {n!r}, {m!r}") from None
    if m not in CODE_DTYPES or not 1 <= n < m:
        raise ShapeError(f"N:M: expected m in {sorted(CODE_DTYPES)} and 1 <= n < m, found {n}:{m}")
    return n, m


def nm_fits(shape, n, m) -> str | None:
    """Why a weight of `shape` cannot be stored n:m (None when it can)."""
    if int(shape[1]) % int(m):
        return f"{shape[1]} columns are not a multiple of {m}"
    return None


def _positions(codes, bits) -> np.ndarray:
    """[tiles, S, 8] in-group positions unpacked from the codes."""
    shifts = (bits * np.arange(TILE)).astype(np.uint64)
    return ((codes.astype(np.uint64)[:, :, None] >> shifts) & np.uint64((1 << bits) - 1)).astype(np.int64)


def validate_nm(data, codes, shape, n, m, *, full: bool) -> None:
    """The one place N:M invariants are enforced. Cheap checks always; O(stored values) when `full`."""
    rows, k = shape
    if k % m:
        raise FormatError(f"N:M {n}:{m}: expected a multiple of {m} columns, found {k}")
    tiles, slots = -(-rows // TILE), k // m * n
    if data.ndim != 3 or data.shape != (tiles, slots, TILE):
        raise FormatError(f"N:M data: expected shape ({tiles}, {slots}, {TILE}) for {rows} x {k} at {n}:{m}, "
                          f"found {data.shape}")
    if codes.shape != (tiles, slots):
        raise FormatError(f"N:M codes: expected shape ({tiles}, {slots}), found {codes.shape}")
    if codes.dtype != CODE_DTYPES[m]:
        raise FormatError(f"N:M codes: expected dtype {CODE_DTYPES[m]} for m = {m}, found {codes.dtype}")
    if not full:
        return
    bits = m.bit_length() - 1
    if bits * TILE < codes.dtype.itemsize * 8 and codes.size and int(codes.max()) >> (bits * TILE):
        raise FormatError(f"N:M codes: expected {bits * TILE} bits per word, found bits set above them")
    pos = _positions(codes, bits).reshape(tiles, k // m, n, TILE)
    if n > 1:
        steps = np.diff(pos, axis=2)
        if steps.size and steps.min() <= 0:
            t, g, j, lane = (int(i[0]) for i in np.nonzero(steps <= 0))
            raise FormatError(f"N:M codes: expected strictly increasing positions within each group, found "
                              f"{pos[t, g, j + 1, lane]} after {pos[t, g, j, lane]} in row {t * TILE + lane}, group {g}")
    if not np.all(np.isfinite(data)):
        raise FormatError("N:M data: expected finite values, found NaN or inf")
    pad = tiles * TILE - rows
    if pad and np.any(data[-1, :, TILE - pad:] != 0):
        raise FormatError(f"N:M data: expected zeros in the {pad} rows that pad the last tile")


def nm_columns(codes, n, m) -> np.ndarray:
    """[tiles, S, 8] column of every stored slot."""
    slots = codes.shape[1]
    group = (np.arange(slots) // n * m)[None, :, None]
    return group + _positions(codes, m.bit_length() - 1)


def nm_to_dense(data, codes, shape, n, m, dtype) -> np.ndarray:
    """The [M, K] matrix of values `data` (in `dtype`) at the positions of `codes`."""
    rows, k = shape
    tiles, slots = codes.shape
    out = np.zeros((tiles * TILE, k), dtype)
    cols = nm_columns(codes, n, m).transpose(0, 2, 1).reshape(tiles * TILE, slots)
    np.put_along_axis(out, cols, data.transpose(0, 2, 1).reshape(tiles * TILE, slots).astype(dtype), axis=1)
    return out[:rows].copy()


def nm_mask(codes, shape, n, m) -> np.ndarray:
    """Boolean [M, K]: True at the stored entries of `codes`."""
    rows, k = shape
    tiles, slots = codes.shape
    out = np.zeros((tiles * TILE, k), bool)
    np.put_along_axis(out, nm_columns(codes, n, m).transpose(0, 2, 1).reshape(tiles * TILE, slots), True, axis=1)
    return out[:rows]


def nm_product(w, batch: int, scales):
    """(kernel, arrays) of W @ x for `batch` columns of an N:M weight `w` (NM, or QNM with its
    per-row `scales`; empty for float values): ``kernel(*arrays, x, out, bias, act, alpha)``. float32
    products with m = 4 or 8 take the SIMD kernels (`nm_spmv_f32` for batch 1, `nm_spmm_f32`),
    others the plain loops of `nm_spmm`."""
    parallel = w.nnz * max(batch, 1) >= kernels.PARALLEL_MIN_WORK
    if w.dtype == np.float32 and w.m in (4, 8):
        kern = (kernels.nm_spmv_f32 if parallel else kernels.nm_spmv_f32_serial) if batch == 1 else \
            (kernels.nm_spmm_f32 if parallel else kernels.nm_spmm_f32_serial)
    else:
        kern = kernels.nm_spmm if parallel else kernels.nm_spmm_serial
    tiles, slots = w.codes.shape
    return kern, (w.data.reshape(tiles * slots, TILE), w.codes, w.n, w.bits, scales)


class NM(WeightFormat):
    """N:M semi-structured weights (2:4, 4:8, 1:4...): values plus compact in-group positions.

    >>> w = NM.from_dense(np.array([[1, 0, 3, 0.5], [0, 2, 0, 0]], dtype=np.float32), n=2, m=4)
    >>> w.spec, w.to_dense().tolist()
    ('nm2:4', [[1.0, 0.0, 3.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    """

    format_name = "nm"

    def __init__(self, data, codes, shape, n, m, *, check: bool = True):
        rows, k = _check_shape(shape, "N:M shape")
        self.n, self.m = _check_nm(n, m)
        data, codes = np.asarray(data), np.asarray(codes)
        check_float_dtype(data.dtype, "N:M data")
        self.shape = (rows, k)
        self.data = np.ascontiguousarray(data)
        self.codes = np.ascontiguousarray(codes)
        validate_nm(self.data, self.codes, self.shape, self.n, self.m, full=check)
        self.bits = self.m.bit_length() - 1

    def check(self) -> None:
        """Full validation; raises FormatError naming the first violation."""
        validate_nm(self.data, self.codes, self.shape, self.n, self.m, full=True)

    @property
    def spec(self) -> str:
        return f"nm{self.n}:{self.m}"

    # -- construction and conversion --------------------------------------------------------------
    @classmethod
    def from_mask(cls, w, mask, n: int = 2, m: int = 4, dtype=None) -> "NM":
        """Store the entries of `w` where `mask` is True: at most `n` in every group of `m` columns
        of a row (a `ShapeError` names the first group with more)."""
        n, m = _check_nm(n, m)
        w, mask = np.asarray(w), np.asarray(mask, dtype=bool)
        if w.ndim != 2 or w.shape != mask.shape:
            raise ShapeError(f"NM.from_mask: expected 2-D w and mask of one shape, found {w.shape} and {mask.shape}")
        why = nm_fits(w.shape, n, m)
        if why:
            raise ShapeError(f"NM {n}:{m}: cannot store a {w.shape[0]} x {w.shape[1]} weight: {why}")
        dtype = check_float_dtype(dtype or (w.dtype if w.dtype.kind == "f" else np.float32), "NM.from_mask")
        rows, k = w.shape
        groups = k // m
        mg = mask.reshape(rows, groups, m)
        counts = mg.sum(axis=2)
        if counts.size and counts.max() > n:
            r, g = (int(i[0]) for i in np.nonzero(counts > n))
            raise ShapeError(f"NM {n}:{m}: row {r}, columns {g * m}..{g * m + m - 1} hold {int(counts[r, g])} "
                             f"entries, more than {n}")
        # kept positions first, then the lowest unused ones; the n of them in increasing order
        pos = np.sort(np.argsort(~mg, axis=2, kind="stable")[:, :, :n], axis=2)
        vals = np.take_along_axis(w.reshape(rows, groups, m), pos, axis=2) * np.take_along_axis(mg, pos, axis=2)
        return cls._pack(vals.reshape(rows, groups * n).astype(dtype), pos.reshape(rows, groups * n), (rows, k), n, m)

    @classmethod
    def _pack(cls, vals, pos, shape, n, m) -> "NM":
        """From [rows, S] values and in-group positions to the tiled layout."""
        rows = shape[0]
        tiles = -(-rows // TILE)
        slots = vals.shape[1]
        pv = np.zeros((tiles * TILE, slots), vals.dtype)
        pv[:rows] = vals
        pp = np.tile(np.arange(n, dtype=np.int64), slots // n if n else 0)[None, :].repeat(tiles * TILE, axis=0)
        pp[:rows] = pos
        bits = m.bit_length() - 1
        shifts = (bits * np.arange(TILE)).astype(np.uint64)
        words = (pp.reshape(tiles, TILE, slots).astype(np.uint64) << shifts[None, :, None]).sum(axis=1)
        data = np.ascontiguousarray(pv.reshape(tiles, TILE, slots).transpose(0, 2, 1))
        return cls(data, words.astype(CODE_DTYPES[m]), shape, n, m, check=False)

    @classmethod
    def from_dense(cls, w, n: int = 2, m: int = 4, dtype=None) -> "NM":
        """Keep the `n` largest magnitudes of every group of `m` columns of each row (ties: the
        lower column), as pruning with granularity 'n:m' and magnitude scores selects them."""
        from ..prune.granularity import NM as NMGranularity

        n, m = _check_nm(n, m)
        w = np.asarray(w)
        if w.ndim != 2:
            raise ShapeError(f"NM.from_dense: expected a 2-D array, found shape {w.shape}")
        keep = NMGranularity(n, m).select(np.abs(w.astype(np.float64))) & (w != 0)
        return cls.from_mask(w, keep, n, m, dtype)

    def to_dense(self) -> np.ndarray:
        return nm_to_dense(self.data, self.codes, self.shape, self.n, self.m, self.dtype)

    def mask(self) -> np.ndarray:
        """Boolean [M, K]: True at stored entries."""
        return nm_mask(self.codes, self.shape, self.n, self.m)

    def with_data(self, data) -> "NM":
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ShapeError(f"NM.with_data: expected {self.data.shape}, found {data.shape}")
        return NM(data, self.codes, self.shape, self.n, self.m, check=False)

    def astype(self, dtype) -> "NM":
        return NM(self.data.astype(check_float_dtype(dtype, "NM.astype")), self.codes, self.shape, self.n, self.m,
                  check=False)

    def to_scipy(self):
        import scipy.sparse as sp
        return sp.csr_array(self.to_dense())

    @property
    def nnz(self) -> int:
        """Stored entries of the logical rows: M * K / m * n."""
        return int(self.shape[0] * self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """True bytes held: values (the last tile's padding rows included) + packed positions."""
        return int(self.data.nbytes + self.codes.nbytes)

    def count_nonzero(self) -> int:
        return int(np.count_nonzero(self.data))

    # -- products ---------------------------------------------------------------------------------
    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product` (`nm_product`)."""
        return nm_product(self, batch, kernels.no_bias(self.dtype))  # no scales: an empty array

    def _csr_view(self):
        """(indices, indptr, indices_t, indptr_t, perm): this pattern as CSR rows (S entries each,
        columns increasing; entry r * S + s is slot s of row r), W.T's pattern, and for each entry of
        W.T the flat position of its value in `data`. What the backward products run on, through
        the CSR kernels (built on the first backward, kept while `codes` is the same array)."""
        cached = self.__dict__.get("_csr")
        if cached is not None and cached[0] is self.codes:
            return cached[1:]
        rows, k = self.shape
        tiles, slots = self.codes.shape

        def by_row(a):  # [tiles, S, 8] -> [rows, S]
            return a.transpose(0, 2, 1).reshape(tiles * TILE, slots)[:rows]

        indices = np.ascontiguousarray(by_row(nm_columns(self.codes, self.n, self.m)).reshape(-1),
                                       dtype=index_dtype(k))
        indptr = (np.arange(rows + 1, dtype=np.int64) * slots).astype(pointer_dtype(rows * slots))
        slot = by_row(np.arange(tiles * slots * TILE, dtype=np.int64).reshape(tiles, slots, TILE)).reshape(-1)
        indices_t, indptr_t, perm = transpose_pattern(indices, indptr, rows, k)
        view = (indices, indptr, indices_t, indptr_t, slot[perm].astype(pointer_dtype(self.data.size)))
        self._csr = (self.codes, *view)
        return view

    def tmatmul(self, dy) -> np.ndarray:
        """W.T @ dy: the values in W.T's order, then the CSR forward kernel over W.T (`_csr_view`)."""
        dy = self._as_input(dy, self.shape[0], "NM.tmatmul dy")
        _, _, indices_t, indptr_t, perm = self._csr_view()
        return transposed_product("csr", self.data.reshape(-1), perm, indices_t, indptr_t, perm.shape, dy,
                                  self.shape[1])

    def sampled_grad(self, dy, x) -> np.ndarray:
        """(dy @ x.T) at the stored entries, in `data`'s layout (padding rows 0): the CSR sampled
        product over this pattern (`_csr_view`), moved to the tiles' order."""
        dy = self._as_input(dy, self.shape[0], "NM.sampled_grad dy")
        x = self._as_input(x, self.shape[1], "NM.sampled_grad x")
        if dy.shape[1] != x.shape[1]:
            raise ShapeError(f"NM.sampled_grad: dy has batch {dy.shape[1]}, x has batch {x.shape[1]}")
        indices, indptr = self._csr_view()[:2]
        rows = self.shape[0]
        tiles, slots = self.codes.shape
        by_row = np.zeros((tiles * TILE, slots), dtype=self.dtype)
        kern = compressed_kernel("csr", self.dtype, "sddmm", self.nnz * x.shape[1])
        quiet_before(kern)
        kernels.launch(kern, indices, indptr, dy, x, by_row[:rows].reshape(-1))
        return np.ascontiguousarray(by_row.reshape(tiles, TILE, slots).transpose(0, 2, 1))

    def __repr__(self) -> str:
        return (f"NM({self.n}:{self.m}, shape={self.shape}, dtype={self.dtype}, nbytes={self.nbytes})")
