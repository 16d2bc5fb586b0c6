"""Format behaviour: construction, conversions, sizes, index dtypes, and every validation error."""

import inspect
import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_format_against_reference
from sparsenet.errors import DTypeError, FormatError, ShapeError, SparsenetError
from sparsenet.formats import BSR, CSR, Dense, WeightFormat, as_format, from_scipy
from strategies import (
    SETTINGS, activations, batch_sizes, block_sparse_matrices, blocksizes, bsr_arrays, csr_arrays,
    sparse_matrices,
)

FORMATS = ("dense", "csr", "bsr")


def _inputs(data, shape, dtype):
    batch = data.draw(batch_sizes)
    return data.draw(activations(shape[1], batch, dtype)), data.draw(activations(shape[0], batch, dtype))


# -- round trips through every product (hypothesis) -----------------------------------------------

@SETTINGS
@given(case=sparse_matrices(explicit_zeros=False), data=st.data())
def test_csr_from_dense_roundtrip(case, data):
    w = CSR.from_dense(case.w)
    assert w.dtype == case.w.dtype and w.shape == case.w.shape
    assert w.nnz == np.count_nonzero(case.w)
    np.testing.assert_array_equal(w.mask(), case.w != 0)
    assert w.density == pytest.approx(w.nnz / case.w.size if case.w.size else 0.0)
    check_format_against_reference(w, case.w, *_inputs(data, case.shape, w.dtype))


@SETTINGS
@given(case=sparse_matrices(), data=st.data())
def test_csr_from_arrays_keeps_explicit_zeros(case, data):
    w = CSR(*csr_arrays(case, np.int64, np.int64), case.shape)
    assert w.nnz == int(case.mask.sum())
    np.testing.assert_array_equal(w.mask(), case.mask)
    check_format_against_reference(w, case.w, *_inputs(data, case.shape, w.dtype))
    m = CSR.from_mask(case.w, case.mask)
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(m, name), getattr(w, name), err_msg=name)


@SETTINGS
@given(case=block_sparse_matrices(), data=st.data())
def test_bsr_from_arrays_and_from_dense(case, data):
    (m, k), (r, c) = case.shape, case.blocksize
    w = BSR(*bsr_arrays(case, np.int64, np.int64), case.shape)
    assert w.blocksize == (r, c) and w.nblocks == int(case.block_mask.sum())
    assert w.nnz == w.nblocks * r * c
    np.testing.assert_array_equal(w.block_mask(), case.block_mask)
    assert w.density == pytest.approx(case.mask.sum() / (m * k) if m * k else 0.0)
    check_format_against_reference(w, case.w, *_inputs(data, case.shape, w.dtype))
    # from_dense keeps exactly the blocks holding a nonzero
    d = BSR.from_dense(case.w, case.blocksize)
    nonzero_blocks = BSR._blocks(case.w, case.blocksize).any(axis=(2, 3))
    np.testing.assert_array_equal(d.block_mask(), nonzero_blocks)
    check_format_against_reference(d, case.w, *_inputs(data, case.shape, d.dtype))


@SETTINGS
@given(case=sparse_matrices(), data=st.data())
def test_dense_roundtrip(case, data):
    w = Dense(case.w)
    assert w.nnz == case.w.size and w.count_nonzero() == np.count_nonzero(case.w)
    check_format_against_reference(w, case.w, *_inputs(data, case.shape, w.dtype))


@SETTINGS
@given(case=sparse_matrices(), blocksize=blocksizes)
def test_as_format_between_all_formats(case, blocksize):
    sources = {"array": case.w, "dense": Dense(case.w), "csr": CSR.from_mask(case.w, case.mask),
               "bsr": BSR.from_dense(case.w, blocksize)}
    for src_name, src in sources.items():
        for fmt in FORMATS:
            out = as_format(src, fmt, blocksize=blocksize)
            what = f"as_format({src_name} -> {fmt})"
            assert isinstance(out, WeightFormat) and out.format_name == fmt, what
            assert out.dtype == case.w.dtype and out.shape == case.w.shape, what
            np.testing.assert_array_equal(out.to_dense(), case.w, err_msg=what)
            if fmt == "bsr":
                assert out.blocksize == blocksize, what
            if fmt == "csr" and src_name != "csr":  # zeros are not stored
                assert out.nnz == np.count_nonzero(case.w), what
        other = np.float64 if case.w.dtype == np.float32 else np.float32
        assert as_format(src, "csr", dtype=other).dtype == other


