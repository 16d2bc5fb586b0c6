"""CSR kernels. Pure functions over (data, indices, indptr) and feature-major dense arrays.

W is M x K with row i stored in data[indptr[i]:indptr[i+1]] at columns indices[...].
Activations are feature-major: X is [K, B] with the batch contiguous, so the innermost loop of
every kernel runs along the batch. Callers allocate outputs; inputs must have been validated
(`sparsenet.formats.CSR.check`): these kernels do not bounds-check.

Each kernel exists as ``csr_<op>`` (parallel over rows, or over batch slices for the transposed
product) and ``csr_<op>_serial`` (same code, one thread) for small problems.
"""

import numpy as np
from numba import prange

from ._jit import serial_and_parallel

__all__ = [
    "csr_spmm", "csr_spmm_serial",
    "csr_spmm_t", "csr_spmm_t_serial",
    "csr_sddmm", "csr_sddmm_serial",
]

# Batch columns handled per task in the transposed product (a multiple of a 64-byte cache line).
_T_CHUNK = 64


def _csr_spmm(data, indices, indptr, x, out):
    """out[M, B] = W @ x[K, B].

    data: [nnz], indices: [nnz] (column of each value), indptr: [M + 1], x: [K, B], out: [M, B].
    O(nnz * B) multiply-adds; parallel over rows.
    """
    m = out.shape[0]
    nb = out.shape[1]
    for i in prange(m):
        start = indptr[i]
        end = indptr[i + 1]
        if nb == 1:
            acc = 0.0
            for jj in range(start, end):
                acc += data[jj] * x[np.intp(indices[jj]), 0]
            out[i, 0] = acc
        else:
            for b in range(nb):
                out[i, b] = 0
            for jj in range(start, end):
                w = data[jj]
                k = np.intp(indices[jj])
                for b in range(nb):
                    out[i, b] += w * x[k, b]


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


csr_spmm_serial, csr_spmm = serial_and_parallel(_csr_spmm)
csr_spmm_t_serial, csr_spmm_t = serial_and_parallel(_csr_spmm_t)
csr_sddmm_serial, csr_sddmm = serial_and_parallel(_csr_sddmm)
