"""CSR kernels. Pure functions over (data, indices, indptr) and feature-major dense arrays.

W is M x K with row i stored in data[indptr[i]:indptr[i+1]] at columns indices[...].
Activations are feature-major: X is [K, B] with the batch contiguous, so the innermost loop of
every kernel runs along the batch. Callers allocate outputs; inputs must have been validated
(`sparsenet.formats.CSR.check`): these kernels do not bounds-check.

The forward kernels (``spmv``, ``spmm``) end with ``bias, act, alpha``: the epilogue
``act(W @ x + bias)`` of `sparsenet.kernels.epilogue`, applied to each row as soon as it is computed.

The input gradient W.T @ dy has no kernel of its own: `csr_transpose_pattern` gives W.T's pattern
(as CSR) once per pattern, `csr_transpose_values` puts the current values in its order, and the
forward kernels multiply (the CSC copy of the pattern kept beside the CSR; a scatter over batch
slices, the kernel before it, took 72 ms for 4096 x 4096 at 90 %, batch 64, against 3.4-4.0 ms).

Each kernel exists as ``csr_<op>`` (parallel over rows or entries) and ``csr_<op>_serial`` (same
code, one thread) for small problems; `csr_transpose_pattern` is NumPy.
"""

import numpy as np
from numba import prange

from ._csr_tiles import csr_task_f32, rows_per_task
from ._jit import serial_and_parallel
from .epilogue import activate, epilogue_rows

__all__ = [
    "csr_spmv", "csr_spmv_serial",
    "csr_spmm", "csr_spmm_serial",
    "csr_spmm_f32", "csr_spmm_f32_serial",
    "csr_transpose_values", "csr_transpose_values_serial",
    "csr_transpose_pattern",
    "csr_sddmm", "csr_sddmm_serial",
]

# Bytes of x one panel of the sampled product reads from (256 rows of a batch of 64 float32: 64 KiB;
# 128-512 KiB panels measured 5-10 % slower, none 12 %).
_SDDMM_PANEL_BYTES = 64 * 1024
_ONE = np.uintp(1)
# Batch columns whose partial sums one pass over a row keeps hot (64 float32 = 8 AVX registers).
_TILE = 64


def _csr_spmv(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, 1] = act(W @ x[K, 1] + bias) (batch 1). O(nnz); parallel over rows.

    Indices are turned into unsigned machine integers before use: signed ones make Numba emit
    negative-index wrap-around code that blocks vectorisation (PERF-NOTES, trick 1). The accumulator
    has the output's dtype so that float32 runs in float32 lanes.
    """
    m = out.shape[0]
    x1 = x.reshape(x.shape[0])
    zero = np.zeros(1, out.dtype)[0]
    has_bias = bias.shape[0] != 0
    for i in prange(m):
        acc = zero
        for jj in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
            acc += data[jj] * x1[np.uintp(indices[jj])]
        if has_bias:
            acc += bias[i]
        out[i, 0] = activate(acc, act, alpha)


def _csr_spmm(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, B] = act(W @ x[K, B] + bias). O(nnz * B) multiply-adds; parallel over rows.

    The batch is processed in tiles of 64 columns so that a row's partial sums stay in cache while
    every nonzero of the row is applied; the innermost loop runs along the (contiguous) batch. The
    never-taken `break` keeps LLVM from vectorising across nonzeros (which would gather x one
    element at a time) so that it vectorises the batch loop instead (PERF-NOTES, trick 5).
    """
    m = out.shape[0]
    nb = np.uintp(out.shape[1])
    tile = np.uintp(_TILE)
    k_total = np.uintp(x.shape[0])
    for i in prange(m):
        start = np.uintp(indptr[i])
        end = np.uintp(indptr[i + 1])
        orow = out[i]
        for b0 in range(np.uintp(0), nb, tile):  # unsigned bounds: signed ones block vectorisation
            b1 = min(nb, b0 + tile)
            for b in range(b0, b1):
                orow[b] = 0
            for jj in range(start, end):
                k = np.uintp(indices[jj])
                if k >= k_total:  # never taken: indices are validated
                    break
                w = data[jj]
                xrow = x[k]
                for b in range(b0, b1):
                    orow[b] += w * xrow[b]
        epilogue_rows(out, i, i + 1, bias, act, alpha)


