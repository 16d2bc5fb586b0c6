"""int8 post-training quantisation: kernels against their NumPy references (serial and parallel),
the quantisation error bound, formats, whole models (accuracy on digits, dense and pruned), model
files and the `quantize` command."""

import argparse
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsenet as sn
from helpers import assert_close, rewrite_model_file
from sparsenet import kernels
from sparsenet.errors import DTypeError, FormatError, ModelFileError, ShapeError, SparsenetError
from sparsenet.formats import BSR, CSR, Dense
from sparsenet.formats.quantized import QBSR, QCSR, QDense, quantize_weight
from sparsenet.kernels import int8
from sparsenet.kernels.epilogue import no_bias
from sparsenet.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential
from sparsenet.summary import summarize
from sparsenet.cli.quantize import register as add_quantize_parser, run as cmd_quantize
from sparsenet.quantize import SCHEME, compression_summary, format_compression_table, quantize_model
from strategies import (
    SETTINGS, BlockCase, SparseCase, activations, batch_sizes, block_sparse_matrices,
    bsr_arrays, csr_arrays, index_dtypes, sparse_matrices,
)

F32 = np.dtype(np.float32)


# -- raw kernels against the references ------------------------------------------------------------

def _int8_values(rng, shape):
    """Random int8 values in [-127, 127], about a tenth of them 0 (explicit stored zeros)."""
    q = rng.integers(-127, 128, size=shape).astype(np.int8)
    q[rng.random(shape) < 0.1] = 0
    return q


NO_BIAS = no_bias(np.float32)  # the epilogue is tested in test_kernels


def _scales(rng, m):
    return rng.uniform(1e-3, 0.1, size=m).astype(np.float32)


def _check_kernel(name, call, ref_args, ref_fn, k, x):
    """Run the serial and the parallel build of `name` on a NaN-filled output; compare with the
    float64 reference within the summation bound (k products + the scale multiply)."""
    q_abs = [np.abs(a.astype(np.float64)) if a.dtype == np.int8 else a for a in ref_args]
    ref = ref_fn(*ref_args, x.astype(np.float64))
    mag = ref_fn(*q_abs, np.abs(x.astype(np.float64)))
    for variant in (name + "_serial", name):
        out = np.full(ref.shape, np.nan, dtype=np.float32)
        call(getattr(int8, variant), out)
        assert_close(out, ref, mag, k + 1, np.float32, f"{variant} (out {ref.shape})")


def _csr_i8_case(case, rng, idx=np.uint16, ptr=np.int32):
    _, indices, indptr = csr_arrays(case, idx, ptr)
    return _int8_values(rng, indices.shape), indices, indptr, _scales(rng, case.shape[0])


def _bsr_i8_case(case, rng, idx=np.uint16, ptr=np.int32, dirty_overhang=False):
    """int8 blocks at `case`'s block mask; the kernel's copy may hold nonzeros beyond the shape
    (which it must never read), the reference's copy is clean."""
    (m, k), (r, c) = case.shape, case.blocksize
    _, indices, indptr = bsr_arrays(case, idx, ptr)
    data = _int8_values(rng, (len(indices), r, c))
    rows = np.repeat(np.arange(case.block_mask.shape[0]), np.diff(indptr))
    last_row, last_col = rows == case.block_mask.shape[0] - 1, indices == case.block_mask.shape[1] - 1
    clean = data.copy()
    clean[last_row, m % r if m % r else r:, :] = 0
    clean[last_col, :, k % c if k % c else c:] = 0
    return (data if dirty_overhang else clean), clean, indices, indptr, _scales(rng, m)


