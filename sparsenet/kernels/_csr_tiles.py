"""Register-tiled float32 CSR products for batches: the inner loops of `csr_spmm_f32` and `csr_i8_spmm`.

For a chunk of rows and a tile of batch columns, the partial sums of one row stay in AVX registers
(`_simd`) while every stored entry of the row multiplies a gathered row of x (PERF-NOTES, trick 4):
one fused multiply-add per loaded vector. x is swept in panels of columns of W (rows of x) so that
the slice of x a panel gathers from (about 128 KiB) stays in L2 while the chunk's rows use it; each
row remembers where its entries for the next panel start (`cur`). `benchmarks/csr_tiling.py`
measures the choice (4096 x 4096 at 90 %, batch 64, 2 threads): the shipped sizes ran 4.0-4.2 ms;
no panels 8-13 % slower; L1-sized panels (16-32 KiB) 1.4-2.4x slower (each row then has only a few
entries per panel, and the per-row-and-panel overhead dominates); the kernel without register tiles
(`csr_spmm`, sums kept in `out`) 2.2x slower.

Helpers assume validated inputs, float32 `x` and `out` (C-contiguous), and data of float32 or int8
(an int8 value is converted when it is broadcast).
"""

import numba
import numpy as np

from ._jit import OPTIONS
from ._simd import vfma, vload, vstore, vzero

__all__ = ["csr_rows_f32", "csr_task_f32", "rows_per_task", "X_PANEL_BYTES", "ROW_CHUNK"]

# Bytes of x one panel gathers from (kept in the 512 KiB L2 with room for the weights' stream).
X_PANEL_BYTES = 128 * 1024
# Rows per parallel task: each task streams all of x from L3 once per batch tile, so fewer, larger
# tasks move less (64 -> 256 rows measured 5-15 % faster at 4096 x 4096, batch 64, 2 threads).
ROW_CHUNK = 256

_ONE = np.uintp(1)