@SETTINGS
@given(case=sparse_matrices(), fmt=st.sampled_from(["csr", "bsr", "dense"]), blocksize=blocksizes,
       seed=st.integers(0, 2**32 - 1))
def test_scipy_roundtrip_unsorted_and_duplicates(case, fmt, blocksize, seed):
    """scipy input with unsorted indices and every value split into two duplicates (v/2 + v/2,
    exact in floating point): duplicates are summed, indices sorted, the input left untouched."""
    rng = np.random.default_rng(seed)
    data, indices, indptr = csr_arrays(case, np.int32, np.int32)
    for i in range(case.shape[0]):  # shuffle the entries within each row
        p = indptr[i] + rng.permutation(indptr[i + 1] - indptr[i])
        data[indptr[i]:indptr[i + 1]], indices[indptr[i]:indptr[i + 1]] = data[p], indices[p]
    unsorted = sp.csr_array((data, indices, indptr), shape=case.shape)
    rows, cols = np.nonzero(case.mask)
    order = rng.permutation(2 * rows.size)
    halves = np.concatenate([case.w[rows, cols] / 2] * 2)
    dup = sp.coo_array((halves[order], (np.tile(rows, 2)[order], np.tile(cols, 2)[order])), shape=case.shape)
    for what, mat in (("unsorted csr", unsorted), ("coo with duplicates", dup)):
        before = (mat.data.copy(), mat.toarray())
        kw = {"blocksize": blocksize} if fmt == "bsr" else {}
        out = from_scipy(mat, fmt, **kw)
        assert out.format_name == fmt and out.dtype == case.w.dtype, what
        np.testing.assert_array_equal(out.to_dense(), case.w, err_msg=what)
        if fmt == "csr":  # the stored pattern (explicit zeros included) survives
            np.testing.assert_array_equal(out.mask(), case.mask, err_msg=what)
            assert np.all(np.diff(out.indptr) >= 0)
            out.check()
        back = out.to_scipy()
        np.testing.assert_array_equal(back.toarray(), case.w, err_msg=what)
        np.testing.assert_array_equal(mat.data, before[0], err_msg=f"{what}: input modified")
        np.testing.assert_array_equal(mat.toarray(), before[1], err_msg=f"{what}: input modified")


@pytest.mark.nojit
@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_matrix_all_products_nojit(fmt):
    """Tiny case, also run with NUMBA_DISABLE_JIT=1."""
    w = np.array([[0, 1.5, 0, -2, 0], [0, 0, 0, 0, 0], [3, 0, 0.5, 0, 1]], dtype=np.float32)
    rng = np.random.default_rng(0)
    for batch in (0, 1, 3):
        check_format_against_reference(as_format(w, fmt, blocksize=(2, 3)), w,
                                       rng.standard_normal((5, batch)), rng.standard_normal((3, batch)))


# -- sizes, dtypes, conversions (examples) --------------------------------------------------------

W = np.array([[0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 3]], dtype=np.float32)


def _all_formats(w=W, blocksize=(2, 2)):
    return [Dense(w), CSR.from_dense(w), BSR.from_dense(w, blocksize)]


@pytest.mark.parametrize("fmt", _all_formats(), ids=FORMATS)
def test_nbytes_is_sum_of_array_nbytes(fmt):
    arrays = [fmt.data] + ([] if fmt.format_name == "dense" else [fmt.indices, fmt.indptr])
    assert fmt.nbytes == sum(a.nbytes for a in arrays)
    assert isinstance(fmt.nbytes, int)


