"""N:M products (`sparsenet.formats.NM`): every group of M consecutive columns of a row keeps N values.

The layout the kernels read (the format validates it): rows in tiles of 8, ``values[t * S + s, l]``
the value of slot s of row 8t + l (S = K / M * N slots per row, slot s in group s // N), and
``codes[t, s]`` the in-group positions of slot s for the tile's 8 rows, `bits` = log2(M) bits per
row (row l's at bits * l). The column of slot s of row 8t + l is (s // N) * M + its position.

- ``nm_spmv_f32`` (batch 1, float32, M = 4 or 8): a tile's 8 rows are one vector; for every group
  the M values of x are loaded once and each slot picks its lanes' x by their codes (`vpick4`, one
  in-lane permute for M = 4; `vpick`, AVX2's cross-lane one, for 8), so the loop is one
  multiply-add per 8 stored values and reads each value and each 2-bit code once.
- ``nm_spmm_f32`` (batches, float32): per row, a register tile of 64 (or 8) batch columns, one fused
  multiply-add per stored value and loaded row of x (feature-major x, batch contiguous), x swept in
  panels of columns that stay in L1.
- ``nm_spmm`` (any float dtype and M, any batch): the same products in plain loops.
- The backward products have no N:M kernels: `NM.tmatmul` and `NM.sampled_grad` run the CSR
  kernels over the same pattern seen as CSR (4096 x 4096 at 2:4, batch 64: 28-30 ms and 33-34 ms,
  against 38-40 and 63-65 for the N:M loops they replaced; numpy dense takes 14 and 16-17 ms, so
  2:4 weights train slower than dense ones here).

Kernels assume validated inputs; the caller allocates `out`; `scales` is empty (float values) or the
[M] per-row scales of int8 values (`formats.QNM`), `bias` empty or [M]; `act`/`alpha` as
`kernels.epilogue`.
"""

import numba
import numpy as np
from numba import prange

from ._jit import OPTIONS, serial_and_parallel
from ._simd import vfma, vlane, vload, vload4x2, vmuladd, vpick, vpick4, vstore, vzero
from .epilogue import activate, epilogue_rows

__all__ = ["TILE", "nm_spmv_f32", "nm_spmv_f32_serial", "nm_spmm_f32", "nm_spmm_f32_serial", "nm_spmm",
           "nm_spmm_serial"]

TILE = 8  # rows per tile: one vector lane each
# bytes of x one panel of columns reads, kept in L1 with the values the panel's rows stream (at 2:4
# a row has 2 stored values per 4 rows of x, so even a small panel gives each row a long run;
# 4096 x 4096, batch 64: 128 KiB (L2) 18.8 ms, 32 KiB 16.4, 24 KiB 16.5, 16 KiB 17.0, 8 KiB 30.6)
X_PANEL_BYTES = 24 * 1024
TILES_PER_TASK = 32  # 256 rows per parallel task


