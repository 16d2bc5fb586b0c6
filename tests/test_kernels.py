"""The raw Numba kernels (serial and parallel variants) against the NumPy references, and the
serial/parallel dispatch of the formats (forced with PARALLEL_MIN_WORK)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import assert_close, check_format_against_reference
from sparsenet import kernels
from sparsenet.formats import BSR, CSR, Dense
from sparsenet.formats.quantized import QBSR, QCSR
from sparsenet.kernels import _csr_tiles, reference
from sparsenet.kernels.epilogue import ACTIVATIONS, NONE, activate_ref, no_bias
from sparsenet.kernels import int8 as int8_kernels
from strategies import (
    BATCH_SIZES, DTYPES, SETTINGS, BlockCase, SparseCase, activations, batch_sizes,
    block_sparse_matrices, bsr_arrays, csr_arrays, index_dtypes, sparse_matrices,
)

OPS = ("spmm", "spmm_t", "sddmm")  # spmm_t: W.T's pattern and values, then the forward kernels


def _variants(fmt_name, op):
    """[(name, kernel)] for the serial and the parallel build of `<fmt_name>_<op>`."""
    name = f"{fmt_name}_{op}"
    return [(name + "_serial", getattr(kernels, name + "_serial")), (name, getattr(kernels, name))]


def _garbage(shape, dtype):
    """An output buffer full of NaN: any entry a kernel forgets to write fails the comparison."""
    return np.full(shape, np.nan, dtype=dtype)


def _check_forward(kern, arrays, x, ref, mag, n, dtype, what):
    """A forward kernel without its epilogue against `ref`, then with a bias and an activation (one
    of the codes, chosen from the case) against act(ref + bias)."""
    out = _garbage(ref.shape, dtype)
    kern(*arrays, x, out, no_bias(dtype), NONE, 0.0)
    assert_close(out, ref, mag, n, dtype, what)
    rng = np.random.default_rng(ref.size + 7 * ref.shape[0])
    bias = rng.standard_normal(ref.shape[0]).astype(dtype)
    act = int(rng.integers(1, len(ACTIVATIONS)))
    out = _garbage(ref.shape, dtype)
    kern(*arrays, x, out, bias, act, 0.1)
    # the activations are at most 1.13-Lipschitz; exp/tanh add a few ulp of a value below |y| + 1
    assert_close(out, activate_ref(ref + bias[:, None], act, 0.1), 2 * (mag + abs(bias)[:, None] + 1), n,
                 dtype, f"{what} + bias + activation {act}")


def _ops(fmt_name, op, dtype):
    """`op`, and its register-tiled float32 twin when there is one and dtype is float32."""
    f32 = op + "_f32"
    return (op, f32) if dtype == np.float32 and hasattr(kernels, f"{fmt_name}_{f32}") else (op,)


def _check_transposed(fmt_name, data, indices, indptr, n_cols, dy, ref, mag, n, dtype, what):
    """W.T @ dy as the formats compute it: W.T's pattern (`csr_transpose_pattern`), each build of
    `<fmt>_transpose_values`, then every forward kernel over W.T."""
    indices_t, indptr_t, perm = kernels.csr_transpose_pattern(indices, indptr, n_cols)
    shape = (data.shape[0], data.shape[2], data.shape[1]) if data.ndim == 3 else data.shape
    for name, kern in _variants(fmt_name, "transpose_values"):
        values = _garbage(shape, dtype)
        kern(data, perm, values)
        for fname, fwd in [v for op in _ops(fmt_name, "spmm", dtype) for v in _variants(fmt_name, op)]:
            _check_forward(fwd, (values, indices_t, indptr_t), dy, ref, mag, n, dtype, f"{name} + {fname} {what}")


def _run_spmv(fmt_name, data, indices, indptr, w, x):
    """The batch-1 kernels (1-D input and output) on the first column of x."""
    if x.shape[1] == 0:
        return
    x1 = np.ascontiguousarray(x[:, :1])
    w64, x64 = w.astype(np.float64), x1.astype(np.float64)
    ref, mag = w64 @ x64, abs(w64) @ abs(x64)
    for name, kern in [v for op in _ops(fmt_name, "spmv", w.dtype) for v in _variants(fmt_name, op)]:
        _check_forward(kern, (data, indices, indptr), x1, ref, mag, w.shape[1], w.dtype, f"{name} (shape {w.shape})")


def _run_csr_kernels(case, x, dy, index_dtype=np.uint16, pointer_dtype=np.int32):
    dtype = case.w.dtype
    (m, k), batch = case.w.shape, x.shape[1]
    data, indices, indptr = csr_arrays(case, index_dtype, pointer_dtype)
    inputs = [a.copy() for a in (data, indices, indptr, x, dy)]
    w64, x64, dy64 = case.w.astype(np.float64), x.astype(np.float64), dy.astype(np.float64)
    expected = {
        "spmm": (reference.spmm_ref(w64, x64), reference.spmm_ref(abs(w64), abs(x64)), k),
        "spmm_t": (reference.spmm_t_ref(w64, dy64), reference.spmm_t_ref(abs(w64), abs(dy64)), m),
        "sddmm": (reference.csr_sddmm_ref(indices, indptr, dy64, x64),
                  reference.csr_sddmm_ref(indices, indptr, abs(dy64), abs(x64)), batch),
    }
    for op in [o for base in OPS for o in _ops("csr", base, dtype)]:
        ref, mag, n = expected[op.removesuffix("_f32")]
        if op == "spmm_t":
            _check_transposed("csr", data, indices, indptr, k, dy, ref, mag, n, dtype,
                              f"(shape {case.w.shape}, batch {batch})")
            continue
        for name, kern in _variants("csr", op):
            what = f"{name} (shape {case.w.shape}, batch {batch})"
            if op.startswith("spmm"):
                _check_forward(kern, (data, indices, indptr), x, ref, mag, n, dtype, what)
                continue
            out = _garbage(ref.shape, dtype)
            kern(indices, indptr, dy, x, out)
            assert_close(out, ref, mag, n, dtype, what)
    _run_spmv("csr", data, indices, indptr, case.w, x)
    for before, after in zip(inputs, (data, indices, indptr, x, dy)):
        np.testing.assert_array_equal(before, after, err_msg="a kernel wrote to an input")


def _run_bsr_kernels(case, x, dy, index_dtype=np.uint16, pointer_dtype=np.int32, dirty_overhang=False):
    dtype = case.w.dtype
    (m, k), batch = case.w.shape, x.shape[1]
    data, indices, indptr = bsr_arrays(case, index_dtype, pointer_dtype)
    if dirty_overhang:  # the kernels must never read the entries of edge blocks beyond the shape
        r, c = case.blocksize
        rows = np.repeat(np.arange(case.block_mask.shape[0]), np.diff(indptr))
        data[rows == case.block_mask.shape[0] - 1, m % r if m % r else r:, :] = np.nan
        data[indices == case.block_mask.shape[1] - 1, :, k % c if k % c else c:] = np.nan
    w64, x64, dy64 = case.w.astype(np.float64), x.astype(np.float64), dy.astype(np.float64)
    expected = {
        "spmm": (reference.spmm_ref(w64, x64), reference.spmm_ref(abs(w64), abs(x64)), k),
        "spmm_t": (reference.spmm_t_ref(w64, dy64), reference.spmm_t_ref(abs(w64), abs(dy64)), m),
        "sddmm": (reference.bsr_sddmm_ref(indices, indptr, dy64, x64, case.blocksize),
                  reference.bsr_sddmm_ref(indices, indptr, abs(dy64), abs(x64), case.blocksize), batch),
    }
    for op in [o for base in OPS for o in _ops("bsr", base, dtype)]:
        ref, mag, n = expected[op.removesuffix("_f32")]
        if op == "spmm_t":
            _check_transposed("bsr", data, indices, indptr, -(-k // case.blocksize[1]), dy, ref, mag, n, dtype,
                              f"(shape {case.w.shape}, batch {batch})")
            continue
        for name, kern in _variants("bsr", op):
            what = f"{name} (shape {case.w.shape}, blocks {case.blocksize}, batch {batch})"
            if op.startswith("spmm"):
                _check_forward(kern, (data, indices, indptr), x, ref, mag, n, dtype, what)
                continue
            out = _garbage(ref.shape, dtype)
            kern(indices, indptr, dy, x, out)
            assert_close(out, ref, mag, n, dtype, what)
    _run_spmv("bsr", data, indices, indptr, case.w, x)


# -- raw kernels, random cases ------------------------------------------------------------------

@SETTINGS
@given(case=sparse_matrices(), batch=batch_sizes, idx=index_dtypes, data=st.data())
def test_csr_kernels_match_reference(case, batch, idx, data):
    (m, k), dtype = case.w.shape, case.w.dtype
    x, dy = data.draw(activations(k, batch, dtype)), data.draw(activations(m, batch, dtype))
    _run_csr_kernels(case, x, dy, *idx)


@SETTINGS
@given(case=block_sparse_matrices(), batch=batch_sizes, idx=index_dtypes, data=st.data())
def test_bsr_kernels_match_reference(case, batch, idx, data):
    (m, k), dtype = case.w.shape, case.w.dtype
    x, dy = data.draw(activations(k, batch, dtype)), data.draw(activations(m, batch, dtype))
    _run_bsr_kernels(case, x, dy, *idx)


@SETTINGS
@given(case=block_sparse_matrices(), batch=batch_sizes, data=st.data())
def test_bsr_kernels_never_read_overhang(case, batch, data):
    (m, k), dtype = case.w.shape, case.w.dtype
    x, dy = data.draw(activations(k, batch, dtype)), data.draw(activations(m, batch, dtype))
    _run_bsr_kernels(case, x, dy, dirty_overhang=True)


# -- raw kernels, every edge combination once ---------------------------------------------------

EDGE_SHAPES = [(0, 0), (0, 3), (3, 0), (1, 1), (1, 40), (40, 1), (7, 9)]


def _edge_case(shape, density, dtype):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < density
    return SparseCase(np.where(mask, rng.standard_normal(shape), 0).astype(dtype), mask)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=str)
def test_kernels_edge_shapes_every_batch(shape, density, dtype):
    case = _edge_case(shape, density, dtype)
    rng = np.random.default_rng(1)
    for batch in BATCH_SIZES:
        x = rng.standard_normal((shape[1], batch)).astype(dtype)
        dy = rng.standard_normal((shape[0], batch)).astype(dtype)
        _run_csr_kernels(case, x, dy)
        for blocksize in [(1, 1), (2, 3), (5, 5)]:
            mb, nbc = -(-shape[0] // blocksize[0]), -(-shape[1] // blocksize[1])
            block_mask = np.ones((mb, nbc), dtype=bool)
            _run_bsr_kernels(BlockCase(case.w, block_mask, blocksize), x, dy, dirty_overhang=True)


@pytest.mark.nojit
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", [0, 1, 3, 17, 65])
def test_kernels_tiny_nojit(batch, dtype):
    """Tiny cases, also run with NUMBA_DISABLE_JIT=1 (kernels as plain Python). In float32 the
    batches walk every register tile (64, 16, 8 wide, then scalar columns); the 16 x 5 matrix in
    8 x 1 blocks and the 4 x 9 one in 2 x 4 blocks take the batch-1 vector loops."""
    w = np.array([[0, 1.5, 0, -2], [0, 0, 0, 0], [3, 0, 0.5, 0]], dtype=dtype)
    rng = np.random.default_rng(batch)
    x, dy = rng.standard_normal((4, batch)).astype(dtype), rng.standard_normal((3, batch)).astype(dtype)
    _run_csr_kernels(SparseCase(w, w != 0), x, dy)
    _run_bsr_kernels(BlockCase(w, np.array([[True, True], [True, False]]), (2, 3)), x, dy,
                     dirty_overhang=True)
    tall = rng.standard_normal((16, 5)).astype(dtype)
    block_mask = np.array([[True, False, True, True, False], [False, True, True, False, True]])
    tall *= np.repeat(block_mask, 8, axis=0)
    x, dy = rng.standard_normal((5, batch)).astype(dtype), rng.standard_normal((16, batch)).astype(dtype)
    _run_bsr_kernels(BlockCase(tall, block_mask, (8, 1)), x, dy)
    wide = rng.standard_normal((4, 9)).astype(dtype)  # 2 x 4 blocks; the last block column overhangs
    block_mask = np.array([[True, False, True], [True, True, True]])
    wide *= np.repeat(np.repeat(block_mask, 2, axis=0), 4, axis=1)[:, :9]
    x, dy = rng.standard_normal((9, batch)).astype(dtype), rng.standard_normal((4, batch)).astype(dtype)
    _run_bsr_kernels(BlockCase(wide, block_mask, (2, 4)), x, dy, dirty_overhang=True)


# -- register tiles: fixed cases for every vector path -----------------------------------------

def _i8_reference(q, x):
    """Dequantised float64 product and its magnitude (for assert_close)."""
    w64 = q.to_dense().astype(np.float64)
    return w64 @ x.astype(np.float64), abs(w64) @ abs(x.astype(np.float64))


@pytest.mark.parametrize("batch", [3, 8, 17, 33, 64, 88, 130])
def test_csr_tiles_across_panels_and_tasks(batch):
    """More rows than one parallel task holds (2100 rows: tasks of 256 and a partial one), several
    panels of x per row (`cur` resumed at each panel), tiny panels (16 rows of x), an empty row,
    and the int8 kernel on the same tiles."""
    rng = np.random.default_rng(batch)
    m, k = 2100, 1100
    w = (rng.standard_normal((m, k)) * (rng.random((m, k)) < 0.02)).astype(np.float32)
    w[7] = 0
    fmt = CSR.from_dense(w)
    x = rng.standard_normal((k, batch)).astype(np.float32)
    ref, mag = w.astype(np.float64) @ x, abs(w.astype(np.float64)) @ abs(x)
    for panel_bytes in (64, _csr_tiles.X_PANEL_BYTES):
        out = _garbage((m, batch), np.float32)
        _csr_tiles.csr_rows_f32(fmt.data, fmt.indices, fmt.indptr, x, out, 0, m, np.empty(m, np.uintp),
                                panel_bytes)
        assert_close(out, ref, mag, k, np.float32, f"csr_rows_f32 (panel {panel_bytes} B, batch {batch})")
    for name, kern in _variants("csr", "spmm_f32"):
        _check_forward(kern, (fmt.data, fmt.indices, fmt.indptr), x, ref, mag, k, np.float32, f"{name} (batch {batch})")
    q = QCSR.from_float(fmt)
    ref, mag = _i8_reference(q, x)
    for kern in (int8_kernels.csr_i8_spmm_serial, int8_kernels.csr_i8_spmm):
        _check_forward(kern, (q.data, q.indices, q.indptr, q.scales), x, ref, mag, k, np.float32,
                       f"{kern.__name__} (batch {batch})")


@pytest.mark.parametrize("batch", [1, 9, 17, 64])
@pytest.mark.parametrize("blocksize", [(4, 4), (2, 4), (8, 4), (8, 1), (16, 1), (24, 1), (4, 3)], ids=str)
def test_bsr_tiles_every_vector_path(blocksize, batch):
    """Float32 and int8 BSR on 70 x 90 (partial last block row and column for most shapes): the
    4 x 16 and 1 x 8 tiles, the batch-1 column-block (R x 1) and quad-block (R x 4) loops, and
    their clipped edges. Overhanging entries are NaN: a kernel that reads them fails."""
    rng = np.random.default_rng(batch)
    (r, c), (m, k) = blocksize, (70, 90)
    block_mask = rng.random((-(-m // r), -(-k // c))) < 0.4
    block_mask[1] = True  # a full block row, and an empty one
    block_mask[2] = False
    w = (rng.standard_normal((m, k)) *
         np.repeat(np.repeat(block_mask, r, axis=0), c, axis=1)[:m, :k]).astype(np.float32)
    x = rng.standard_normal((k, batch)).astype(np.float32)
    dy = rng.standard_normal((m, batch)).astype(np.float32)
    _run_bsr_kernels(BlockCase(w, block_mask, blocksize), x, dy, dirty_overhang=True)
    q = QBSR.from_float(BSR.from_block_mask(w, block_mask, blocksize))
    ref, mag = _i8_reference(q, x)
    for kern in (int8_kernels.bsr_i8_spmm_serial, int8_kernels.bsr_i8_spmm):
        _check_forward(kern, (q.data, q.indices, q.indptr, q.scales), x, ref, mag, k, np.float32,
                       f"{kern.__name__} (blocks {blocksize}, batch {batch})")


# -- the formats' serial / parallel dispatch ---------------------------------------------------

KERNEL_NAMES = [f"{f}_{op}" for f in ("csr", "bsr") for base in ("spmm", "spmv", "transpose_values", "sddmm")
                for op in _ops(f, base, np.float32)]


def _spy_on_kernels(mp):
    """Replace every kernel in `sparsenet.kernels` by a wrapper that records its name."""
    calls = []
    for base in KERNEL_NAMES:
        for name in (base, base + "_serial"):
            def spy(*args, _fn=getattr(kernels, name), _name=name):
                calls.append(_name)
                return _fn(*args)
            mp.setattr(kernels, name, spy)
    return calls


def _format_cases():
    """(format, dense) pairs: CSR with its stored pattern, or BSR with its block mask."""
    csr = sparse_matrices().map(lambda c: (CSR.from_mask(c.w, c.mask), c.w))
    bsr = block_sparse_matrices().map(
        lambda c: (BSR.from_block_mask(c.w, c.block_mask, c.blocksize), c.w))
    return st.one_of(csr, bsr)


@SETTINGS
@given(fmt_w=_format_cases(), batch=batch_sizes, data=st.data())
def test_formats_forced_parallel_and_forced_serial(fmt_w, batch, data):
    fmt, w = fmt_w
    (m, k), dtype = fmt.shape, fmt.dtype
    x, dy = data.draw(activations(k, batch, dtype)), data.draw(activations(m, batch, dtype))
    for threshold, parallel in ((0, True), (2**62, False)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "PARALLEL_MIN_WORK", threshold)
            calls = _spy_on_kernels(mp)
            check_format_against_reference(fmt, w, x, dy)
        assert calls, "no kernel was called"
        wrong = [c for c in calls if c.endswith("_serial") == parallel]
        assert not wrong, f"PARALLEL_MIN_WORK={threshold}: expected only " \
                          f"{'parallel' if parallel else 'serial'} kernels, found calls to {wrong}"


@pytest.mark.parametrize("fmt_name", ["csr", "bsr"])
def test_parallel_threshold_is_nnz_times_batch(fmt_name):
    w = np.ones((2, 5), dtype=np.float32)  # CSR: nnz 10; BSR (2, 5) blocks: nnz 10
    fmt = CSR.from_dense(w) if fmt_name == "csr" else BSR.from_dense(w, (2, 5))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "PARALLEL_MIN_WORK", 100)
        calls = _spy_on_kernels(mp)
        for batch, parallel in ((9, False), (10, True), (0, False)):
            calls.clear()
            x, dy = np.ones((5, batch), np.float32), np.ones((2, batch), np.float32)
            fmt @ x, fmt.tmatmul(dy), fmt.sampled_grad(dy, x)
            suffix = "" if parallel else "_serial"
            # a float32 weight takes the register-tiled twin of the forward product, also over W.T
            # for the input gradient, after W's values are put in W.T's order (nnz = 10: serial)
            expected = [f"{fmt_name}_spmm_f32{suffix}", f"{fmt_name}_transpose_values_serial",
                        f"{fmt_name}_spmm_f32{suffix}", f"{fmt_name}_sddmm{suffix}"]
            assert calls == expected, (batch, calls)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (1, 1), (7, 9), (33, 70), (4, 16)], ids=str)
def test_dense_kernels_match_reference(shape, dtype):
    """The plan's Numba dense product (serial and parallel) and the BLAS product + epilogue, every
    batch size, with and without the epilogue: blocks of 4 rows and the rows left over, register
    tiles of 16 and 8 columns and the columns left over, 2-7 columns as dot products."""
    from sparsenet.formats.dense import _blas_product

    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(dtype)
    for batch in BATCH_SIZES:
        x = rng.standard_normal((shape[1], batch)).astype(dtype)
        ref, mag = w.astype(np.float64) @ x, abs(w.astype(np.float64)) @ abs(x)
        for kern in (kernels.dense_spmm_serial, kernels.dense_spmm, _blas_product):
            _check_forward(kern, (w,), x, ref, mag, shape[1], dtype, f"{kern.__name__} ({shape}, batch {batch})")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dense_format_matches_reference(dtype):
    rng = np.random.default_rng(0)
    for batch in BATCH_SIZES:
        w = rng.standard_normal((6, 4)).astype(dtype)
        check_format_against_reference(Dense(w), w, rng.standard_normal((4, batch)),
                                       rng.standard_normal((6, batch)))


# -- the plan's BatchNorm and MaxPool2d kernels, against the layers' NumPy forward ---------------------
@settings(deadline=None)  # (the first example of each dtype compiles the kernel)
@given(b=st.integers(0, 3), c=st.integers(1, 5), s=st.integers(1, 6), dtype=st.sampled_from([np.float32, np.float64]),
       in_place=st.booleans(), act=st.integers(0, len(ACTIVATIONS) - 1), seed=st.integers(0, 2**16))
def test_dense_batchnorm_matches_batchnorm_forward(b, c, s, dtype, in_place, act, seed):
    """dense_batchnorm, then each activation it may carry, against the layer's forward."""
    from sparsenet.kernels import dense_batchnorm
    from sparsenet.nn import BatchNorm2d, inference

    rng = np.random.default_rng(seed)
    bn = BatchNorm2d(c, eps=1e-3, dtype=dtype)
    bn.running_mean[:], bn.running_var[:] = rng.standard_normal(c), rng.random(c) + 0.1
    bn.weight.data[:], bn.bias.data[:] = rng.standard_normal(c), rng.standard_normal(c)
    x = rng.standard_normal((b, c, s, 1)).astype(dtype)
    with inference(bn):
        want = bn.forward(x)
    x3 = x.reshape(b, c, s).copy()
    out = x3 if in_place else np.empty_like(x3)
    dense_batchnorm(x3, bn.running_mean, bn.running_var, bn.weight.data, bn.bias.data, bn.eps, out, act, 0.1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.reshape(want.shape), activate_ref(want, act, 0.1), rtol=tol, atol=tol)


