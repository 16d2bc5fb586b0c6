"""Register-tiled float32 BSR products: the inner loops of `bsr_spmm_f32`, `bsr_spmv_f32` and the
int8 BSR kernel.

Batches: for 4 rows of a block row and 16 batch columns, eight sums stay in AVX registers while the
row's blocks are applied; each loaded row of x (two vectors) serves the 4 rows, so the kernel is
bound by multiply-adds rather than by loads (PERF-NOTES, trick 4). Rows left over (block rows not a
multiple of 4, or the partial last block row) take a one-row loop, the last batch columns (fewer
than 16) 8-wide and then scalar loops.

Batch 1, blocks of R x 1 with R a multiple of 8: the R values of a block are contiguous, so one x
value times one loaded vector of weights updates 8 rows (16 x 1 blocks keep two sums). Blocks of
R x 4 with R even: one vector holds two rows of a block and multiplies the block's 4 x values
loaded twice; each row's sum is reduced once per block row.

Helpers assume validated inputs, float32 `x` and `out` (C-contiguous), and data of float32 or int8.
Entries of edge blocks beyond the logical shape are never read: `nc` clips the block's columns and
the callers clip its rows.
"""

import numba
import numpy as np

from ._jit import OPTIONS
from ._simd import vfma, vload, vload4x2, vmuladd, vstore, vsum4x2, vzero

__all__ = ["bsr_rows_f32", "bsr_column_blocks_f32", "bsr_quad_blocks_f32"]


@numba.njit(**OPTIONS)
def _column4x16(data, jj, rr, cc, x, k, b0, a0, a1, a2, a3, a4, a5, a6, a7):
    """Adds column cc of block jj (rows rr..rr+3) times x[k, b0:b0+16] to the eight sums."""
    x0 = vload(x, k, b0)
    x1 = vload(x, k, b0 + 8)
    w = data[jj, rr, cc]
    a0 = vfma(a0, w, x0)
    a1 = vfma(a1, w, x1)
    w = data[jj, rr + 1, cc]
    a2 = vfma(a2, w, x0)
    a3 = vfma(a3, w, x1)
    w = data[jj, rr + 2, cc]
    a4 = vfma(a4, w, x0)
    a5 = vfma(a5, w, x1)
    w = data[jj, rr + 3, cc]
    a6 = vfma(a6, w, x0)
    a7 = vfma(a7, w, x1)
    return a0, a1, a2, a3, a4, a5, a6, a7


@numba.njit(**OPTIONS)
def _rows4x16(data, indices, x, out, start, end, r0, rr, b0, c, k_total):
    """out[r0+rr : r0+rr+4, b0:b0+16] = the block row's blocks (rows rr..rr+3 of each) times x.

    R x 1 and 4-column blocks have loops without the per-block loop over columns (its set-up cost
    about as much as the multiply-adds of a 16 x 1 block)."""
    acc = (vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero())
    if c == 1:
        for jj in range(start, end):
            acc = _column4x16(data, jj, rr, 0, x, np.uintp(indices[jj]), b0, *acc)
    else:
        for jj in range(start, end):
            c0 = np.uintp(indices[jj]) * c
            if c == 4 and c0 + 4 <= k_total:
                acc = _column4x16(data, jj, rr, 0, x, c0, b0, *acc)
                acc = _column4x16(data, jj, rr, 1, x, c0 + 1, b0, *acc)
                acc = _column4x16(data, jj, rr, 2, x, c0 + 2, b0, *acc)
                acc = _column4x16(data, jj, rr, 3, x, c0 + 3, b0, *acc)
            else:
                for cc in range(min(c, k_total - c0)):
                    acc = _column4x16(data, jj, rr, cc, x, c0 + cc, b0, *acc)
    a0, a1, a2, a3, a4, a5, a6, a7 = acc
    i = r0 + rr
    vstore(out, i, b0, a0)
    vstore(out, i, b0 + 8, a1)
    vstore(out, i + 1, b0, a2)
    vstore(out, i + 1, b0 + 8, a3)
    vstore(out, i + 2, b0, a4)
    vstore(out, i + 2, b0 + 8, a5)
    vstore(out, i + 3, b0, a6)
    vstore(out, i + 3, b0 + 8, a7)