def test_index_dtypes_uint16_up_to_65536_columns_int32_above():
    for k, expected in ((65536, np.uint16), (65537, np.int32), (70000, np.int32)):
        w = np.zeros((1, k), dtype=np.float32)
        w[0, [0, k - 1]] = [1.0, 2.0]
        for fmt in (CSR.from_dense(w), CSR(w[0, [0, k - 1]], [0, k - 1], [0, 2], (1, k)),
                    from_scipy(sp.csr_array(w))):
            assert fmt.indices.dtype == expected, (k, fmt.indices.dtype)
            assert fmt.indptr.dtype == np.int32
            np.testing.assert_array_equal(fmt.to_dense(), w)
            assert (fmt @ np.ones(k, np.float32)).tolist() == [3.0]
            assert fmt.tmatmul(np.ones((1, 1), np.float32))[k - 1, 0] == 2.0
    w = np.zeros((1, 70000), dtype=np.float32)
    w[0, 69999] = 1.0
    # BSR indexes block columns: 70000 of width 1 need int32, 35000 of width 2 fit uint16
    assert BSR.from_dense(w, (1, 1)).indices.dtype == np.int32
    b = BSR.from_dense(w, (1, 2))
    assert b.indices.dtype == np.uint16 and b.indptr.dtype == np.int32
    assert (b @ np.ones(70000, np.float32)).tolist() == [1.0]


def test_nnz_and_density():
    dense, csr, bsr = _all_formats(W, (2, 3))
    assert (dense.nnz, dense.density, dense.count_nonzero()) == (12, 1.0, 3)
    assert (csr.nnz, csr.density) == (3, 0.25)
    # blocks (2, 3) over a 3 x 4 matrix: grid 2 x 2; blocks (0, 0), (1, 0), (1, 1) hold nonzeros
    assert bsr.nblocks == 3 and bsr.nnz == 18
    assert bsr.density == pytest.approx((6 + 3 + 1) / 12)  # overhang not counted
    with_zero = CSR.from_mask(W, (W != 0) | np.eye(3, 4, dtype=bool))
    assert with_zero.nnz == 6 and with_zero.count_nonzero() == 3
    empties = (CSR.from_dense(np.zeros((0, 5))), BSR.from_dense(np.zeros((4, 0))), Dense(np.zeros((0, 0))))
    for empty in empties:
        assert empty.nnz == 0 and empty.density == 0.0


@SETTINGS
@given(case=block_sparse_matrices())
def test_bsr_density_agrees_with_the_dense_count(case):
    """density counts the stored entries inside the shape from the blocks alone (edges cut)."""
    from sparsenet.formats.quantized import quantize_weight

    w = BSR.from_block_mask(case.w, case.block_mask, case.blocksize)  # stored all-zero blocks count too
    expected = int(w.mask().sum()) / w.size if w.size else 0.0
    assert w.density == expected
    if w.dtype == np.float32:
        assert quantize_weight(w).density == expected  # QBSR shares the block pattern


