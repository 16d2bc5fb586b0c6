"""BSR kernels: W (M x K) stored as dense R x C blocks.

data: [nblocks, R, C], indices: [nblocks] block-column of each block, indptr: [ceil(M/R) + 1].
When M or K is not a multiple of the block shape, the last block row / column is partial: its
entries beyond the logical shape are stored (as zeros) but never read or written here.
Activations are feature-major ([K, B], batch contiguous); callers allocate outputs; inputs must have
been validated (`sparsenet.formats.BSR.check`): these kernels do not bounds-check. The forward
kernels end with ``bias, act, alpha``: the epilogue ``act(W @ x + bias)`` of
`sparsenet.kernels.epilogue`, applied to each block row as soon as it is computed. The input
gradient W.T @ dy is a forward product over W.T's blocks (`bsr_transpose_values`; see `csr`).
"""

import numba
import numpy as np
from numba import prange

from ._bsr_tiles import bsr_column_blocks_f32, bsr_quad_blocks_f32, bsr_rows_f32
from ._jit import OPTIONS, serial_and_parallel
from .epilogue import epilogue_rows

__all__ = [
    "bsr_spmv", "bsr_spmv_serial",
    "bsr_spmv_f32", "bsr_spmv_f32_serial",
    "bsr_spmm", "bsr_spmm_serial",
    "bsr_spmm_f32", "bsr_spmm_f32_serial",
    "bsr_transpose_values", "bsr_transpose_values_serial",
    "bsr_sddmm", "bsr_sddmm_serial",
]

_TILE = 64


@numba.njit(**OPTIONS)
def _block_row_spmv(data, indices, indptr, x, out, bi):
    """out[rows of block row bi] = its blocks times x (batch 1, any block shape)."""
    m = out.shape[0]
    k_total = x.shape[0]
    r = data.shape[1]
    c = data.shape[2]
    r0 = bi * r
    nr = min(r, m - r0)
    for rr in range(nr):
        out[r0 + rr] = 0
    for jj in range(np.uintp(indptr[bi]), np.uintp(indptr[bi + 1])):
        c0 = np.intp(indices[jj]) * c
        nc = min(c, k_total - c0)
        for cc in range(nc):
            xv = x[c0 + cc]
            for rr in range(nr):
                out[r0 + rr] += data[jj, rr, cc] * xv


def _bsr_spmv(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, 1] = act(W @ x[K, 1] + bias) (batch 1). Parallel over block rows; one loaded x value serves the R rows
    of a block (for R x 1 blocks the R products are one vector operation)."""
    mb = indptr.shape[0] - 1
    r = data.shape[1]
    m = out.shape[0]
    x1 = x.reshape(x.shape[0])
    out1 = out.reshape(m)
    for bi in prange(mb):
        _block_row_spmv(data, indices, indptr, x1, out1, bi)
        epilogue_rows(out, bi * r, min(m, bi * r + r), bias, act, alpha)


def _bsr_spmm(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, B] = act(W @ x[K, B] + bias). O(nblocks * R * C * B); parallel over block rows.

    One loaded row of x serves the R rows of a block; the innermost loop runs along the batch in
    tiles of 64 columns (see csr_spmm for the never-taken break).
    """
    m = out.shape[0]
    k_total = x.shape[0]
    nb = np.uintp(out.shape[1])
    tile = np.uintp(_TILE)
    r = data.shape[1]
    c = data.shape[2]
    mb = indptr.shape[0] - 1
    for bi in prange(mb):
        r0 = bi * r
        nr = min(r, m - r0)
        start = np.uintp(indptr[bi])
        end = np.uintp(indptr[bi + 1])
        for b0 in range(np.uintp(0), nb, tile):  # unsigned bounds: signed ones block vectorisation
            b1 = min(nb, b0 + tile)
            for rr in range(nr):
                for b in range(b0, b1):
                    out[r0 + rr, b] = 0
            for jj in range(start, end):
                c0 = np.intp(indices[jj]) * c
                if c0 >= k_total:  # never taken: indices are validated
                    break
                nc = min(c, k_total - c0)
                for cc in range(nc):
                    xrow = x[c0 + cc]
                    for rr in range(nr):
                        w = data[jj, rr, cc]
                        orow = out[r0 + rr]
                        for b in range(b0, b1):
                            orow[b] += w * xrow[b]
        epilogue_rows(out, r0, r0 + nr, bias, act, alpha)


