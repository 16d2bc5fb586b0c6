"""Row gathers and their gradients, for embedding tables (`sparsenet.nn.Embedding`) in every table
format: ``out[r] = W[rows[r]]`` and ``grad_W[rows[r]] += g[r]``.

Pure functions over validated arrays (the format's own check, and `rows` already checked to lie in
``[0, M)``, or checked by the ``*_checked`` kernels themselves in one pass); callers allocate `out`
(every output row is written whole). Rows are unsigned machine integers inside the loops (PERF-NOTES, trick 1). The
``*_ref`` functions are the plain NumPy references the property tests compare against.

Gathers are memory-bound and a model looks up a few hundred rows per call: every kernel is serial.
"""

import numba
import numpy as np

from ._jit import OPTIONS

__all__ = ["first_row_outside", "dense_gather", "dense_gather_checked", "csr_gather_checked",
           "dense_i8_gather", "dense_i8_gather_checked", "csr_i8_gather_checked",
           "dense_scatter_add", "csr_scatter_add", "gather_ref", "scatter_add_ref"]


@numba.njit(**OPTIONS)
def first_row_outside(rows, m):
    """The position of the first entry of `rows` outside [0, m), or -1 if every row lies in the
    table: the check a compiled plan makes before each gather (one pass, no copies)."""
    for r in range(rows.shape[0]):
        if rows[r] < 0 or rows[r] >= m:
            return r
    return -1


@numba.njit(**OPTIONS)
def dense_gather(w, rows, out):
    """out[r, :] = w[rows[r], :] (w [M, D], out [R, D])."""
    d = np.uintp(w.shape[1])
    for r in range(rows.shape[0]):
        src, dst = w[np.uintp(rows[r])], out[r]
        for j in range(np.uintp(0), d):
            dst[j] = src[j]


@numba.njit(**OPTIONS)
def dense_gather_checked(w, rows, out):
    """`dense_gather` after `first_row_outside(rows, w.shape[0])`, in one call (a plan's lookup at
    batch 1 is two kernel entries otherwise): returns that position, and gathers nothing unless it
    is -1 (every row inside the table)."""
    bad = first_row_outside(rows, w.shape[0])
    if bad < 0:
        dense_gather(w, rows, out)
    return bad


@numba.njit(**OPTIONS)
def dense_i8_gather(q, scales, rows, out):
    """out[r, :] = scales[rows[r]] * q[rows[r], :] (int8 values, one float32 scale per row)."""
    d = q.shape[1]
    for r in range(rows.shape[0]):
        i = np.uintp(rows[r])
        s = scales[i]
        for j in range(d):
            out[r, j] = s * q[i, j]


@numba.njit(**OPTIONS)
def csr_gather_checked(data, indices, indptr, rows, out):
    """`first_row_outside` then, if every row lies in the table, out[r, :] = W[rows[r], :] for W in
    CSR, each output row written whole (`out` need not be zero): one kernel entry per lookup, as
    `dense_gather_checked`. A row that stores all D entries holds columns 0..D-1 in order (the
    format's invariant: strictly increasing indices), so it is copied as a dense row, and an empty
    row is zeros: a row-pruned table (every row full or empty) gathers as fast as a dense one.
    Returns the position of the first row outside (-1: none; then nothing is written)."""
    bad = first_row_outside(rows, indptr.shape[0] - 1)
    if bad < 0:
        d = np.uintp(out.shape[1])
        for r in range(rows.shape[0]):
            dst = out[r]
            i = np.uintp(rows[r])
            lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
            if hi - lo == d:
                for j in range(np.uintp(0), d):
                    dst[j] = data[lo + j]
            else:
                for j in range(np.uintp(0), d):
                    dst[j] = 0
                for p in range(lo, hi):
                    dst[np.uintp(indices[p])] = data[p]
    return bad


@numba.njit(**OPTIONS)
def dense_i8_gather_checked(q, scales, rows, out):
    """`dense_i8_gather` after `first_row_outside(rows, q.shape[0])`, in one call (see
    `dense_gather_checked`)."""
    bad = first_row_outside(rows, q.shape[0])
    if bad < 0:
        dense_i8_gather(q, scales, rows, out)
    return bad


@numba.njit(**OPTIONS)
def csr_i8_gather_checked(data, indices, indptr, scales, rows, out):
    """`csr_gather_checked` for int8 values with one float32 scale per row (full rows copied as
    dense rows, empty rows zeros)."""
    bad = first_row_outside(rows, indptr.shape[0] - 1)
    if bad < 0:
        d = np.uintp(out.shape[1])
        for r in range(rows.shape[0]):
            dst = out[r]
            i = np.uintp(rows[r])
            s = scales[i]
            lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
            if hi - lo == d:
                for j in range(np.uintp(0), d):
                    dst[j] = s * data[lo + j]
            else:
                for j in range(np.uintp(0), d):
                    dst[j] = 0
                for p in range(lo, hi):
                    dst[np.uintp(indices[p])] = s * data[p]
    return bad


@numba.njit(**OPTIONS)
def dense_scatter_add(grad, rows, g):
    """grad[rows[r], :] += g[r, :] (a row looked up twice gets both gradients)."""
    d = grad.shape[1]
    for r in range(rows.shape[0]):
        i = np.uintp(rows[r])
        for j in range(d):
            grad[i, j] += g[r, j]


@numba.njit(**OPTIONS)
def csr_scatter_add(indices, indptr, rows, g, vgrad):
    """vgrad[p] += g[r, indices[p]] for every stored entry p of row rows[r]: the gradient of the
    stored values only (the pattern does not change)."""
    for r in range(rows.shape[0]):
        i = np.uintp(rows[r])
        for p in range(indptr[i], indptr[i + 1]):
            vgrad[p] += g[r, np.uintp(indices[p])]


def gather_ref(w_dense, rows):
    """Reference of every gather: the dense table's rows (float64)."""
    return np.asarray(w_dense, dtype=np.float64)[np.asarray(rows, dtype=np.int64)]


def scatter_add_ref(shape, rows, g):
    """Reference of the scatter-add: the dense gradient of a table of `shape` (float64)."""
    out = np.zeros(shape)
    np.add.at(out, np.asarray(rows, dtype=np.int64), np.asarray(g, dtype=np.float64))
    return out
