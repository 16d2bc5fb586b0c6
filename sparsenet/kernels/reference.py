"""Plain NumPy references for every kernel: slow, obvious, and what the tests compare against."""

import numpy as np

__all__ = [
    "csr_to_dense_ref", "bsr_to_dense_ref",
    "spmm_ref", "spmm_t_ref", "csr_sddmm_ref", "bsr_sddmm_ref",
]


def csr_to_dense_ref(data, indices, indptr, shape):
    """Dense [M, K] array from CSR arrays (duplicates summed)."""
    m, k = shape
    out = np.zeros((m, k), dtype=data.dtype)
    rows = np.repeat(np.arange(m), np.diff(indptr).astype(np.int64))
    np.add.at(out, (rows, indices.astype(np.int64)), data)
    return out


def bsr_to_dense_ref(data, indices, indptr, shape):
    """Dense [M, K] array from BSR arrays; blocks that overhang the logical shape are cut."""
    m, k = shape
    r, c = data.shape[1:]
    mb = len(indptr) - 1
    nbc = -(-k // c) if c else 0
    padded = np.zeros((mb * r, nbc * c), dtype=data.dtype)
    for bi in range(mb):
        for jj in range(indptr[bi], indptr[bi + 1]):
            bj = int(indices[jj])
            padded[bi * r:(bi + 1) * r, bj * c:(bj + 1) * c] += data[jj]
    return padded[:m, :k]


def spmm_ref(w_dense, x):
    """W @ x."""
    return w_dense @ x


def spmm_t_ref(w_dense, dy):
    """W.T @ dy."""
    return w_dense.T @ dy


def csr_sddmm_ref(indices, indptr, dy, x):
    """(dy @ x.T) at the CSR pattern, one value per stored entry."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr).astype(np.int64))
    full = dy @ x.T
    return full[rows, indices.astype(np.int64)]


def bsr_sddmm_ref(indices, indptr, dy, x, blocksize):
    """(dy @ x.T) at the BSR pattern, shape [nblocks, R, C], zero beyond the logical shape."""
    r, c = blocksize
    m, k = dy.shape[0], x.shape[0]
    mb = len(indptr) - 1
    nbc = -(-k // c) if c else 0
    full = np.zeros((mb * r, nbc * c), dtype=np.result_type(dy, x))
    full[:m, :k] = dy @ x.T
    out = np.zeros((len(indices), r, c), dtype=full.dtype)
    for bi in range(mb):
        for jj in range(indptr[bi], indptr[bi + 1]):
            bj = int(indices[jj])
            out[jj] = full[bi * r:(bi + 1) * r, bj * c:(bj + 1) * c]
    return out
