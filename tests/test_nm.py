"""The N:M weight format (`sparsenet.NM`) and its int8 twin (`QNM`): layout, validation, bytes, every
kernel against a plain NumPy reference (hypothesis over shapes, n:m, dtypes, batches, empty rows and
zero-size inputs), training, model files, plans, `compiled` and `quantize_model`."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import BATCH_SIZES, SETTINGS

import sparsenet as sn
from sparsenet.errors import ConfigError, FormatError, ModelFileError, ShapeError
from sparsenet.formats import NM, QNM, as_format, quantize_weight
from sparsenet.formats.nm import CODE_DTYPES
from sparsenet.prune import compiled, prune
from sparsenet.prune.granularity import NM as NMGranularity

SHAPES_NM = [(2, 4), (1, 4), (3, 4), (4, 8), (2, 8), (1, 2), (5, 16)]


def _reference_select(w, n, m):
    """The n largest |w| of each group of m columns (ties: the lower column), zeros never kept."""
    rows, k = w.shape
    keep = np.zeros(w.shape, bool)
    for r in range(rows):
        for g in range(k // m):
            group = np.abs(w[r, g * m:(g + 1) * m])
            order = sorted(range(m), key=lambda j: (-group[j], j))[:n]
            for j in order:
                keep[r, g * m + j] = w[r, g * m + j] != 0
    return keep


@st.composite
def nm_cases(draw):
    n, m = draw(st.sampled_from(SHAPES_NM))
    rows = draw(st.one_of(st.sampled_from([0, 1, 8, 9]), st.integers(0, 40)))
    k = m * draw(st.one_of(st.sampled_from([0, 1]), st.integers(0, 10)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((rows, k)).astype(dtype)
    w[rng.random((rows, k)) < draw(st.sampled_from([0.0, 0.3, 0.9]))] = 0  # groups with fewer than n
    if rows:
        w[rng.random(rows) < 0.2] = 0  # empty rows
    return w, n, m


@SETTINGS
@given(nm_cases(), st.sampled_from(BATCH_SIZES), st.integers(0, 2**32 - 1))
def test_every_product_matches_numpy(case, batch, seed):
    w, n, m = case
    f = NM.from_dense(w, n, m)
    f.check()
    keep = _reference_select(w, n, m)
    dense = np.where(keep, w, 0)
    np.testing.assert_array_equal(f.to_dense(), dense)
    assert (f.mask() >= keep).all() and f.mask().sum(axis=1).tolist() == [w.shape[1] // m * n] * w.shape[0]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.shape[1], batch)).astype(w.dtype)
    dy = rng.standard_normal((w.shape[0], batch)).astype(w.dtype)
    tol = 1e-4 if w.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(f @ x, dense.astype(np.float64) @ x, rtol=tol, atol=tol)
    np.testing.assert_allclose(f.tmatmul(dy), dense.T.astype(np.float64) @ dy, rtol=tol, atol=tol)
    raw = f.sampled_grad(dy, x)
    assert raw.shape == f.data.shape
    padding = raw.transpose(0, 2, 1).reshape(raw.shape[0] * raw.shape[2], raw.shape[1])[w.shape[0]:]  # padding rows
    assert not padding.any(), "a padding row of the last tile got a gradient"
    grad = f.with_data(raw).to_dense()
    np.testing.assert_allclose(grad, (dy.astype(np.float64) @ x.T) * f.mask(), rtol=tol, atol=tol)
    q = QNM.from_float(f) if w.dtype == np.float32 else None
    if q is not None:
        q.check()
        scale = q.scales[:, None]
        assert np.all(np.abs(q.to_dense() - dense) <= scale / 2 + 1e-6)
        np.testing.assert_allclose(q @ x, q.to_dense().astype(np.float64) @ x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3, 8, 64, 70])
@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_fused_bias_and_activation_and_the_parallel_kernels(batch, n, m):
    """Large enough for the parallel kernels; the plan's call with a bias and ReLU fused."""
    from sparsenet import kernels
    from sparsenet.kernels.epilogue import RELU

    rng = np.random.default_rng(0)
    w = rng.standard_normal((203, 512)).astype(np.float32)
    f = NM.from_dense(w, n, m)
    x = np.ascontiguousarray(rng.standard_normal((512, batch)).astype(np.float32))
    bias = rng.standard_normal(203).astype(np.float32)
    kern, arrays = f.product(batch)
    assert kern in (kernels.nm_spmv_f32, kernels.nm_spmm_f32)
    out = np.empty((203, batch), np.float32)
    kernels.launch(kern, *arrays, x, out, bias, RELU, 0.0)
    np.testing.assert_allclose(out, np.maximum(f.to_dense() @ x + bias[:, None], 0), rtol=1e-4, atol=1e-4)
    serial = kernels._jit.SERIAL_OF[kern]
    out2 = np.empty_like(out)
    serial(*arrays, x, out2, bias, RELU, 0.0)
    np.testing.assert_array_equal(out, out2)  # the same bits in parallel