@settings(deadline=None)
@given(b=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3),
       kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.integers(0, 1),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_dense_maxpool2d_matches_maxpool_forward(b, c, h, w, kh, kw, sh, sw, pad, dtype, seed):
    from sparsenet.kernels import dense_maxpool2d
    from sparsenet.nn import MaxPool2d

    if pad * 2 > min(kh, kw) or h + 2 * pad < kh or w + 2 * pad < kw:
        return  # shapes the layer refuses (its own errors)
    pool = MaxPool2d((kh, kw), (sh, sw), pad)
    x = np.random.default_rng(seed).standard_normal((b, c, h, w)).astype(dtype)
    want = pool.forward(x)
    out = np.empty(want.shape, dtype)
    dense_maxpool2d(x, out, kh, kw, sh, sw, pad)
    np.testing.assert_array_equal(out, want)


def _im2col_ref(x, kh, kw, sh, sw, pad, dil):
    """The NumPy reference of `layout.im2col` (nn._im2col.im2col, with a stride per axis)."""
    b, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (dil * (kh - 1) + 1, dil * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dil, ::dil]
    oh, ow = win.shape[2], win.shape[3]
    return np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, b * oh * ow)


@settings(deadline=None)
@given(b=st.integers(0, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 4),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.integers(0, 3),
       dil=st.integers(1, 3), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_im2col_matches_its_reference(b, c, h, w, kh, kw, sh, sw, pad, dil, dtype, seed):
    from sparsenet.kernels.layout import im2col, im2col_serial
    from sparsenet.nn._im2col import im2col as layer_im2col

    if h + 2 * pad < dil * (kh - 1) + 1 or w + 2 * pad < dil * (kw - 1) + 1:
        return  # no output pixel
    x = np.random.default_rng(seed).standard_normal((b, c, h, w)).astype(dtype)
    want = _im2col_ref(x, kh, kw, sh, sw, pad, dil)
    if sh == sw:  # the reference is the layer's
        np.testing.assert_array_equal(want, layer_im2col(x, kh, kw, sh, pad, dil))
    for kernel in (im2col, im2col_serial):
        cols = np.full(want.shape, np.nan, dtype)  # every entry must be written
        kernel(x, cols, kh, kw, sh, sw, pad, dil)
        np.testing.assert_array_equal(cols, want)


@settings(deadline=None)
@given(m=st.integers(0, 4), b=st.integers(0, 3), s=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_swap_leading_matches_numpy(m, b, s, seed):
    from sparsenet.kernels.layout import swap_leading

    src = np.random.default_rng(seed).standard_normal((m, b, s)).astype(np.float32)
    dst = np.full((b, m, s), np.nan, np.float32)
    swap_leading(src, dst)
    np.testing.assert_array_equal(dst, src.transpose(1, 0, 2))


@settings(deadline=None)
@given(b=st.integers(0, 3), c=st.integers(1, 4), mult=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.integers(1, 3), s=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2),
       act=st.integers(0, len(ACTIVATIONS) - 1), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_depthwise_kernels_match_their_reference(b, c, mult, h, w, k, s, pad, dil, act, dtype, seed):
    """dense_depthwise2d (with bias and each activation) and its two gradient kernels against im2col
    and einsum in float64, serial and parallel, zero-size batches included."""
    from sparsenet.nn._im2col import col2im, im2col

    extent = dil * (k - 1) + 1
    if h + 2 * pad < extent or w + 2 * pad < extent:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c * mult, k * k)).astype(dtype)
    bias = rng.standard_normal(c * mult).astype(dtype)
    oh, ow = (h + 2 * pad - extent) // s + 1, (w + 2 * pad - extent) // s + 1
    cols = im2col(x.astype(np.float64), k, k, s, pad, dil).reshape(c, k * k, b, oh * ow)
    w64 = wt.astype(np.float64).reshape(c, mult, k * k)
    ref = np.einsum("cmt,ctbs->bcms", w64, cols).reshape(b, c * mult, oh, ow) + bias[None, :, None, None]
    ref = activate_ref(ref, act, 0.1)
    g = rng.standard_normal((b, c * mult, oh, ow)).astype(dtype)
    g64 = g.astype(np.float64).reshape(b, c, mult, oh * ow)
    ref_gw = np.einsum("bcms,ctbs->cmt", g64, cols).reshape(c * mult, k * k)
    ref_gx = col2im(np.einsum("bcms,cmt->ctbs", g64, w64).reshape(c * k * k, -1), x.shape, k, k, s, pad, dil)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    geometry = (k, k, s, s, pad, dil)
    for fwd, gx_kern, gw_kern in ((kernels.dense_depthwise2d, kernels.dense_depthwise2d_grad_input,
                                   kernels.dense_depthwise2d_grad_weight),
                                  (kernels.dense_depthwise2d_serial, kernels.dense_depthwise2d_grad_input_serial,
                                   kernels.dense_depthwise2d_grad_weight_serial)):
        out = _garbage((b, c * mult, oh, ow), dtype)
        fwd(x, wt, out, bias, act, 0.1, *geometry)
        np.testing.assert_allclose(out, ref, **tol)
        gx = _garbage(x.shape, dtype)
        gx_kern(g, wt, gx, *geometry)
        np.testing.assert_allclose(gx, ref_gx, **tol)
        gw = _garbage(wt.shape, dtype)
        gw_kern(g, x, gw, *geometry)
        np.testing.assert_allclose(gw, ref_gw, **tol)
    if mult == 1:  # the channels-last kernels (one output per input channel)
        for fwd in (kernels.dense_depthwise2d_cl, kernels.dense_depthwise2d_cl_serial):
            out = _garbage((b, c, oh, ow), dtype)
            fwd(x, wt, out, bias, act, 0.1, *geometry)
            np.testing.assert_allclose(out, ref, **tol)


