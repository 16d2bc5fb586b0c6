"""The direct convolution of a dense float32 weight (groups 1): x [B, C, H, W] into out [B, O, OH,
OW], w [O, C*kh*kw] as the layer holds it (its own array, so that training in place is seen), bias
and activation fused. No unfolded input: the im2col matrix of a batch (the zoo ResNet's first
stage at batch 64: 144 x 4096 floats, 2.4 MB) left the cache, and unfolding it took as long as
BLAS's product of it. Here the output is computed sixteen columns (output pixels) at a time, in
4 x 16 register tiles of (output channels) x (pixels), each tap of each input channel read from
the zero-padded input at a fixed offset:

- when eight consecutive output pixels are eight consecutive padded input columns (stride 1 and
  rows of a multiple of 8 pixels), the tile reads them from the padded input directly;
- otherwise the sixteen columns are gathered first into a [C*kh*kw, 16] tile of scratch (in L1),
  one gather per column per tap, which the output channels then share;
- with eight output pixels or fewer in all (2x2 planes at batch 1) each pixel's taps are gathered
  into a row of scratch and every output is a dot product along C*kh*kw (tiles of 4 channels x 2
  pixels), not a tile mostly of padding.

Output channels left over by the tiles of 4 run one at a time. Tiles of 6 channels (twelve sums
in registers) measured 0.62-0.93x the tiles of 4 on the zoo's shapes. The caller allocates `xpad`
(B*C*(H + 2 pad)*(W + 2 pad) floats: the kernel writes all of it, the input copied inside a zero
border; unused without padding) and `scratch` ([chunks, C*kh*kw*16], one row per parallel chunk of
tiles). Reference: `sparsenet.nn._im2col.im2col` then a product (tests/test_kernels.py).
"""

import numba
import numpy as np
from numba import prange

from ._jit import OPTIONS, serial_and_parallel
from ._simd import vfma, vload, vmuladd, vstore, vsum4x2, vzero
from .dense import dense_batchnorm_fold
from .epilogue import CLIP0, NONE, RELU, epilogue_rows

__all__ = ["dense_conv2d", "dense_conv2d_serial", "conv2d_direct_fits", "conv2d_scratch_shape"]

_COLS = 16  # output pixels per tile (two AVX registers)


@numba.njit(**OPTIONS)
def conv2d_direct_fits(oh, ow, sw):
    """Whether every group of eight output pixels is a run of eight padded input columns (the tile
    reads them in place): stride 1 along rows and rows of a multiple of 8 pixels."""
    return sw == 1 and ow % 8 == 0 and oh > 0


def conv2d_scratch_shape(k: int, chunks: int) -> tuple:
    """The shape of `scratch` for a weight of `k` columns (C*kh*kw) and `chunks` parallel chunks."""
    return (max(1, chunks), k * _COLS)


