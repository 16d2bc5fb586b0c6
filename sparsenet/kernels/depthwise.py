"""Depthwise convolution kernels (groups = channels, mult = out channels / in channels) of x [B, C,
H, W] into out [B, O, OH, OW] with w [O, kh*kw] dense: the forward per plane or channels last
(`depthwise_kernel` chooses), and the input and weight gradients. The caller allocates; references
in the property tests (tests/test_kernels.py, im2col and einsum in float64)."""

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._jit import OPTIONS, PARALLEL_MIN_WORK, serial_and_parallel
from ._simd import vload, vmuladd, vstore
from .epilogue import CLIP0, NONE, RELU, epilogue_rows

__all__ = ["dense_depthwise2d", "dense_depthwise2d_serial", "dense_depthwise2d_cl", "dense_depthwise2d_cl_serial",
           "depthwise_kernel", "dense_depthwise2d_grad_input", "dense_depthwise2d_grad_input_serial",
           "dense_depthwise2d_grad_weight", "dense_depthwise2d_grad_weight_serial"]


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


dense_depthwise2d_serial, dense_depthwise2d = serial_and_parallel(_dense_depthwise2d)


def _dense_depthwise2d_cl(x, w, out, bias, act, alpha, kh, kw, sh, sw, pad, dil):
    """`_dense_depthwise2d` with one output channel per input channel (mult 1), computed channels
    last: each sample's planes moved into a zero-padded [H + 2 pad, W + 2 pad, C] buffer, every
    output pixel the sum over taps of a weight row [C] times an input row [C] (`_cl_taps`: float32
    in registers, eight channels at a time), then the epilogue and the move back to [C, OH, OW].
    For the small planes of the zoo's MobileNet (4x4 and 8x8, 16-128 channels) the per-plane passes
    spent more on set-up than on sums (`depthwise_kernel` says which to run). Flat indices and one
    buffer per chunk of the batch: a view per pixel and tap, and buffers per sample, had made the
    moves cost more than the sums (64 x 128 x 4 x 4: 375 -> 90 us serial). Parallel over chunks of
    the batch."""
    nb, nc, h, wd = x.shape
    oh, ow = out.shape[2], out.shape[3]
    hp, wp = h + 2 * pad, wd + 2 * pad
    ntap = kh * kw
    wt = np.empty((ntap, nc), out.dtype)  # the taps channel-last, from the layer's own array each call
    for c in range(nc):
        for t in range(ntap):
            wt[t, c] = w[c, t]
    has_bias = bias.shape[0] != 0
    start = np.zeros((1, nc), out.dtype)  # each pixel's sums start at the bias
    if has_bias:
        for c in range(nc):
            start[0, c] = bias[c]
    plane, oplane = h * wd, oh * ow
    xf, of = x.reshape(x.size), out.reshape(out.size)
    zero = start[0, 0] * 0 if nc else np.zeros(1, out.dtype)[0]
    hi = np.full(1, alpha, out.dtype)[0]  # ReLU6's bound in out's dtype
    chunks = max(1, min(nb, 16))  # (a fixed count: numba.get_num_threads() would keep it from the cache)
    per = (nb + chunks - 1) // chunks
    for ch in prange(chunks):
        xs = np.zeros((hp * wp, nc), out.dtype)  # the border stays zero: only the interior is written
        ys = np.empty((oplane, nc), out.dtype)
        for b in range(ch * per, min(nb, (ch + 1) * per)):
            src0 = np.uintp(b * nc * plane)
            for r in range(h):
                for s in range(wd):
                    px, at = np.uintp((r + pad) * wp + s + pad), src0 + np.uintp(r * wd + s)
                    for c in range(nc):
                        xs[px, c] = xf[at + np.uintp(c * plane)]
            _cl_taps(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp)
            if act != NONE and act != RELU and act != CLIP0:
                epilogue_rows(ys.reshape(1, oplane * nc), 0, 1, bias[:0], act, alpha)
            dst0 = np.uintp(b * nc * oplane)
            for c in range(nc):  # back to [C, OH, OW], ReLU and ReLU6 on the way
                d = dst0 + np.uintp(c * oplane)
                if act == RELU:
                    for t in range(oplane):
                        v = ys[t, c]
                        of[d + np.uintp(t)] = v if v > 0 else zero
                elif act == CLIP0:
                    for t in range(oplane):
                        v = ys[t, c]
                        v = v if v > 0 else zero
                        of[d + np.uintp(t)] = v if v < hi else hi
                else:
                    for t in range(oplane):
                        of[d + np.uintp(t)] = ys[t, c]


def _cl_taps(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp):
    """ys[p*ow + q, c] = start[0, c] + sum over taps (i, j) of wt[i*kw + j, c] *
    xs[(p*sh + i*dil)*wp + q*sw + j*dil, c] (compiled: `_cl_taps_impl` picks the loops)."""
    _cl_taps_loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp, 0)


