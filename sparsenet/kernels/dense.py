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
from numba import prange

from ._jit import OPTIONS, VECTOR_OPTIONS, serial_and_parallel
from .epilogue import NONE, activate, epilogue_rows, exp_f32

__all__ = ["dense_spmm", "dense_spmm_serial", "dense_epilogue", "dense_epilogue_serial", "dense_epilogue_t", "dense_batchnorm",
           "dense_maxpool2d", "dense_add", "dense_global_avgpool", "dense_layernorm", "dense_mean_axis", "dense_softmax_rows", "dense_depthwise2d", "dense_depthwise2d_serial", "dense_depthwise2d_grad_input",
           "dense_depthwise2d_grad_input_serial", "dense_depthwise2d_grad_weight", "dense_depthwise2d_grad_weight_serial"]

_TILE = 64


def _dense_spmm(w, x, out, bias, act, alpha):
    """out[M, B] = act(w[M, K] @ x[K, B] + bias). O(M * K * B); parallel over rows. Batch 1: one
    dot product per row (vectorised along K); batches: tiles of 64 columns along the batch, sums in
    `out` (the row stays in L1)."""
    m = out.shape[0]
    k_total = np.uintp(w.shape[1])
    nb = np.uintp(out.shape[1])
    tile = np.uintp(_TILE)
    has_bias = bias.shape[0] != 0
    zero = np.zeros(1, out.dtype)[0]
    for i in prange(m):
        wrow = w[i]
        orow = out[i]
        if nb == 1:
            acc = zero
            for k in range(np.uintp(0), k_total):
                acc += wrow[k] * x[k, 0]
            if has_bias:
                acc += bias[i]
            orow[0] = activate(acc, act, alpha)
            continue
        for b0 in range(np.uintp(0), nb, tile):
            b1 = min(nb, b0 + tile)
            for b in range(b0, b1):
                orow[b] = 0
            for k in range(np.uintp(0), k_total):
                wk = wrow[k]
                xrow = x[k]
                for b in range(b0, b1):
                    orow[b] += wk * xrow[b]
        epilogue_rows(out, i, i + 1, bias, act, alpha)


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
def dense_batchnorm(x, mean, var, gamma, beta, eps, out):
    """out[b, c, s] = (x[b, c, s] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]: a BatchNorm in
    evaluation mode over x [B, C, S] (a batch-major [B, C, H, W] seen as [B, C, H*W], or a
    feature-major [C, B] as [1, C, B]); `out` may be `x` (in place). The statistics are read at
    every call, so running averages updated in place are seen. Serial."""
    nb, nc, ns = x.shape
    for c in range(nc):
        inv = np.asarray(1.0 / np.sqrt(var[c] + eps), dtype=var.dtype)[()]
        g, m, shift = gamma[c], mean[c], beta[c]
        for b in range(nb):
            for s in range(ns):
                out[b, c, s] = (x[b, c, s] - m) * inv * g + shift


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
    for b in range(nb):
        for c in range(nc):
            row = x[b, c]
            acc = row[:1].copy()
            acc[0] = 0
            total = acc[0]
            for s in range(np.uintp(0), np.uintp(ns)):
                total += row[s]
            out[b, c] = total / ns


@numba.njit(**VECTOR_OPTIONS)
def dense_layernorm(x, gamma, beta, eps, out):
    """out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta for each row of x [R, D] (mean and
    biased variance of the row, accumulated in float64 as NumPy's reference does). `out` may be `x`.
    A transformer's LayerNorm over each token. Serial."""
    nr, d = x.shape
    for r in range(nr):
        xr, orow = x[r], out[r]
        total = 0.0
        for j in range(np.uintp(0), np.uintp(d)):
            total += xr[j]
        mean = total / d
        sq = 0.0
        for j in range(np.uintp(0), np.uintp(d)):
            t = xr[j] - mean
            sq += t * t
        inv = 1.0 / np.sqrt(sq / d + eps)
        for j in range(np.uintp(0), np.uintp(d)):
            orow[j] = (xr[j] - mean) * inv * gamma[j] + beta[j]


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
    `x`. Attention's softmax over the keys; float32 rows use `epilogue.exp_f32`. Serial."""
    nr, nc = x.shape
    bits = np.empty(nc, np.int32)
    for r in range(nr):
        xr, orow = x[r], out[r]
        top = xr[0]
        for j in range(np.uintp(1), np.uintp(nc)):
            if xr[j] > top:
                top = xr[j]
        total = 0.0
        if x.itemsize == 4:  # float32: the vectorised exp, in place on the output row
            for j in range(np.uintp(0), np.uintp(nc)):
                orow[j] = xr[j] - top
            exp_f32(orow, bits)
            for j in range(np.uintp(0), np.uintp(nc)):
                total += orow[j]
        else:
            for j in range(np.uintp(0), np.uintp(nc)):
                e = np.exp(xr[j] - top)
                orow[j] = e
                total += e
        inv = 1.0 / total
        for j in range(np.uintp(0), np.uintp(nc)):
            orow[j] *= inv


