"""Layout kernels of the compiled plan: the input taken in (cast, checked) and activations moved
between the batch-major layout of users and generic layers ([B, F]) and the feature-major layout
of the products ([F, B], batch contiguous), and a convolution's input unfolded for its product. Serial: at the sizes plans see they take microseconds,
less than a parallel launch."""

import numba
import numpy as np

from numba import prange

from ._jit import OPTIONS, serial_and_parallel

# No fastmath here: it lets LLVM assume that no value is NaN or infinite and fold the checks away.
_CHECKED = dict(OPTIONS, fastmath=False)

__all__ = ["ingest_fm", "ingest_bm", "transpose", "im2col", "im2col_serial", "im2col_same", "im2col_same_serial",
           "same_fits", "swap_leading"]


@numba.njit(**_CHECKED)
def ingest_fm(x, out):
    """out[F, B] = x[B, F].T cast to out's dtype; returns how many cast values are not finite (NaN,
    inf, or a value too large for out's dtype): the plan's one finiteness pass over its input."""
    nb, nf = x.shape
    bad = 0
    for b in range(nb):
        for f in range(nf):
            out[f, b] = x[b, f]
    for f in range(nf):
        for b in range(nb):
            if not np.isfinite(out[f, b]):
                bad += 1
    return bad


@numba.njit(**_CHECKED)
def ingest_bm(x, out):
    """out[B, F] = x[B, F] cast to out's dtype; returns the count of values that are not finite after
    the cast (as `ingest_fm`)."""
    nb, nf = x.shape
    bad = 0
    for b in range(nb):
        for f in range(nf):
            out[b, f] = x[b, f]
            if not np.isfinite(out[b, f]):
                bad += 1
    return bad


@numba.njit(**OPTIONS)
def transpose(src, dst):
    """dst[C, R] = src[R, C].T: feature-major to batch-major and back (one kernel for both)."""
    nr, nc = src.shape
    for c in range(nc):
        for r in range(nr):
            dst[c, r] = src[r, c]