def test_bsr_density_and_repr_do_not_build_a_dense_mask(monkeypatch):
    n = 100_000  # a [M, K] bool mask would take 10 GB
    indptr = np.zeros(n // 4 + 1, dtype=np.int64)
    indptr[1:] = 2
    w = BSR(np.ones((2, 4, 4), dtype=np.float32), np.array([0, n // 4 - 1]), indptr, (n, n))
    monkeypatch.setattr(BSR, "mask", lambda self: pytest.fail("density built the [M, K] mask"))
    assert w.density == 32 / n**2
    assert "density=0.000" in repr(w) and "nblocks=2" in repr(w)
    corner = np.zeros((1, 4, 4), dtype=np.float32)
    corner[0, :2, :3] = 1  # what lies inside the shape; the overhang is zero, as BSR requires
    edge = BSR(corner, np.array([1]), np.array([0, 0, 1]), (6, 7))
    assert edge.density == (2 * 3) / 42  # the corner block holds 2 x 3 entries inside the shape


@pytest.mark.parametrize("fmt", _all_formats(), ids=FORMATS)
def test_matmul_1d_x(fmt):
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = fmt @ x
    assert y.shape == (3,) and y.dtype == np.float32
    assert y.tolist() == [4.0, 0.0, 13.0]
    assert (fmt @ [1, 2, 3, 4]).tolist() == [4.0, 0.0, 13.0]
    assert (fmt @ x.astype(np.int64)).dtype == np.float32


@pytest.mark.nojit
def test_bsr_shape_not_multiple_of_block():
    w = np.arange(1, 36, dtype=np.float64).reshape(5, 7)
    b = BSR.from_dense(w, (2, 3))
    assert b.blocksize == (2, 3) and b.nblocks == 9 and b.data.shape == (9, 2, 3)
    assert b.nnz == 54 and b.density == 1.0
    np.testing.assert_array_equal(b.to_dense(), w)
    assert np.all(b.data[6:, 1, :] == 0)  # last block row: its second row lies beyond row 4
    assert np.all(b.data[2::3, :, 1:] == 0)  # last block column: one column inside the shape
    s = b.to_scipy()
    assert s.format == "csr" and s.shape == (5, 7)
    np.testing.assert_array_equal(s.toarray(), w)
    np.testing.assert_array_equal(b @ np.ones(7), w.sum(axis=1))
    np.testing.assert_array_equal(b.tmatmul(np.ones((5, 1)))[:, 0], w.sum(axis=0))
    grad = b.sampled_grad(np.ones((5, 2)), np.ones((7, 2)))
    assert np.all(grad[6:, 1, :] == 0) and np.all(grad[2::3, :, 1:] == 0)
    b.with_data(grad).check()  # the gradient keeps the overhang zero
    exact = BSR.from_dense(np.ones((4, 6)), (2, 3)).to_scipy()
    assert exact.format == "bsr" and exact.blocksize == (2, 3)


@pytest.mark.parametrize("fmt", _all_formats(), ids=FORMATS)
def test_products_accept_strided_fortran_and_other_dtype_inputs(fmt):
    rng = np.random.default_rng(3)
    big_x, big_dy = rng.standard_normal((4, 10)), rng.standard_normal((3, 10))
    for x, dy in ((big_x[:, ::3], big_dy[:, ::3]),                               # strided views
                  (np.asfortranarray(big_x), np.asfortranarray(big_dy)),         # batch not contiguous
                  (big_x.astype(np.float32)[:, :7], (big_dy * 4).astype(np.int64)[:, :7])):
        check_format_against_reference(fmt, W, x, dy)


def test_to_scipy_and_to_dense_return_copies():
    for fmt in _all_formats():
        s = fmt.to_scipy()
        s.data[:] = 99
        d = fmt.to_dense()
        d[:] = 99
        np.testing.assert_array_equal(fmt.to_dense(), W)


@pytest.mark.parametrize("fmt", _all_formats(), ids=FORMATS)
def test_with_data_and_astype(fmt):
    new = np.arange(1, fmt.data.size + 1, dtype=np.float32).reshape(fmt.data.shape)
    if fmt.format_name == "bsr":
        new = fmt.data * 5  # keep the overhang zero
    out = fmt.with_data(new)
    assert type(out) is type(fmt) and out.shape == fmt.shape
    np.testing.assert_array_equal(out.data, new)
    np.testing.assert_array_equal(fmt.to_dense(), W)  # the original is untouched
    if fmt.format_name != "dense":
        np.testing.assert_array_equal(out.indices, fmt.indices)
        np.testing.assert_array_equal(out.indptr, fmt.indptr)
        with pytest.raises(ShapeError, match=re.escape(f"expected {fmt.data.shape}")):
            fmt.with_data(new.ravel()[:-1] if new.size else np.ones(1, np.float32))
    with pytest.raises(DTypeError, match="expected dtype float32 or float64, found int64"):
        fmt.with_data(new.astype(np.int64))
    w64 = fmt.astype(np.float64)
    assert type(w64) is type(fmt) and w64.dtype == np.float64 and fmt.dtype == np.float32
    np.testing.assert_array_equal(w64.to_dense(), W.astype(np.float64))
    assert w64.nbytes > fmt.nbytes
    assert (w64 @ np.ones(4)).dtype == np.float64
    with pytest.raises(DTypeError, match="expected dtype float32 or float64, found int32"):
        fmt.astype(np.int32)


def test_dense_with_data_rejects_other_shape():
    with pytest.raises(ShapeError):
        Dense(W).with_data(np.ones((2, 2), np.float32))


def test_from_scipy_dtypes_and_blocksize():
    m = sp.csr_array(np.array([[1, 0], [0, 2]]))  # integer data
    assert from_scipy(m).dtype == np.float32 and from_scipy(m, dtype=np.float64).dtype == np.float64
    assert from_scipy(m, "dense").dtype == np.float32
    assert from_scipy(m, "bsr").blocksize == (4, 4)
    b = sp.bsr_array(np.ones((4, 6)), blocksize=(2, 3))
    assert BSR.from_scipy(b).blocksize == (2, 3)
    assert from_scipy(b, "bsr", blocksize=(1, 2)).blocksize == (1, 2)


def test_as_format_same_format_returns_self():
    for fmt in _all_formats():
        assert as_format(fmt, fmt.format_name, blocksize=(2, 2)) is fmt
    b = BSR.from_dense(W, (2, 2))
    assert as_format(b, "bsr", blocksize=(1, 2)).blocksize == (1, 2)


# -- validation errors --------------------------------------------------------------------------
# Each case: (change to a valid input, the SparsenetError subclass, a fragment of the message).

# CSR 3 x 4: row 0 holds columns 0, 2; row 1 is empty; row 2 holds columns 1, 3.
CSR_OK = dict(data=np.array([1.0, 2.0, 3.0, 4.0]), indices=np.array([0, 2, 1, 3]),
              indptr=np.array([0, 2, 2, 4]), shape=(3, 4))
NOT_FINITE = "expected finite values, found NaN or inf"

CSR_ERRORS = {
    "indptr not monotone": (dict(indptr=[0, 3, 1, 4]), FormatError,
                            "expected non-decreasing values, found indptr[1] = 3 > indptr[2] = 1"),
    "indptr too short": (dict(indptr=[0, 2, 4]), FormatError,
                         "expected 4 entries (rows + 1), found 3"),
    "indptr too long": (dict(indptr=[0, 2, 2, 4, 4]), FormatError,
                        "expected 4 entries (rows + 1), found 5"),
    "indptr[0] != 0": (dict(indptr=[1, 2, 2, 4]), FormatError, "expected indptr[0] == 0, found 1"),
    "indptr[-1] != nnz": (dict(indptr=[0, 2, 2, 3]), FormatError,
                          "expected indptr[-1] == nnz == 4, found 3"),
    "index negative": (dict(indices=[0, 2, -1, 3]), FormatError,
                       "expected column indices in [0, 4), found -1"),
    "index too large": (dict(indices=[0, 2, 1, 4]), FormatError,
                        "expected column indices in [0, 4), found 4"),
    "unsorted row": (dict(indices=[2, 0, 1, 3]), FormatError,
                     "expected strictly increasing columns within each row (sorted, no duplicates), "
                     "found column 0 after 2 in row 0"),
    "duplicate column": (dict(indices=[0, 2, 3, 3]), FormatError, "found column 3 after 3 in row 2"),
    "NaN in data": (dict(data=[1.0, np.nan, 3.0, 4.0]), FormatError, NOT_FINITE),
    "inf in data": (dict(data=[1.0, 2.0, -np.inf, 4.0]), FormatError, NOT_FINITE),
    "int data": (dict(data=[1, 2, 3, 4]), DTypeError,
                 "CSR data: expected dtype float32 or float64, found int64"),
    "float16 data": (dict(data=np.ones(4, np.float16)), DTypeError,
                     "expected dtype float32 or float64, found float16"),
    "float indices": (dict(indices=[0.0, 2.0, 1.0, 3.0]), DTypeError,
                      "CSR indices: expected an integer array, found dtype float64"),
    "float indptr": (dict(indptr=[0.0, 2.0, 2.0, 4.0]), DTypeError,
                     "CSR indptr: expected an integer array, found dtype float64"),
    "2-D data": (dict(data=np.ones((4, 1))), FormatError,
                 "expected 1-D data, indices and indptr, found ndim 2, 1, 1"),
    "2-D indices": (dict(indices=np.array([[0, 2, 1, 3]])), FormatError, "found ndim 1, 2, 1"),
    "indices shorter than data": (dict(indices=[0, 2, 1]), FormatError,
                                  "indices has 3 entries but data has 4"),
    "negative shape": (dict(shape=(-3, 4)), ShapeError, "expected non-negative shape, found (-3, 4)"),
    "1-D shape": (dict(shape=(12,)), ShapeError, "expected shape (rows, cols), found (12,)"),
}


@pytest.mark.parametrize("case", list(CSR_ERRORS), ids=list(CSR_ERRORS))
def test_csr_validation_errors(case):
    change, error, message = CSR_ERRORS[case]
    kw = {**CSR_OK, **change}
    with pytest.raises(error, match=re.escape(message)) as info:
        CSR(kw["data"], kw["indices"], kw["indptr"], kw["shape"])
    assert isinstance(info.value, SparsenetError)


def test_csr_valid_edge_cases_pass_validation():
    CSR(**CSR_OK).check()
    CSR([1.0, 2.0, 3.0, 4.0], [2, 3, 0, 1], [0, 2, 2, 4], (3, 4))  # columns drop across rows: fine
    CSR(np.zeros(0), np.zeros(0, np.int64), np.zeros(4, np.int64), (3, 4))  # nnz = 0
    CSR(np.zeros(0, np.float32), np.zeros(0, np.int64), [0], (0, 0))
    CSR([0.0], np.array([3], np.uint8), [0, 1], (1, 4))  # stored zero, narrow index dtype


def test_csr_check_is_the_default():
    assert inspect.signature(CSR.__init__).parameters["check"].default is True
    assert inspect.signature(BSR.__init__).parameters["check"].default is True
    data, indptr, unsorted = CSR_OK["data"], CSR_OK["indptr"], np.array([2, 0, 1, 3])
    with pytest.raises(FormatError, match="found column 0 after 2 in row 0"):
        CSR(data, unsorted, indptr, (3, 4))
    unchecked = CSR(data, unsorted, indptr, (3, 4), check=False)  # cheap checks only
    with pytest.raises(FormatError, match="found column 0 after 2 in row 0"):
        unchecked.check()
    with pytest.raises(FormatError, match=re.escape("expected indptr[0] == 0")):  # cheap ones still run
        CSR(data, CSR_OK["indices"], [1, 2, 2, 4], (3, 4), check=False)


# BSR 3 x 5 with 2 x 2 blocks: grid 2 x 3; block row 0 holds block columns 0, 2; block row 1 holds
# block column 1. Overhang: the second row of block row 1, the second column of block column 2.
BSR_OK = dict(
    data=np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 0.0], [6.0, 0.0]], [[7.0, 8.0], [0.0, 0.0]]]),
    indices=np.array([0, 2, 1]), indptr=np.array([0, 2, 3]), shape=(3, 5))