def _csr_spmm_f32(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, B] = act(W @ x[K, B] + bias) for float32 x and out (data float32): as `csr_spmm`, with each row's
    partial sums in registers and x swept in L2-sized panels (see `_csr_tiles`). Parallel over
    chunks of up to 256 rows (`rows_per_task`)."""
    m = out.shape[0]
    rows = rows_per_task(m)
    for c in prange((m + rows - 1) // rows):
        r0, r1 = csr_task_f32(data, indices, indptr, x, out, c, rows)
        epilogue_rows(out, r0, r1, bias, act, alpha)


def _csr_transpose_values(data, perm, out):
    """out[j] = data[perm[j]]: the values of W in the order of its transposed pattern (W.T as CSR,
    `csr_transpose_pattern`), so that the input gradient W.T @ dy runs through the forward product's
    register-tiled kernel. O(nnz), memory-bound; parallel over entries."""
    for j in prange(perm.shape[0]):
        out[j] = data[np.uintp(perm[j])]


def _csr_sddmm(indices, indptr, dy, x, out):
    """out[jj] = dot(dy[i, :], x[k, :]) for every stored entry jj = (i, k): (dy @ x.T) sampled at
    W's pattern, the weight gradient that keeps a sparse layer sparse.

    indices: [nnz], indptr: [M + 1], dy: [M, B], x: [K, B] (both C-contiguous), out: [nnz].
    O(nnz * B). Parallel over chunks of rows (`rows_per_task`); within a chunk x is swept in panels
    of rows (`_SDDMM_PANEL_BYTES`) so that the rows of x a panel's entries read stay in L2 (4096 x
    4096 at 90 %, batch 64, 2 threads: 4.6 ms against 5.2 without panels). Each dot product runs
    along the contiguous batch with a sum in the output's dtype (float32 lanes for float32) and
    flat, unsigned indexing (PERF-NOTES, trick 1), which LLVM vectorises.
    """
    m = indptr.shape[0] - 1
    nb = np.uintp(dy.shape[1])
    k_total = x.shape[0]
    dyf = dy.ravel()
    xf = x.ravel()
    zero = np.zeros(1, out.dtype)[0]
    panel = max(_SDDMM_PANEL_BYTES // max(dy.shape[1] * dy.itemsize, 1), 16)
    rows = rows_per_task(m)
    for c in prange((m + rows - 1) // rows):
        r0 = c * rows
        r1 = min(m, r0 + rows)
        cur = np.empty(r1 - r0, np.uintp)
        for i in range(r0, r1):
            cur[i - r0] = np.uintp(indptr[i])
        for k0 in range(0, k_total, panel):
            kend = np.uintp(min(k0 + panel, k_total))
            for i in range(r0, r1):
                base = np.uintp(i) * nb
                end = np.uintp(indptr[i + 1])
                jj = cur[i - r0]
                while jj < end:
                    k = np.uintp(indices[jj])
                    if k >= kend:
                        break
                    kb = k * nb
                    acc = zero
                    for b in range(nb):
                        acc += dyf[base + b] * xf[kb + b]
                    out[jj] = acc
                    jj += _ONE
                cur[i - r0] = jj


csr_spmv_serial, csr_spmv = serial_and_parallel(_csr_spmv)
csr_spmm_serial, csr_spmm = serial_and_parallel(_csr_spmm)
csr_spmm_f32_serial, csr_spmm_f32 = serial_and_parallel(_csr_spmm_f32)
csr_transpose_values_serial, csr_transpose_values = serial_and_parallel(_csr_transpose_values)
csr_sddmm_serial, csr_sddmm = serial_and_parallel(_csr_sddmm)


def csr_transpose_pattern(indices, indptr, n_cols: int):
    """(indices_t, indptr_t, perm): the pattern of W.T (K x M) as CSR, for W (M x K) given by
    validated `indices` and `indptr`, and for each entry of W.T the position of its value in W's
    data (``data_t = data[perm]``, `csr_transpose_values`). Row indices come out sorted within each
    column (a stable sort by column). NumPy, O(nnz log nnz); called once per pattern."""
    m = indptr.shape[0] - 1
    perm = np.argsort(indices, kind="stable")
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr.astype(np.int64)))
    indptr_t = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n_cols), out=indptr_t[1:])
    return rows[perm], indptr_t, perm