def _run_all_kernels(w_shape, sparse_case, block_case, x, seed):
    rng = np.random.default_rng(seed)
    m, k = w_shape
    q, s = _int8_values(rng, (m, k)), _scales(rng, m)
    inputs = [a.copy() for a in (q, s, x)]
    _check_kernel("dense_i8_spmm", lambda kern, out: kern(q, s, x, out, NO_BIAS, 0, 0.0), (q, s), int8.dense_i8_spmm_ref, k, x)
    for before, after in zip(inputs, (q, s, x)):
        np.testing.assert_array_equal(before, after, err_msg="a kernel wrote to an input")

    if sparse_case is not None:
        data, indices, indptr, s = sparse_case
        _check_kernel("csr_i8_spmm", lambda kern, out: kern(data, indices, indptr, s, x, out, NO_BIAS, 0, 0.0),
                      (data, indices, indptr, s), int8.csr_i8_spmm_ref, k, x)
    if block_case is not None:
        dirty, clean, indices, indptr, s = block_case
        _check_kernel("bsr_i8_spmm", lambda kern, out: kern(dirty, indices, indptr, s, x, out, NO_BIAS, 0, 0.0),
                      (clean, indices, indptr, s), int8.bsr_i8_spmm_ref, k, x)


@SETTINGS
@given(case=sparse_matrices(dtype=np.float32), batch=batch_sizes, idx=index_dtypes, data=st.data())
def test_dense_and_csr_i8_kernels_match_reference(case, batch, idx, data):
    x = data.draw(activations(case.shape[1], batch, np.float32))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    _run_all_kernels(case.shape, _csr_i8_case(case, rng, *idx), None, x, seed)


@SETTINGS
@given(case=block_sparse_matrices(dtype=np.float32), batch=batch_sizes, idx=index_dtypes, data=st.data())
def test_bsr_i8_kernel_matches_reference_and_ignores_overhang(case, batch, idx, data):
    x = data.draw(activations(case.shape[1], batch, np.float32))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    block = _bsr_i8_case(case, rng, *idx, dirty_overhang=True)
    _check_kernel("bsr_i8_spmm", lambda kern, out: kern(block[0], block[2], block[3], block[4], x, out, NO_BIAS, 0, 0.0),
                  block[1:], int8.bsr_i8_spmm_ref, case.shape[1], x)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1), (1, 7), (7, 1), (9, 10)])