def _bn_stats(rng, o):
    """Random BatchNorm statistics and affine parameters for `o` channels: (mean, var, gamma, beta, eps)."""
    return (rng.standard_normal(o).astype(np.float32), (rng.random(o) + 0.2).astype(np.float32),
            rng.standard_normal(o).astype(np.float32), rng.standard_normal(o).astype(np.float32), 1e-3)


def _conv_ref(x, w, bn, bias, k, s, pad, dil, act, res=None):
    """act(bn(conv(x) + bias) + res) in float64 through the layer's im2col (bn None: none)."""
    from sparsenet.nn._im2col import im2col

    b, _, h, wd = x.shape
    extent = dil * (k - 1) + 1
    oh, ow = (h + 2 * pad - extent) // s + 1, (wd + 2 * pad - extent) // s + 1
    y = w.astype(np.float64) @ im2col(x.astype(np.float64), k, k, s, pad, dil)
    y = y.reshape(w.shape[0], b, oh, ow).transpose(1, 0, 2, 3)
    if bias.size:
        y = y + bias.astype(np.float64)[None, :, None, None]
    if bn is not None:
        mean, var, gamma, beta, eps = (np.asarray(a, np.float64)[None, :, None, None] if np.ndim(a) else a for a in bn)
        y = (y - mean) / np.sqrt(var + eps) * gamma + beta
    if res is not None:
        y = y + res
    return activate_ref(y, act, 0.1)