@pytest.mark.nojit
def test_tiny_products_nojit():
    """Also run with NUMBA_DISABLE_JIT=1 (the SIMD helpers' NumPy twins)."""
    w = np.array([[1, 0, 3, 0.5, 0, 0, 2, 1], [0, 2, 0, 0, 1, 1, 1, 1], [0] * 8], dtype=np.float32)
    f = NM.from_dense(w, 2, 4)
    rng = np.random.default_rng(0)
    for batch in (0, 1, 3, 9):
        x = rng.standard_normal((8, batch)).astype(np.float32)
        np.testing.assert_allclose(f @ x, f.to_dense() @ x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(QNM.from_float(f) @ x, QNM.from_float(f).to_dense() @ x, rtol=1e-5, atol=1e-5)


def test_layout_bytes_and_selection():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4096, 4096)).astype(np.float32)
    f = NM.from_dense(w, 2, 4)
    assert f.spec == "nm2:4" and f.nnz == 4096 * 2048 and f.density == 0.5
    assert f.codes.dtype == np.uint16 and f.data.shape == (512, 2048, 8)
    assert f.nbytes == 4096 * 2048 * 4 + 512 * 2048 * 2 and f.nbytes / w.nbytes <= 0.54  # issue 14's bound
    small = rng.standard_normal((9, 16)).astype(np.float32)
    assert np.array_equal(NM.from_dense(small, 2, 4).mask(), NMGranularity(2, 4).select(np.abs(small)))
    assert {m: CODE_DTYPES[m].itemsize for m in CODE_DTYPES} == {2: 1, 4: 2, 8: 4, 16: 4}
    assert as_format(small, "nm", nm=(1, 4)).spec == "nm1:4"
    assert quantize_weight(NM.from_dense(small)).spec == "qnm2:4"


def test_invalid_layouts_are_refused_by_name():
    good = NM.from_dense(np.arange(1, 33, dtype=np.float32).reshape(2, 16), 2, 4)
    with pytest.raises(ShapeError, match="multiple of 4"):
        NM.from_dense(np.ones((2, 6), np.float32))
    with pytest.raises(ShapeError, match="m in"):
        NM.from_dense(np.ones((2, 6), np.float32), 2, 3)
    with pytest.raises(ShapeError, match="1 <= n < m"):
        NM.from_dense(np.ones((2, 8), np.float32), 4, 4)
    with pytest.raises(ShapeError, match="row 0, columns 0..3 hold 3 entries, more than 2"):
        NM.from_mask(np.ones((2, 8), np.float32), np.array([[1, 1, 1, 0] * 2, [0] * 8], bool), 2, 4)
    bad = good.codes.copy()
    bad[0, 0], bad[0, 1] = bad[0, 1], bad[0, 0]  # positions out of order in a group
    with pytest.raises(FormatError, match="strictly increasing positions"):
        NM(good.data, bad, good.shape, 2, 4)
    with pytest.raises(FormatError, match="zeros in the 6 rows that pad"):
        data = good.data.copy()
        data[0, 0, 7] = 1
        NM(data, good.codes, good.shape, 2, 4)
    with pytest.raises(FormatError, match="codes: expected dtype uint16"):
        NM(good.data, good.codes.astype(np.uint32), good.shape, 2, 4)
    with pytest.raises(FormatError, match="data: expected shape"):
        NM(good.data[:, :3], good.codes, good.shape, 2, 4)
    with pytest.raises(FormatError, match="finite"):
        data = good.data.copy()
        data[0, 0, 0] = np.nan
        NM(data, good.codes, good.shape, 2, 4)
    with pytest.raises(FormatError, match="values in"):
        q = QNM.from_float(good)
        data = q.data.copy()
        data[0, 0, 0] = -128
        QNM(data, q.codes, q.scales, q.shape, 2, 4)