def _nm_spmv_f32(values, codes, n, bits, scales, x, out, bias, act, alpha):
    """out[:, 0] = act(W @ x[:, 0] + bias) for a float32 (or int8, with per-row `scales`) N:M weight
    with M = 4 or 8. For M = 4 a group's four x values fill both halves of a vector and each slot
    picks with the in-lane permute, two slots' codes read as one 32-bit word when N is even (2:4:
    1.52 -> 1.32 ms at 4096 x 4096 on 2 threads)."""
    ntiles, slots = codes.shape
    k = x.shape[0]
    groups = slots // n if n else 0
    xr = x.reshape((1, k))
    if bits == 2 and n % 2 == 0:
        # two tiles per task share each group's x and keep two streams of values in flight
        # (1.76 -> 1.61 ms at 4096 x 4096, 2 threads)
        pairs = codes.view(np.uint32)
        half = n // 2
        for p in prange((ntiles + 1) // 2):
            t = 2 * p
            u = min(t + 1, ntiles - 1)
            a0 = vzero()
            a1 = vzero()
            c0 = vzero()
            c1 = vzero()
            ft = t * slots
            fu = u * slots
            for g in range(groups):
                xs = vload4x2(xr, 0, g * 4)
                s = g * n
                for j in range(half):
                    wt = pairs[t, g * half + j]
                    wu = pairs[u, g * half + j]
                    a0 = vmuladd(a0, vload(values, ft + s + 2 * j, 0), vpick4(xs, wt, 0))
                    a1 = vmuladd(a1, vload(values, ft + s + 2 * j + 1, 0), vpick4(xs, wt, 16))
                    c0 = vmuladd(c0, vload(values, fu + s + 2 * j, 0), vpick4(xs, wu, 0))
                    c1 = vmuladd(c1, vload(values, fu + s + 2 * j + 1, 0), vpick4(xs, wu, 16))
            _spmv_tile(vfma(a0, np.float32(1.0), a1), t, out, scales, bias, act, alpha)
            if u != t:
                _spmv_tile(vfma(c0, np.float32(1.0), c1), u, out, scales, bias, act, alpha)
    elif bits == 2:
        for t in prange(ntiles):
            a0 = vzero()
            first = t * slots
            for g in range(groups):
                xs = vload4x2(xr, 0, g * 4)
                s = g * n
                for j in range(n):
                    a0 = vmuladd(a0, vload(values, first + s + j, 0), vpick4(xs, codes[t, s + j], 0))
            _spmv_tile(a0, t, out, scales, bias, act, alpha)
    else:
        for t in prange(ntiles):
            a0 = vzero()
            a1 = vzero()
            first = t * slots
            for g in range(groups):
                xs = vload(xr, 0, g * 8)
                s = g * n
                for j in range(n):
                    if j & 1:
                        a1 = vmuladd(a1, vload(values, first + s + j, 0), vpick(xs, codes[t, s + j], 3))
                    else:
                        a0 = vmuladd(a0, vload(values, first + s + j, 0), vpick(xs, codes[t, s + j], 3))
            _spmv_tile(vfma(a0, np.float32(1.0), a1), t, out, scales, bias, act, alpha)


@numba.njit(inline="always", **OPTIONS)
def _spmv_tile(acc, t, out, scales, bias, act, alpha):
    """out[8t + l, 0] = act(acc[l] * scale + bias) for the tile's rows inside the matrix."""
    rows = out.shape[0]
    for lane in range(TILE):
        r = t * TILE + lane
        if r < rows:
            v = vlane(acc, lane)
            if scales.shape[0] != 0:
                v *= scales[r]
            if bias.shape[0] != 0:
                v += bias[r]
            out[r, 0] = activate(v, act, alpha)


nm_spmv_f32_serial, nm_spmv_f32 = serial_and_parallel(_nm_spmv_f32)

# The batch kernel's inner loops index flat arrays with unsigned integers: signed 2-D indexing cost
# a wraparound test, a stride multiply and a reload per stored value (28 instructions for 8
# multiply-adds; 19 this way), and a call per row and panel cost more (4096 x 4096 at 2:4, batch
# 64, 2 threads: 22 -> 12.6 ms with these and panels of x sized for L1).
_ONE = np.uintp(1)
_LANES = np.uintp(TILE)


@numba.njit(inline="always", **OPTIONS)
def _fma64(a0, a1, a2, a3, a4, a5, a6, a7, w, x, k, b0):
    """The 8 sums of a 64-column tile plus w * x[k, b0:b0+64]."""
    return (vfma(a0, w, vload(x, k, b0)), vfma(a1, w, vload(x, k, b0 + 8)), vfma(a2, w, vload(x, k, b0 + 16)),
            vfma(a3, w, vload(x, k, b0 + 24)), vfma(a4, w, vload(x, k, b0 + 32)), vfma(a5, w, vload(x, k, b0 + 40)),
            vfma(a6, w, vload(x, k, b0 + 48)), vfma(a7, w, vload(x, k, b0 + 56)))


@numba.njit(inline="always", **OPTIONS)
def _row64(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first):
    """out[r, b0:b0+64] (+)= row r's slots of groups g0..g1 times x; `first`: start from zero."""
    if first:
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = vzero()
    else:
        a0, a1, a2, a3 = vload(out, r, b0), vload(out, r, b0 + 8), vload(out, r, b0 + 16), vload(out, r, b0 + 24)
        a4, a5, a6, a7 = vload(out, r, b0 + 32), vload(out, r, b0 + 40), vload(out, r, b0 + 48), vload(out, r, b0 + 56)
    un = np.uintp(n)
    um = _ONE << np.uintp(bits)
    mask = um - _ONE
    shift = np.uintp(bits) * np.uintp(lane)
    crow = np.uintp(t) * np.uintp(slots)
    ulane = np.uintp(lane)
    if n == 2:  # 2:4, the common case: both slots of a group in one pass (a loop of two ran 1.25x slower)
        for g in range(np.uintp(g0), np.uintp(g1)):
            base = g * um
            s = crow + g * un
            k = base + ((np.uintp(cflat[s]) >> shift) & mask)
            k2 = base + ((np.uintp(cflat[s + _ONE]) >> shift) & mask)
            a0, a1, a2, a3, a4, a5, a6, a7 = _fma64(a0, a1, a2, a3, a4, a5, a6, a7, vflat[s * _LANES + ulane],
                                                    x, k, b0)
            a0, a1, a2, a3, a4, a5, a6, a7 = _fma64(a0, a1, a2, a3, a4, a5, a6, a7,
                                                    vflat[(s + _ONE) * _LANES + ulane], x, k2, b0)
    else:
        for g in range(np.uintp(g0), np.uintp(g1)):
            base = g * um
            s0 = g * un
            for s in range(s0, s0 + un):
                k = base + ((np.uintp(cflat[crow + s]) >> shift) & mask)
                a0, a1, a2, a3, a4, a5, a6, a7 = _fma64(a0, a1, a2, a3, a4, a5, a6, a7,
                                                        vflat[(crow + s) * _LANES + ulane], x, k, b0)
    vstore(out, r, b0, a0)
    vstore(out, r, b0 + 8, a1)
    vstore(out, r, b0 + 16, a2)
    vstore(out, r, b0 + 24, a3)
    vstore(out, r, b0 + 32, a4)
    vstore(out, r, b0 + 40, a5)
    vstore(out, r, b0 + 48, a6)
    vstore(out, r, b0 + 56, a7)


@numba.njit(inline="always", **OPTIONS)
def _row8(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first):
    """As `_row64`, 8 batch columns."""
    a0 = vzero() if first else vload(out, r, b0)
    un = np.uintp(n)
    um = _ONE << np.uintp(bits)
    mask = um - _ONE
    shift = np.uintp(bits) * np.uintp(lane)
    crow = np.uintp(t) * np.uintp(slots)
    ulane = np.uintp(lane)
    for g in range(np.uintp(g0), np.uintp(g1)):
        base = g * um
        s0 = g * un
        for s in range(s0, s0 + un):
            k = base + ((np.uintp(cflat[crow + s]) >> shift) & mask)
            a0 = vfma(a0, vflat[(crow + s) * _LANES + ulane], vload(x, k, b0))
    vstore(out, r, b0, a0)


@numba.njit(**OPTIONS)  # not inlined: one compiled loop, so the serial and parallel kernels agree to the bit
def _row_tail(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first):
    """As `_row64`, batch columns b0.. to the end, one at a time."""
    m = 1 << bits
    mask = m - 1
    shift = bits * lane
    crow = t * slots
    for b in range(b0, out.shape[1]):
        acc = np.float32(0.0) if first else out[r, b]
        for g in range(g0, g1):
            base = g * m
            for s in range(g * n, g * n + n):
                k = base + ((np.int64(cflat[crow + s]) >> shift) & mask)
                acc += vflat[(crow + s) * TILE + lane] * x[k, b]
        out[r, b] = acc


def _nm_spmm_f32(values, codes, n, bits, scales, x, out, bias, act, alpha):
    """out = act(W @ x + bias) for a float32 (or int8, with per-row `scales`) N:M weight, x [K, B] and
    out [M, B] (batch contiguous)."""
    ntiles, slots = codes.shape
    rows, nb = out.shape
    m = 1 << bits
    groups = slots // n if n else 0
    per_panel = max(1, X_PANEL_BYTES // (4 * m * max(nb, 1)))  # groups whose rows of x fit a panel
    tasks = (ntiles + TILES_PER_TASK - 1) // TILES_PER_TASK
    vflat = values.reshape(values.size)
    cflat = codes.reshape(codes.size)
    if groups == 0:
        for r in range(rows):
            for b in range(nb):
                out[r, b] = 0
    for task in prange(tasks):
        t0 = task * TILES_PER_TASK
        t1 = min(ntiles, t0 + TILES_PER_TASK)
        for g0 in range(0, groups, per_panel):
            g1 = min(groups, g0 + per_panel)
            first = g0 == 0
            for t in range(t0, t1):
                for lane in range(TILE):
                    r = t * TILE + lane
                    if r >= rows:
                        break
                    b0 = 0
                    while b0 + 64 <= nb:
                        _row64(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first)
                        b0 += 64
                    while b0 + 8 <= nb:
                        _row8(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first)
                        b0 += 8
                    if b0 < nb:
                        _row_tail(vflat, cflat, n, bits, lane, t, slots, x, out, r, b0, g0, g1, first)
        _scale_rows(out, min(rows, t0 * TILE), min(rows, t1 * TILE), scales)
        epilogue_rows(out, min(rows, t0 * TILE), min(rows, t1 * TILE), bias, act, alpha)


nm_spmm_f32_serial, nm_spmm_f32 = serial_and_parallel(_nm_spmm_f32)


@numba.njit(**OPTIONS)
def _scale_rows(out, r0, r1, scales):
    """out[r0:r1] *= scales[r0:r1, None] (an int8 weight's per-row scales; none: nothing)."""
    if scales.shape[0] == 0:
        return
    for r in range(r0, r1):
        c = scales[r]
        for b in range(out.shape[1]):
            out[r, b] *= c


def _nm_spmm(values, codes, n, bits, scales, x, out, bias, act, alpha):
    """out = act(W @ x + bias) for an N:M weight of any float dtype (or int8 with per-row `scales`)
    and M, in plain loops."""
    ntiles, slots = codes.shape
    rows, nb = out.shape
    m = 1 << bits
    mask = m - 1
    for t in prange(ntiles):
        for lane in range(TILE):
            r = t * TILE + lane
            if r >= rows:
                break
            shift = bits * lane
            for b in range(nb):
                out[r, b] = 0
            for s in range(slots):
                k = (s // n) * m + ((np.int64(codes[t, s]) >> shift) & mask)
                w = values[t * slots + s, lane]
                for b in range(nb):
                    out[r, b] += w * x[k, b]
        _scale_rows(out, min(rows, t * TILE), min(rows, t * TILE + TILE), scales)
        epilogue_rows(out, min(rows, t * TILE), min(rows, t * TILE + TILE), bias, act, alpha)


nm_spmm_serial, nm_spmm = serial_and_parallel(_nm_spmm)