def _im2col(x, cols, kh, kw, sh, sw, pad, dil):
    """cols[(c*kh + i)*kw + j, (b*oh + p)*ow + q] = x[b, c, p*sh + i*dil - pad, q*sw + j*dil - pad], zero
    where that lies outside x: a convolution's input, x [B, C, H, W], as the [C*kh*kw, B*oh*ow] matrix
    that the weight [out, C*kh*kw] multiplies (`sparsenet.nn._im2col.im2col` is the NumPy reference;
    `dil` is the dilation). O(C * kh * kw * B * oh * ow); parallel over the channels in `im2col`,
    `im2col_serial`. The caller sizes `cols` (oh, ow from its shape and x's)."""
    nb, nc, h, w = x.shape
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // sw + 1
    zero = np.zeros(1, cols.dtype)[0]
    u0, usw = np.uintp(0), np.uintp(sw)
    # Unsigned indices: with signed ones Numba checks each access for a negative (wrap-around)
    # index, which kept these copies from being vectorised (measured: 20x slower than a memcpy; now
    # the cost is about 4 ns per run of valid columns).
    for c in prange(nc):
        for i in range(kh):
            di = i * dil
            for j in range(kw):
                dj = j * dil
                row = cols[(c * kh + i) * kw + j]
                # the output columns q whose input column q*sw + dj - pad lies inside [0, w)
                q0 = min(ow, (pad - dj + sw - 1) // sw) if pad > dj else 0
                q1 = max(q0, min(ow, (w + pad - dj + sw - 1) // sw) if w + pad > dj else 0)
                uq0, uq1 = np.uintp(q0), np.uintp(q1)
                first = np.uintp(max(0, q0 * sw + dj - pad))  # the input column of output column q0
                if pad > 0:  # zeros first where the window may reach the padding: one pass over the row
                    for t in range(u0, np.uintp(row.shape[0])):
                        row[t] = zero
                run = uq1 - uq0
                p0 = max(0, (pad - di + sh - 1) // sh)  # the output rows p whose input row lies inside
                p1 = max(p0, min(oh, (h + pad - di + sh - 1) // sh))
                for b in range(nb):
                    for p in range(p0, p1):
                        xr = x[b, c, p * sh + di - pad]
                        dst = np.uintp((b * oh + p) * ow) + uq0
                        if sw == 1:  # a contiguous run
                            for t in range(u0, run):
                                row[dst + t] = xr[first + t]
                        else:
                            for t in range(u0, run):
                                row[dst + t] = xr[first + t * usw]


@numba.njit(**OPTIONS)
def swap_leading(src, dst):
    """dst[b, m, s] = src[m, b, s]: a convolution's product [out, B, oh*ow] to batch-major
    [B, out, oh*ow]. Serial; contiguous runs of S."""
    nm, nb, ns = src.shape
    for b in range(nb):
        for m in range(nm):
            for s in range(ns):
                dst[b, m, s] = src[m, b, s]


im2col_serial, im2col = serial_and_parallel(_im2col)


def _im2col_same(x, cols, kh, kw, pad, dil):
    """`_im2col` for a "same" convolution: stride 1 and an output of the input's size (3x3 with
    padding 1, 5x5 with 2, 3x3 dilated 2 with 2), x C-contiguous. The rows of an output plane follow
    each other as the input's do, so each tap of each plane is one contiguous copy of the input
    plane shifted by sr rows and sc columns; the entries whose input column falls outside (the copy
    wraps them around from the neighbouring row) and the rows whose input row does are then zeroed.
    On 8x8 planes: one run instead of eight, whose set-up cost more than the copy (64 x 16 x 8 x 8,
    3x3: 299 -> 230 us serial, 217 -> 91 us parallel); on narrower planes the zeroing costs more
    than it saves (4x4: 199 -> 255 us serial): `same_fits` says when to use it."""
    nb, nc, h, w = x.shape
    zero = np.zeros(1, cols.dtype)[0]
    u0 = np.uintp(0)
    hw = h * w
    flat = x.reshape(nb * nc * hw)  # one view: views made inside the loops cost a reference count each
    for c in prange(nc):
        for i in range(kh):
            for j in range(kw):
                row = cols[(c * kh + i) * kw + j]
                sr, sc = i * dil - pad, j * dil - pad  # the input row and column of output (0, 0)
                p0 = max(0, -sr)
                p1 = max(p0, min(h, h - sr))  # output rows p0..p1 have their input row inside
                shift = sr * w + sc  # output flat index k reads input flat index k + shift
                k0 = max(p0 * w, -shift)  # kept inside the plane: what this cuts off is zeroed below
                k1 = max(k0, min(p1 * w, hw - shift))
                q0, q1 = (0, min(w, -sc)) if sc < 0 else (max(0, w - sc), w)  # columns outside
                for b in range(nb):
                    base = b * hw
                    d0, s0 = np.uintp(base + k0), np.uintp((b * nc + c) * hw + k0 + shift)
                    for t in range(u0, np.uintp(k1 - k0)):
                        row[d0 + t] = flat[s0 + t]
                    for k in range(np.uintp(base), np.uintp(base + p0 * w)):  # rows above the input
                        row[k] = zero
                    for k in range(np.uintp(base + p1 * w), np.uintp(base + hw)):  # rows below it
                        row[k] = zero
                    if sc != 0:
                        for p in range(p0, p1):
                            for q in range(q0, q1):
                                row[np.uintp(base + p * w + q)] = zero


def same_fits(x_shape, kh, kw, sh, sw, pad, dil) -> bool:
    """Whether `im2col_same` applies (and pays): stride 1, the output the input's size, planes of
    at least 8 columns."""
    h, w = x_shape[2], x_shape[3]
    return sh == 1 and sw == 1 and 2 * pad == dil * (kh - 1) and 2 * pad == dil * (kw - 1) and w >= 8 and h >= 1


im2col_same_serial, im2col_same = serial_and_parallel(_im2col_same)