def _run_conv(kernel, x, w, bn, bias, k, s, pad, dil, act, chunks, res=None):
    from sparsenet.kernels.conv import conv2d_scratch_shape

    b, c, h, wd = x.shape
    o = w.shape[0]
    extent = dil * (k - 1) + 1
    oh, ow = (h + 2 * pad - extent) // s + 1, (wd + 2 * pad - extent) // s + 1
    out = _garbage((b, o, oh, ow), np.float32)
    xpad = _garbage(b * c * (h + 2 * pad) * (wd + 2 * pad), np.float32)  # every entry read must be written
    scratch = _garbage(conv2d_scratch_shape(c * k * k, chunks), np.float32)
    res = np.zeros((0, 0, 0, 0), np.float32) if res is None else res
    none = np.zeros(0, np.float32)
    stats = (none, none, none, none, 0.0) if bn is None else bn
    scale, shift = (none, none) if bn is None else (_garbage(o, np.float32), _garbage(o, np.float32))
    kernel(w, x, xpad, out, bias, *stats, scale, shift, res, act, 0.1, k, k, s, s, pad, dil, scratch)
    return out


@settings(deadline=None)
@given(b=st.integers(0, 3), c=st.integers(1, 5), o=st.integers(1, 10), h=st.integers(1, 9), w=st.integers(1, 17),
       k=st.integers(1, 3), s=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2),
       act=st.integers(0, len(ACTIVATIONS) - 1), affine=st.integers(0, 2), residual=st.booleans(),
       chunks=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_dense_conv2d_matches_its_reference(b, c, o, h, w, k, s, pad, dil, act, affine, residual, chunks, seed):
    """The direct convolution (serial and parallel, one to three chunks of scratch) against im2col
    and a product in float64, with no epilogue, a bias, or a bias and a BatchNorm (folded in the
    kernel), a residual added, each activation; rows in whole tiles of 16 pixels read in place,
    gathered tiles, eight pixels or fewer (dot products), output channels not a multiple of 4,
    empty batches."""
    extent = dil * (k - 1) + 1
    if h + 2 * pad < extent or w + 2 * pad < extent:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c * k * k)).astype(np.float32)
    bn = _bn_stats(rng, o) if affine == 2 else None
    bias = rng.standard_normal(o).astype(np.float32) if affine else np.zeros(0, np.float32)
    oh, ow = (h + 2 * pad - extent) // s + 1, (w + 2 * pad - extent) // s + 1
    res = rng.standard_normal((b, o, oh, ow)).astype(np.float32) if residual else None
    ref = _conv_ref(x, wt, bn, bias, k, s, pad, dil, act, res)
    for kernel in (kernels.dense_conv2d, kernels.dense_conv2d_serial):
        out = _run_conv(kernel, x, wt, bn, bias, k, s, pad, dil, act, chunks, res)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8, 6, 3, 1, 1), (1, 16, 8, 16, 16, 3, 1, 1), (3, 4, 4, 4, 9, 3, 1, 1),
                                   (1, 64, 2, 2, 64, 3, 1, 1), (1, 32, 4, 4, 64, 3, 2, 1), (2, 5, 16, 16, 7, 1, 1, 0),
                                   (2, 6, 9, 9, 8, 3, 2, 0), (1, 3, 3, 3, 4, 3, 1, 2)])
