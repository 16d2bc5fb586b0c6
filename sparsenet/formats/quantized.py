"""int8 weights for inference: QDense, QCSR, QBSR and QNM store W ~ diag(scales) @ Q.

Q holds int8 values in [-127, 127] (symmetric: -128 is never used), ``scales`` one positive float32
per output row (per output channel for a convolution). Products read the int8 values directly
(`sparsenet.kernels.int8`) and accumulate in float32, so ``.dtype`` -- the dtype a layer computes
in -- is float32 while ``data.dtype`` is int8. Quantised weights are for inference: the transposed
product and the weight gradient raise, since an int8 value cannot take a small gradient step.

Built from a float format with `from_float` (or the free function `quantize_weight`):
``scale_i = max_k |W[i, k]| / 127`` (1.0 for a row of zeros) and ``Q = round(W / scale)``, so
``|W - dequantised| <= scale_i / 2`` entrywise. The sparsity pattern is kept: a stored value that
rounds to 0 stays stored.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import ConfigError, DTypeError, FormatError, ShapeError, SparsenetError
from ..kernels import int8 as _i8
from ._index import index_dtype, pointer_dtype
from .base import WeightFormat
from .bsr import BSR, BlockPattern, _check_blocksize, _grid
from .bsr import _validate as _validate_bsr
from .csr import CSR, _check_shape
from .csr import _validate as _validate_csr
from .dense import Dense
from .nm import NM, TILE, _check_nm, nm_mask, nm_product, nm_to_dense, validate_nm

__all__ = ["QDense", "QCSR", "QBSR", "QNM", "QuantizedFormat", "quantize_weight", "QMAX"]

QMAX = 127
_COMPUTE_DTYPE = np.dtype(np.float32)
_INFERENCE_ONLY = "quantized weights are for inference; fine-tune before quantizing"


def _check_q_and_scales(data, scales, m, what, *, full: bool) -> None:
    """Checks shared by the three validators: int8 values in [-127, 127], M finite positive float32 scales."""
    if data.dtype != np.int8:
        raise DTypeError(f"{what} data: expected dtype int8, found {data.dtype}")
    if scales.dtype != np.float32:
        raise DTypeError(f"{what} scales: expected dtype float32, found {scales.dtype}")
    if scales.shape != (m,):
        raise FormatError(f"{what} scales: expected shape ({m},) (one per output row), found {scales.shape}")
    if not full:
        return
    if scales.size and not (np.all(np.isfinite(scales)) and scales.min() > 0):
        i = int(np.flatnonzero(~(np.isfinite(scales) & (scales > 0)))[0])
        raise FormatError(f"{what} scales: expected finite positive values, found scales[{i}] = {scales[i]}")
    if data.size and int(data.min()) < -QMAX:
        raise FormatError(f"{what} data: expected values in [-{QMAX}, {QMAX}], found {int(data.min())}")


def _validate_qdense(data, scales, shape, *, full: bool) -> None:
    """The one place QDense invariants are enforced."""
    if data.ndim != 2 or data.shape != tuple(shape):
        raise FormatError(f"QDense data: expected shape {tuple(shape)}, found {data.shape}")
    _check_q_and_scales(data, scales, shape[0], "QDense", full=full)


def _validate_qcsr(data, indices, indptr, scales, shape, *, full: bool) -> None:
    """The one place QCSR invariants are enforced: CSR structure, then int8 values and scales."""
    _validate_csr(data, indices, indptr, shape, full=full)
    _check_q_and_scales(data, scales, shape[0], "QCSR", full=full)


def _validate_qbsr(data, indices, indptr, scales, shape, blocksize, *, full: bool) -> None:
    """The one place QBSR invariants are enforced: BSR structure (zero overhang), then values and scales."""
    _validate_bsr(data, indices, indptr, shape, blocksize, full=full)
    _check_q_and_scales(data, scales, shape[0], "QBSR", full=full)


def _check_int_arrays(name, **arrays):
    for key, arr in arrays.items():
        if arr.dtype.kind not in "iu":
            raise DTypeError(f"{name} {key}: expected an integer array, found dtype {arr.dtype}")


def _row_scales(row_max) -> np.ndarray:
    """float32 scales from per-row max |w| (float64): max / 127, and 1.0 where that is not positive."""
    scales = (np.asarray(row_max, np.float64) / QMAX).astype(np.float32)
    scales[~(scales > 0)] = 1.0  # rows of zeros (or so small that the scale underflows)
    return scales


def _quantize(values, scales_per_value) -> np.ndarray:
    """round(values / scale) clipped to [-127, 127] as int8 (computed in float64)."""
    q = np.rint(np.asarray(values, np.float64) / np.asarray(scales_per_value, np.float64))
    return np.clip(q, -QMAX, QMAX).astype(np.int8)


def _finite_source(fmt, what):
    if not np.all(np.isfinite(fmt.data)):
        raise FormatError(f"{what}: expected finite weights, found NaN or inf")


class QuantizedFormat(WeightFormat):
    """What QDense, QCSR and QBSR share: float32 compute dtype, int8 `data`, per-row `scales`."""

    scales: np.ndarray

    @property
    def dtype(self) -> np.dtype:
        """The dtype products are computed and returned in (float32), not the stored int8."""
        return _COMPUTE_DTYPE

    @property
    def nbytes(self) -> int:
        """True bytes held: int8 values + indices + pointers + float32 scales."""
        extra = sum(int(getattr(self, a).nbytes) for a in ("indices", "indptr") if hasattr(self, a))
        return int(self.data.nbytes) + extra + int(self.scales.nbytes)

    def count_nonzero(self) -> int:
        """Nonzero int8 values (a stored value that rounded to 0 does not count)."""
        return int(np.count_nonzero(self.data))

    def _parallel(self, batch: int) -> bool:
        return self.nnz * max(batch, 1) >= kernels.PARALLEL_MIN_WORK

    def _new_data(self, data) -> np.ndarray:
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ShapeError(f"{type(self).__name__}.with_data: expected {self.data.shape}, found {data.shape}")
        if data.dtype != np.int8:
            raise DTypeError(f"{type(self).__name__}.with_data: expected int8 values, found {data.dtype}")
        return data

    def tmatmul(self, dy) -> np.ndarray:
        raise SparsenetError(f"{type(self).__name__}.tmatmul: {_INFERENCE_ONLY}")

    def sampled_grad(self, dy, x) -> np.ndarray:
        raise SparsenetError(f"{type(self).__name__}.sampled_grad: {_INFERENCE_ONLY}")

    def astype(self, dtype):
        raise SparsenetError(f"{type(self).__name__}.astype: {_INFERENCE_ONLY} (dequantize with to_dense())")


class QDense(QuantizedFormat):
    """A dense int8 matrix with per-row scales.

    >>> w = QDense.from_float(Dense(np.array([[1.0, -0.5], [0.0, 0.0]], dtype=np.float32)))
    >>> w.data.tolist(), w.scales.tolist(), (w @ np.ones(2)).tolist()
    ([[127, -64], [0, 0]], [0.007874015718698502, 1.0], [0.4960629940032959, 0.0])
    """

    format_name = "qdense"

    def __init__(self, data, scales, *, check: bool = True):
        data, scales = np.asarray(data), np.asarray(scales)
        if data.ndim != 2:
            raise ShapeError(f"QDense data: expected a 2-D array, found shape {data.shape}")
        self.shape = (int(data.shape[0]), int(data.shape[1]))
        self.data, self.scales = np.ascontiguousarray(data), np.ascontiguousarray(scales)
        _validate_qdense(self.data, self.scales, self.shape, full=check)

    def check(self) -> None:
        """Full validation (values in range, scales finite and positive)."""
        _validate_qdense(self.data, self.scales, self.shape, full=True)

    @classmethod
    def from_float(cls, w) -> "QDense":
        """Quantise a Dense weight (or a 2-D float array) row by row."""
        w = w if isinstance(w, Dense) else Dense(np.asarray(w))
        _finite_source(w, "QDense.from_float")
        row_max = np.abs(w.data).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
        scales = _row_scales(row_max)
        return cls(_quantize(w.data, scales[:, None]), scales, check=False)

    def to_dense(self) -> np.ndarray:
        """The dequantised [M, K] float32 matrix."""
        return self.data.astype(np.float32) * self.scales[:, None]

    @property
    def nnz(self) -> int:
        return self.size

    def with_data(self, data) -> "QDense":
        return QDense(self._new_data(data), self.scales, check=False)

    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product`."""
        kern = _i8.dense_i8_spmm if self._parallel(batch) else _i8.dense_i8_spmm_serial
        return kern, (self.data, self.scales,)

    def __repr__(self) -> str:
        return f"QDense(shape={self.shape}, dtype=int8 -> {self.dtype}, nbytes={self.nbytes})"


