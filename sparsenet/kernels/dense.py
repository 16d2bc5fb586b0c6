"""Dense float kernels of the compiled plan: small products without BLAS, and the epilogue of a
BLAS product.

A plan runs small dense layers here rather than through NumPy's BLAS: a BLAS call costs a few
microseconds of set-up, the bias and activation would be separate passes, and OpenBLAS's threads
keep spinning after a call and slow the parallel sparse kernel that follows (PERF-NOTES). Large
dense products still go to BLAS (`sparsenet.formats.Dense`), followed by `dense_epilogue`.

Feature-major activations as everywhere (x: [K, B], batch contiguous); the caller allocates `out`.
"""

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._jit import OPTIONS, VECTOR_OPTIONS, serial_and_parallel
from ._simd import vfma, vload, vstore, vzero
from .epilogue import CLIP0, NONE, RELU, activate, epilogue_rows, exp_f32

__all__ = ["dense_spmm", "dense_spmm_serial", "dense_epilogue", "dense_epilogue_serial", "dense_epilogue_t", "dense_batchnorm",
           "dense_batchnorm_fold",
           "dense_maxpool2d", "dense_add", "dense_global_avgpool", "dense_layernorm", "dense_mean_axis",
           "dense_softmax_rows"]

_TILE = 64


def _dense_spmm(w, x, out, bias, act, alpha):
    """out[M, B] = act(w[M, K] @ x[K, B] + bias). O(M * K * B); parallel over blocks of 4 rows.
    Batch 1: one dot product per row. 2-7 columns (a convolution's last 2x2 plane): one per output,
    vectorised along K, over x's columns copied into rows once ((64 x 32) @ (32 x 4): 10.3 us with
    sums in `out`); wider: `rows_product` (float32: register tiles of 4 rows by 16 or 8 columns;
    other dtypes: tiles of 64 columns, sums in `out`)."""
    m = out.shape[0]
    k_total = np.uintp(w.shape[1])
    nb = np.uintp(out.shape[1])
    has_bias = bias.shape[0] != 0
    zero = np.zeros(1, out.dtype)[0]
    if 1 < nb < 8:
        _dense_narrow(w, x, out, bias, act, alpha)
        return
    for blk in prange((m + 3) // 4):
        r0, r1 = blk * 4, min(m, blk * 4 + 4)
        if nb == 1:
            for i in range(r0, r1):
                wrow = w[i]
                acc = zero
                for k in range(np.uintp(0), k_total):
                    acc += wrow[k] * x[k, 0]
                if has_bias:
                    acc += bias[i]
                out[i, 0] = activate(acc, act, alpha)
            continue
        rows_product(w, x, out, r0, r1, k_total, nb)
        epilogue_rows(out, r0, r1, bias, act, alpha)


@numba.njit(**OPTIONS)
def _dense_narrow(w, x, out, bias, act, alpha):
    """`_dense_spmm` for 2-7 columns: x's columns copied into rows once, then one dot product per
    output, vectorised along K. Serial."""
    m, k_total, nb = out.shape[0], np.uintp(w.shape[1]), np.uintp(out.shape[1])
    has_bias = bias.shape[0] != 0
    zero = np.zeros(1, out.dtype)[0]
    xt = np.empty((nb, k_total), x.dtype)
    for k in range(np.uintp(0), k_total):
        for b in range(np.uintp(0), nb):
            xt[b, k] = x[k, b]
    for i in range(m):
        wrow = w[i]
        for b in range(np.uintp(0), nb):
            xb = xt[b]
            acc = zero
            for k in range(np.uintp(0), k_total):
                acc += wrow[k] * xb[k]
            if has_bias:
                acc += bias[i]
            out[i, b] = activate(acc, act, alpha)


def rows_product(w, x, out, r0, r1, k_total, nb):
    """out[r0:r1, :] = w[r0:r1] @ x for a batch (`_rows_loops`; compiled, `_rows_product` picks the
    loops for the dtype)."""
    _rows_loops(w, x, out, r0, r1, k_total, nb, np.uintp(0))


@numba.njit(**OPTIONS)
def _rows_loops(w, x, out, r0, r1, k_total, nb, c0):
    """out[r0:r1, c0:] = w[r0:r1] @ x[:, c0:]: tiles of 64 columns, sums in `out`."""
    for i in range(r0, r1):
        orow, wrow = out[i], w[i]
        for b0 in range(c0, nb, np.uintp(_TILE)):
            b1 = min(nb, b0 + np.uintp(_TILE))
            for b in range(b0, b1):
                orow[b] = 0
            for k in range(np.uintp(0), k_total):
                wk = wrow[k]
                xrow = x[k]
                for b in range(b0, b1):
                    orow[b] += wk * xrow[b]


@overload(rows_product, jit_options=OPTIONS)
def _rows_product(w, x, out, r0, r1, k_total, nb):
    """float32, C-contiguous: four rows at a time, the partial sums of 4 x 16 (or 4 x 8) outputs
    in AVX registers over all of K (each loaded vector of x feeds four fused multiply-adds); sums
    kept in `out` were stored and reloaded at every k ((96 x 24) @ (24 x 16): 12.9 us, 2.9 GMAC/s).
    Fewer than 4 rows, the last columns (fewer than 8) and other dtypes: `_rows_loops`."""
    if not (w.dtype == types.float32 and x.dtype == types.float32 and out.dtype == types.float32
            and x.layout == "C" and out.layout == "C" and w.layout == "C"):
        def loops(w, x, out, r0, r1, k_total, nb):
            _rows_loops(w, x, out, r0, r1, k_total, nb, np.uintp(0))
        return loops

    def tiled(w, x, out, r0, r1, k_total, nb):
        b0 = np.uintp(0)
        if r1 - r0 == 4:
            while nb - b0 >= 16:
                _tile4x16(w, x, out, r0, b0, k_total)
                b0 += np.uintp(16)
            if nb - b0 >= 8:
                _tile4x8(w, x, out, r0, b0, k_total)
                b0 += np.uintp(8)
        if b0 < nb:
            _rows_loops(w, x, out, r0, r1, k_total, nb, b0)
    return tiled


@numba.njit(**OPTIONS)
def _tile4x16(w, x, out, r0, b0, k_total):
    """out[r0:r0+4, b0:b0+16] = w[r0:r0+4] @ x[:, b0:b0+16], eight sums in registers."""
    w0, w1, w2, w3 = w[r0], w[r0 + 1], w[r0 + 2], w[r0 + 3]
    a0 = a1 = b0_ = b1_ = c0 = c1 = d0 = d1 = vzero()
    for k in range(np.uintp(0), k_total):
        x0, x1 = vload(x, k, b0), vload(x, k, b0 + 8)
        a0, a1 = vfma(a0, w0[k], x0), vfma(a1, w0[k], x1)
        b0_, b1_ = vfma(b0_, w1[k], x0), vfma(b1_, w1[k], x1)
        c0, c1 = vfma(c0, w2[k], x0), vfma(c1, w2[k], x1)
        d0, d1 = vfma(d0, w3[k], x0), vfma(d1, w3[k], x1)
    vstore(out, r0, b0, a0)
    vstore(out, r0, b0 + 8, a1)
    vstore(out, r0 + 1, b0, b0_)
    vstore(out, r0 + 1, b0 + 8, b1_)
    vstore(out, r0 + 2, b0, c0)
    vstore(out, r0 + 2, b0 + 8, c1)
    vstore(out, r0 + 3, b0, d0)
    vstore(out, r0 + 3, b0 + 8, d1)


@numba.njit(**OPTIONS)
def _tile4x8(w, x, out, r0, b0, k_total):
    """out[r0:r0+4, b0:b0+8] = w[r0:r0+4] @ x[:, b0:b0+8], four sums in registers."""
    w0, w1, w2, w3 = w[r0], w[r0 + 1], w[r0 + 2], w[r0 + 3]
    a = b = c = d = vzero()
    for k in range(np.uintp(0), k_total):
        xv = vload(x, k, b0)
        a, b, c, d = vfma(a, w0[k], xv), vfma(b, w1[k], xv), vfma(c, w2[k], xv), vfma(d, w3[k], xv)
    vstore(out, r0, b0, a)
    vstore(out, r0 + 1, b0, b)
    vstore(out, r0 + 2, b0, c)
    vstore(out, r0 + 3, b0, d)


def _dense_epilogue(out, bias, act, alpha):
    """out[M, B] = act(out + bias) in place, after a BLAS product. Parallel over rows."""
    m = out.shape[0]
    for i in prange(m):
        epilogue_rows(out, i, i + 1, bias, act, alpha)


@numba.njit(**OPTIONS)
def dense_epilogue_t(out, bias, act, alpha):
    """out[N, M] = act(out + bias[None, :]) in place: the epilogue of a row-major product
    ``x @ W.T`` (a Linear over the tokens of a sequence, after BLAS), bias per column. Serial."""
    n, m = out.shape
    if bias.shape[0] != 0:
        for r in range(n):
            row = out[r]
            for j in range(np.uintp(0), np.uintp(m)):
                row[j] += bias[j]
    epilogue_rows(out.reshape(1, n * m), 0, 1, bias[:0], act, alpha)  # one pass over the whole block


@numba.njit(**OPTIONS)
def dense_batchnorm(x, mean, var, gamma, beta, eps, out, act, alpha):
    """out[b, c, s] = act((x[b, c, s] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]): a
    BatchNorm in evaluation mode over x [B, C, S] (a batch-major [B, C, H, W] seen as [B, C, H*W],
    or a feature-major [C, B] as [1, C, B]), then the activation that follows it in a plan (an
    epilogue code, NONE for none) while the row is in cache; `out` may be `x` (in place). The
    statistics are read at every call, so running averages updated in place are seen. Serial."""
    nb, nc, ns = x.shape
    cast = np.empty(1, var.dtype)  # 1 / sqrt(var + eps) rounded to var's dtype, without an array per channel
    cast[0] = alpha
    hi = cast[0]  # CLIP0's bound in that dtype
    # flat indices: a view per (sample, channel) costs two reference counts (64 x 64 x 64, 268 -> 40 us)
    xf, of = x.reshape(nb * nc * ns), out.reshape(nb * nc * ns)
    uns = np.uintp(ns)
    for c in range(nc):
        cast[0] = 1.0 / np.sqrt(var[c] + eps)
        inv = cast[0]
        g, m, shift = gamma[c], mean[c], beta[c]
        for b in range(nb):
            base = np.uintp((b * nc + c) * ns)
            if act == NONE:
                for s in range(base, base + uns):
                    of[s] = (xf[s] - m) * inv * g + shift
            elif act == RELU:  # inline: an epilogue call per row cost 70 ns (64 x 96 x 16: 40 -> 480 us)
                for s in range(base, base + uns):
                    y = (xf[s] - m) * inv * g + shift
                    of[s] = y if y > 0 else y * 0
            elif act == CLIP0:
                for s in range(base, base + uns):
                    y = (xf[s] - m) * inv * g + shift
                    y = y if y > 0 else y * 0
                    of[s] = y if y < hi else hi
            else:
                for s in range(base, base + uns):
                    of[s] = activate((xf[s] - m) * inv * g + shift, act, alpha)


@numba.njit(**OPTIONS)
def dense_batchnorm_fold(mean, var, gamma, beta, eps, bias, scale, shift, w, taps):
    """scale[c] = gamma[c] / sqrt(var[c] + eps), shift[c] = beta[c] + (bias[c] - mean[c]) * scale[c]
    (`bias`, of the convolution before, may be empty), and taps[c, :] = w[c, :] * scale[c] unless
    `w` has no rows: a BatchNorm in evaluation mode folded into the convolution before it, from the
    statistics at every call (so that running averages updated in place are seen): the direct
    convolution's epilogue (`kernels.dense_conv2d`, which calls this itself) or a depthwise
    convolution's taps (one call per prediction: a call from Python costs ~1.3 us, 21 of them were
    a fifth of the zoo MobileNet at batch 1). O(C * taps)."""
    has_bias = bias.shape[0] != 0
    for c in range(mean.shape[0]):
        scale[c] = 1.0 / np.sqrt(var[c] + eps)  # rounded to the dtype first, as dense_batchnorm does
        scale[c] = scale[c] * gamma[c]
        shift[c] = beta[c] + ((bias[c] if has_bias else 0) - mean[c]) * scale[c]
    if w.shape[0] != 0:
        for c in range(w.shape[0]):
            m = scale[c]
            for t in range(np.uintp(0), np.uintp(w.shape[1])):
                taps[c, t] = w[c, t] * m


@numba.njit(**OPTIONS)
def dense_maxpool2d(x, out, kh, kw, sh, sw, pad):
    """out[b, c, i, j] = the largest x[b, c, i*sh + di - pad, j*sw + dj - pad] over the window
    (0 <= di < kh, 0 <= dj < kw) that lies inside x, for x [B, C, H, W] and out [B, C, OH, OW]. Every
    window holds at least one element of x (padding <= half the kernel, checked by MaxPool2d).
    Serial."""
    nb, nc, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    lowest = np.full(1, -np.inf, x.dtype)[0]  # in x's dtype: no float64 compare per element
    for b in range(nb):
        for c in range(nc):
            xc, oc = x[b, c], out[b, c]
            for i in range(oh):
                h0 = i * sh - pad
                d0, d1 = max(0, -h0), min(kh, h - h0)
                for j in range(ow):
                    w0 = j * sw - pad
                    e0, e1 = max(0, -w0), min(kw, w - w0)
                    best = lowest
                    # unsigned indices: no check for a negative index at each access (and no int64 +
                    # uint64 sum, which Numba computes in float64)
                    for di in range(d0, d1):
                        xr = xc[np.uintp(h0 + di)]
                        for dj in range(e0, e1):
                            v = xr[np.uintp(w0 + dj)]
                            if v > best:
                                best = v
                    oc[i, j] = best


@numba.njit(**OPTIONS)
def dense_add(a, b, out, bias, act, alpha):
    """out[r, c] = act(a[r, c] + b[r, c]) for three [R, C] arrays (`out` may be `a` or `b`; `bias`
    must be empty: the trailing arguments are the epilogue's, as for the products). A residual
    connection's sum with the activation after it fused. Serial."""
    nr, nc = out.shape
    for r in range(nr):
        ar, br, orow = a[r], b[r], out[r]
        for c in range(np.uintp(0), np.uintp(nc)):
            orow[c] = ar[c] + br[c]
        epilogue_rows(out, r, r + 1, bias, act, alpha)


@numba.njit(**OPTIONS)
def dense_global_avgpool(x, out):
    """out[b, c] = the mean of x[b, c, :] for x [B, C, S] (a [B, C, H, W] map seen as [B, C, H*W]):
    global average pooling. Serial."""
    nb, nc, ns = x.shape
    zero = np.zeros(1, x.dtype)[0]  # sums in x's dtype, without an array per channel (182 -> 8 us, 64 x 64 x 4)
    for b in range(nb):
        for c in range(nc):
            row = x[b, c]
            total = zero
            for s in range(np.uintp(0), np.uintp(ns)):
                total += row[s]
            out[b, c] = total / ns


@numba.njit(**VECTOR_OPTIONS)
def dense_layernorm(x, gamma, beta, eps, out):
    """out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta for each row of x [R, D] (mean and
    biased variance of the row, accumulated in float64 as NumPy's reference does). `out` may be `x`.
    A transformer's LayerNorm over each token. Serial. x[r, j] rather than a view per row (two
    reference counts each: 2048 tokens of 32, 132 -> 40 us)."""
    nr, d = x.shape
    ud = np.uintp(d)
    for r in range(nr):
        total = 0.0
        for j in range(np.uintp(0), ud):
            total += x[r, j]
        mean = total / d
        sq = 0.0
        for j in range(np.uintp(0), ud):
            t = x[r, j] - mean
            sq += t * t
        inv = 1.0 / np.sqrt(sq / d + eps)
        for j in range(np.uintp(0), ud):
            out[r, j] = (x[r, j] - mean) * inv * gamma[j] + beta[j]


@numba.njit(**OPTIONS)
def dense_mean_axis(x, out):
    """out[a, c] = mean over r of x[a, r, c] (x [A, R, C], out [A, C]): a mean over a run of
    consecutive axes, seen as the middle one (a text classifier's pooling over tokens). Serial."""
    na, nr, nc = x.shape
    inv = 1.0 / nr if nr else np.nan
    for a in range(na):
        orow = out[a]
        for c in range(np.uintp(0), np.uintp(nc)):
            orow[c] = 0
        for r in range(nr):
            xr = x[a, r]
            for c in range(np.uintp(0), np.uintp(nc)):
                orow[c] += xr[c]
        for c in range(np.uintp(0), np.uintp(nc)):
            orow[c] *= inv


@numba.njit(**VECTOR_OPTIONS)
def dense_softmax_rows(x, out):
    """out[r] = softmax(x[r]) for each row of x [R, C] (the row's max subtracted first). `out` may be
    `x` and is C-contiguous. Attention's softmax over the keys; float32 rows use `epilogue.exp_f32`
    over blocks of rows at once (one call per row, and a view per row, cost more than the sums:
    4096 rows of 32, 300 -> 90 us). Serial."""
    nr, nc = x.shape
    if nc == 0 or nr == 0:
        return
    unc = np.uintp(nc)
    rows = max(1, 4096 // nc)  # rows per block of the exp
    flat = out.reshape(nr * nc)
    bits = np.empty(rows * nc, np.int32)
    for r0 in range(0, nr, rows):
        r1 = min(nr, r0 + rows)
        for r in range(r0, r1):
            top = x[r, 0]
            for j in range(np.uintp(1), unc):
                if x[r, j] > top:
                    top = x[r, j]
            if x.itemsize == 4:
                for j in range(np.uintp(0), unc):
                    out[r, j] = x[r, j] - top
            else:
                for j in range(np.uintp(0), unc):
                    out[r, j] = np.exp(x[r, j] - top)
        if x.itemsize == 4:  # float32: the vectorised exp over the block, in place
            exp_f32(flat[r0 * nc:r1 * nc], bits[:(r1 - r0) * nc])
        for r in range(r0, r1):
            total = out[r, 0] * 0  # in the row's dtype (a float64 sum of float32 terms stays scalar)
            for j in range(np.uintp(0), unc):
                total += out[r, j]
            inv = 1 / total
            for j in range(np.uintp(0), unc):
                out[r, j] *= inv


dense_spmm_serial, dense_spmm = serial_and_parallel(_dense_spmm)
dense_epilogue_serial, dense_epilogue = serial_and_parallel(_dense_epilogue)