def _dense_depthwise2d(x, w, out, bias, act, alpha, kh, kw, sh, sw, pad, dil):
    """out[b, o, p, q] = act(bias[o] + sum over i < kh, j < kw of w[o, i*kw + j] *
    x[b, o // mult, p*sh + i*dil - pad, q*sw + j*dil - pad]) with taps outside x left out: a depthwise
    convolution (groups = channels, mult = out channels / in channels) of x [B, C, H, W] into out
    [B, O, OH, OW], w [O, kh*kw] dense. O(B * O * OH * OW * kh * kw); parallel over (batch, channel)
    pairs. For each output row, each tap adds its weight times a run of the input row into the row
    (contiguous when sw is 1, which LLVM vectorises), then the epilogue."""
    nb, nc, h, wd = x.shape
    no, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    mult = no // nc
    has_bias = bias.shape[0] != 0
    zero = np.zeros(1, out.dtype)[0]
    u0, usw = np.uintp(0), np.uintp(sw)
    # each tap column j's run of output columns, computed once (integer divisions per row and tap
    # cost more than the 8-column rows of small images)
    q0s, runs, firsts = _tap_table(ow, sw, kw, dil, pad, wd)
    hp, wp = h + 2 * pad, wd + 2 * pad
    span = (oh - 1) * wp + ow  # stride 1: the outputs on the padded grid, row after row
    for t in prange(nb * no):
        b = t // no
        o = t - b * no
        xc, oc, wo = x[b, o // mult], out[b, o], w[o]
        start = bias[o] if has_bias else zero
        if sh == 1 and sw == 1 and oh > 0:
            # Stride 1: the plane copied into a zero-padded buffer, and each tap one contiguous pass
            # of `span` sums over it (offset i*dil rows, j*dil columns); columns past ow on each
            # padded row are computed and dropped. No bounds per tap, long vectorised loops.
            xpad = np.zeros(hp * wp, out.dtype)
            for r in range(h):
                base = np.uintp((r + pad) * wp + pad)
                xr = xc[r]
                for s in range(u0, np.uintp(wd)):
                    xpad[base + s] = xr[s]
            acc = np.empty(span, out.dtype)
            for n in range(u0, np.uintp(span)):
                acc[n] = start
            for i in range(kh):
                for j in range(kw):
                    off = np.uintp(i * dil * wp + j * dil)
                    wij = wo[i * kw + j]
                    for n in range(u0, np.uintp(span)):
                        acc[n] += wij * xpad[off + n]
            for p in range(oh):
                orow, base = oc[p], np.uintp(p * wp)
                for q in range(u0, np.uintp(ow)):
                    orow[q] = acc[base + q]
                if act != NONE:
                    epilogue_rows(oc, p, p + 1, bias[:0], act, alpha)
            continue
        for p in range(oh):
            orow = oc[p]
            for q in range(u0, np.uintp(ow)):
                orow[q] = start
            for i in range(kh):
                r = p * sh + i * dil - pad
                if r < 0 or r >= h:
                    continue
                xr = xc[np.uintp(r)]
                for j in range(kw):
                    uq0, run, first = q0s[j], runs[j], firsts[j]
                    wij = wo[i * kw + j]
                    if sw == 1:
                        for u in range(u0, run):
                            orow[uq0 + u] += wij * xr[first + u]
                    else:
                        for u in range(u0, run):
                            orow[uq0 + u] += wij * xr[first + u * usw]
            if act != NONE:
                epilogue_rows(oc, p, p + 1, bias[:0], act, alpha)


@numba.njit(**OPTIONS)
def _tap_table(ow, sw, kw, dil, pad, wd):
    """For each tap column j: (first output column, number of columns, first input column) of the
    output columns q whose input column q*sw + j*dil - pad lies inside [0, wd)."""
    q0s, runs, firsts = np.empty(kw, np.uintp), np.empty(kw, np.uintp), np.empty(kw, np.uintp)
    for j in range(kw):
        dj = j * dil
        q0 = min(ow, (pad - dj + sw - 1) // sw) if pad > dj else 0
        q1 = max(q0, min(ow, (wd + pad - dj + sw - 1) // sw) if wd + pad > dj else 0)
        q0s[j], runs[j], firsts[j] = q0, q1 - q0, max(0, q0 * sw + dj - pad)
    return q0s, runs, firsts


def _dense_depthwise2d_grad_input(g, w, dx, kh, kw, sh, sw, pad, dil):
    """dx[b, c] = the gradient of `dense_depthwise2d` with respect to its input x [B, C, H, W], for
    the output gradient g [B, O, OH, OW] and weight w [O, kh*kw] (each output o reads channel
    o // mult): every tap's weight times g scattered back onto the input pixels it read. dx is
    overwritten. Parallel over (batch, channel) pairs: each writes its own plane."""
    nb, nc, h, wd = dx.shape
    no, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    mult = no // nc
    u0, usw = np.uintp(0), np.uintp(sw)
    q0s, runs, firsts = _tap_table(ow, sw, kw, dil, pad, wd)
    for t in prange(nb * nc):
        b = t // nc
        c = t - b * nc
        xc = dx[b, c]
        for r in range(h):
            for s in range(wd):
                xc[r, s] = 0
        for m in range(mult):
            o = c * mult + m
            go, wo = g[b, o], w[o]
            for p in range(oh):
                grow = go[p]
                for i in range(kh):
                    r = p * sh + i * dil - pad
                    if r < 0 or r >= h:
                        continue
                    xr = xc[np.uintp(r)]
                    for j in range(kw):
                        uq0, run, first = q0s[j], runs[j], firsts[j]
                        wij = wo[i * kw + j]
                        for u in range(u0, run):
                            xr[first + u * usw] += wij * grow[uq0 + u]


def _dense_depthwise2d_grad_weight(g, x, dw, kh, kw, sh, sw, pad, dil):
    """dw[o, i*kw + j] = sum over batch and output pixels of g[b, o, p, q] * x[b, o // mult,
    p*sh + i*dil - pad, q*sw + j*dil - pad] (taps inside x): the weight gradient of
    `dense_depthwise2d`. dw is overwritten. Parallel over output channels."""
    nb, nc, h, wd = x.shape
    no, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    mult = no // nc
    u0, usw = np.uintp(0), np.uintp(sw)
    q0s, runs, firsts = _tap_table(ow, sw, kw, dil, pad, wd)
    for o in prange(no):
        c = o // mult
        for t in range(kh * kw):
            dw[o, t] = 0
        for b in range(nb):
            go, xc = g[b, o], x[b, c]
            for p in range(oh):
                grow = go[p]
                for i in range(kh):
                    r = p * sh + i * dil - pad
                    if r < 0 or r >= h:
                        continue
                    xr = xc[np.uintp(r)]
                    for j in range(kw):
                        uq0, run, first = q0s[j], runs[j], firsts[j]
                        acc = dw[o, i * kw + j] * 0
                        for u in range(u0, run):
                            acc += grow[uq0 + u] * xr[first + u * usw]
                        dw[o, i * kw + j] += acc


dense_spmm_serial, dense_spmm = serial_and_parallel(_dense_spmm)
dense_depthwise2d_serial, dense_depthwise2d = serial_and_parallel(_dense_depthwise2d)
dense_depthwise2d_grad_input_serial, dense_depthwise2d_grad_input = serial_and_parallel(_dense_depthwise2d_grad_input)
dense_depthwise2d_grad_weight_serial, dense_depthwise2d_grad_weight = serial_and_parallel(
    _dense_depthwise2d_grad_weight)
dense_epilogue_serial, dense_epilogue = serial_and_parallel(_dense_epilogue)
