"""Dense weights: a plain C-contiguous [M, K] array; products go to BLAS through NumPy."""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError
from .. import kernels
from .base import WeightFormat, check_float_dtype

__all__ = ["Dense", "BLAS_MIN_WORK"]

# Multiply-adds (M * K * batch) from which a plan's dense product goes to BLAS. The Numba kernel
# keeps 4 x 16 partial sums in registers (`kernels.dense_spmm`); measured against OpenBLAS (1 / 2
# threads, us): 16x144x64 5.3 / 11.7 against 6.7 / 6.8; 64x576x64 66.6 / 41.7 against 61.3 / 37.4;
# 300x784x64 406 / 221 against 379 / 268; with 1 024 columns BLAS leads from ~1.5M (24x64x1024:
# 86 / 48 against 48 / 34), and at 67M by 1.4-1.5x. Below 2^20 the Numba kernel also spares the
# plan BLAS's threads (which spin after each call and make the next parallel kernel wait).
BLAS_MIN_WORK = 1 << 20


def _blas_product(w, x, out, bias, act, alpha):
    """out = act(w @ x + bias) with the product in BLAS (NumPy) and the epilogue in Numba, serial:
    right after a BLAS call its threads spin, and a parallel kernel would share the cores with them."""
    np.matmul(w, x, out=out)
    if act != 0 or bias.shape[0]:
        kernels.dense_epilogue_serial(out, bias, act, alpha)


def _blas_rows_product(w, x, out, bias, act, alpha):
    """out[N, M] = act(x[N, K] @ w.T + bias): a Linear over rows (the tokens of a sequence) in BLAS,
    with no move to feature-major and back, then the epilogue per row (`kernels.dense_epilogue_t`)."""
    np.matmul(x, w.T, out=out)
    if act != 0 or bias.shape[0]:
        kernels.dense_epilogue_t(out, bias, act, alpha)


class Dense(WeightFormat):
    """A dense weight matrix.

    >>> w = Dense(np.eye(3, dtype=np.float32))
    >>> (w @ np.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    format_name = "dense"

    def __init__(self, data):
        data = np.asarray(data)
        check_float_dtype(data.dtype, "Dense weight")
        if data.ndim != 2:
            raise ShapeError(f"Dense weight: expected a 2-D array, found shape {data.shape}")
        self.data = np.ascontiguousarray(data)
        self.shape = (int(data.shape[0]), int(data.shape[1]))

    def check(self) -> None:
        """Full validation for data from outside: finite values (shape and dtype are checked always)."""
        if not np.all(np.isfinite(self.data)):
            raise FormatError("Dense data: expected finite values, found NaN or inf")

    @classmethod
    def from_dense(cls, w, dtype=None) -> "Dense":
        w = np.asarray(w)
        return cls(w.astype(dtype or (w.dtype if w.dtype.kind == "f" else np.float32), copy=True))

    def to_dense(self) -> np.ndarray:
        return self.data.copy()

    def to_scipy(self):
        import scipy.sparse as sp
        return sp.csr_array(self.data)

    @property
    def nnz(self) -> int:
        """Stored entries (all of them: a dense matrix stores its zeros)."""
        return self.size

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def count_nonzero(self) -> int:
        return int(np.count_nonzero(self.data))

    def with_data(self, data) -> "Dense":
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise ShapeError(f"Dense.with_data: expected {self.data.shape}, found {data.shape}")
        return Dense(data)

    def astype(self, dtype) -> "Dense":
        return Dense(self.data.astype(check_float_dtype(dtype, "Dense.astype")))

    def matmul(self, x) -> np.ndarray:
        x = self._as_input(x, self.shape[1], "Dense.matmul x")
        return self.data @ x

    def product(self, batch: int):
        """(kernel, arrays) of W @ x for `batch` columns, as `CSR.product`: the Numba dense kernel
        for batch 1 (memory-bound: as fast as BLAS's gemv, without its set-up or spinning threads)
        and for products below `BLAS_MIN_WORK` multiply-adds, else BLAS then the epilogue."""
        work = self.size * max(batch, 1)
        if batch == 1 or work < BLAS_MIN_WORK:
            return (kernels.dense_spmm if work >= kernels.PARALLEL_MIN_WORK else kernels.dense_spmm_serial), (self.data,)
        return _blas_product, (self.data,)

    def tmatmul(self, dy) -> np.ndarray:
        dy = self._as_input(dy, self.shape[0], "Dense.tmatmul dy")
        return np.ascontiguousarray(self.data.T @ dy)

    def sampled_grad(self, dy, x) -> np.ndarray:
        dy = self._as_input(dy, self.shape[0], "Dense.sampled_grad dy")
        x = self._as_input(x, self.shape[1], "Dense.sampled_grad x")
        if dy.shape[1] != x.shape[1]:
            raise ShapeError(f"Dense.sampled_grad: dy has batch {dy.shape[1]}, x has batch {x.shape[1]}")
        return dy @ x.T

    def __repr__(self) -> str:
        return f"Dense(shape={self.shape}, dtype={self.dtype}, nbytes={self.nbytes})"