def _bsr_data(block, row, col, value):
    data = BSR_OK["data"].copy()
    data[block, row, col] = value
    return data


BSR_ERRORS = {
    "overhang row nonzero": (dict(data=_bsr_data(2, 1, 0, 9.0)), FormatError,
                             "BSR data: expected zeros in the part of edge blocks beyond shape (3, 5)"),
    "overhang column nonzero": (dict(data=_bsr_data(1, 0, 1, 9.0)), FormatError,
                                "expected zeros in the part of edge blocks beyond shape (3, 5)"),
    "indptr not monotone": (dict(indptr=[0, 4, 3]), FormatError,
                            "expected non-decreasing values, found indptr[1] = 4 > indptr[2] = 3"),
    "indptr wrong length": (dict(indptr=[0, 3]), FormatError,
                            "expected 3 entries (block rows + 1), found 2"),
    "indptr[0] != 0": (dict(indptr=[1, 2, 3]), FormatError,
                       "expected to run from 0 to nblocks == 3, found 1 .. 3"),
    "indptr[-1] != nblocks": (dict(indptr=[0, 2, 2]), FormatError,
                              "expected to run from 0 to nblocks == 3, found 0 .. 2"),
    "block column negative": (dict(indices=[0, -1, 1]), FormatError,
                              "expected block columns in [0, 3), found -1"),
    "block column too large": (dict(indices=[0, 3, 1]), FormatError,
                               "expected block columns in [0, 3), found 3"),
    "unsorted block row": (dict(indices=[2, 0, 1], data=BSR_OK["data"][[1, 0, 2]]), FormatError,
                           "expected strictly increasing block columns within each block row (sorted, no "
                           "duplicates), found block column 0 after 2 in block row 0"),
    "duplicate block column": (dict(indices=[0, 0, 1]), FormatError, "found block column 0 after 0"),
    "NaN in data": (dict(data=_bsr_data(0, 0, 0, np.nan)), FormatError, NOT_FINITE),
    "int data": (dict(data=BSR_OK["data"].astype(np.int32)), DTypeError,
                 "BSR data: expected dtype float32 or float64, found int32"),
    "float indices": (dict(indices=[0.0, 2.0, 1.0]), DTypeError,
                      "BSR indices: expected an integer array, found dtype float64"),
    "float indptr": (dict(indptr=[0.0, 2.0, 3.0]), DTypeError,
                     "BSR indptr: expected an integer array, found dtype float64"),
    "2-D data": (dict(data=np.ones((3, 4))), FormatError,
                 "BSR data: expected shape (nblocks, R, C), found (3, 4)"),
    "2-D indices": (dict(indices=np.array([[0, 2, 1]])), FormatError,
                    "expected 1-D indices and indptr, found ndim 2, 1"),
    "indices shorter than data": (dict(indices=[0, 2]), FormatError,
                                  "indices has 2 entries but data has 3 blocks"),
    "empty block shape": (dict(data=np.ones((3, 0, 2))), ShapeError, "expected positive block dimensions"),
}


