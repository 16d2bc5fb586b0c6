"""Alternating least squares: the normal equations of every row of a factorisation in one pass
(the `sparsenet.baselines.MatrixFactorization` baseline). Pure function over C-contiguous arrays;
the caller allocates and zeroes the outputs."""

import numba

from ._jit import OPTIONS

__all__ = ["csr_normal_equations"]


@numba.njit(**OPTIONS)
def csr_normal_equations(indptr, cols, targets, features, gram, rhs):
    """For each row g, whose entries are indptr[g]:indptr[g+1] of (cols, targets):
    gram[g] += sum of features[c] features[c]^T and rhs[g] += sum of targets * features[c].
    features [n_cols, k] float64, gram [n_rows, k, k], rhs [n_rows, k]."""
    k = features.shape[1]
    for g in range(indptr.size - 1):
        for p in range(indptr[g], indptr[g + 1]):
            c = cols[p]
            t = targets[p]
            for i in range(k):
                fi = features[c, i]
                rhs[g, i] += t * fi
                for j in range(k):
                    gram[g, i, j] += fi * features[c, j]
