"""CSR kernels. Pure functions over (data, indices, indptr) and feature-major dense arrays.

W is M x K with row i stored in data[indptr[i]:indptr[i+1]] at columns indices[...].
Activations are feature-major: X is [K, B] with the batch contiguous, so the innermost loop of
every kernel runs along the batch. Callers allocate outputs; inputs must have been validated
(`sparsenet.formats.CSR.check`): these kernels do not bounds-check.

The forward kernels (``spmv``, ``spmm``) end with ``bias, act, alpha``: the epilogue
``act(W @ x + bias)`` of `sparsenet.kernels.epilogue`, applied to each row as soon as it is computed.

Each kernel exists as ``csr_<op>`` (parallel over rows, or over batch slices for the transposed
product) and ``csr_<op>_serial`` (same code, one thread) for small problems.
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
    "csr_spmm_t", "csr_spmm_t_serial",
    "csr_sddmm", "csr_sddmm_serial",
]

# Batch columns handled per task in the transposed product (a multiple of a 64-byte cache line).
_T_CHUNK = 64
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


def _csr_spmm_t(data, indices, indptr, dy, out):
    """out[K, B] = W.T @ dy[M, B].

    Scatters row i of W into the rows of `out`; to avoid write conflicts the parallel loop runs over
    slices of the batch, each task sweeping all of W. O(nnz * B).
    """
    m = indptr.shape[0] - 1
    nb = out.shape[1]
    out[:, :] = 0
    nchunks = (nb + _T_CHUNK - 1) // _T_CHUNK
    for c in prange(nchunks):
        b0 = c * _T_CHUNK
        b1 = min(nb, b0 + _T_CHUNK)
        for i in range(m):
            for jj in range(indptr[i], indptr[i + 1]):
                w = data[jj]
                k = np.intp(indices[jj])
                for b in range(b0, b1):
                    out[k, b] += w * dy[i, b]


def _csr_sddmm(indices, indptr, dy, x, out):
    """out[jj] = dot(dy[i, :], x[k, :]) for every stored entry jj = (i, k): (dy @ x.T) sampled at
    W's pattern, the weight gradient that keeps a sparse layer sparse.

    indices: [nnz], indptr: [M + 1], dy: [M, B], x: [K, B], out: [nnz]. O(nnz * B); parallel over rows.
    """
    m = indptr.shape[0] - 1
    nb = dy.shape[1]
    for i in prange(m):
        for jj in range(indptr[i], indptr[i + 1]):
            k = np.intp(indices[jj])
            acc = 0.0
            for b in range(nb):
                acc += dy[i, b] * x[k, b]
            out[jj] = acc


csr_spmv_serial, csr_spmv = serial_and_parallel(_csr_spmv)
csr_spmm_serial, csr_spmm = serial_and_parallel(_csr_spmm)
csr_spmm_f32_serial, csr_spmm_f32 = serial_and_parallel(_csr_spmm_f32)
csr_spmm_t_serial, csr_spmm_t = serial_and_parallel(_csr_spmm_t)
csr_sddmm_serial, csr_sddmm = serial_and_parallel(_csr_sddmm)
