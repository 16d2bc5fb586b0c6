"""int8 weight kernels: W = diag(scales) @ Q with Q int8 (symmetric, one float32 scale per output row).

The int8 values are read directly (a quarter of the fp32 bytes); each product is accumulated in
float32 and the row's scale is applied once per output entry, after the row's sum:
``out[i, b] = scales[i] * sum_k Q[i, k] * x[k, b]``.

Same loop structure as the float kernels in `csr.py` / `bsr.py`: activations are feature-major
(x is [K, B], batch contiguous), the innermost loop runs along the batch, callers allocate `out`
(float32 [M, B]) and inputs must have been validated (`sparsenet.formats.quantized`): no bounds
checks. Each ends with ``bias, act, alpha``: the epilogue ``act(W @ x + bias)`` of
`sparsenet.kernels.epilogue`, applied after the scales. Each kernel exists as ``<format>_i8_spmm`` (parallel over rows or block rows) and
``<format>_i8_spmm_serial``. The ``*_ref`` functions below are the plain NumPy references (float64).
"""

import numpy as np
from numba import prange

from ._bsr_tiles import bsr_column_blocks_f32, bsr_quad_blocks_f32, bsr_rows_f32
from ._csr_tiles import csr_task_f32, rows_per_task
from ._jit import serial_and_parallel
from .epilogue import activate, epilogue_rows
from .reference import bsr_to_dense_ref, csr_to_dense_ref

__all__ = [
    "dense_i8_spmm", "dense_i8_spmm_serial",
    "csr_i8_spmm", "csr_i8_spmm_serial",
    "bsr_i8_spmm", "bsr_i8_spmm_serial",
    "dense_i8_spmm_ref", "csr_i8_spmm_ref", "bsr_i8_spmm_ref",
]


# Batch columns whose partial sums one pass over a row keeps hot (as in csr_spmm / bsr_spmm).
# Batch indices are unsigned (np.uintp) like the column indices: with signed batch bounds LLVM kept
# the negative-index wrap-around in the innermost loop and did not vectorise it (measured: batch 64
# CSR ~6x slower, dense ~9x; PERF-NOTES trick 1 applies to every index of the inner loop).
_TILE = 64


def _dense_i8_spmm(q, scales, x, out, bias, act, alpha):
    """out[M, B] = act(diag(scales) @ q @ x + bias).

    q: [M, K] int8, scales: [M] float32, x: [K, B] float32, out: [M, B] float32.
    O(M * K * B) multiply-adds; parallel over rows; batch tiles of 64 columns, batch innermost.
    """
    m = out.shape[0]
    k_total = q.shape[1]
    nb = np.uintp(out.shape[1])
    tile = np.uintp(_TILE)
    has_bias = bias.shape[0] != 0
    for i in prange(m):
        s = scales[i]
        qrow = q[i]
        orow = out[i]
        if nb == 1:
            acc = np.float32(0.0)
            for k in range(k_total):
                acc += np.float32(qrow[k]) * x[k, 0]
            acc *= s
            if has_bias:
                acc += bias[i]
            orow[0] = activate(acc, act, alpha)
            continue
        for b0 in range(np.uintp(0), nb, tile):
            b1 = min(nb, b0 + tile)
            for b in range(b0, b1):
                orow[b] = 0
            for k in range(k_total):
                w = np.float32(qrow[k])
                xrow = x[k]
                for b in range(b0, b1):
                    orow[b] += w * xrow[b]
            for b in range(b0, b1):
                orow[b] *= s
        epilogue_rows(out, i, i + 1, bias, act, alpha)


def _csr_i8_spmm(data, indices, indptr, scales, x, out, bias, act, alpha):
    """out[M, B] = act(diag(scales) @ Q @ x + bias) with Q in CSR.

    data: [nnz] int8, indices: [nnz] (column of each value), indptr: [M + 1], scales: [M] float32,
    x: [K, B] float32, out: [M, B] float32. O(nnz * B). Batch 1: parallel over rows, one gathered
    x value per entry. Larger batches: the register-tiled loops of `csr_spmm_f32` (`_csr_tiles`),
    parallel over chunks of up to 256 rows, each int8 value converted once per batch tile.
    """
    m = out.shape[0]
    nb = out.shape[1]
    has_bias = bias.shape[0] != 0
    if nb == 1:
        for i in prange(m):
            acc = np.float32(0.0)
            for jj in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
                acc += np.float32(data[jj]) * x[np.uintp(indices[jj]), 0]
            acc *= scales[i]
            if has_bias:
                acc += bias[i]
            out[i, 0] = activate(acc, act, alpha)
        return
    rows = rows_per_task(m)
    for c in prange((m + rows - 1) // rows):
        r0, r1 = csr_task_f32(data, indices, indptr, x, out, c, rows)
        for i in range(r0, r1):
            s = scales[i]
            for b in range(nb):
                out[i, b] *= s
        epilogue_rows(out, r0, r1, bias, act, alpha)


def _bsr_i8_spmm(data, indices, indptr, scales, x, out, bias, act, alpha):
    """out[M, B] = act(diag(scales) @ Q @ x + bias) with Q in BSR.

    data: [nblocks, R, C] int8, indices: [nblocks] block columns, indptr: [ceil(M/R) + 1],
    scales: [M] float32 (per row, not per block row), x: [K, B] float32, out: [M, B] float32.
    Entries of edge blocks beyond the logical shape are never read. O(nblocks * R * C * B);
    parallel over block rows, with the register-tiled loops of the float32 BSR kernels
    (`_bsr_tiles`; batch 1 with R x 1 blocks, R a multiple of 8, or R x 4 blocks, R even).
    """
    m = out.shape[0]
    k_total = x.shape[0]
    nb = out.shape[1]
    r = data.shape[1]
    c = data.shape[2]
    mb = indptr.shape[0] - 1
    columns = nb == 1 and c == 1 and r % 8 == 0
    quads = nb == 1 and c == 4 and r % 2 == 0
    data2 = data.reshape(data.shape[0], r * c)
    x2 = x.reshape(1, k_total * nb)
    out2 = out.reshape(1, m * nb)
    for bi in prange(mb):
        r0 = bi * r
        nr = min(r, m - r0)
        if nb != 1:
            bsr_rows_f32(data, indices, indptr, x, out, bi)
        elif columns and nr == r:
            bsr_column_blocks_f32(data2, indices, indptr, x2, out2, bi, r)
        elif quads and nr == r:
            bsr_quad_blocks_f32(data2, indices, indptr, x2, out2, bi, r)
        else:  # batch 1, other block shapes: one loaded x value serves the R rows of a block
            for rr in range(nr):
                out[r0 + rr, 0] = 0
            for jj in range(np.uintp(indptr[bi]), np.uintp(indptr[bi + 1])):
                c0 = np.intp(indices[jj]) * c
                nc = min(c, k_total - c0)
                for cc in range(nc):
                    xv = x[c0 + cc, 0]
                    for rr in range(nr):
                        out[r0 + rr, 0] += np.float32(data[jj, rr, cc]) * xv
        for rr in range(nr):
            s = scales[r0 + rr]
            for b in range(nb):
                out[r0 + rr, b] *= s
        epilogue_rows(out, r0, r0 + nr, bias, act, alpha)


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