def test_dense_conv2d_paths_match_the_reference(shape):
    """Each path of the direct kernel at sizes the property test rarely draws: the zoo ResNet's
    planes (8x8 read in place, 4x4 gathered, 2x2 at batch 1 as dot products over K = 576), a
    stride 2, a 16-wide plane, a 1x1 convolution, more padding than the plane."""
    b, c, h, w, o, k, s, pad = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c * k * k)).astype(np.float32)
    bn, bias = _bn_stats(rng, o), rng.standard_normal(o).astype(np.float32)
    for act in (NONE, ACTIVATIONS["relu"], ACTIVATIONS["clip0"], ACTIVATIONS["silu"]):
        ref = _conv_ref(x, wt, bn, bias, k, s, pad, 1, act)
        for kernel, chunks in ((kernels.dense_conv2d, 2), (kernels.dense_conv2d_serial, 1)):
            out = _run_conv(kernel, x, wt, bn, bias, k, s, pad, 1, act, chunks)
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@settings(deadline=None)
@given(c=st.integers(0, 6), conv_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_dense_batchnorm_fold_is_the_batchnorm(c, conv_bias, seed):
    """x * scale + shift after the fold equals dense_batchnorm of x + bias (the convolution's bias
    taken in), to float32 rounding; taps scaled by the same scale."""
    from sparsenet.kernels import dense_batchnorm, dense_batchnorm_fold

    rng = np.random.default_rng(seed)
    mean, gamma, beta = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    var = (rng.random(c) + 0.1).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32) if conv_bias else np.zeros(0, np.float32)
    scale, shift = _garbage(c, np.float32), _garbage(c, np.float32)
    w = rng.standard_normal((c, 9)).astype(np.float32)
    taps = _garbage(w.shape, np.float32)
    dense_batchnorm_fold(mean, var, gamma, beta, 1e-3, bias, scale, shift, w, taps)
    np.testing.assert_array_equal(taps, w * scale[:, None])  # a depthwise convolution's taps, scaled
    dense_batchnorm_fold(mean, var, gamma, beta, 1e-3, bias, scale, shift, w[:0], taps[:0])  # no taps
    x = rng.standard_normal((2, c, 5)).astype(np.float32)
    want = np.empty_like(x)
    dense_batchnorm(x + (bias[None, :, None] if conv_bias else 0), mean, var, gamma, beta, 1e-3, want, NONE, 0.0)
    np.testing.assert_allclose(x * scale[None, :, None] + shift[None, :, None], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c,k,s,dil,pad", [(8, 3, 1, 1, 1), (16, 3, 2, 1, 1), (19, 3, 1, 2, 2), (24, 5, 1, 1, 2),
                                          (16, 1, 1, 1, 0), (32, 3, 2, 1, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_last_depthwise_in_registers_matches_the_reference(c, k, s, dil, pad, dtype):
    """The channels-last kernel at the channel counts it runs for (eight and more: float32 sums in
    registers, eight channels at a time, 3x3 taps held in registers; the last channels below a
    multiple of 8 in loops), with a bias or none and the activations it applies on the way back."""
    from sparsenet.nn._im2col import im2col

    rng = np.random.default_rng(c * 100 + k * 10 + s)
    b, h, w = 3, 7, 6
    x = rng.standard_normal((b, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, k * k)).astype(dtype)
    extent = dil * (k - 1) + 1
    oh, ow = (h + 2 * pad - extent) // s + 1, (w + 2 * pad - extent) // s + 1
    cols = im2col(x.astype(np.float64), k, k, s, pad, dil).reshape(c, k * k, b, oh * ow)
    conv = np.einsum("ct,ctbs->bcs", wt.astype(np.float64), cols).reshape(b, c, oh, ow)
    for bias in (np.zeros(0, dtype), rng.standard_normal(c).astype(dtype)):
        for act in (NONE, ACTIVATIONS["relu"], ACTIVATIONS["clip0"], ACTIVATIONS["silu"]):
            ref = activate_ref(conv + (bias[None, :, None, None] if bias.size else 0), act, 0.1)
            for fwd in (kernels.dense_depthwise2d_cl, kernels.dense_depthwise2d_cl_serial):
                out = _garbage((b, c, oh, ow), dtype)
                fwd(x, wt, out, bias, act, 0.1, k, k, s, s, pad, dil)
                np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_the_depthwise_kernel_is_chosen_by_channels():
    assert kernels.depthwise_kernel(16, 16, 10) is kernels.dense_depthwise2d_cl_serial
    assert kernels.depthwise_kernel(96, 96, 1 << 20) is kernels.dense_depthwise2d_cl
    assert kernels.depthwise_kernel(8, 8, 10) is kernels.dense_depthwise2d_serial  # few channels: per plane
    assert kernels.depthwise_kernel(16, 32, 1 << 20) is kernels.dense_depthwise2d  # a multiplier: per plane


_EXP_ACTS = ("sigmoid", "silu", "gelu_tanh", "gelu_erf", "tanh")


@SETTINGS
@given(n=st.integers(0, 70), scale=st.sampled_from([1e-4, 1.0, 4.0, 30.0, 200.0]), seed=st.integers(0, 2**16))
def test_the_vectorised_exp_and_its_activations_match_float64(n, scale, seed):
    """exp_f32 (clamped to [-87, 88]) within 3e-7 relative of float64 exp; the exp-based float32
    activations (sigmoid, SiLU, both GELUs, tanh) within 1e-6 of the float64 reference, lengths
    0-70 and magnitudes from 1e-4 to 200 (the tails of every formula included); the epilogue takes
    that path for float32 rows of 8 values or more and gives the same values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    e = x.copy()
    kernels.epilogue.exp_f32(e, np.empty(n, np.int32))
    want = np.exp(np.clip(x.astype(np.float64), -87, 88))
    np.testing.assert_allclose(e, want, rtol=3e-7, atol=0)
    for name in _EXP_ACTS:
        act = ACTIVATIONS[name]
        with np.errstate(over="ignore"):  # the reference's exp(-y) overflows to inf: its value is right
            ref = activate_ref(x, act)
        got = x.copy()
        kernels.epilogue.transcendental_f32(got, act, np.empty(n, np.float32), np.empty(n, np.int32))
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=name)
        rows = np.tile(x, (2, 1))
        kernels.dense_epilogue_serial(rows, no_bias(np.float32), act, 0.0)
        np.testing.assert_allclose(rows, np.tile(ref, (2, 1)), rtol=1e-6, atol=1e-6, err_msg=f"{name} epilogue")


@SETTINGS
@given(n=st.integers(0, 9), m=st.integers(0, 20), act=st.integers(0, len(ACTIVATIONS) - 1),
       bias=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_dense_epilogue_t_adds_a_bias_per_column(n, m, act, bias, dtype, seed):
    """dense_epilogue_t: act(out + bias[None, :]) in place over [N, M] rows (a Linear over tokens)."""
    rng = np.random.default_rng(seed)
    out = rng.standard_normal((n, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if bias else no_bias(dtype)
    want = activate_ref(out.astype(np.float64) + (b if bias else 0), act, 0.1)
    kernels.dense_epilogue_t(out, b, act, 0.1)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@SETTINGS
@given(a=st.integers(0, 3), r=st.integers(0, 5), c=st.integers(0, 40), dtype=st.sampled_from(DTYPES),
       in_place=st.booleans(), seed=st.integers(0, 2**16))
def test_row_kernels_of_the_transformer_match_numpy(a, r, c, dtype, in_place, seed):
    """dense_mean_axis (mean over the middle axis), dense_softmax_rows and dense_layernorm (rows,
    in place or not) against NumPy in float64, empty shapes included."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((a, r, c)) * 5).astype(dtype)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    out = _garbage((a, c), dtype)
    kernels.dense_mean_axis(x, out)
    if r:
        np.testing.assert_allclose(out, x.astype(np.float64).mean(axis=1), **tol)
    rows = x.reshape(a * r, c)
    kernels.dense_softmax_rows(rows, rows.copy())  # rows of no values: nothing to do, nothing read
    if c:
        x64 = rows.astype(np.float64)
        soft = np.exp(x64 - x64.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        got = rows.copy() if in_place else _garbage(rows.shape, dtype)
        kernels.dense_softmax_rows(rows.copy() if not in_place else got, got)
        np.testing.assert_allclose(got, soft, **tol)
        gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        mean, var = x64.mean(axis=1, keepdims=True), x64.var(axis=1, keepdims=True)
        norm = (x64 - mean) / np.sqrt(var + 1e-5) * gamma + beta
        got = rows.copy() if in_place else _garbage(rows.shape, dtype)
        kernels.dense_layernorm(rows.copy() if not in_place else got, gamma, beta, 1e-5, got)
        np.testing.assert_allclose(got, norm, rtol=2e-5 if dtype == np.float32 else 1e-10,
                                   atol=2e-5 if dtype == np.float32 else 1e-10)


@SETTINGS
@given(rows=st.lists(st.integers(-3, 12), max_size=12), m=st.integers(0, 10),
       dtype=st.sampled_from([np.int64, np.int32, np.intp]))
def test_first_row_outside_finds_the_first_bad_index(rows, m, dtype):
    r = np.array(rows, dtype=dtype)
    bad = np.flatnonzero((r < 0) | (r >= m))
    assert kernels.gather.first_row_outside(r, m) == (int(bad[0]) if bad.size else -1)


@pytest.mark.parametrize("k,dil", [(1, 1), (3, 1), (3, 2), (5, 1), ((3, 1), 1)])
@pytest.mark.parametrize("b,h,w", [(0, 8, 8), (1, 1, 8), (2, 8, 8), (3, 2, 9), (1, 5, 12), (2, 3, 3), (1, 1, 1),
                                   (2, 4, 4)])
def test_im2col_of_same_convolutions_matches_its_reference(k, dil, b, h, w):
    """The one-run-per-plane path (stride 1, output the input's size) on planes smaller than the
    kernel's reach included: every entry written (NaN-filled output), equal to the reference."""
    from sparsenet.kernels.layout import im2col_same, im2col_same_serial, same_fits

    kh, kw = (k, k) if isinstance(k, int) else k
    pad = dil * (kh - 1) // 2
    assert same_fits((b, 3, h, w), kh, kw, 1, 1, pad, dil) == (kh == kw and w >= 8)
    if kh != kw:  # a rectangular kernel is "same" only with per-axis padding: not this path
        return
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(h * w).standard_normal((b, 3, h, w)).astype(dtype)
        want = _im2col_ref(x, kh, kw, 1, 1, pad, dil)
        assert want.shape[1] == b * h * w
        for kernel in (im2col_same, im2col_same_serial):  # planes of any width: right, if not faster
            cols = np.full(want.shape, np.nan, dtype)
            kernel(x, cols, kh, kw, pad, dil)
            np.testing.assert_array_equal(cols, want)