@pytest.mark.parametrize("case", list(BSR_ERRORS), ids=list(BSR_ERRORS))
def test_bsr_validation_errors(case):
    change, error, message = BSR_ERRORS[case]
    kw = {**BSR_OK, **change}
    with pytest.raises(error, match=re.escape(message)) as info:
        BSR(kw["data"], kw["indices"], kw["indptr"], kw["shape"])
    assert isinstance(info.value, SparsenetError)


def test_dense_check_rejects_non_finite():
    Dense(W).check()
    for bad in (np.nan, np.inf):
        w = W.copy()
        w[1, 2] = bad
        with pytest.raises(FormatError, match=re.escape("Dense data: " + NOT_FINITE)):
            Dense(w).check()


def test_bsr_valid_arrays_pass_validation():
    b = BSR(**BSR_OK)
    b.check()
    np.testing.assert_array_equal(b.to_dense(), [[1, 2, 0, 0, 5], [3, 4, 0, 0, 6], [0, 0, 7, 8, 0]])


CONSTRUCTION_ERRORS = {
    "CSR.from_dense 1-D": (lambda: CSR.from_dense(np.ones(3)), ShapeError,
                           "expected a 2-D array, found shape (3,)"),
    "BSR.from_dense 3-D": (lambda: BSR.from_dense(np.ones((2, 2, 2))), ShapeError, "expected a 2-D array"),
    "Dense 1-D": (lambda: Dense(np.ones(3)), ShapeError, "expected a 2-D array, found shape (3,)"),
    "Dense int": (lambda: Dense(np.ones((2, 2), np.int64)), DTypeError,
                  "expected dtype float32 or float64, found int64"),
    "CSR.from_mask shapes": (lambda: CSR.from_mask(np.ones((2, 3)), np.ones((3, 2))), ShapeError,
                             "expected 2-D w and mask of one shape, found (2, 3) and (3, 2)"),
    "BSR block mask shape": (lambda: BSR.from_block_mask(np.ones((3, 5)), np.ones((2, 2)), (2, 2)),
                             ShapeError, "BSR block mask: expected shape (2, 3), found (2, 2)"),
    "BSR blocksize zero": (lambda: BSR.from_dense(np.ones((2, 2)), (0, 2)), ShapeError,
                           "expected positive block dimensions, found (0, 2)"),
    "from_scipy of ndarray": (lambda: CSR.from_scipy(np.ones((2, 2))), DTypeError,
                              "expected a scipy.sparse matrix, found ndarray"),
    "from_scipy unknown format": (lambda: from_scipy(sp.csr_array((2, 2)), "coo"), FormatError,
                                  "expected format 'dense', 'csr' or 'bsr', found 'coo'"),
    "as_format unknown format": (lambda: as_format(np.ones((2, 2)), "ell"), FormatError,
                                 "expected format 'dense', 'csr', 'bsr' or 'nm', found 'ell'"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTION_ERRORS), ids=list(CONSTRUCTION_ERRORS))