def test_training_keeps_the_pattern_and_model_files_round_trip(tmp_path):
    model = sn.build_model("lenet300", seed=0)
    prune(model, granularity="2:4")
    small = compiled(model, "nm2:4")
    assert {r["format"] for r in small.meta["compile"]["layers"].values()} == {"nm2:4"}
    from sparsenet.data import load_dataset

    ds = load_dataset("digits")
    x = ds.x_test[:33]
    np.testing.assert_allclose(small.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(small.predict(x[0]), model.predict(x[0]), rtol=1e-5, atol=1e-5)  # batch 1
    patterns = [layer.weight.codes.copy() for layer in small.layers if hasattr(layer, "weight")]
    sn.fit(small, ds.x_train[:256], ds.y_train[:256], epochs=2, quiet=True)
    after = [layer.weight for layer in small.layers if hasattr(layer, "weight")]
    assert all(isinstance(w, NM) and np.array_equal(w.codes, p) for w, p in zip(after, patterns))
    path = tmp_path / "nm.safetensors"
    sn.save_model(small, path)
    back = sn.load(path)
    np.testing.assert_array_equal(back.predict(x), small.predict(x))
    from sparsenet.quantize import quantize_model

    q = quantize_model(small)
    assert {layer.weight.spec for layer in q.layers if hasattr(layer, "weight")} == {"qnm2:4"}
    sn.save_model(q, tmp_path / "q.safetensors")
    np.testing.assert_array_equal(sn.load(tmp_path / "q.safetensors").predict(x), q.predict(x))
    assert np.mean(q.predict(x).argmax(1) == small.predict(x).argmax(1)) > 0.9


def test_a_model_file_with_bad_nm_arrays_is_refused(tmp_path):
    from sparsenet.nn._spec import decode_weight, encode_weight

    w = NM.from_dense(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32))
    spec, arrays = encode_weight(w)
    assert spec["format"] == "nm" and (spec["n"], spec["m"]) == (2, 4)
    np.testing.assert_array_equal(decode_weight(spec, arrays, "w").to_dense(), w.to_dense())
    with pytest.raises(ModelFileError, match="n:m|N:M"):
        decode_weight({**spec, "m": 3}, arrays, "w")
    with pytest.raises(FormatError):
        decode_weight(spec, {**arrays, "codes": arrays["codes"] | np.uint16(0xFFFF)}, "w")
    with pytest.raises(ModelFileError, match="missing field 'n'"):
        decode_weight({k: v for k, v in spec.items() if k != "n"}, arrays, "w")


def test_compiled_and_auto_store_nm_where_the_pattern_fits():
    model = sn.build_model("lenet300", seed=0)
    prune(model, sparsity=0.5)  # unstructured: no 2:4 pattern
    with pytest.raises(ConfigError, match="layer '1' cannot be stored as nm2:4.*more than 2"):
        compiled(model, "nm2:4")
    from sparsenet.prune.compiler import _candidates, parse_format_spec

    assert parse_format_spec("nm2:4") == ("nm", (2, 4)) and parse_format_spec(" NM4:8 ") == ("nm", (4, 8))
    with pytest.raises(ConfigError, match="nmN:M"):
        parse_format_spec("nm4:4")
    pattern = NMGranularity(2, 4).select(np.random.default_rng(0).random((16, 32)))
    assert ("nm", (2, 4)) in _candidates(pattern, ()) and ("nm", (4, 8)) in _candidates(pattern, ())
    assert not any(c[0] == "nm" for c in _candidates(np.ones((16, 32), bool), ()))
    two_four = sn.build_model("lenet300", seed=0)
    prune(two_four, granularity="2:4")
    auto = compiled(two_four, "auto", repeats=1, min_time=1e-4)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(auto.predict(x), two_four.predict(x), rtol=1e-5, atol=1e-5)
    for layer, rec in auto.meta["compile"]["layers"].items():
        assert "timings_us" not in rec or any(s.startswith("nm") for s in rec["timings_us"]), layer
