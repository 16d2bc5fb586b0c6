"""What every weight format shares: the protocol layers rely on, and `fmt @ x`.

A format holds one weight matrix of logical shape (M, K) (rows = outputs, columns = inputs).
Layers use three products, all on *feature-major* activations (the batch is the last, contiguous axis):

- ``matmul(x)``        Y = W @ X,   X: [K, B] -> Y: [M, B]   (forward)
- ``tmatmul(dy)``      dX = W.T @ dY, dY: [M, B] -> dX: [K, B] (input gradient)
- ``sampled_grad(dy, x)``  dW = dY @ X.T taken only where W stores values; returned with the shape
  of ``data`` so that an optimiser updating ``data`` in place keeps the sparsity pattern.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import DTypeError, ShapeError
from ..kernels._blas import quiet_before

__all__ = ["WeightFormat", "FLOAT_DTYPES", "check_float_dtype"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype, what: str) -> np.dtype:
    """Return `dtype` as a np.dtype if it is float32 or float64, else raise DTypeError."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{what}: expected dtype float32 or float64, found {dtype}")
    return dtype


class WeightFormat:
    """Base class of Dense, CSR and BSR. Subclasses set ``shape`` and ``data``."""

    format_name = "base"
    shape: tuple[int, int]
    data: np.ndarray

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def spec(self) -> str:
        """The spec naming this weight's storage, the one spelling used everywhere (compile records,
        reports, summaries, reprs): the format's name plus its block shape for block formats, 'dense',
        'csr', 'bsr4x4', 'qdense', 'qcsr', 'qbsr4x4'... The float specs are those `compiled` accepts."""
        bs = getattr(self, "blocksize", None)
        return self.format_name + (f"{bs[0]}x{bs[1]}" if bs else "")

    @property
    def size(self) -> int:
        """Number of logical entries M * K."""
        return int(self.shape[0]) * int(self.shape[1])

    @property
    def density(self) -> float:
        """nnz / (M * K): the fraction of the logical matrix that is stored and nonzero-capable."""
        return self.nnz / self.size if self.size else 0.0

    @property
    def nnz(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def nbytes(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- products (feature-major) -------------------------------------------------
    def _as_input(self, x, rows: int, what: str) -> np.ndarray:
        """Validate and return `x` as a C-contiguous 2-D array of this format's dtype with `rows` rows."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise DTypeError(f"{what}: expected a real numeric array, found dtype {x.dtype}")
        if x.ndim != 2 or x.shape[0] != rows:
            raise ShapeError(f"{what}: expected an array of shape ({rows}, batch), found {x.shape}")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def __matmul__(self, x) -> np.ndarray:
        """``W @ x`` for x of shape [K] or [K, B]; computed in the weight's dtype."""
        x = np.asarray(x)
        if x.ndim == 1:
            if x.shape[0] != self.shape[1]:
                raise ShapeError(f"{type(self).__name__} @ x: expected x of shape ({self.shape[1]},), found {x.shape}")
            return self.matmul(x.reshape(-1, 1))[:, 0]
        if x.ndim != 2:
            raise ShapeError(f"{type(self).__name__} @ x: expected x of shape ({self.shape[1]},) or "
                             f"({self.shape[1]}, batch), found {x.shape}")
        return self.matmul(x)

    def matmul(self, x) -> np.ndarray:
        """W @ x for x [K, B] through this format's kernel (`product`), no bias nor activation.
        Dense overrides it (NumPy's product)."""
        x = self._as_input(x, self.shape[1], f"{type(self).__name__}.matmul x")
        out = np.empty((self.shape[0], x.shape[1]), dtype=self.dtype)
        kern, arrays = self.product(x.shape[1])
        quiet_before(kern)
        kernels.launch(kern, *arrays, x, out, kernels.no_bias(self.dtype), 0, 0.0)
        return out

    def product(self, batch: int):  # pragma: no cover - abstract
        """(kernel, arrays) computing W @ x for `batch` columns: ``kernel(*arrays, x, out, bias, act,
        alpha)`` (see `CSR.product`)."""
        raise NotImplementedError

    def tmatmul(self, dy) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sampled_grad(self, dy, x) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, nnz={self.nnz}, "
                f"density={self.density:.3f}, dtype={self.dtype}, nbytes={self.nbytes})")
