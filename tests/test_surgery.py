"""Layer surgery: dead units are physically removed and the model computes exactly what it did."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sparsenet
from sparsenet.errors import SparsenetError
from sparsenet.formats import BSR, CSR, Dense
from sparsenet.nn import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GELU, GlobalAvgPool2d,
                          Identity, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, Softmax, Tanh)
from sparsenet.nn._weighted import WeightedLayer
from sparsenet.optim import SGD
from sparsenet.prune.masks import apply_masks
from sparsenet.prune.surgery import remove_dead_units

DTYPES = [np.float32, np.float64]
TOL = dict(rtol=1e-5, atol=1e-6)


# -- models -----------------------------------------------------------------------------------------
def mlp(dtype=np.float32):
    m = Sequential(Flatten(), Linear(12, 16, seed=1, dtype=dtype), ReLU(), Linear(16, 10, seed=2, dtype=dtype),
                   ReLU(), Linear(10, 3, seed=3, dtype=dtype))
    m.input_shape = (3, 4)
    return m


def cnn(dtype=np.float32):
    m = Sequential(Conv2d(2, 6, 3, seed=1, dtype=dtype), BatchNorm2d(6, dtype=dtype), ReLU(),       # 6x6 -> 4x4
                   Conv2d(6, 8, 3, padding=1, seed=2, dtype=dtype), BatchNorm2d(8, dtype=dtype), ReLU(),
                   MaxPool2d(2), Flatten(),                                                      # 8 x 2x2
                   Linear(32, 10, seed=3, dtype=dtype), ReLU(), Linear(10, 3, seed=4, dtype=dtype))
    m.input_shape = (2, 6, 6)
    return m


def gap_cnn(dtype=np.float32):
    m = Sequential(Conv2d(2, 6, 3, seed=1, dtype=dtype), BatchNorm2d(6, dtype=dtype), ReLU(),
                   Conv2d(6, 8, 3, padding=1, seed=2, dtype=dtype), ReLU(), GlobalAvgPool2d(),
                   Linear(8, 3, seed=3, dtype=dtype))
    m.input_shape = (2, 6, 6)
    return m


# weighted layer name -> (out, fan_in) after removing half of the units of every layer but the last
EXPECTED = {
    "mlp": (mlp, {"1": (8, 12), "3": (5, 8), "5": (3, 5)}, {}),
    "cnn": (cnn, {"0": (3, 18), "3": (4, 27), "8": (5, 16), "10": (3, 5)}, {1: 3, 4: 4}),
    "gap_cnn": (gap_cnn, {"0": (3, 18), "3": (4, 27), "6": (3, 4)}, {1: 3}),
}


def inputs(model, n=7, seed=0):
    dtype = next(l.dtype for l in model if isinstance(l, WeightedLayer))
    return np.random.default_rng(seed).normal(size=(n, *model.input_shape)).astype(dtype)


def warm_up(model, seed=0):
    """Random BatchNorm parameters and running statistics from a forward pass in train mode."""
    rng = np.random.default_rng(seed)
    for layer in model:
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            layer.weight.data[:] = rng.uniform(0.5, 1.5, layer.num_features)
            layer.bias.data[:] = rng.normal(0, 0.3, layer.num_features)
    model.train()
    model.forward(inputs(model, n=16, seed=seed + 1))
    model.eval()
    return model


def half_dead_masks(model, seed=0):
    """Structured masks: ~50% of the rows of every weighted layer but the last are all False."""
    rng = np.random.default_rng(seed)
    names = [str(i) for i, l in enumerate(model) if isinstance(l, WeightedLayer)]
    masks, dead = {}, {}
    for name in names[:-1]:
        out, fan_in = model[int(name)].weight_shape
        dead[name] = np.sort(rng.choice(out, out // 2, replace=False))
        masks[name] = np.ones((out, fan_in), dtype=bool)
        masks[name][dead[name]] = False
    return masks, dead


def n_params(model):
    return sum(p.data.size for p in model.parameters())


def outputs(model, x):
    return model.eval().forward(x).copy()


def weights_of(model):
    return [(p.data.copy(), None if p.mask is None else p.mask.copy()) for p in model.parameters()]


# -- shrinking keeps the function -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_structured_pruning_shrinks_and_keeps_outputs(kind, dtype):
    build, shapes, bn_sizes = EXPECTED[kind]
    model = warm_up(build(dtype))
    masks, dead = half_dead_masks(model)
    apply_masks(model, masks, remove_units=True)
    x = inputs(model)
    expected = outputs(model, x)

    small, report = remove_dead_units(model)

    assert {n: small[int(n)].weight_shape for n in shapes} == shapes
    for name, (out, fan_in) in shapes.items():
        layer = small[int(name)]
        assert layer.weight.shape == (out, fan_in) and layer.weight_param.data.shape == (out, fan_in)
        assert layer.bias.data.shape == (out,)
        assert layer.weight.dtype == dtype
        if isinstance(layer, Conv2d):
            assert layer.out_channels == out and layer.in_channels * 9 == fan_in
        else:
            assert layer.out_features == out and layer.in_features == fan_in
        before = model[int(name)].weight_shape[0]
        assert report[name] == {"removed": dead.get(name, np.array([], int)).tolist(), "kept": out, "before": before}
    for i, n in bn_sizes.items():
        bn = small[i]
        assert bn.num_features == n
        assert all(a.shape == (n,) for a in (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var))
        assert bn.weight.mask.shape == bn.bias.mask.shape == (n,) and bn.weight.mask.all()
    assert n_params(small) < n_params(model)
    got = outputs(small, x)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, **TOL)


def test_parameter_count_exact():
    model = warm_up(cnn())
    apply_masks(model, half_dead_masks(model)[0], remove_units=True)
    small, _ = remove_dead_units(model)
    # conv 3x2x9 + 3, bn 3+3, conv 4x3x9 + 4, bn 4+4, linear 5x16 + 5, linear 3x5 + 3
    assert n_params(small) == 57 + 6 + 112 + 8 + 85 + 18


def test_flatten_width_without_input_shape():
    """Without an input shape H*W of the Flatten is read from the consumer: the same result."""
    model = warm_up(cnn())
    apply_masks(model, half_dead_masks(model)[0], remove_units=True)
    x = inputs(model)
    expected = outputs(model, x)
    model.input_shape = None
    small, report = remove_dead_units(model)
    small2, report2 = remove_dead_units(model, input_shape=(2, 6, 6))
    assert report == report2 and small[8].weight_shape == small2[8].weight_shape == (5, 16)
    np.testing.assert_allclose(outputs(small, x), expected, **TOL)
    np.testing.assert_allclose(outputs(small2, x), expected, **TOL)
    assert small.input_shape is None


# -- which units are dead ---------------------------------------------------------------------------
def kill(layer, units, bias=0.0):
    w = layer.weight.to_dense()
    w[units] = 0
    layer.weight = Dense(w)
    if layer.bias is not None:
        layer.bias.data[units] = bias


def test_zero_row_with_nonzero_bias_is_kept():
    model = mlp()
    kill(model[1], [2], bias=0.5)
    kill(model[1], [3, 7])
    x = inputs(model)
    small, report = remove_dead_units(model)
    assert report["1"] == {"removed": [3, 7], "kept": 14, "before": 16}
    assert small[1].out_features == 14 and small[3].in_features == 14
    np.testing.assert_allclose(small[1].bias.data[2], 0.5)
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


def test_last_layer_units_are_never_removed():
    model = mlp()
    kill(model[5], [0, 2])
    small, report = remove_dead_units(model)
    assert report["5"] == {"removed": [], "kept": 3, "before": 3}
    assert small[5].weight_shape == (3, 10) and small[5].out_features == 3


def test_batchnorm_gamma_or_beta_keeps_unit_alive():
    model = warm_up(cnn())
    kill(model[0], [0, 1, 2])
    model[1].weight.data[[0, 1]] = 0
    model[1].bias.data[[1, 2]] = 0  # unit 1: gamma = beta = 0, units 0 and 2 still output beta / gamma*x
    x = inputs(model)
    small, report = remove_dead_units(model)
    assert report["0"]["removed"] == [1]
    assert small[1].num_features == 5 and small[3].in_channels == 5
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


@pytest.mark.parametrize("blocker", [Sigmoid, Softmax])
def test_non_zero_preserving_layer_blocks_removal(blocker):
    model = Sequential(Linear(5, 6, seed=1), blocker(), Linear(6, 2, seed=2))
    kill(model[0], [1, 4])
    small, report = remove_dead_units(model)
    assert report["0"] == {"removed": [], "kept": 6, "before": 6}
    assert small[0].weight_shape == (6, 5) and small[2].weight_shape == (2, 6)


@pytest.mark.parametrize("between", [ReLU, lambda: LeakyReLU(0.1), Tanh, GELU, Identity, lambda: Dropout(0.3)])
def test_zero_preserving_layers_allow_removal(between):
    model = Sequential(Linear(5, 6, seed=1), between(), Linear(6, 2, seed=2))
    kill(model[0], [1, 4])
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    small, report = remove_dead_units(model)
    assert report["0"]["removed"] == [1, 4] and small[2].weight_shape == (2, 4)
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


def test_avgpool_and_batchnorm1d_chain():
    model = Sequential(Conv2d(1, 4, 3, padding=1, seed=1), AvgPool2d(2), ReLU(), Conv2d(4, 5, 2, seed=2),
                       GlobalAvgPool2d(), BatchNorm1d(5), Tanh(), Linear(5, 2, seed=3))
    model.input_shape = (1, 6, 6)
    warm_up(model)
    kill(model[0], [2])
    kill(model[3], [0, 3])
    model[5].weight.data[[0, 3]] = 0
    model[5].bias.data[[0, 3]] = 0
    x = inputs(model)
    small, report = remove_dead_units(model)
    assert [report[n]["removed"] for n in ("0", "3", "7")] == [[2], [0, 3], []]
    assert small[3].weight_shape == (3, 3 * 4) and small[5].num_features == 3 and small[7].weight_shape == (2, 3)
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


def flat_bn_model():
    model = Sequential(Conv2d(1, 3, 3, seed=1), Flatten(), BatchNorm1d(3 * 4 * 4), ReLU(), Linear(48, 2, seed=2))
    model.input_shape = (1, 6, 6)
    return warm_up(model)


def test_batchnorm1d_over_flattened_maps_blocks_removal():
    """BatchNorm1d after Flatten normalises each pixel, not each unit: the units stay."""
    model = flat_bn_model()
    kill(model[0], [1])
    model[2].weight.data[16:32] = 0
    model[2].bias.data[16:32] = 0
    for shape in ((1, 6, 6), None):
        model.input_shape = shape
        small, report = remove_dead_units(model)
        assert report["0"]["removed"] == [] and small[2].num_features == 48 and small[4].weight_shape == (2, 48)


def test_apply_masks_with_batchnorm1d_after_flatten():
    model = flat_bn_model()
    mask = np.ones((3, 9), dtype=bool)
    mask[1] = False
    try:
        apply_masks(model, {"0": mask}, remove_units=True)
    except SparsenetError:
        return
    small, report = remove_dead_units(model)
    assert report["0"]["removed"] == []


def test_unit_fed_only_by_removed_units_goes_too():
    model = Sequential(Linear(3, 4, seed=1), ReLU(), Linear(4, 3, seed=2), ReLU(), Linear(3, 2, seed=3))
    kill(model[0], [1, 2])
    w = model[2].weight.to_dense()
    w[0, [0, 3]] = 0  # unit 0 of layer 2 only reads the dead units 1 and 2
    model[2].weight = Dense(w)
    model[2].bias.data[0] = 0
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    small, report = remove_dead_units(model)
    assert report["0"]["removed"] == [1, 2] and report["2"]["removed"] == [0]
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


def test_all_dead_keeps_one_unit():
    model = mlp()
    kill(model[3], list(range(10)))
    x = inputs(model)
    small, report = remove_dead_units(model)
    assert report["3"] == {"removed": list(range(1, 10)), "kept": 1, "before": 10}
    assert small[3].weight_shape == (1, 16) and small[5].weight_shape == (3, 1)
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


# -- the original is untouched; errors --------------------------------------------------------------
def test_original_model_untouched():
    model = warm_up(cnn())
    apply_masks(model, half_dead_masks(model)[0], remove_units=True)
    x = inputs(model)
    before_out, before_w = outputs(model, x), weights_of(model)
    shapes = [getattr(l, "weight_shape", None) for l in model]
    bn_stats = [(l.running_mean.copy(), l.running_var.copy()) for l in model if isinstance(l, BatchNorm2d)]
    model.meta["note"] = "kept"
    small, _ = remove_dead_units(model)
    assert small is not model and all(a is not b for a, b in zip(small, model))
    assert [getattr(l, "weight_shape", None) for l in model] == shapes
    for (d0, m0), (d1, m1) in zip(before_w, weights_of(model)):
        np.testing.assert_array_equal(d0, d1)
        assert (m0 is None) == (m1 is None) and (m0 is None or np.array_equal(m0, m1))
    for (rm, rv), l in zip(bn_stats, [l for l in model if isinstance(l, BatchNorm2d)]):
        np.testing.assert_array_equal(rm, l.running_mean)
        np.testing.assert_array_equal(rv, l.running_var)
    np.testing.assert_array_equal(outputs(model, x), before_out)
    assert small.meta == {"note": "kept"} and small.meta is not model.meta
    assert small.input_shape == model.input_shape


def test_not_a_sequential():
    with pytest.raises(SparsenetError, match="expected a Sequential model, found Linear"):
        remove_dead_units(Linear(3, 2))


# -- formats and masks ------------------------------------------------------------------------------
def sparse_mlp(fmt, seed=0):
    """An MLP whose hidden layers have dead units and scattered zeros (whole 4x2 blocks for BSR),
    stored in `fmt`."""
    rng = np.random.default_rng(seed)
    model = mlp()
    for i, dead in ((1, [0, 5, 6, 11]), (3, [2, 3, 9])):
        layer = model[i]
        m, k = layer.weight_shape
        if fmt == "bsr":
            keep = np.kron(rng.random((-(-m // 4), -(-k // 2))) < 0.5, np.ones((4, 2), bool))[:m, :k]
        else:
            keep = rng.random((m, k)) < 0.6
        w = layer.weight.to_dense() * keep
        w[dead] = 0
        layer.bias.data[dead] = 0
        layer.weight = CSR.from_dense(w) if fmt == "csr" else BSR.from_dense(w, (4, 2)) if fmt == "bsr" else Dense(w)
    return model


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_formats_are_preserved(fmt):
    model = sparse_mlp(fmt)
    x = inputs(model)
    small, report = remove_dead_units(model)
    assert report["1"]["removed"] == [0, 5, 6, 11] and report["3"]["removed"] == [2, 3, 9]
    for i, shape in ((1, (12, 12)), (3, (7, 12)), (5, (3, 7))):
        w = small[i].weight
        assert w.shape == shape and small[i].weight_shape == shape
        assert type(w) is type(model[i].weight)
        assert small[i].weight_param.data is w.data
        if fmt == "bsr" and i != 5:
            assert w.blocksize == (4, 2)
        w.check()
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)


def test_csr_keeps_its_stored_pattern():
    model = mlp()
    rng = np.random.default_rng(1)
    pattern = rng.random((16, 12)) < 0.5
    pattern[[4, 9]] = False
    w = model[1].weight.to_dense() * pattern
    w[0, np.flatnonzero(pattern[0])[0]] = 0.0  # an explicit stored zero stays stored
    model[1].weight = CSR.from_mask(w, pattern)
    model[1].bias.data[[4, 9]] = 0
    small, _ = remove_dead_units(model)
    keep = np.setdiff1d(np.arange(16), [4, 9])
    np.testing.assert_array_equal(small[1].weight.mask(), pattern[keep])
    np.testing.assert_array_equal(small[1].weight.to_dense(), w[keep])
    assert small[1].weight_param.mask is None


def trainable_of(layer):
    """Bool [out, fan_in]: entries that training may change (stored, and not masked by the Parameter)."""
    w, pm = layer.weight, layer.weight_param.mask
    stored = np.ones(w.shape, bool) if isinstance(w, Dense) else w.mask()
    return stored if pm is None else stored & (w.with_data(pm.astype(w.dtype)).to_dense() != 0)


def check_pinned_zero_after_training(small, pinned, x, y):
    """A few SGD steps: entries outside `pinned` (name -> bool [out, fan_in] of trainable) stay zero."""
    sparsenet.fit(small, x, y, epochs=2, batch_size=4, optimizer=SGD(small.parameters(), lr=0.5), quiet=True)
    for i, trainable in pinned.items():
        w = small[i].weight.to_dense()
        assert np.all(w[~trainable] == 0), f"layer {i}: pruned weights revived by training"
        assert np.any(w[trainable] != 0)


def test_dense_parameter_masks_are_sliced_and_pin_after_fine_tuning():
    model = warm_up(cnn())
    masks, dead = half_dead_masks(model)
    rng = np.random.default_rng(3)
    for name in masks:  # unstructured zeros inside the live rows too
        masks[name] &= rng.random(masks[name].shape) < 0.7
    apply_masks(model, masks, remove_units=True)
    small, report = remove_dead_units(model)
    keep = {n: np.setdiff1d(np.arange(model[int(n)].weight_shape[0]), r["removed"]) for n, r in report.items()}
    cols = {"0": np.arange(18), "3": (keep["0"][:, None] * 9 + np.arange(9)).ravel(),
            "8": (keep["3"][:, None] * 4 + np.arange(4)).ravel()}
    for name in ("0", "3", "8"):
        expected = masks[name][keep[name]][:, cols[name]]
        assert isinstance(small[int(name)].weight, Dense)
        np.testing.assert_array_equal(small[int(name)].weight_param.mask, expected)
        assert small[int(name)].bias.mask.all() and small[int(name)].bias.mask.shape == (len(keep[name]),)
    assert small[10].weight_param.mask is None  # the last layer had no mask: none is invented
    x = inputs(model, n=16, seed=5)
    y = np.random.default_rng(5).integers(0, 3, 16)
    check_pinned_zero_after_training(small, {int(n): small[int(n)].weight_param.mask for n in ("0", "3", "8")}, x, y)


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_sparse_formats_keep_pruned_entries_zero_after_fine_tuning(fmt):
    model = sparse_mlp(fmt)
    if fmt == "csr":  # a Parameter mask over the stored values, as after magnitude pruning of a CSR layer
        pm = np.random.default_rng(2).random(model[1].weight.nnz) < 0.8
        model[1].weight_param.mask = pm
        model[1].weight_param.apply_mask()
    original = {i: trainable_of(model[i]) for i in (1, 3)}
    small, report = remove_dead_units(model)
    k1 = np.setdiff1d(np.arange(16), report["1"]["removed"])
    k3 = np.setdiff1d(np.arange(10), report["3"]["removed"])
    trainable = {1: original[1][k1], 3: original[3][k3][:, k1]}
    if fmt == "bsr":  # rows moved across block boundaries: new blocks hold pinned zeros
        assert small[1].weight.mask().sum() > trainable[1].sum()
        assert small[1].weight_param.mask is not None and small[3].weight_param.mask is not None
    if fmt == "csr":
        assert small[1].weight_param.mask is not None and small[3].weight_param.mask is None
    x = inputs(model, n=16, seed=5)
    y = np.random.default_rng(5).integers(0, 3, 16)
    check_pinned_zero_after_training(small, trainable, x, y)
    assert type(small[1].weight) is type(model[1].weight)


# -- files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cnn", "gap_cnn", "mlp-bsr"])
def test_shrunk_model_saves_and_loads(kind, tmp_path):
    if kind == "mlp-bsr":
        model = sparse_mlp("bsr")
    else:
        model = warm_up(EXPECTED[kind][0]())
        apply_masks(model, half_dead_masks(model)[0], remove_units=True)
    small, _ = remove_dead_units(model)
    x = inputs(model)
    path = tmp_path / "small.npz"
    sparsenet.save_model(small, path)
    loaded = sparsenet.load(path)
    assert [getattr(l, "weight_shape", None) for l in loaded] == [getattr(l, "weight_shape", None) for l in small]
    assert [type(getattr(l, "weight", None)) for l in loaded] == [type(getattr(l, "weight", None)) for l in small]
    np.testing.assert_allclose(outputs(loaded, x), outputs(small, x), **TOL)
    np.testing.assert_allclose(outputs(loaded, x), outputs(model, x), **TOL)


# -- property: any dead set, any format, same function ----------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), fmt=st.sampled_from(["dense", "csr", "bsr"]),
       frac=st.floats(0.0, 1.0), dtype=st.sampled_from(DTYPES))
def test_property_same_outputs(seed, fmt, frac, dtype):
    rng = np.random.default_rng(seed)
    model = warm_up(cnn(dtype), seed=seed)
    for i in (0, 3, 8):
        layer = model[i]
        out = layer.weight_shape[0]
        dead = rng.random(out) < frac
        kill(layer, np.flatnonzero(dead))
        for bn in [model[i + 1]] if i in (0, 3) else []:
            bn.weight.data[dead] = 0
            bn.bias.data[dead] = 0
        w = layer.weight.to_dense()
        layer.weight = CSR.from_dense(w) if fmt == "csr" else BSR.from_dense(w, (2, 3)) if fmt == "bsr" else Dense(w)
    x = inputs(model, seed=seed)
    small, report = remove_dead_units(model)
    for name, r in report.items():
        assert r["kept"] == small[int(name)].weight_shape[0] >= 1
    assert all(type(a.weight) is type(b.weight) for a, b in zip(small, model) if isinstance(a, WeightedLayer))
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), **TOL)