@numba.njit(**OPTIONS)
def rows_per_task(m):
    """Rows per parallel task for an M-row product: ROW_CHUNK, fewer when that would make fewer
    than 16 tasks (a 256-row layer would otherwise run on one core), at least 16. Independent of
    the thread count (reading it in a kernel defeats Numba's cache); 16 tasks feed 2-4 cores."""
    return max(16, min(ROW_CHUNK, (m + 15) // 16))


@numba.njit(**OPTIONS)
def _panel64(data, indices, x, out, i, b0, jj, end, kend):
    """out[i, b0:b0+64] += sum over row i's entries jj.. with column < kend; returns the next entry."""
    a0 = vload(out, i, b0)
    a1 = vload(out, i, b0 + 8)
    a2 = vload(out, i, b0 + 16)
    a3 = vload(out, i, b0 + 24)
    a4 = vload(out, i, b0 + 32)
    a5 = vload(out, i, b0 + 40)
    a6 = vload(out, i, b0 + 48)
    a7 = vload(out, i, b0 + 56)
    while jj < end:
        k = np.uintp(indices[jj])
        if k >= kend:
            break
        w = data[jj]
        a0 = vfma(a0, w, vload(x, k, b0))
        a1 = vfma(a1, w, vload(x, k, b0 + 8))
        a2 = vfma(a2, w, vload(x, k, b0 + 16))
        a3 = vfma(a3, w, vload(x, k, b0 + 24))
        a4 = vfma(a4, w, vload(x, k, b0 + 32))
        a5 = vfma(a5, w, vload(x, k, b0 + 40))
        a6 = vfma(a6, w, vload(x, k, b0 + 48))
        a7 = vfma(a7, w, vload(x, k, b0 + 56))
        jj += _ONE
    vstore(out, i, b0, a0)
    vstore(out, i, b0 + 8, a1)
    vstore(out, i, b0 + 16, a2)
    vstore(out, i, b0 + 24, a3)
    vstore(out, i, b0 + 32, a4)
    vstore(out, i, b0 + 40, a5)
    vstore(out, i, b0 + 48, a6)
    vstore(out, i, b0 + 56, a7)
    return jj


@numba.njit(**OPTIONS)
def _panel32(data, indices, x, out, i, b0, jj, end, kend):
    """As `_panel64`, 32 batch columns."""
    a0 = vload(out, i, b0)
    a1 = vload(out, i, b0 + 8)
    a2 = vload(out, i, b0 + 16)
    a3 = vload(out, i, b0 + 24)
    while jj < end:
        k = np.uintp(indices[jj])
        if k >= kend:
            break
        w = data[jj]
        a0 = vfma(a0, w, vload(x, k, b0))
        a1 = vfma(a1, w, vload(x, k, b0 + 8))
        a2 = vfma(a2, w, vload(x, k, b0 + 16))
        a3 = vfma(a3, w, vload(x, k, b0 + 24))
        jj += _ONE
    vstore(out, i, b0, a0)
    vstore(out, i, b0 + 8, a1)
    vstore(out, i, b0 + 16, a2)
    vstore(out, i, b0 + 24, a3)
    return jj


@numba.njit(**OPTIONS)
def _panel8(data, indices, x, out, i, b0, jj, end, kend):
    """As `_panel64`, 8 batch columns (two interleaved sums halve the dependency chain)."""
    a0 = vload(out, i, b0)
    a1 = vzero()
    while jj < end:
        k = np.uintp(indices[jj])
        if k >= kend:
            break
        a0 = vfma(a0, data[jj], vload(x, k, b0))
        jj += _ONE
        if jj < end:
            k = np.uintp(indices[jj])
            if k >= kend:
                break
            a1 = vfma(a1, data[jj], vload(x, k, b0))
            jj += _ONE
    vstore(out, i, b0, vfma(a0, np.float32(1.0), a1))
    return jj


@numba.njit(**OPTIONS)
def csr_rows_f32(data, indices, indptr, x, out, r0, r1, cur, panel_bytes):
    """out[r0:r1, :] = W[r0:r1] @ x for float32 x and out; `cur` is scratch of at least r1 - r0
    unsigned integers; each panel of x spans about `panel_bytes` of a batch tile (X_PANEL_BYTES in
    the kernels). Batch tiles of 64, 32 and 8 columns in registers; the last columns (fewer than 8)
    with sums in `out`."""
    nb = out.shape[1]
    k_total = x.shape[0]
    b0 = 0
    while nb - b0 >= 8:
        width = 64 if nb - b0 >= 64 else (32 if nb - b0 >= 32 else 8)
        panel = max(panel_bytes // (width * 4), 16)
        for i in range(r0, r1):
            cur[i - r0] = np.uintp(indptr[i])
            for b in range(b0, b0 + width):
                out[i, b] = 0
        for k0 in range(0, k_total, panel):
            kend = np.uintp(min(k0 + panel, k_total))
            for i in range(r0, r1):
                end = np.uintp(indptr[i + 1])
                jj = cur[i - r0]
                if width == 64:
                    jj = _panel64(data, indices, x, out, i, b0, jj, end, kend)
                elif width == 32:
                    jj = _panel32(data, indices, x, out, i, b0, jj, end, kend)
                else:
                    jj = _panel8(data, indices, x, out, i, b0, jj, end, kend)
                cur[i - r0] = jj
        b0 += width
    if b0 < nb:  # the last columns (fewer than 8): one pass over each row, sums in out
        for i in range(r0, r1):
            for b in range(b0, nb):
                out[i, b] = 0
            for jj in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
                w = np.float32(data[jj])
                k = np.uintp(indices[jj])
                for b in range(b0, nb):
                    out[i, b] += w * x[k, b]


@numba.njit(**OPTIONS)
def csr_task_f32(data, indices, indptr, x, out, task, rows):
    """One parallel task of a batched product: out[r0:r1] = W[r0:r1] @ x for rows
    r0 = task * rows up to r0 + rows (clipped to M); returns (r0, r1)."""
    r0 = task * rows
    r1 = min(out.shape[0], r0 + rows)
    csr_rows_f32(data, indices, indptr, x, out, r0, r1, np.empty(r1 - r0, np.uintp), X_PANEL_BYTES)
    return r0, r1
