"""int8 weight kernels: W = diag(scales) @ Q with Q int8 (symmetric, one float32 scale per output row).

The int8 values are read directly (a quarter of the fp32 bytes); each product is accumulated in
float32 and the row's scale is applied once per output entry, after the row's sum:
``out[i, b] = scales[i] * sum_k Q[i, k] * x[k, b]``.

Same loop structure as the float kernels in `csr.py` / `bsr.py`: activations are feature-major
(x is [K, B], batch contiguous), the innermost loop runs along the batch, callers allocate `out`
(float32 [M, B]) and inputs must have been validated (`sparsenet.formats.quantized`): no bounds
checks. Each kernel exists as ``<format>_i8_spmm`` (parallel over rows or block rows) and
``<format>_i8_spmm_serial``. The ``*_ref`` functions below are the plain NumPy references (float64).
"""

import numpy as np
from numba import prange

from ._jit import serial_and_parallel
from .reference import bsr_to_dense_ref, csr_to_dense_ref

__all__ = [
    "dense_i8_spmm", "dense_i8_spmm_serial",
    "csr_i8_spmm", "csr_i8_spmm_serial",
    "bsr_i8_spmm", "bsr_i8_spmm_serial",
    "dense_i8_spmm_ref", "csr_i8_spmm_ref", "bsr_i8_spmm_ref",
]


def _dense_i8_spmm(q, scales, x, out):
    """out[M, B] = diag(scales) @ q @ x.

    q: [M, K] int8, scales: [M] float32, x: [K, B] float32, out: [M, B] float32.
    O(M * K * B) multiply-adds; parallel over rows.
    """
    m = out.shape[0]
    k_total = q.shape[1]
    nb = out.shape[1]
    for i in prange(m):
        s = scales[i]
        if nb == 1:
            acc = np.float32(0.0)
            for k in range(k_total):
                acc += np.float32(q[i, k]) * x[k, 0]
            out[i, 0] = acc * s
        else:
            for b in range(nb):
                out[i, b] = 0
            for k in range(k_total):
                w = np.float32(q[i, k])
                for b in range(nb):
                    out[i, b] += w * x[k, b]
            for b in range(nb):
                out[i, b] *= s


def _csr_i8_spmm(data, indices, indptr, scales, x, out):
    """out[M, B] = diag(scales) @ Q @ x with Q in CSR.

    data: [nnz] int8, indices: [nnz] (column of each value), indptr: [M + 1], scales: [M] float32,
    x: [K, B] float32, out: [M, B] float32. O(nnz * B); parallel over rows.
    """
    m = out.shape[0]
    nb = out.shape[1]
    for i in prange(m):
        start = indptr[i]
        end = indptr[i + 1]
        s = scales[i]
        if nb == 1:
            acc = np.float32(0.0)
            for jj in range(start, end):
                acc += np.float32(data[jj]) * x[np.intp(indices[jj]), 0]
            out[i, 0] = acc * s
        else:
            for b in range(nb):
                out[i, b] = 0
            for jj in range(start, end):
                w = np.float32(data[jj])
                k = np.intp(indices[jj])
                for b in range(nb):
                    out[i, b] += w * x[k, b]
            for b in range(nb):
                out[i, b] *= s


def _bsr_i8_spmm(data, indices, indptr, scales, x, out):
    """out[M, B] = diag(scales) @ Q @ x with Q in BSR.

    data: [nblocks, R, C] int8, indices: [nblocks] block columns, indptr: [ceil(M/R) + 1],
    scales: [M] float32 (per row, not per block row), x: [K, B] float32, out: [M, B] float32.
    Entries of edge blocks beyond the logical shape are never read. O(nblocks * R * C * B);
    parallel over block rows.
    """
    m = out.shape[0]
    k_total = x.shape[0]
    nb = out.shape[1]
    r = data.shape[1]
    c = data.shape[2]
    mb = indptr.shape[0] - 1
    for bi in prange(mb):
        r0 = bi * r
        nr = min(r, m - r0)
        for rr in range(nr):
            for b in range(nb):
                out[r0 + rr, b] = 0
        for jj in range(indptr[bi], indptr[bi + 1]):
            c0 = np.intp(indices[jj]) * c
            nc = min(c, k_total - c0)
            for cc in range(nc):
                for rr in range(nr):
                    w = np.float32(data[jj, rr, cc])
                    for b in range(nb):
                        out[r0 + rr, b] += w * x[c0 + cc, b]
        for rr in range(nr):
            s = scales[r0 + rr]
            for b in range(nb):
                out[r0 + rr, b] *= s


dense_i8_spmm_serial, dense_i8_spmm = serial_and_parallel(_dense_i8_spmm)
csr_i8_spmm_serial, csr_i8_spmm = serial_and_parallel(_csr_i8_spmm)
bsr_i8_spmm_serial, bsr_i8_spmm = serial_and_parallel(_bsr_i8_spmm)


# -- NumPy references (float64, slow and obvious) --------------------------------------------------
def dense_i8_spmm_ref(q, scales, x):
    """(scales[:, None] * q) @ x in float64."""
    return (np.asarray(scales, np.float64)[:, None] * np.asarray(q, np.float64)) @ np.asarray(x, np.float64)


def csr_i8_spmm_ref(data, indices, indptr, scales, x):
    """Dequantised CSR times x in float64 (M from indptr, K from x)."""
    w = csr_to_dense_ref(np.asarray(data, np.float64), indices, indptr, (len(indptr) - 1, x.shape[0]))
    return dense_i8_spmm_ref(w, scales, x)


def bsr_i8_spmm_ref(data, indices, indptr, scales, x):
    """Dequantised BSR times x in float64 (M = len(scales), K from x)."""
    w = bsr_to_dense_ref(np.asarray(data, np.float64), indices, indptr, (len(scales), x.shape[0]))
    return dense_i8_spmm_ref(w, scales, x)