@pytest.mark.parametrize("batch", [0, 1, 65])
def test_i8_kernels_edge_shapes(shape, batch):
    """Empty and one-row / one-column matrices, every row empty and every row full, blocks that
    do not divide the shape."""
    rng = np.random.default_rng(sum(shape) + batch)
    x = rng.standard_normal((shape[1], batch)).astype(np.float32)
    for density in (0.0, 1.0):
        mask = np.full(shape, density > 0)
        sparse = _csr_i8_case(SparseCase(mask.astype(np.float32), mask), rng)
        for blocksize in ((1, 1), (2, 3), (4, 4)):
            grid = (-(-shape[0] // blocksize[0]), -(-shape[1] // blocksize[1]))
            bcase = BlockCase(np.zeros(shape, np.float32), np.full(grid, density > 0), blocksize)
            _run_all_kernels(shape, sparse, _bsr_i8_case(bcase, rng, dirty_overhang=True), x, rng.integers(99))


@pytest.mark.nojit
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_i8_kernels_tiny_nojit(batch):
    """Tiny case, also run with NUMBA_DISABLE_JIT=1 (kernels as plain Python)."""
    w = np.array([[0, 1.5, 0, -2], [0, 0, 0, 0], [3, 0, 0.5, 0]], dtype=np.float32)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((4, batch)).astype(np.float32)
    block = BlockCase(w, np.array([[True, True], [True, False]]), (2, 3))
    _run_all_kernels(w.shape, _csr_i8_case(SparseCase(w, w != 0), rng),
                     _bsr_i8_case(block, rng, dirty_overhang=True), x, batch)


# -- quantising formats: error bound, pattern, bytes --------------------------------------------------

def _check_quantized(q, src, pattern):
    """Invariants of q = quantize_weight(src): int8 in [-127, 127], scales max|w_i| / 127 (1 for
    zero rows), |w - dequant| <= scale / 2, the same stored pattern, exact nbytes."""
    w = src.to_dense().astype(np.float64)
    m, k = src.shape
    assert q.shape == src.shape and q.dtype == F32 and q.data.dtype == np.int8
    assert q.scales.dtype == F32 and q.scales.shape == (m,)
    assert q.data.shape == src.data.shape
    assert q.data.size == 0 or (q.data.min() >= -127 and q.data.max() <= 127)
    row_max = np.abs(w).max(axis=1) if k else np.zeros(m)
    expected = np.where(row_max > 0, (row_max / 127).astype(np.float32), np.float32(1.0))
    np.testing.assert_array_equal(q.scales, expected)
    deq = q.to_dense()
    assert deq.dtype == F32 and deq.shape == (m, k)
    bound = q.scales.astype(np.float64)[:, None] / 2 * (1 + 1e-6) + np.abs(w) * 2.0**-23
    err = np.abs(w - deq)
    assert np.all(err <= bound), f"max error / scale = {np.max(err / q.scales[:, None] if k else 0)}"
    assert np.all(deq[~pattern] == 0)
    qmax = np.abs(q.to_dense() / q.scales[:, None]).max(axis=1) if k else np.zeros(m)
    np.testing.assert_allclose(qmax[row_max > 0], 127, rtol=1e-5)  # each row uses the full range
    extra = 0
    if src.format_name != "dense":
        np.testing.assert_array_equal(q.mask(), src.mask(), err_msg="pattern")
        np.testing.assert_array_equal(q.indices, src.indices)
        np.testing.assert_array_equal(q.indptr, src.indptr)
        assert q.indices.dtype == src.indices.dtype and q.indptr.dtype == src.indptr.dtype
        assert q.nnz == src.nnz
        extra = q.indices.nbytes + q.indptr.nbytes
    assert q.nbytes == q.data.size + extra + 4 * m
    assert q.count_nonzero() == int(np.count_nonzero(q.data))
    q.check()


def _check_matmul(q, x):
    got = q @ x
    assert got.dtype == F32 and got.shape == (q.shape[0], x.shape[1]) and got.flags.c_contiguous
    deq = q.to_dense().astype(np.float64)
    assert_close(got, deq @ x.astype(np.float64), np.abs(deq) @ np.abs(x.astype(np.float64)),
                 q.shape[1] + 1, np.float32, f"{q.format_name} @ x")


def _spy(mp):
    calls = []
    for fmt in ("dense", "csr", "bsr"):
        for name in (f"{fmt}_i8_spmm", f"{fmt}_i8_spmm_serial"):
            def spy(*args, _fn=getattr(int8, name), _name=name):
                calls.append(_name)
                return _fn(*args)
            mp.setattr(int8, name, spy)
    return calls


def _check_dispatch(q, x):
    """matmul with the parallel kernel forced, then the serial one (PARALLEL_MIN_WORK)."""
    for threshold, parallel in ((0, True), (2**62, False)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "PARALLEL_MIN_WORK", threshold)
            calls = _spy(mp)
            _check_matmul(q, x)
        assert calls and all(c.endswith("_serial") != parallel for c in calls), (threshold, calls)


@SETTINGS
@given(case=sparse_matrices(), batch=batch_sizes, data=st.data())
def test_qdense_and_qcsr_from_float(case, batch, data):
    x = data.draw(activations(case.shape[1], batch, np.float32))
    for src in (Dense(case.w), CSR.from_mask(case.w, case.mask)):
        q = quantize_weight(src)
        assert q.format_name == {"dense": "qdense", "csr": "qcsr"}[src.format_name]
        _check_quantized(q, src, case.mask if src.format_name == "csr" else np.ones(case.shape, bool))
        _check_dispatch(q, x)


@SETTINGS
@given(case=block_sparse_matrices(), batch=batch_sizes, data=st.data())
def test_qbsr_from_float(case, batch, data):
    x = data.draw(activations(case.shape[1], batch, np.float32))
    src = BSR.from_block_mask(case.w, case.block_mask, case.blocksize)
    q = QBSR.from_float(src)
    assert q.format_name == "qbsr" and q.blocksize == src.blocksize and q.nblocks == src.nblocks
    _check_quantized(q, src, case.mask)
    assert q.density == src.density
    _check_dispatch(q, x)


@pytest.mark.nojit
def test_quantized_formats_tiny_nojit():
    w = np.array([[0, 1.5, 0, -2], [0, 0, 0, 0], [3, 0, 0.5, 0]], dtype=np.float32)
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    for src in (Dense(w), CSR.from_dense(w), BSR.from_dense(w, (2, 3))):
        q = quantize_weight(src)
        np.testing.assert_array_equal(q.scales, np.float32([2 / 127, 1.0, 3 / 127]))
        _check_quantized(q, src, src.mask() if hasattr(src, "mask") else np.ones(w.shape, bool))
        _check_matmul(q, x)
        np.testing.assert_allclose(q @ x, w @ x, atol=0.05)


def test_value_that_rounds_to_zero_stays_stored():
    w = CSR.from_dense(np.array([[1.0, 1e-4, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32))
    q = QCSR.from_float(w)
    assert q.nnz == 2 and q.data.tolist() == [127, 0] and q.count_nonzero() == 1
    np.testing.assert_array_equal(q.mask(), w.mask())
    assert q.scales.tolist() == [np.float32(1 / 127), 1.0]


def test_quantized_weights_refuse_training_products():
    for q in (quantize_weight(Dense(np.ones((2, 3), np.float32))),
              quantize_weight(CSR.from_dense(np.eye(3, dtype=np.float32))),
              quantize_weight(BSR.from_dense(np.eye(4, dtype=np.float32), (2, 2)))):
        for call in (lambda: q.tmatmul(np.ones((q.shape[0], 1))), lambda: q.sampled_grad(
                np.ones((q.shape[0], 1)), np.ones((q.shape[1], 1))), lambda: q.astype(np.float64)):
            with pytest.raises(SparsenetError, match="fine-tune before quantizing"):
                call()
        with pytest.raises(SparsenetError, match="already quantized"):
            quantize_weight(q)
        with pytest.raises(DTypeError):
            q.with_data(q.data.astype(np.float32))
        assert q.with_data(-q.data).data.tolist() == (-q.data).tolist()
        with pytest.raises(ShapeError):
            q @ np.ones((q.shape[1] + 1, 2))


def _valid_arrays():
    q = QCSR.from_float(CSR.from_dense(np.array([[1.0, 0, -2.0], [0, 0.5, 0]], dtype=np.float32)))
    return dict(data=q.data, indices=q.indices, indptr=q.indptr, scales=q.scales, shape=q.shape)


@pytest.mark.parametrize("change, error, fragment", [
    (dict(scales=np.float32([np.nan, 1])), FormatError, "finite positive"),
    (dict(scales=np.float32([1, -1])), FormatError, "finite positive"),
    (dict(scales=np.float32([1, 0])), FormatError, "finite positive"),
    (dict(scales=np.float32([1, np.inf])), FormatError, "finite positive"),
    (dict(scales=np.float32([1, 1, 1])), FormatError, r"expected shape \(2,\)"),
    (dict(scales=np.float64([1, 1])), DTypeError, "float32"),
    (dict(data=np.int8([-128, 1, 1])), FormatError, "-127, 127"),
    (dict(data=np.float32([1, 1, 1])), DTypeError, "int8"),
    (dict(indices=np.array([0, 7, 1])), FormatError, "indices"),
    (dict(indptr=np.array([0, 3, 2])), FormatError, "indptr"),
])
def test_validation_errors(change, error, fragment):
    args = dict(_valid_arrays(), **change)
    with pytest.raises(error, match=fragment):
        QCSR(args["data"], args["indices"], args["indptr"], args["scales"], args["shape"])


@pytest.mark.parametrize("scales, error", [
    (np.float32([np.nan, 1]), FormatError), (np.float32([1, -1]), FormatError), (np.float32([1]), FormatError),
    (np.float64([1, 1]), DTypeError),
])
def test_scales_are_validated_in_every_format(scales, error):
    w = np.array([[1.0, 0, -2.0], [0, 0.5, 0]], dtype=np.float32)
    d, c, b = QDense.from_float(w), QCSR.from_float(CSR.from_dense(w)), QBSR.from_float(BSR.from_dense(w, (2, 2)))
    for build in (lambda: QDense(d.data, scales), lambda: QCSR(c.data, c.indices, c.indptr, scales, c.shape),
                  lambda: QBSR(b.data, b.indices, b.indptr, scales, b.shape)):
        with pytest.raises(error, match="scales"):
            build()
    with pytest.raises(DTypeError, match="int8"):
        QDense(w, d.scales)
    with pytest.raises(DTypeError, match="int8"):
        QBSR(b.data.astype(np.float32), b.indices, b.indptr, b.scales, b.shape)


def test_qbsr_overhang_must_be_zero():
    b = QBSR.from_float(BSR.from_dense(np.ones((3, 3), np.float32), (2, 2)))
    data = b.data.copy()
    data[-1, 1, :] = 5  # row 3 lies beyond the shape
    with pytest.raises(FormatError, match="edge blocks"):
        QBSR(data, b.indices, b.indptr, b.scales, b.shape)


def test_nonfinite_source_is_refused():
    with pytest.raises(FormatError, match="finite"):
        QDense.from_float(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(DTypeError):
        QCSR.from_float(Dense(np.eye(2, dtype=np.float32)))


# -- whole models -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    from sparsenet.data import load_dataset
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    model = sn.build_model("lenet300", seed=0)
    sn.fit(model, digits.x_train, digits.y_train, epochs=10, seed=0, quiet=True)
    return model


@pytest.fixture(scope="module")
def pruned(trained, digits):
    """90 % global magnitude pruning, compiled to CSR. One-shot 90 % without fine-tuning leaves this
    10-epoch model at chance (0.14 observed), which would make the int8 comparison vacuous: it is
    fine-tuned for 10 epochs (0.93 observed)."""
    import copy

    from sparsenet.prune import compiled, prune

    model = copy.deepcopy(trained)
    prune(model, sparsity=0.9, scope="global", train_data=(digits.x_train, digits.y_train), finetune_epochs=10)
    return compiled(model, "csr")


def _acc(model, ds):
    return sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"]


def test_quantized_lenet_keeps_accuracy(trained, digits):
    q = quantize_model(trained)
    assert q is not trained and trained.layers[1].weight.format_name == "dense"  # original untouched
    for layer in (q.layers[1], q.layers[3], q.layers[5]):
        assert layer.weight.format_name == "qdense" and layer.weight.data.dtype == np.int8
        assert layer.bias.data.dtype == np.float32 and layer.dtype == np.float32
    meta = q.meta["quantization"]
    assert meta["scheme"] == SCHEME and sorted(meta["layers"]) == ["1", "3", "5"]
    for name, rec in meta["layers"].items():
        assert rec["max_abs_error"] <= float(q.layers[int(name)].weight.scales.max()) / 2 * (1 + 1e-6)
    acc, acc_q = _acc(trained, digits), _acc(q, digits)
    assert acc > 0.9
    assert acc - acc_q < 0.01, f"int8 lost {acc - acc_q:.4f} accuracy ({acc:.4f} -> {acc_q:.4f})"
    totals = summarize(q)["totals"]
    weights = 64 * 300 + 300 * 100 + 100 * 10
    assert totals["total_bytes"] == weights + 2 * 4 * (300 + 100 + 10)  # int8 values, scales, biases


def test_pruned_quantized_lenet_keeps_accuracy(pruned, digits):
    q = quantize_model(pruned)
    for i in (1, 3, 5):
        src, dst = pruned.layers[i].weight, q.layers[i].weight
        assert src.format_name == "csr" and dst.format_name == "qcsr"
        np.testing.assert_array_equal(dst.mask(), src.mask())
    density = sum(q.layers[i].weight.nnz for i in (1, 3, 5)) / sum(q.layers[i].weight.size for i in (1, 3, 5))
    assert density == pytest.approx(0.1, abs=0.005)
    acc, acc_q = _acc(pruned, digits), _acc(q, digits)
    assert acc > 0.85
    assert acc - acc_q < 0.01, f"int8 lost {acc - acc_q:.4f} accuracy on the pruned model ({acc:.4f} -> {acc_q:.4f})"


def test_compression_summary(trained, pruned, digits, tmp_path):
    stages = {"dense fp32": trained, "pruned": pruned, "pruned + int8": quantize_model(pruned)}
    table = compression_summary(stages, digits.x_test, digits.y_test, tmp_path)
    assert list(table) == list(stages)
    for name, model in stages.items():
        row = table[name]
        assert row["accuracy"] == _acc(model, digits)
        assert row["bytes"] == summarize(model)["totals"]["total_bytes"]
        assert row["file_bytes"] == (tmp_path / row["path"].split("/")[-1]).stat().st_size
    b = [table[n]["bytes"] for n in stages]
    f = [table[n]["file_bytes"] for n in stages]
    assert b[0] > b[1] > b[2] and f[0] > f[1] > f[2]
    assert table["dense fp32"]["memory_ratio"] == 1.0
    assert table["pruned + int8"]["memory_ratio"] > table["pruned"]["memory_ratio"] * 1.5
    text = format_compression_table(table)
    assert "pruned + int8" in text and len(text.splitlines()) == 4
    print("\n" + text)


def test_quantized_cnn_keeps_batchnorm_float32(digits):
    model = sn.build_model("cnn", seed=0)
    model.train().forward(digits.x_train[:64])  # BatchNorm statistics away from their defaults
    q = quantize_model(model.eval())
    assert [type(l.weight).__name__ for l in q.layers if hasattr(l, "weight_param")] == ["QDense"] * 4
    for a, b in ((model[1], q[1]), (model[4], q[4])):
        assert b.weight.data.dtype == np.float32 and b.running_var.dtype == np.float32
        np.testing.assert_array_equal(a.running_mean, b.running_mean)
    out, out_q = sn.predict(model, digits.x_test), sn.predict(q, digits.x_test)
    assert np.max(np.abs(out - out_q)) <= 0.05 * np.max(np.abs(out))


def test_quantized_model_cannot_be_trained(digits):
    q = quantize_model(sn.build_model("lenet300"))
    with pytest.raises(SparsenetError, match="fine-tune before quantizing"):
        sn.fit(q, digits.x_train[:8], digits.y_train[:8], epochs=1, quiet=True)


def test_quantize_model_rejects_float64_and_non_models():
    with pytest.raises(DTypeError, match="float32"):
        quantize_model(Sequential(Linear(3, 2, dtype=np.float64)))
    with pytest.raises(SparsenetError):
        quantize_model(Linear(3, 2))
    q = quantize_model(Sequential(Linear(3, 2)))
    again = quantize_model(q)  # already quantised layers are kept as they are
    np.testing.assert_array_equal(again[0].weight.data, q[0].weight.data)


# -- model files -------------------------------------------------------------------------------------

def _every_quantized_format_model():
    """Conv2d (QBSR, blocks not dividing the shape) -> BN -> ReLU -> Flatten -> Linear (QCSR) -> Linear (QDense)."""
    rng = np.random.default_rng(0)
    conv = Conv2d(1, 5, 3, padding=1, seed=1)
    conv.weight = BSR.from_dense(conv.weight.to_dense() * (rng.random((5, 9)) < 0.5), blocksize=(2, 2))
    lin = Linear(5 * 8 * 8, 20, seed=2)
    w = lin.weight.to_dense()
    w[np.abs(w) < np.quantile(np.abs(w), 0.8)] = 0
    lin.weight = CSR.from_dense(w)
    m = Sequential(conv, BatchNorm2d(5), ReLU(), Flatten(), lin, ReLU(), Linear(20, 10, seed=3))
    m.input_shape = (1, 8, 8)
    x = rng.random((16, 1, 8, 8), dtype=np.float32)
    m.train().forward(x)  # BatchNorm statistics away from their defaults
    return quantize_model(m.eval()), x


def test_roundtrip_is_bit_exact(tmp_path):
    model, x = _every_quantized_format_model()
    assert [model[i].weight.format_name for i in (0, 4, 6)] == ["qbsr", "qcsr", "qdense"]
    path = tmp_path / "q.safetensors"
    sn.save_model(model, path)
    loaded = sn.load(path)
    for i in (0, 4, 6):
        a, b = model[i].weight, loaded[i].weight
        assert type(a) is type(b) and a.shape == b.shape
        for name in ("data", "indices", "indptr", "scales"):
            if hasattr(a, name):
                x0, x1 = getattr(a, name), getattr(b, name)
                assert x0.dtype == x1.dtype and x0.shape == x1.shape and x0.tobytes() == x1.tobytes(), name
    assert loaded[0].weight.blocksize == (2, 2)
    assert loaded.meta["quantization"] == model.meta["quantization"]
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert a.data.dtype == b.data.dtype and a.data.tobytes() == b.data.tobytes()
    np.testing.assert_array_equal(sn.predict(model, x), sn.predict(loaded, x))


def _rewrite(path, key, fn):
    def mutate(arrays, manifest):
        if fn is None:
            arrays.pop(key)
        else:
            arrays[key] = fn(arrays[key])
    rewrite_model_file(path, mutate)


@pytest.mark.parametrize("layer", [0, 4, 6])
@pytest.mark.parametrize("case, fn, fragment", [
    ("NaN scale", lambda s: np.where(np.arange(s.size) == 1, np.nan, s).astype(s.dtype), "finite positive"),
    ("negative scale", lambda s: -s, "finite positive"),
    ("short scales", lambda s: s[:-1], "scales"),
    ("long scales", lambda s: np.concatenate([s, s[:1]]), "scales"),
    ("float64 scales", lambda s: s.astype(np.float64), "float32"),
    ("missing scales", None, "missing array 'scales'"),
])
def test_corrupt_scales_raise_model_file_error(layer, case, fn, fragment, tmp_path):
    model, _ = _every_quantized_format_model()
    path = tmp_path / "q.safetensors"
    sn.save_model(model, path)
    _rewrite(path, f"layers.{layer}.weight.scales", fn)
    with pytest.raises(ModelFileError, match=fragment):
        sn.load(path)


@pytest.mark.parametrize("layer, fn, fragment", [
    (4, lambda d: np.full_like(d, -128), "-127, 127"),
    (6, lambda d: d.astype(np.float32), "int8"),
    (6, lambda d: d[:, :-1], "shape"),
    (0, lambda d: np.full_like(d, 3), "edge blocks"),
    (4, lambda d: d[:-1], "indices"),
])
def test_corrupt_values_raise_model_file_error(layer, fn, fragment, tmp_path):
    model, _ = _every_quantized_format_model()
    path = tmp_path / "q.safetensors"
    sn.save_model(model, path)
    _rewrite(path, f"layers.{layer}.weight.data", fn)
    with pytest.raises(ModelFileError, match=fragment):
        sn.load(path)


# -- the command ---------------------------------------------------------------------------------------

def _parser():
    p = argparse.ArgumentParser(prog="sparsenet")
    sub = p.add_subparsers(dest="command", required=True)
    add_quantize_parser(sub)
    return p


def test_cli_quantize_json(pruned, digits, tmp_path, capsys):
    src, out = tmp_path / "pruned.npz", tmp_path / "int8.npz"
    sn.save_model(pruned, src)
    args = _parser().parse_args(["quantize", str(src), "-o", str(out), "--dataset", "digits", "--json"])
    assert args.func is cmd_quantize
    assert args.func(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["accuracy_before"] == _acc(pruned, digits)
    assert payload["accuracy_before"] - payload["accuracy_after"] < 0.01
    assert payload["bytes_after"] < payload["bytes_before"]
    assert payload["file_bytes_after"] < payload["file_bytes_before"]
    assert payload["file_bytes_after"] == out.stat().st_size and payload["scheme"] == SCHEME
    loaded = sn.load(out)
    assert [loaded[i].weight.format_name for i in (1, 3, 5)] == ["qcsr"] * 3
    assert loaded.meta["quantization"]["scheme"] == SCHEME
    assert _acc(loaded, digits) == payload["accuracy_after"]


def test_cli_quantize_text_and_errors(tmp_path, capsys):
    src, out = tmp_path / "m.npz", tmp_path / "q.npz"
    sn.save_model(sn.build_model("lenet300"), src)
    args = argparse.Namespace(model=str(src), output=str(out), dataset=None, json=False)
    assert cmd_quantize(args) == 0
    text = capsys.readouterr().out
    assert "quantized 3 layers" in text and "saved to" in text and "accuracy" not in text
    with pytest.raises(ModelFileError):
        cmd_quantize(argparse.Namespace(model=str(tmp_path / "nope.npz"), output=str(out), dataset=None,
                                        json=False))
    with pytest.raises(sn.ConfigError):
        cmd_quantize(argparse.Namespace(model=str(src), output=str(out), dataset="no-such-set", json=False))
    with pytest.raises(SystemExit):  # -o is required
        _parser().parse_args(["quantize", str(src)])