def _dense_conv2d(w, x, xpad, out, bias, bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, scale, shift, res, act, alpha,
                  kh, kw, sh, sw, pad, dil, scratch):
    """out[b, o, p, q] = act(bn(sum over c, i, j of w[o, (c*kh + i)*kw + j] *
    x[b, c, p*sh + i*dil - pad, q*sw + j*dil - pad] + bias[o]) + res[b, o, p, q]), zero taps
    outside x (see the module docstring), where bn is the BatchNorm of statistics `bn_mean`,
    `bn_var`, affine `bn_gamma`, `bn_beta` and `bn_eps` in evaluation mode, folded at every call
    into `scale` and `shift` (caller-allocated, O each: `dense_batchnorm_fold`), or the identity
    when `bn_mean` is empty. `bias` and `res` may be empty (none; `res` is not `out`). float32,
    C-contiguous. O(B * O * OH * OW * C * kh * kw); parallel over chunks of sixteen-pixel tiles
    (one per row of `scratch`), then over the batch for the epilogue."""
    nb, nc, h, wd = x.shape
    no, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    hp, wp = h + 2 * pad, wd + 2 * pad
    k_total = nc * kh * kw
    plane, oplane = hp * wp, oh * ow
    n_total = nb * oplane
    # the padded input (x itself when there is no padding)
    if pad > 0:
        _pad_into(x, xpad, pad)
        src = xpad[:nb * nc * plane].reshape(1, nb * nc * plane)
    else:
        src = x.reshape(1, x.size)
    koff = np.empty(k_total, np.uintp)  # offset of tap (c, i, j) from its window's origin
    for c in range(nc):
        for i in range(kh):
            for j in range(kw):
                koff[(c * kh + i) * kw + j] = c * plane + i * dil * wp + j * dil
    wf = w.reshape(w.size)
    of = out.reshape(1, out.size)
    direct = conv2d_direct_fits(oh, ow, sw)
    narrow = n_total <= 8 and not direct
    width = 8 if narrow else _COLS
    k8 = np.uintp(k_total - k_total % 8)
    ntiles = (n_total + width - 1) // width
    chunks = scratch.shape[0]
    per = (ntiles + chunks - 1) // chunks
    contig = oplane % 8 == 0  # each group of eight pixels is a run of one output plane
    no4 = no - no % 4
    uk = np.uintp(k_total)
    # Everything below is one function body: a call that passes arrays costs two atomic reference
    # counts per array, which at 4 x 16 outputs per call cost more than the sums (1x1, 16 -> 64
    # channels, 64 x 8 x 8: 1.2 ms in calls of a few stores)
    for ch in prange(chunks):
        tile = scratch[ch].reshape(1, scratch.shape[1])
        grid = scratch[ch].reshape(_COLS, k_total)  # the narrow case's pixels, K contiguous
        gkoff = np.empty(k_total, np.uintp)  # the gathered tile's rows
        for k in range(k_total):
            gkoff[k] = k * width
        bases = np.empty(_COLS, np.uintp)
        obase = np.empty(_COLS, np.uintp)  # each column's offset in out (channel 0)
        sums = np.empty((4, _COLS), np.float32)
        for t in range(ch * per, min(ntiles, (ch + 1) * per)):
            n0 = t * width
            cols = min(width, n_total - n0)
            # each column's window origin in the padded input, and its offset in out: two divisions
            # per tile, then counting (a division per column took 40 % of a 3x3 16 -> 16 at batch 64)
            b = n0 // oplane
            p = (n0 - b * oplane) // ow
            q = n0 - b * oplane - p * ow
            for u in range(width):
                if u < cols:
                    bases[u] = b * nc * plane + p * sh * wp + q * sw
                    obase[u] = b * no * oplane + p * ow + q
                    q += 1
                    if q == ow:
                        q, p = 0, p + 1
                        if p == oh:
                            p, b = 0, b + 1
                else:  # past the last column: any valid window (its sums are not stored)
                    bases[u], obase[u] = bases[0], obase[0]
            if narrow:  # eight pixels at most (small planes at batch 1): dot products along K
                for u in range(cols):
                    bu = bases[u]
                    for k in range(np.uintp(0), uk):
                        grid[u, k] = src[0, bu + koff[k]]
                for r0 in range(0, no, 4):
                    for u0 in range(0, cols, 2):
                        u1 = min(u0 + 1, cols - 1)
                        r1, r2, r3 = min(r0 + 1, no - 1), min(r0 + 2, no - 1), min(r0 + 3, no - 1)
                        a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = vzero()
                        for k in range(np.uintp(0), k8, np.uintp(8)):
                            x0, x1 = vload(grid, u0, k), vload(grid, u1, k)
                            wa, wb, wc, wd_ = vload(w, r0, k), vload(w, r1, k), vload(w, r2, k), vload(w, r3, k)
                            a0, a1 = vmuladd(a0, wa, x0), vmuladd(a1, wa, x1)
                            b0, b1 = vmuladd(b0, wb, x0), vmuladd(b1, wb, x1)
                            c0, c1 = vmuladd(c0, wc, x0), vmuladd(c1, wc, x1)
                            d0, d1 = vmuladd(d0, wd_, x0), vmuladd(d1, wd_, x1)
                        for i, (v0, v1) in enumerate(((a0, a1), (b0, b1), (c0, c1), (d0, d1))):
                            if r0 + i < no:
                                r = r0 + i
                                lo, hi_ = vsum4x2(v0)
                                t0 = lo + hi_
                                lo, hi_ = vsum4x2(v1)
                                t1 = lo + hi_
                                for k in range(k8, uk):
                                    t0 += w[r, k] * grid[u0, k]
                                    t1 += w[r, k] * grid[u1, k]
                                o0 = np.uintp(r * oplane)
                                of[0, obase[u0] + o0] = t0
                                of[0, obase[u1] + o0] = t1
                continue
            if direct:
                a, off0, off1, rows = src, bases[0], bases[8 if cols > 8 else 0], koff
            else:
                for k in range(k_total):
                    kk, dst = koff[k], np.uintp(k * width)
                    for u in range(np.uintp(0), np.uintp(width)):
                        tile[0, dst + u] = src[0, bases[u] + kk]
                a, off0, off1, rows = tile, np.uintp(0), np.uintp(8), gkoff
            whole = contig and cols == _COLS
            for r0 in range(0, no4, 4):
                w0 = np.uintp(r0 * k_total)
                w1, w2, w3 = w0 + uk, w0 + 2 * uk, w0 + 3 * uk
                a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = vzero()
                for k in range(np.uintp(0), uk):
                    kk = rows[k]
                    x0, x1 = vload(a, 0, off0 + kk), vload(a, 0, off1 + kk)
                    a0, a1 = vfma(a0, wf[w0 + k], x0), vfma(a1, wf[w0 + k], x1)
                    b0, b1 = vfma(b0, wf[w1 + k], x0), vfma(b1, wf[w1 + k], x1)
                    c0, c1 = vfma(c0, wf[w2 + k], x0), vfma(c1, wf[w2 + k], x1)
                    d0, d1 = vfma(d0, wf[w3 + k], x0), vfma(d1, wf[w3 + k], x1)
                if whole:  # straight into the four output planes
                    o0 = np.uintp(r0 * oplane)
                    g0, g1 = obase[0] + o0, obase[8] + o0
                    up = np.uintp(oplane)
                    vstore(of, 0, g0, a0)
                    vstore(of, 0, g1, a1)
                    vstore(of, 0, g0 + up, b0)
                    vstore(of, 0, g1 + up, b1)
                    vstore(of, 0, g0 + 2 * up, c0)
                    vstore(of, 0, g1 + 2 * up, c1)
                    vstore(of, 0, g0 + 3 * up, d0)
                    vstore(of, 0, g1 + 3 * up, d1)
                else:
                    vstore(sums, 0, 0, a0)
                    vstore(sums, 0, 8, a1)
                    vstore(sums, 1, 0, b0)
                    vstore(sums, 1, 8, b1)
                    vstore(sums, 2, 0, c0)
                    vstore(sums, 2, 8, c1)
                    vstore(sums, 3, 0, d0)
                    vstore(sums, 3, 8, d1)
                    for i in range(4):
                        o0 = np.uintp((r0 + i) * oplane)
                        for u in range(np.uintp(0), np.uintp(cols)):
                            of[0, obase[u] + o0] = sums[i, u]
            for r in range(no4, no):  # the rows left over
                w0 = np.uintp(r * k_total)
                s0 = s1 = vzero()
                for k in range(np.uintp(0), uk):
                    kk = rows[k]
                    s0 = vfma(s0, wf[w0 + k], vload(a, 0, off0 + kk))
                    s1 = vfma(s1, wf[w0 + k], vload(a, 0, off1 + kk))
                vstore(sums, 0, 0, s0)
                vstore(sums, 0, 8, s1)
                o0 = np.uintp(r * oplane)
                for u in range(np.uintp(0), np.uintp(cols)):
                    of[0, obase[u] + o0] = sums[0, u]
    has_scale, has_res = bn_mean.shape[0] != 0, res.size != 0
    if has_scale:  # the BatchNorm: out = conv * scale + shift, the convolution's bias in shift
        dense_batchnorm_fold(bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, bias, scale, shift, w[:0], w[:0])
        bias = shift
    has_bias = bias.shape[0] != 0
    if act == NONE and not (has_bias or has_scale or has_res):
        return
    # out[b, o] = act(out[b, o] * scale[o] + bias[o] + res[b, o]) a plane at a time: ReLU and ReLU6
    # in the same pass, other activations after it (`epilogue_rows`)
    uplane = np.uintp(oplane)
    out3 = out.reshape(nb, no, out.shape[2] * out.shape[3])
    rf = res.reshape(res.size)
    one, zero = np.float32(1.0), np.float32(0.0)
    hi = np.float32(alpha)
    for b in prange(nb):
        for o in range(no):
            m = scale[o] if has_scale else one
            add = bias[o] if has_bias else zero
            base = np.uintp((b * no + o) * oplane)
            if has_res:  # the BatchNorm's output plus the residual, as the unfused steps round it
                for s in range(base, base + uplane):
                    of[0, s] = (of[0, s] * m + add) + rf[s]
                m, add = one, zero
            if act == RELU:
                for s in range(base, base + uplane):
                    v = of[0, s] * m + add
                    of[0, s] = v if v > 0 else zero
            elif act == CLIP0:
                for s in range(base, base + uplane):
                    v = of[0, s] * m + add
                    v = v if v > 0 else zero
                    of[0, s] = v if v < hi else hi
            else:
                for s in range(base, base + uplane):
                    of[0, s] = of[0, s] * m + add
        if act != NONE and act != RELU and act != CLIP0:
            epilogue_rows(out3[b], 0, no, bias[:0], act, alpha)


