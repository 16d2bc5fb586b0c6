"""Layout kernels of the compiled plan: the input taken in (cast, checked) and activations moved
between the batch-major layout of users and generic layers ([B, F]) and the feature-major layout
of the products ([F, B], batch contiguous). Serial: at the sizes plans see they take microseconds,
less than a parallel launch."""

import numba
import numpy as np

from ._jit import OPTIONS

# No fastmath here: it lets LLVM assume that no value is NaN or infinite and fold the checks away.
_CHECKED = dict(OPTIONS, fastmath=False)

__all__ = ["ingest_fm", "ingest_bm", "transpose"]


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