@numba.njit(**OPTIONS)
def _cl_taps_loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp, c0):
    """`_cl_taps` for channels c0.. : sums in `ys`, the loop over channels innermost."""
    nc = np.uintp(ys.shape[1])
    for p in range(oh):
        for q in range(ow):
            y = p * ow + q
            for c in range(np.uintp(c0), nc):
                ys[y, c] = start[0, c]
            for i in range(kh):
                for j in range(kw):
                    px, t = (p * sh + i * dil) * wp + q * sw + j * dil, i * kw + j
                    for c in range(np.uintp(c0), nc):
                        ys[y, c] += wt[t, c] * xs[px, c]


@overload(_cl_taps, jit_options=OPTIONS)
def _cl_taps_impl(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp):
    """float32: eight channels at a time, their sums in one AVX register over all taps (sums in
    `ys` were loaded and stored at every tap); the last channels (fewer than 8) and other dtypes:
    `_cl_taps_loops`."""
    if not (xs.dtype == types.float32 and wt.dtype == types.float32 and ys.dtype == types.float32):
        def loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp):
            _cl_taps_loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp, 0)
        return loops

    def registers(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp):
        nc = ys.shape[1]
        c8 = nc - nc % 8
        if kh == 3 and kw == 3:  # eight channels at a time over every pixel, the nine taps in registers
            for c in range(0, c8, 8):
                t0, t1, t2 = vload(wt, 0, c), vload(wt, 1, c), vload(wt, 2, c)
                t3, t4, t5 = vload(wt, 3, c), vload(wt, 4, c), vload(wt, 5, c)
                t6, t7, t8 = vload(wt, 6, c), vload(wt, 7, c), vload(wt, 8, c)
                s0 = vload(start, 0, c)
                for p in range(oh):
                    r0 = p * sh * wp
                    r1, r2 = r0 + dil * wp, r0 + 2 * dil * wp
                    for q in range(ow):
                        a, d = q * sw, dil
                        acc = vmuladd(s0, t0, vload(xs, r0 + a, c))
                        acc = vmuladd(acc, t1, vload(xs, r0 + a + d, c))
                        acc = vmuladd(acc, t2, vload(xs, r0 + a + 2 * d, c))
                        acc = vmuladd(acc, t3, vload(xs, r1 + a, c))
                        acc = vmuladd(acc, t4, vload(xs, r1 + a + d, c))
                        acc = vmuladd(acc, t5, vload(xs, r1 + a + 2 * d, c))
                        acc = vmuladd(acc, t6, vload(xs, r2 + a, c))
                        acc = vmuladd(acc, t7, vload(xs, r2 + a + d, c))
                        acc = vmuladd(acc, t8, vload(xs, r2 + a + 2 * d, c))
                        vstore(ys, p * ow + q, c, acc)
            if c8 < nc:
                _cl_taps_loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp, c8)
            return
        for p in range(oh):
            for q in range(ow):
                y = p * ow + q
                for c in range(0, c8, 8):
                    acc = vload(start, 0, c)
                    for i in range(kh):
                        row = (p * sh + i * dil) * wp + q * sw
                        for j in range(kw):
                            acc = vmuladd(acc, vload(wt, i * kw + j, c), vload(xs, row + j * dil, c))
                    vstore(ys, y, c, acc)
        if c8 < nc:
            _cl_taps_loops(xs, wt, ys, start, oh, ow, kh, kw, sh, sw, dil, wp, c8)
    return registers


dense_depthwise2d_cl_serial, dense_depthwise2d_cl = serial_and_parallel(_dense_depthwise2d_cl)


def depthwise_kernel(in_channels: int, out_channels: int, work: int):
    """The depthwise kernel to run for a layer of these channels doing `work` multiply-adds: the
    channels-last one for one output per input channel and at least 16 channels (measured on the
    zoo's MobileNet shapes, 64 x 96 x 4 x 4 3x3: 3.8 ms -> 0.37 ms serial; 1 x 16 x 8 x 8: 19.6 ->
    7.4 us; with 8 channels of 56x56 the per-plane kernel is 2x faster), else the per-plane one;
    parallel from `PARALLEL_MIN_WORK`."""
    big = work >= PARALLEL_MIN_WORK
    if out_channels == in_channels and in_channels >= 16:
        return dense_depthwise2d_cl if big else dense_depthwise2d_cl_serial
    return dense_depthwise2d if big else dense_depthwise2d_serial
dense_depthwise2d_grad_input_serial, dense_depthwise2d_grad_input = serial_and_parallel(_dense_depthwise2d_grad_input)
dense_depthwise2d_grad_weight_serial, dense_depthwise2d_grad_weight = serial_and_parallel(
    _dense_depthwise2d_grad_weight)
