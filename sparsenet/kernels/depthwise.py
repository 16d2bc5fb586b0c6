"""Depthwise convolution kernels (groups = channels, mult = out channels / in channels) of x [B, C,
H, W] into out [B, O, OH, OW] with w [O, kh*kw] dense: the forward per plane or channels last
(`depthwise_kernel` chooses), and the input and weight gradients. The caller allocates; references
in the property tests (tests/test_kernels.py, im2col and einsum in float64)."""

import numba
import numpy as np
from numba import prange

from ._jit import OPTIONS, PARALLEL_MIN_WORK, serial_and_parallel
from .epilogue import NONE, epilogue_rows

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
    output pixel the sum over taps of a weight row [C] times an input row [C] (contiguous: the loop
    over channels vectorises whatever the image size), then the epilogue and the move back to
    [C, OH, OW]. For the small planes of the zoo's MobileNet (4x4 and 8x8, 16-128 channels) the
    per-plane passes spent more on set-up than on sums (`choose_depthwise` says which to run).
    Parallel over the batch."""
    nb, nc, h, wd = x.shape
    oh, ow = out.shape[2], out.shape[3]
    hp, wp = h + 2 * pad, wd + 2 * pad
    ntap = kh * kw
    wt = np.empty((ntap, nc), out.dtype)  # the taps channel-last, from the layer's own array each call
    for c in range(nc):
        for t in range(ntap):
            wt[t, c] = w[c, t]
    has_bias = bias.shape[0] != 0
    zero = np.zeros(1, out.dtype)[0]
    unc = np.uintp(nc)
    # Flat indices throughout: a view made per pixel and tap costs two reference counts, which
    # were most of this kernel's time (64 x 128 x 4 x 4: 395 -> 62 us serial).
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), wt.reshape(wt.size)
    plane, oplane = h * wd, oh * ow
    for b in prange(nb):
        xs = np.zeros(hp * wp * nc, out.dtype)
        for c in range(nc):
            src0 = (b * nc + c) * plane
            for r in range(h):
                for s in range(wd):
                    xs[np.uintp(((r + pad) * wp + s + pad) * nc + c)] = xf[np.uintp(src0 + r * wd + s)]
        ys = np.empty(oplane * nc, out.dtype)
        for p in range(oh):
            for q in range(ow):
                y0 = np.uintp((p * ow + q) * nc)
                if has_bias:
                    for c in range(np.uintp(0), unc):
                        ys[y0 + c] = bias[c]
                else:
                    for c in range(np.uintp(0), unc):
                        ys[y0 + c] = zero
                for i in range(kh):
                    for j in range(kw):
                        x0 = np.uintp(((p * sh + i * dil) * wp + q * sw + j * dil) * nc)
                        w0 = np.uintp((i * kw + j) * nc)
                        for c in range(np.uintp(0), unc):
                            ys[y0 + c] += wf[w0 + c] * xs[x0 + c]
        if act != NONE:
            epilogue_rows(ys.reshape(1, oplane * nc), 0, 1, bias[:0], act, alpha)
        for c in range(nc):
            dst0 = (b * nc + c) * oplane
            for t in range(oplane):
                of[np.uintp(dst0 + t)] = ys[np.uintp(t * nc + c)]


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
