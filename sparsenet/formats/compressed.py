"""Products shared by the compressed formats (CSR and BSR): both keep (data, indices, indptr) and
have kernels named ``<format>_spmv``, ``<format>_spmm``, ``<format>_transpose_values``, ``<format>_sddmm``,
each with a ``_serial`` twin used below `kernels.PARALLEL_MIN_WORK` multiply-adds."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import FormatError, ShapeError
from ..kernels._blas import quiet_before
from ._index import index_dtype, pointer_dtype
from .base import WeightFormat

__all__ = ["CompressedFormat", "check_compressed_structure", "compressed_kernel", "transpose_pattern",
           "transposed_product"]


def check_compressed_structure(indices, indptr, n_cols: int, *, fmt: str, col: str, cols: str, row: str,
                               item: str) -> None:
    """The O(nnz) part of CSR and BSR validation: pointers never decrease, indices lie in
    [0, n_cols) and strictly increase within each (block) row. `fmt`, `col`, `cols`, `row` and `item`
    name things in the messages ("CSR", "column indices", "columns", "row", "column")."""
    ptr = indptr.astype(np.int64)
    steps = np.diff(ptr)
    if steps.size and steps.min() < 0:
        r = int(np.argmin(steps))
        raise FormatError(f"{fmt} indptr: expected non-decreasing values, found indptr[{r}] = "
                          f"{ptr[r]} > indptr[{r + 1}] = {ptr[r + 1]}")
    if not indices.size:
        return
    idx = indices.astype(np.int64)
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n_cols:
        raise FormatError(f"{fmt} indices: expected {col} in [0, {n_cols}), found {lo if lo < 0 else hi}")
    # strictly increasing within each row: compare neighbours that share a row
    row_start = np.zeros(idx.size, dtype=bool)
    row_start[ptr[:-1][steps > 0]] = True
    bad = np.flatnonzero((np.diff(idx) <= 0) & ~row_start[1:])
    if bad.size:
        j = int(bad[0]) + 1
        r = int(np.searchsorted(ptr, j, side="right") - 1)
        raise FormatError(f"{fmt} indices: expected strictly increasing {cols} within each {row} (sorted, no "
                          f"duplicates), found {item} {idx[j]} after {idx[j - 1]} in {row} {r}")


# (format name, dtype, op, parallel) -> kernel name; building it took ~2 us per call, as long
# as a small layer's kernel
_KERNEL_NAMES: dict = {}


def compressed_kernel(format_name: str, dtype, op: str, work: int):
    """The kernel ``<format>_<op>`` for values of `dtype`, parallel when `work` (multiply-adds, or
    entries moved) reaches `kernels.PARALLEL_MIN_WORK` (looked up at call time, by name, in
    `sparsenet.kernels`). Float32 values use the register-tiled ``<format>_<op>_f32`` kernel where
    one exists."""
    parallel = work >= kernels.PARALLEL_MIN_WORK
    key = (format_name, dtype, op, parallel)
    name = _KERNEL_NAMES.get(key)
    if name is None:
        name = f"{format_name}_{op}"
        if dtype == np.float32 and hasattr(kernels, name + "_f32"):
            name += "_f32"
        name = _KERNEL_NAMES[key] = name if parallel else name + "_serial"
    return getattr(kernels, name)


def transpose_pattern(indices, indptr, rows: int, cols: int):
    """(indices, indptr, perm) of W.T's pattern for the (rows x cols) pattern of `indices` and
    `indptr` (`kernels.csr_transpose_pattern`), in the narrow dtypes the formats store."""
    indices_t, indptr_t, perm = kernels.csr_transpose_pattern(indices, indptr, cols)
    nnz = int(perm.shape[0])
    return (np.ascontiguousarray(indices_t, dtype=index_dtype(rows)),
            np.ascontiguousarray(indptr_t, dtype=pointer_dtype(nnz)),
            np.ascontiguousarray(perm, dtype=pointer_dtype(nnz)))


def transposed_product(format_name: str, data, perm, indices_t, indptr_t, values_shape, dy, n_out: int):
    """W.T @ dy for a W whose values are `data` and whose transposed pattern is (`indices_t`,
    `indptr_t`, `perm`, `transpose_pattern`): the values put in W.T's order
    (``<format>_transpose_values``, into an array of `values_shape`), then the forward product's
    kernel over W.T; out [n_out, batch]. What CSR, BSR and N:M (over its CSR view) compute the
    input gradient with."""
    values = np.empty(values_shape, dtype=data.dtype)
    kern = compressed_kernel(format_name, data.dtype, "transpose_values", values.size)
    quiet_before(kern)
    kernels.launch(kern, data, perm, values)
    out = np.empty((n_out, dy.shape[1]), dtype=data.dtype)
    batch = dy.shape[1]
    kern = compressed_kernel(format_name, data.dtype, "spmv" if batch == 1 else "spmm", values.size * max(batch, 1))
    quiet_before(kern)
    kernels.launch(kern, values, indices_t, indptr_t, dy, out, kernels.no_bias(data.dtype), 0, 0.0)
    return out


class CompressedFormat(WeightFormat):
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    def _kernel(self, op: str, batch: int):
        """`compressed_kernel` for `op` on this format, for nnz * batch multiply-adds."""
        return compressed_kernel(self.format_name, self.data.dtype, op, self.nnz * max(batch, 1))

    def product(self, batch: int):
        """(kernel, arrays) computing W @ x for `batch` columns, as a compiled plan binds it once:
        ``kernel(*arrays, x, out, bias, act, alpha)`` with x [K, batch], out [M, batch] (C-contiguous,
        this format's dtype) and the epilogue of `sparsenet.kernels.epilogue`. Batch 1 takes the
        gather-and-reduce ``spmv`` kernel."""
        return self._kernel("spmv" if batch == 1 else "spmm", batch), (self.data, self.indices, self.indptr)

    def _grid(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """(rows, columns) of the pattern: the shape for CSR, block rows and columns for BSR."""
        raise NotImplementedError

    def _transposed_data_shape(self) -> tuple:  # pragma: no cover - abstract
        """The shape of W.T's values (`<format>_transpose_values`)."""
        raise NotImplementedError

    def _transposed_pattern(self):
        """(indices, indptr, perm) of W.T's pattern (`kernels.csr_transpose_pattern`, over block
        columns for BSR), built on the first input gradient and kept beside the format while its
        pattern arrays stay the same objects (a format's pattern is never changed in place)."""
        cached = self.__dict__.get("_transposed")
        if cached is not None and cached[0] is self.indices and cached[1] is self.indptr:
            return cached[2:]
        t = transpose_pattern(self.indices, self.indptr, *self._grid())
        self._transposed = (self.indices, self.indptr, *t)
        return t

    def tmatmul(self, dy) -> np.ndarray:
        """W.T @ dy (the input gradient): W's values put in the order of W.T's pattern (the CSC copy
        of the pattern, `_transposed_pattern`), then the forward product's kernel over W.T. The
        pattern copy is training-only memory (about 6-8 bytes per stored value), not in `nbytes`."""
        dy = self._as_input(dy, self.shape[0], f"{type(self).__name__}.tmatmul dy")
        indices_t, indptr_t, perm = self._transposed_pattern()
        return transposed_product(self.format_name, self.data, perm, indices_t, indptr_t,
                                  self._transposed_data_shape(), dy, self.shape[1])

    def sampled_grad(self, dy, x) -> np.ndarray:
        what = type(self).__name__
        dy = self._as_input(dy, self.shape[0], f"{what}.sampled_grad dy")
        x = self._as_input(x, self.shape[1], f"{what}.sampled_grad x")
        if dy.shape[1] != x.shape[1]:
            raise ShapeError(f"{what}.sampled_grad: dy has batch {dy.shape[1]}, x has batch {x.shape[1]}")
        out = np.empty_like(self.data)
        kern = self._kernel("sddmm", x.shape[1])
        quiet_before(kern)
        kernels.launch(kern, self.indices, self.indptr, dy, x, out)
        return out
