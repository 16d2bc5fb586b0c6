"""Hypothesis strategies for sparsenet's tests: sparse matrices, block shapes, dtypes, batch sizes.

Matrices are generated from a drawn seed (fast, and shrinks towards small shapes and seed 0) with
drawn shape, density (exactly 0 and 1 included) and rows forced empty. Each case keeps the dense
values *and* the stored pattern, so explicit stored zeros (entries of the pattern whose value is 0)
are exercised too. `csr_arrays` / `bsr_arrays` build raw format arrays with plain NumPy, without
going through sparsenet, for the kernel tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "MAX_SIDE", "DTYPES", "BATCH_SIZES", "INDEX_DTYPES", "SETTINGS",
    "dtypes", "batch_sizes", "sides", "shapes", "densities", "blocksizes", "index_dtypes", "seeds",
    "SparseCase", "BlockCase", "sparse_matrices", "block_sparse_matrices",
    "activations", "csr_arrays", "bsr_arrays",
]

MAX_SIDE = 40
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# 65 and 130 cross the 64-wide batch chunk of the transposed kernels (one and two chunk borders);
# 8, 17, 33, 64 and 88 walk the register tiles of the float32 kernels (64, 32, 16 and 8 columns,
# then scalar columns).
BATCH_SIZES = (0, 1, 2, 7, 8, 17, 33, 64, 65, 88, 130)
# (column-index dtype, row-pointer dtype) pairs the formats produce: uint16 / int32 for narrow
# matrices, int32 indices past 65 536 columns, int64 pointers past 2**31 - 1 stored values.
INDEX_DTYPES = (
    (np.dtype(np.uint16), np.dtype(np.int32)),
    (np.dtype(np.int32), np.dtype(np.int32)),
    (np.dtype(np.int32), np.dtype(np.int64)),
)

# deadline=None: the first example of a test may pay for a Numba compilation.
# SPARSENET_TEST_EXAMPLES=1000 runs a deeper search (the default keeps the files to a few seconds).
SETTINGS = settings(max_examples=int(os.environ.get("SPARSENET_TEST_EXAMPLES", "50")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

dtypes = st.sampled_from(DTYPES)
batch_sizes = st.sampled_from(BATCH_SIZES)
sides = st.one_of(st.sampled_from([0, 1]), st.integers(0, MAX_SIDE))
shapes = st.tuples(sides, sides)
densities = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
# R x 1 blocks with R a multiple of 8 and 4 x 4 blocks take dedicated float32 loops.
blocksizes = st.one_of(st.tuples(st.integers(1, 5), st.integers(1, 5)),
                       st.sampled_from([(4, 4), (8, 1), (16, 1), (24, 1)]))
index_dtypes = st.sampled_from(INDEX_DTYPES)
seeds = st.integers(0, 2**32 - 1)


@dataclass(frozen=True)
class SparseCase:
    """A matrix `w` [M, K] that is zero outside `mask` (the stored pattern; it may hold zeros)."""

    w: np.ndarray
    mask: np.ndarray

    @property
    def shape(self):
        return self.w.shape


@dataclass(frozen=True)
class BlockCase:
    """A matrix `w` [M, K] that is zero outside the blocks of `block_mask` [ceil(M/R), ceil(K/C)]."""

    w: np.ndarray
    block_mask: np.ndarray
    blocksize: tuple

    @property
    def shape(self):
        return self.w.shape

    @property
    def mask(self) -> np.ndarray:
        """The element pattern: True inside stored blocks, cut to the logical shape."""
        r, c = self.blocksize
        full = np.kron(self.block_mask, np.ones((r, c), dtype=bool)).astype(bool)
        return full[: self.w.shape[0], : self.w.shape[1]]


def _subset(draw, n):
    """A drawn subset of range(n) (rows or columns forced empty)."""
    return sorted(draw(st.sets(st.integers(0, n - 1), max_size=n))) if n else []


@st.composite
def sparse_matrices(draw, shape=None, dtype=None, explicit_zeros=True) -> SparseCase:
    """Random sparse matrix up to MAX_SIDE x MAX_SIDE, any density, some rows and columns empty.

    With `explicit_zeros`, part of the stored pattern may hold the value 0 (as after pruning to a
    mask, or a scipy matrix with stored zeros); otherwise mask == (w != 0).
    """
    m, k = draw(shapes) if shape is None else shape
    dtype = np.dtype(draw(dtypes) if dtype is None else dtype)
    density = draw(densities)
    empty_rows = _subset(draw, m)
    empty_cols = _subset(draw, k) if draw(st.booleans()) else []
    zero_frac = draw(st.sampled_from([0.0, 0.0, 0.25])) if explicit_zeros else 0.0
    rng = np.random.default_rng(draw(seeds))
    mask = rng.random((m, k)) < density  # density 1.0 -> all True, 0.0 -> all False
    mask[empty_rows, :] = False
    mask[:, empty_cols] = False
    w = np.where(mask, rng.standard_normal((m, k)), 0.0).astype(dtype)
    w[mask & (rng.random((m, k)) < zero_frac)] = 0
    return SparseCase(w, mask)


@st.composite
def block_sparse_matrices(draw, shape=None, blocksize=None, dtype=None) -> BlockCase:
    """Random block-sparse matrix: blocks of a drawn (R, C) in 1..5 kept with a drawn block density,
    some block rows forced empty, and a drawn density of nonzeros inside kept blocks (0 gives
    stored all-zero blocks). Shapes are often not multiples of the block shape."""
    m, k = draw(shapes) if shape is None else shape
    r, c = draw(blocksizes) if blocksize is None else blocksize
    dtype = np.dtype(draw(dtypes) if dtype is None else dtype)
    mb, nbc = -(-m // r), -(-k // c)
    block_density = draw(densities)
    inner_density = draw(st.one_of(st.just(1.0), densities))
    empty_block_rows = _subset(draw, mb)
    rng = np.random.default_rng(draw(seeds))
    block_mask = rng.random((mb, nbc)) < block_density
    block_mask[empty_block_rows, :] = False
    elems = np.kron(block_mask, np.ones((r, c), dtype=bool)).astype(bool)[:m, :k]
    elems &= rng.random((m, k)) < inner_density
    w = np.where(elems, rng.standard_normal((m, k)), 0.0).astype(dtype)
    return BlockCase(w, block_mask, (r, c))


@st.composite
def activations(draw, rows, batch, dtype):
    """A C-contiguous [rows, batch] array of standard-normal values in `dtype`."""
    rng = np.random.default_rng(draw(seeds))
    return rng.standard_normal((rows, batch)).astype(dtype)


def csr_arrays(case: SparseCase, index_dtype=np.uint16, pointer_dtype=np.int32):
    """(data, indices, indptr) of `case.w` at `case.mask`, rows sorted, built with plain NumPy."""
    m = case.w.shape[0]
    rows, cols = np.nonzero(case.mask)
    indptr = np.zeros(m + 1, dtype=pointer_dtype)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=m))
    return case.w[rows, cols].copy(), cols.astype(index_dtype), indptr


def bsr_arrays(case: BlockCase, index_dtype=np.uint16, pointer_dtype=np.int32):
    """(data [nblocks, R, C], indices, indptr) of `case`, overhanging entries zero, with plain NumPy."""
    (m, k), (r, c) = case.w.shape, case.blocksize
    mb, nbc = case.block_mask.shape
    padded = np.zeros((mb * r, nbc * c), dtype=case.w.dtype)
    padded[:m, :k] = case.w
    blocks = padded.reshape(mb, r, nbc, c).transpose(0, 2, 1, 3)
    rows, cols = np.nonzero(case.block_mask)
    indptr = np.zeros(mb + 1, dtype=pointer_dtype)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=mb))
    data = np.ascontiguousarray(blocks[rows, cols]).reshape(-1, r, c)
    return data, cols.astype(index_dtype), indptr