@numba.njit(**OPTIONS)
def _row1x8(data, indices, x, out, start, end, r0, rr, b0, c, k_total):
    """out[r0+rr, b0:b0+8] = row rr of the block row's blocks times x."""
    a0 = vzero()
    for jj in range(start, end):
        c0 = np.uintp(indices[jj]) * c
        nc = min(c, k_total - c0)
        for cc in range(nc):
            a0 = vfma(a0, data[jj, rr, cc], vload(x, c0 + cc, b0))
    vstore(out, r0 + rr, b0, a0)


@numba.njit(**OPTIONS)
def bsr_rows_f32(data, indices, indptr, x, out, bi):
    """out[block row bi] = W[block row bi] @ x for float32 x and out."""
    m = out.shape[0]
    nb = out.shape[1]
    k_total = np.uintp(x.shape[0])
    r = data.shape[1]
    c = np.uintp(data.shape[2])
    r0 = bi * r
    nr = min(r, m - r0)
    start = np.uintp(indptr[bi])
    end = np.uintp(indptr[bi + 1])
    b0 = 0
    while nb - b0 >= 16:
        rr = 0
        while nr - rr >= 4:
            _rows4x16(data, indices, x, out, start, end, r0, rr, b0, c, k_total)
            rr += 4
        while rr < nr:
            _row1x8(data, indices, x, out, start, end, r0, rr, b0, c, k_total)
            _row1x8(data, indices, x, out, start, end, r0, rr, b0 + 8, c, k_total)
            rr += 1
        b0 += 16
    while nb - b0 >= 8:
        for rr in range(nr):
            _row1x8(data, indices, x, out, start, end, r0, rr, b0, c, k_total)
        b0 += 8
    for rr in range(nr):
        for b in range(b0, nb):
            acc = np.float32(0.0)
            for jj in range(start, end):
                c0 = np.uintp(indices[jj]) * c
                nc = min(c, k_total - c0)
                for cc in range(nc):
                    acc += np.float32(data[jj, rr, cc]) * x[c0 + cc, b]
            out[r0 + rr, b] = acc


@numba.njit(**OPTIONS)
def bsr_column_blocks_f32(data2, indices, indptr, x2, out2, bi, r):
    """Batch 1, full block row bi of R x 1 blocks (R a multiple of 8): out2[0, bi*R : bi*R+R] =
    blocks times x2[0]. data2 is the blocks viewed as [nblocks, R]; x2 and out2 are [1, K], [1, M]."""
    start = np.uintp(indptr[bi])
    end = np.uintp(indptr[bi + 1])
    r0 = bi * r
    g = 0
    while r - g >= 16:
        a0 = vzero()
        a1 = vzero()
        for jj in range(start, end):
            xv = x2[0, np.uintp(indices[jj])]
            a0 = vfma(a0, xv, vload(data2, jj, g))
            a1 = vfma(a1, xv, vload(data2, jj, g + 8))
        vstore(out2, 0, r0 + g, a0)
        vstore(out2, 0, r0 + g + 8, a1)
        g += 16
    if r - g >= 8:
        a0 = vzero()
        for jj in range(start, end):
            a0 = vfma(a0, x2[0, np.uintp(indices[jj])], vload(data2, jj, g))
        vstore(out2, 0, r0 + g, a0)


@numba.njit(**OPTIONS)
def bsr_quad_blocks_f32(data2, indices, indptr, x2, out2, bi, r):
    """Batch 1, full block row bi of R x 4 blocks (R even): out2[0, bi*R : bi*R+R] = blocks times
    x2[0]. data2 is the blocks viewed as [nblocks, R * 4]; x2 and out2 are [1, K], [1, M]. A block
    in the last block column may overhang x: its columns are clipped (scalar loop)."""
    start = np.uintp(indptr[bi])
    end = np.uintp(indptr[bi + 1])
    k_total = np.uintp(x2.shape[1])
    r0 = bi * r
    for p in range(0, r, 2):
        acc = vzero()
        t0 = np.float32(0.0)
        t1 = np.float32(0.0)
        for jj in range(start, end):
            c0 = np.uintp(indices[jj]) * np.uintp(4)
            if c0 + np.uintp(4) <= k_total:
                acc = vmuladd(acc, vload(data2, jj, 4 * p), vload4x2(x2, 0, c0))
            else:
                for cc in range(k_total - c0):
                    xv = x2[0, c0 + cc]
                    t0 += np.float32(data2[jj, 4 * p + cc]) * xv
                    t1 += np.float32(data2[jj, 4 * p + 4 + cc]) * xv
        s0, s1 = vsum4x2(acc)
        out2[0, r0 + p] = s0 + t0
        out2[0, r0 + p + 1] = s1 + t1