def test_construction_errors(case):
    make, error, message = CONSTRUCTION_ERRORS[case]
    with pytest.raises(error, match=re.escape(message)) as info:
        make()
    assert isinstance(info.value, SparsenetError)


# -- product input errors -------------------------------------------------------------------------

@pytest.mark.nojit
@pytest.mark.parametrize("fmt", _all_formats(), ids=FORMATS)
def test_product_input_errors(fmt):
    name = type(fmt).__name__
    rows = "expected an array of shape (4, batch)"
    with pytest.raises(ShapeError, match=re.escape(f"{name}.matmul x: {rows}, found (3, 2)")):
        fmt.matmul(np.ones((3, 2)))
    with pytest.raises(ShapeError, match=re.escape(f"{rows}, found (3, 2)")):
        fmt @ np.ones((3, 2))
    with pytest.raises(ShapeError, match=re.escape(f"{name} @ x: expected x of shape (4,), found (3,)")):
        fmt @ np.ones(3)
    with pytest.raises(ShapeError, match=re.escape("expected x of shape (4,) or (4, batch), "
                                                   "found (4, 2, 1)")):
        fmt @ np.ones((4, 2, 1))
    with pytest.raises(ShapeError, match=re.escape(f"{name}.tmatmul dy: expected an array of shape "
                                                   f"(3, batch), found (4, 1)")):
        fmt.tmatmul(np.ones((4, 1)))
    with pytest.raises(ShapeError, match=re.escape(f"{name}.sampled_grad x: {rows}, found (3, 2)")):
        fmt.sampled_grad(np.ones((3, 2)), np.ones((3, 2)))
    dy = np.ones((3, 2))
    for bad, found in ((np.ones((4, 2), complex), "complex128"), (np.array([["a"] * 2] * 4), "<U1")):
        calls = {"matmul": lambda: fmt.matmul(bad), "@": lambda: fmt @ bad,
                 "@ 1-D": lambda: fmt @ bad[:, 0], "sampled_grad": lambda: fmt.sampled_grad(dy, bad)}
        for call in calls.values():
            with pytest.raises(DTypeError, match=re.escape(f"real numeric array, found dtype {found}")):
                call()
    with pytest.raises(DTypeError, match=re.escape(f"{name}.tmatmul dy: expected a real numeric array, "
                                                   f"found dtype complex128")):
        fmt.tmatmul(np.ones((3, 1), complex))


@pytest.mark.parametrize("fmt", [
    pytest.param(_all_formats()[0], id="dense"),
    pytest.param(_all_formats()[1], id="csr"),
    pytest.param(_all_formats()[2], id="bsr"),
])
def test_sampled_grad_batch_mismatch(fmt):
    with pytest.raises(ShapeError, match=re.escape("dy has batch 2, x has batch 3")):
        fmt.sampled_grad(np.ones((3, 2)), np.ones((4, 3)))