def _bsr_spmv_f32(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, 1] = act(W @ x[K, 1] + bias) for float32: blocks of R x 1 with R a multiple of 8 update 8 rows per
    vector, blocks of R x 4 with R even two rows per vector (`_bsr_tiles`); other block shapes,
    and a partial last block row, take `bsr_spmv`'s loops. Parallel over block rows."""
    m = out.shape[0]
    k_total = x.shape[0]
    r = data.shape[1]
    c = data.shape[2]
    mb = indptr.shape[0] - 1
    columns = c == 1 and r % 8 == 0
    quads = c == 4 and r % 2 == 0
    data2 = data.reshape(data.shape[0], r * c)
    x2 = x.reshape(1, k_total)
    out2 = out.reshape(1, m)
    x1 = x.reshape(k_total)
    out1 = out.reshape(m)
    for bi in prange(mb):
        full = min(r, m - bi * r) == r
        if columns and full:
            bsr_column_blocks_f32(data2, indices, indptr, x2, out2, bi, r)
        elif quads and full:
            bsr_quad_blocks_f32(data2, indices, indptr, x2, out2, bi, r)
        else:
            _block_row_spmv(data, indices, indptr, x1, out1, bi)
        epilogue_rows(out, bi * r, min(m, bi * r + r), bias, act, alpha)


def _bsr_spmm_f32(data, indices, indptr, x, out, bias, act, alpha):
    """out[M, B] = act(W @ x[K, B] + bias) for float32 x and out: 4 rows x 16 batch columns of sums in
    registers, each loaded row of x serving the 4 rows (`_bsr_tiles`). Parallel over block rows."""
    mb = indptr.shape[0] - 1
    r = data.shape[1]
    m = out.shape[0]
    for bi in prange(mb):
        bsr_rows_f32(data, indices, indptr, x, out, bi)
        epilogue_rows(out, bi * r, min(m, bi * r + r), bias, act, alpha)


def _bsr_transpose_values(data, perm, out):
    """out[j] = data[perm[j]].T: W's blocks in the order of W.T's block pattern
    (`csr_transpose_pattern` over block columns), each transposed, so that the input gradient
    W.T @ dy runs through the forward kernels with C x R blocks. out: [nblocks, C, R]."""
    r = data.shape[1]
    c = data.shape[2]
    for j in prange(perm.shape[0]):
        src = np.uintp(perm[j])
        for rr in range(r):
            for cc in range(c):
                out[j, cc, rr] = data[src, rr, cc]


def _bsr_sddmm(indices, indptr, dy, x, out):
    """out[jj, rr, cc] = dot(dy[bi*R + rr, :], x[bj*C + cc, :]) for every stored block jj = (bi, bj);
    entries beyond the logical shape are set to 0. out: [nblocks, R, C]. Parallel over block rows;
    each dot product runs along the contiguous batch with flat unsigned indexing and a sum in the
    output's dtype (float32 lanes for float32), which LLVM vectorises.
    """
    m = dy.shape[0]
    k_total = x.shape[0]
    nb = np.uintp(dy.shape[1])
    r = out.shape[1]
    c = out.shape[2]
    mb = indptr.shape[0] - 1
    dyf = dy.ravel()
    xf = x.ravel()
    zero = np.zeros(1, out.dtype)[0]
    for bi in prange(mb):
        r0 = bi * r
        for jj in range(np.uintp(indptr[bi]), np.uintp(indptr[bi + 1])):
            c0 = np.intp(indices[jj]) * c
            for rr in range(r):
                for cc in range(c):
                    acc = zero
                    if r0 + rr < m and c0 + cc < k_total:
                        base = np.uintp(r0 + rr) * nb
                        kb = np.uintp(c0 + cc) * nb
                        for b in range(nb):
                            acc += dyf[base + b] * xf[kb + b]
                    out[jj, rr, cc] = acc


bsr_spmv_serial, bsr_spmv = serial_and_parallel(_bsr_spmv)
bsr_spmm_serial, bsr_spmm = serial_and_parallel(_bsr_spmm)
bsr_spmv_f32_serial, bsr_spmv_f32 = serial_and_parallel(_bsr_spmv_f32)
bsr_spmm_f32_serial, bsr_spmm_f32 = serial_and_parallel(_bsr_spmm_f32)
bsr_transpose_values_serial, bsr_transpose_values = serial_and_parallel(_bsr_transpose_values)
bsr_sddmm_serial, bsr_sddmm = serial_and_parallel(_bsr_sddmm)