class QCSR(QuantizedFormat):
    """CSR with int8 values and per-row scales; indices and pointers as in `CSR`.

    >>> w = QCSR.from_float(CSR.from_dense(np.array([[0, 2.0], [3.0, 0]], dtype=np.float32)))
    >>> w.nnz, w.data.tolist(), (w @ np.array([1.0, 1.0])).tolist()
    (2, [127, 127], [2.0, 3.0])
    """

    format_name = "qcsr"

    def __init__(self, data, indices, indptr, scales, shape, *, check: bool = True):
        m, k = _check_shape(shape, "QCSR shape")
        data, indices, indptr, scales = (np.asarray(a) for a in (data, indices, indptr, scales))
        _check_int_arrays("QCSR", indices=indices, indptr=indptr)
        self.shape = (m, k)
        self.data, self.scales = np.ascontiguousarray(data), np.ascontiguousarray(scales)
        _validate_qcsr(self.data, indices, indptr, self.scales, self.shape, full=check)
        self.indices = np.ascontiguousarray(indices, dtype=index_dtype(k))
        self.indptr = np.ascontiguousarray(indptr, dtype=pointer_dtype(self.data.shape[0]))

    def check(self) -> None:
        """Full O(nnz) validation; raises FormatError naming the first violation."""
        _validate_qcsr(self.data, self.indices, self.indptr, self.scales, self.shape, full=True)

    @classmethod
    def from_float(cls, w: CSR) -> "QCSR":
        """Quantise a CSR weight row by row, keeping its pattern (indices and pointers are shared)."""
        if not isinstance(w, CSR):
            raise DTypeError(f"QCSR.from_float: expected a CSR weight, found {type(w).__name__}")
        _finite_source(w, "QCSR.from_float")
        rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        row_max = np.zeros(w.shape[0])
        np.maximum.at(row_max, rows, np.abs(w.data.astype(np.float64)))
        scales = _row_scales(row_max)
        return cls(_quantize(w.data, scales[rows]), w.indices, w.indptr, scales, w.shape, check=False)

    def _rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))

    def to_dense(self) -> np.ndarray:
        """The dequantised [M, K] float32 matrix."""
        out = np.zeros(self.shape, dtype=np.float32)
        rows = self._rows()
        out[rows, self.indices] = self.data.astype(np.float32) * self.scales[rows]
        return out

    def mask(self) -> np.ndarray:
        """Boolean [M, K] array, True where an entry is stored."""
        out = np.zeros(self.shape, dtype=bool)
        out[self._rows(), self.indices] = True
        return out

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def with_data(self, data) -> "QCSR":
        return QCSR(self._new_data(data), self.indices, self.indptr, self.scales, self.shape, check=False)

    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product`."""
        kern = _i8.csr_i8_spmm if self._parallel(batch) else _i8.csr_i8_spmm_serial
        return kern, (self.data, self.indices, self.indptr, self.scales,)


class QBSR(BlockPattern, QuantizedFormat):
    """BSR with int8 blocks and per-row scales (one per row of the matrix, not per block row).

    >>> b = BSR.from_dense(np.kron(np.eye(2), np.ones((2, 2))).astype(np.float32), blocksize=(2, 2))
    >>> w = QBSR.from_float(b)
    >>> w.nblocks, w.blocksize, (w @ np.ones(4)).tolist()
    (2, (2, 2), [2.0, 2.0, 2.0, 2.0])
    """

    format_name = "qbsr"

    def __init__(self, data, indices, indptr, scales, shape, *, check: bool = True):
        m, k = _check_shape(shape, "QBSR shape")
        data, indices, indptr, scales = (np.asarray(a) for a in (data, indices, indptr, scales))
        _check_int_arrays("QBSR", indices=indices, indptr=indptr)
        if data.ndim != 3:
            raise FormatError(f"QBSR data: expected shape (nblocks, R, C), found {data.shape}")
        self.shape = (m, k)
        self.blocksize = _check_blocksize(data.shape[1:])
        self.data, self.scales = np.ascontiguousarray(data), np.ascontiguousarray(scales)
        _validate_qbsr(self.data, indices, indptr, self.scales, self.shape, self.blocksize, full=check)
        self.indices = np.ascontiguousarray(indices, dtype=index_dtype(_grid(self.shape, self.blocksize)[1]))
        self.indptr = np.ascontiguousarray(indptr, dtype=pointer_dtype(self.data.shape[0]))

    def check(self) -> None:
        """Full validation; raises FormatError naming the first violation."""
        _validate_qbsr(self.data, self.indices, self.indptr, self.scales, self.shape, self.blocksize, full=True)

    @classmethod
    def from_float(cls, w: BSR) -> "QBSR":
        """Quantise a BSR weight row by row, keeping its blocks (overhanging entries stay 0)."""
        if not isinstance(w, BSR):
            raise DTypeError(f"QBSR.from_float: expected a BSR weight, found {type(w).__name__}")
        _finite_source(w, "QBSR.from_float")
        (r, _), m = w.blocksize, w.shape[0]
        mb = len(w.indptr) - 1
        block_rows = np.repeat(np.arange(mb), np.diff(w.indptr))
        # row of each stored value: [nblocks, R, 1], broadcast along the block's columns
        rows = (block_rows[:, None] * r + np.arange(r)[None, :])[:, :, None]
        row_max = np.zeros(mb * r)
        np.maximum.at(row_max, np.broadcast_to(rows, w.data.shape), np.abs(w.data.astype(np.float64)))
        scales = _row_scales(row_max[:m])
        padded = np.concatenate([scales, np.ones(mb * r - m, np.float32)])  # overhang rows hold zeros
        q = _quantize(w.data, padded[np.broadcast_to(rows, w.data.shape)])
        return cls(q, w.indices, w.indptr, scales, w.shape, check=False)

    def to_dense(self) -> np.ndarray:
        """The dequantised [M, K] float32 matrix."""
        r, c = self.blocksize
        mb, nbc = _grid(self.shape, self.blocksize)
        blocks = np.zeros((mb, nbc, r, c), dtype=np.float32)
        blocks[np.repeat(np.arange(mb), np.diff(self.indptr)), self.indices] = self.data
        q = blocks.transpose(0, 2, 1, 3).reshape(mb * r, nbc * c)[: self.shape[0], : self.shape[1]]
        return q * self.scales[:, None]

    def with_data(self, data) -> "QBSR":
        return QBSR(self._new_data(data), self.indices, self.indptr, self.scales, self.shape, check=False)

    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product`."""
        kern = _i8.bsr_i8_spmm if self._parallel(batch) else _i8.bsr_i8_spmm_serial
        return kern, (self.data, self.indices, self.indptr, self.scales,)

    def __repr__(self) -> str:
        return (f"QBSR(shape={self.shape}, blocksize={self.blocksize}, nblocks={self.nblocks}, "
                f"density={self.density:.3f}, dtype=int8 -> {self.dtype}, nbytes={self.nbytes})")


class QNM(QuantizedFormat):
    """N:M with int8 values and per-row scales; the layout, the positions and their checks as in
    `NM` (``data`` [tiles, S, 8] int8, ``codes`` [tiles, S]).

    >>> w = QNM.from_float(NM.from_dense(np.array([[1, 0, 3, 0.5]], dtype=np.float32), 2, 4))
    >>> w.spec, w.data[0, :, 0].tolist(), (w @ np.ones(4)).tolist()
    ('qnm2:4', [42, 127], [3.992125988006592])
    """

    format_name = "qnm"

    def __init__(self, data, codes, scales, shape, n, m, *, check: bool = True):
        m_, k = _check_shape(shape, "QNM shape")
        data, codes, scales = np.asarray(data), np.asarray(codes), np.asarray(scales)
        self.n, self.m = _check_nm(n, m)
        self.shape = (m_, k)
        self.data, self.codes, self.scales = (np.ascontiguousarray(a) for a in (data, codes, scales))
        self.bits = self.m.bit_length() - 1
        self._validate(check)

    def _validate(self, full: bool) -> None:
        """The one place QNM invariants are enforced: the N:M layout, then int8 values and scales."""
        _check_q_and_scales(self.data, self.scales, self.shape[0], "QNM", full=False)
        validate_nm(self.data, self.codes, self.shape, self.n, self.m, full=full)
        _check_q_and_scales(self.data, self.scales, self.shape[0], "QNM", full=full)

    def check(self) -> None:
        """Full validation; raises FormatError naming the first violation."""
        self._validate(True)

    @property
    def spec(self) -> str:
        return f"qnm{self.n}:{self.m}"

    @classmethod
    def from_float(cls, w: NM) -> "QNM":
        """Quantise an NM weight row by row, keeping its positions (the padding rows stay 0)."""
        if not isinstance(w, NM):
            raise DTypeError(f"QNM.from_float: expected an NM weight, found {type(w).__name__}")
        _finite_source(w, "QNM.from_float")
        rows = w.shape[0]
        tiles = w.data.shape[0]
        per_row = np.abs(w.data.astype(np.float64)).max(axis=1).reshape(tiles * TILE) if w.data.size else \
            np.zeros(tiles * TILE)
        scales = _row_scales(per_row[:rows])
        padded = np.concatenate([scales, np.ones(tiles * TILE - rows, np.float32)])
        q = _quantize(w.data, padded.reshape(tiles, 1, TILE))
        return cls(q, w.codes, scales, w.shape, w.n, w.m, check=False)

    def to_dense(self) -> np.ndarray:
        """The dequantised [M, K] float32 matrix."""
        return nm_to_dense(self.data, self.codes, self.shape, self.n, self.m, np.float32) * self.scales[:, None]

    def mask(self) -> np.ndarray:
        return nm_mask(self.codes, self.shape, self.n, self.m)

    @property
    def nnz(self) -> int:
        return int(self.shape[0] * self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """True bytes held: int8 values + packed positions + float32 scales."""
        return int(self.data.nbytes + self.codes.nbytes + self.scales.nbytes)

    def with_data(self, data) -> "QNM":
        return QNM(self._new_data(data), self.codes, self.scales, self.shape, self.n, self.m, check=False)

    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product` (`formats.nm.nm_product`)."""
        return nm_product(self, batch, self.scales)

    def __repr__(self) -> str:
        return f"QNM({self.n}:{self.m}, shape={self.shape}, dtype=int8 -> {self.dtype}, nbytes={self.nbytes})"


_QUANTIZERS = {"dense": QDense, "csr": QCSR, "bsr": QBSR, "nm": QNM}


def quantize_weight(w: WeightFormat) -> QuantizedFormat:
    """int8 copy of a Dense, CSR, BSR or NM weight in the matching quantised format (same pattern).

    >>> quantize_weight(CSR.from_dense(np.eye(3, dtype=np.float32))).format_name
    'qcsr'
    """
    if isinstance(w, QuantizedFormat):
        raise ConfigError(f"quantize_weight: the weight is already quantized ({w.format_name})")
    cls = _QUANTIZERS.get(getattr(w, "format_name", None))
    if cls is None:
        raise DTypeError(f"quantize_weight: expected a Dense, CSR, BSR or NM weight, found {type(w).__name__}")
    return cls.from_float(w)