@numba.njit(**OPTIONS)
def _pad_into(x, xpad, pad):
    """xpad[b, c] = x[b, c] with `pad` zeros around (flat, [B*C*(H + 2 pad)*(W + 2 pad)])."""
    nb, nc, h, wd = x.shape
    hp, wp = h + 2 * pad, wd + 2 * pad
    xf = x.reshape(x.size)
    zero = np.zeros(1, xpad.dtype)[0]
    for pl in range(nb * nc):
        d0, s0 = np.uintp(pl * hp * wp), np.uintp(pl * h * wd)
        for t in range(np.uintp(0), np.uintp(pad * wp + pad)):  # top rows and the first left border
            xpad[d0 + t] = zero
        for r in range(h):
            dr, sr = d0 + np.uintp((r + pad) * wp + pad), s0 + np.uintp(r * wd)
            for s in range(np.uintp(0), np.uintp(wd)):
                xpad[dr + s] = xf[sr + s]
            for s in range(np.uintp(wd), np.uintp(wd + 2 * pad)):  # right border, next left border
                xpad[dr + s] = zero
        for t in range(d0 + np.uintp((h + pad) * wp + pad), d0 + np.uintp(hp * wp)):  # bottom rows
            xpad[t] = zero


dense_conv2d_serial, dense_conv2d = serial_and_parallel(_dense_conv2d)
