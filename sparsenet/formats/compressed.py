"""Products shared by the compressed formats (CSR and BSR): both keep (data, indices, indptr) and
have kernels named ``<format>_spmv``, ``<format>_spmm``, ``<format>_spmm_t``, ``<format>_sddmm``,
each with a ``_serial`` twin used below `kernels.PARALLEL_MIN_WORK` multiply-adds."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import ShapeError
from .base import WeightFormat

__all__ = ["CompressedFormat"]


class CompressedFormat(WeightFormat):
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    def _kernel(self, op: str, batch: int):
        """The kernel for `op`, parallel when nnz * batch is large enough (looked up at call time)."""
        name = f"{self.format_name}_{op}"
        parallel = self.nnz * max(batch, 1) >= kernels.PARALLEL_MIN_WORK
        return getattr(kernels, name if parallel else name + "_serial")

    def matmul(self, x) -> np.ndarray:
        what = type(self).__name__
        x = self._as_input(x, self.shape[1], f"{what}.matmul x")
        out = np.empty((self.shape[0], x.shape[1]), dtype=self.dtype)
        if x.shape[1] == 1:  # batch 1: a gather-and-reduce kernel over a 1-D input
            kernels.launch(self._kernel("spmv", 1), self.data, self.indices, self.indptr, x[:, 0], out[:, 0])
        else:
            kernels.launch(self._kernel("spmm", x.shape[1]), self.data, self.indices, self.indptr, x, out)
        return out

    def tmatmul(self, dy) -> np.ndarray:
        dy = self._as_input(dy, self.shape[0], f"{type(self).__name__}.tmatmul dy")
        out = np.empty((self.shape[1], dy.shape[1]), dtype=self.dtype)
        kernels.launch(self._kernel("spmm_t", dy.shape[1]), self.data, self.indices, self.indptr, dy, out)
        return out

    def sampled_grad(self, dy, x) -> np.ndarray:
        what = type(self).__name__
        dy = self._as_input(dy, self.shape[0], f"{what}.sampled_grad dy")
        x = self._as_input(x, self.shape[1], f"{what}.sampled_grad x")
        if dy.shape[1] != x.shape[1]:
            raise ShapeError(f"{what}.sampled_grad: dy has batch {dy.shape[1]}, x has batch {x.shape[1]}")
        out = np.empty_like(self.data)
        kernels.launch(self._kernel("sddmm", x.shape[1]), self.indices, self.indptr, dy, x, out)
        return out
