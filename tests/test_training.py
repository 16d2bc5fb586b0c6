"""Optimisers against hand-written NumPy updates, sparsity kept by training, `fit` / `predict`
reproducibility, accuracy and errors, weight-shape errors and `repr`."""

from __future__ import annotations

import numpy as np
import pytest

from sparsenet import SGD, Adam, AdamW, as_format, fit, predict
from sparsenet.errors import ConfigError, DataError, DTypeError, ShapeError, SparsenetError
from sparsenet.nn import BatchNorm1d, Conv2d, Flatten, Linear, Module, Parameter, ReLU, Sequential

F64 = np.float64


# -- optimisers vs a hand-written update -------------------------------------------------------------

def _params_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(d.shape) for d in data] for _ in range(2)]  # two steps
    return data, grads


def _sgd_ref(p, grads, lr, momentum, wd, nesterov):
    buf = None
    for g in grads:
        g = g + wd * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def _adam_ref(p, grads, lr, b1, b2, eps, wd, decoupled):
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if not decoupled:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if decoupled:
            p = p * (1 - lr * wd)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


OPTIMISERS = {
    "sgd": (lambda ps: SGD(ps, lr=0.1), lambda p, gs: _sgd_ref(p, gs, 0.1, 0, 0, False)),
    "sgd-momentum": (lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                     lambda p, gs: _sgd_ref(p, gs, 0.1, 0.9, 0, False)),
    "sgd-momentum-wd": (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
                        lambda p, gs: _sgd_ref(p, gs, 0.1, 0.9, 0.01, False)),
    "sgd-nesterov-wd": (lambda ps: SGD(ps, lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True),
                        lambda p, gs: _sgd_ref(p, gs, 0.1, 0.8, 0.05, True)),
    "adam": (lambda ps: Adam(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-6),
             lambda p, gs: _adam_ref(p, gs, 0.01, 0.8, 0.9, 1e-6, 0, False)),
    "adam-wd": (lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
                lambda p, gs: _adam_ref(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, False)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
              lambda p, gs: _adam_ref(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, True)),
    "adamw-default-wd": (lambda ps: AdamW(ps, lr=0.01),
                         lambda p, gs: _adam_ref(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.01, True)),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_optimiser_matches_numpy_update(name):
    make, ref = OPTIMISERS[name]
    data, grads = _params_and_grads()
    params = [Parameter(d.copy()) for d in data]
    arrays = [p.data for p in params]
    opt = make(params)
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(params, step_grads):
            p.grad += g
        opt.step()
    for i, p in enumerate(params):
        assert p.data is arrays[i], "updates must be in place (a sparse weight shares this array)"
        want = ref(data[i], [step_grads[i] for step_grads in grads])
        np.testing.assert_allclose(p.data, want, rtol=1e-12, atol=1e-14, err_msg=name)


def test_optimiser_rejects_no_params_and_bad_lr():
    with pytest.raises(ConfigError, match="parameter"):
        SGD([], lr=0.1)
    for lr in (0.0, -1.0, float("nan"), "0.1", True):
        with pytest.raises(ConfigError, match="lr"):
            Adam([Parameter(np.zeros(2))], lr=lr)


# -- training keeps sparsity -------------------------------------------------------------------------

def _train_steps(model, opt, steps=60, seed=0, in_features=10, classes=3):
    from sparsenet import SoftmaxCrossEntropy
    rng = np.random.default_rng(seed)
    loss = SoftmaxCrossEntropy()
    for _ in range(steps):
        x = rng.standard_normal((16, in_features)).astype(np.float32)
        y = rng.integers(0, classes, 16)
        opt.zero_grad()
        loss(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("fmt,blocksize", [("csr", None), ("bsr", (2, 3)), ("bsr", (4, 1))])
def test_optimiser_keeps_sparse_pattern(fmt, blocksize, opt_name):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((7, 10))
    w[rng.random(w.shape) < 0.6] = 0
    layer = Linear(10, 7, seed=0)
    layer.weight = as_format(w, fmt, blocksize=blocksize or (4, 4), dtype=np.float32)
    model = Sequential(layer, ReLU(), Linear(7, 3, seed=1))
    zeros_before = layer.weight.to_dense() == 0
    nnz_before, values_before = layer.weight.nnz, layer.weight.data.copy()
    opt = {"sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
           "adam": lambda ps: Adam(ps, lr=0.01),
           "adamw": lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1)}[opt_name](model.parameters())
    _train_steps(model, opt)
    dense = layer.weight.to_dense()
    assert layer.weight.nnz == nnz_before
    assert layer.weight.data is layer.weight_param.data, "the format and the Parameter must share values"
    assert not np.array_equal(layer.weight.data, values_before), "the sparse weight did not train"
    if fmt == "csr":  # every stored entry was nonzero, and only stored entries may become nonzero
        np.testing.assert_array_equal(dense == 0, zeros_before)
    else:  # BSR also stores zeros inside kept blocks; zeros outside kept blocks stay zero
        assert not np.any(dense[~layer.weight.mask()])
        assert np.all(zeros_before[~layer.weight.mask()])
    layer.weight.check()  # still a valid format (overhang of edge blocks still zero for BSR)


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_parameter_mask_keeps_masked_entries_zero(opt_name):
    model = Sequential(Linear(10, 8, seed=0), ReLU(), Linear(8, 3, seed=1))
    p = model[0].weight_param
    mask = np.random.default_rng(2).random(p.shape) < 0.5
    p.mask = mask
    opt = {"sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
           "adam": lambda ps: Adam(ps, lr=0.01, weight_decay=1e-2),
           "adamw": lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1)}[opt_name](model.parameters())
    before = p.data.copy()
    _train_steps(model, opt, steps=40)
    assert not np.any(p.data[~mask])
    assert not np.any(model[0].weight.data[~mask])  # the layer sees the same array
    assert np.all(p.data[mask] != before[mask]), "unmasked entries should have trained"


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("fmt", ["csr", "bsr", "dense"])
def test_weight_assignment_keeps_the_parameter_an_optimiser_updates(opt_name, fmt):
    """An optimiser built before ``layer.weight = ...`` still updates the layer, from fresh state."""
    from sparsenet import SoftmaxCrossEntropy

    model = Sequential(Linear(10, 8, seed=0), ReLU(), Linear(8, 3, seed=1))
    opt = {"sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9),
           "adam": lambda ps: Adam(ps, lr=0.01),
           "adamw": lambda ps: AdamW(ps, lr=0.01)}[opt_name](model.parameters())
    _train_steps(model, opt, steps=2)  # moments for the dense weight exist now
    param = model[0].weight_param
    w = model[0].weight.to_dense()
    w[np.abs(w) < np.median(np.abs(w))] = 0
    model[0].weight = as_format(w, fmt, blocksize=(2, 2), dtype=np.float32)
    assert model[0].weight_param is param and param.data is model[0].weight.data
    assert param.version == 1 and param.mask is None and param.grad.shape == param.data.shape
    before = model[0].weight.data.copy()

    x = np.random.default_rng(3).standard_normal((16, 10)).astype(np.float32)
    loss = SoftmaxCrossEntropy()
    opt.zero_grad()
    loss(model.forward(x), np.arange(16) % 3)
    model.backward(loss.backward())
    opt.step()

    assert not np.array_equal(model[0].weight.data, before), "the optimiser stopped updating the layer"
    state = opt.state[0]  # the replaced weight: state restarted in the new layout
    other = opt.state[2]  # the second layer's weight: untouched by the assignment
    if opt_name == "sgd":
        assert state["momentum"].shape == param.data.shape and other["momentum"].shape == (3, 8)
    else:
        assert state["t"] == 1 and state["m"].shape == param.data.shape and other["t"] == 3
    if fmt == "csr":  # the pattern holds: pruned entries stay zero
        assert np.all(model[0].weight.to_dense()[w == 0] == 0)


# -- fit / predict -----------------------------------------------------------------------------------

def _blobs(n=200, seed=0):
    """Two well separated Gaussian blobs in 4-D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 4)) * 0.7 + np.where(y[:, None] == 1, 2.0, -2.0) * np.array([1, 1, 0, 0])
    return x.astype(np.float32), y


def _mlp(seed=0):
    return Sequential(Linear(4, 16, seed=seed), ReLU(), Linear(16, 2, seed=seed + 1))


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def test_fit_reaches_high_train_accuracy():
    x, y = _blobs()
    model = _mlp()
    hist = fit(model, x, y, epochs=15, batch_size=32, lr=0.01, seed=0, quiet=True)
    assert len(hist.loss) == 15 and hist.loss[-1] < hist.loss[0]
    assert hist.accuracy[-1] > 0.9
    assert np.mean(predict(model, x).argmax(axis=1) == y) > 0.9


def test_fit_is_reproducible_bit_for_bit():
    x, y = _blobs()
    runs = []
    for seed in (3, 3, 4):
        model = _mlp()
        fit(model, x, y, epochs=3, batch_size=16, lr=0.01, seed=seed, quiet=True)
        runs.append(_weights(model))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(runs[0], runs[2])), "a different seed changed nothing"


def test_fit_sparse_model_is_reproducible():
    x, y = _blobs()
    w = np.random.default_rng(0).standard_normal((16, 4))
    w[:, 2:] = 0
    runs = []
    for _ in range(2):
        model = _mlp()
        model[0].weight = as_format(w, "csr", dtype=np.float32)
        fit(model, x, y, epochs=2, batch_size=16, seed=1, quiet=True)
        runs.append(_weights(model))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _bad_inputs():
    x, y = _blobs(20)
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    x_inf = x.copy()
    x_inf[0, 0] = np.inf
    return {
        "nan": (x_nan, y, DataError, "NaN"),
        "inf": (x_inf, y, DataError, None),
        "float-labels": (x, y.astype(np.float64), DataError, "integer"),
        "wrong-features": (np.zeros((20, 5), np.float32), y, ShapeError, "layer 0"),
        "complex": (x.astype(np.complex64), y, DTypeError, None),
        "negative-labels": (x, y - 1, DataError, None),
        "label-count": (x, y[:-1], ShapeError, None),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_fit_rejects_bad_input(case):
    x, y, err, text = _bad_inputs()[case]
    model = _mlp()
    before = _weights(model)
    with pytest.raises(err, match=text) as info:
        fit(model, x, y, epochs=1, quiet=True)
    assert isinstance(info.value, SparsenetError)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_predict_empty_batch_leaves_batchnorm_statistics_alone():
    model = Sequential(Linear(4, 3), BatchNorm1d(3), Linear(3, 2))
    bn = model[1]
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    out = predict(model, np.zeros((0, 4), np.float32))
    assert out.shape == (0, 2)
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)


@pytest.mark.parametrize("case", ["nan", "inf", "wrong-features", "complex"])
def test_predict_rejects_bad_input(case):
    x, _, err, text = _bad_inputs()[case]
    model = _mlp()
    with pytest.raises(err, match=text):
        predict(model, x)
    assert model.training, "predict must restore the model's mode even when it fails"


def test_wrong_feature_count_names_the_layer_deep_in_the_model():
    model = Sequential(Linear(4, 6), ReLU(), Linear(5, 2))
    with pytest.raises(ShapeError, match="layer 2"):
        predict(model, np.zeros((3, 4), np.float32))
    conv = Sequential(Conv2d(3, 2, 3), Flatten())
    with pytest.raises(ShapeError, match="layer 0"):
        predict(conv, np.zeros((1, 2, 5, 5), np.float32))


# -- weight assignment and repr ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["dense", "csr", "bsr"])
def test_weight_of_wrong_shape_raises(fmt):
    layer = Linear(4, 3)
    with pytest.raises(ShapeError, match=r"\(3, 4\)"):
        layer.weight = as_format(np.ones((4, 3), np.float32), fmt, blocksize=(2, 2))
    conv = Conv2d(2, 3, 3)  # weight [3, 18]
    with pytest.raises(ShapeError):
        conv.weight = as_format(np.ones((3, 9), np.float32), fmt, blocksize=(2, 2))
    assert layer.weight.shape == (3, 4) and conv.weight.shape == (3, 18)  # unchanged


def test_wrong_shapes_at_construction_raise():
    with pytest.raises(ShapeError):
        Linear(4, 3, weight=np.ones((4, 3), np.float32))
    with pytest.raises(ShapeError):
        Linear(4, 3, bias_value=np.ones(4))
    with pytest.raises(ShapeError):
        Conv2d(2, 3, 3, weight=np.ones((3, 2, 3, 3), np.float32))  # 4-D instead of [out, C*kh*kw]
    with pytest.raises(DTypeError):
        Linear(4, 3, dtype=np.int32)


def test_sequential_repr_shows_format_and_density():
    w = np.zeros((6, 8), np.float32)
    w[:, :2] = 1.0  # density 0.25
    lin_csr = Linear(8, 6)
    lin_csr.weight = as_format(w, "csr")
    lin_bsr = Linear(6, 4)
    wb = np.zeros((4, 6), np.float32)
    wb[:2, :3] = 1.0  # one 2x3 block of four
    lin_bsr.weight = as_format(wb, "bsr", blocksize=(2, 3))
    model = Sequential(Conv2d(1, 2, 3), Flatten(), Linear(2 * 2 * 2, 8), ReLU(), lin_csr, lin_bsr)
    lines = repr(model).splitlines()
    assert lines[0] == "Sequential(" and lines[-1] == ")"
    assert len(lines) == len(model) + 2
    assert "(0) Conv2d(" in lines[1] and "dense, density=1.000" in lines[1]
    assert "(1) Flatten()" in lines[2]
    assert "(2) Linear(" in lines[3] and "dense, density=1.000" in lines[3]
    assert "(3) ReLU()" in lines[4]
    assert "(4) Linear(" in lines[5] and "csr, density=0.250" in lines[5]
    assert "(5) Linear(" in lines[6] and "bsr2x3, density=0.250" in lines[6]


def test_every_layer_has_a_repr():
    import sparsenet.nn as nn
    for name in nn.__all__:
        cls = getattr(nn, name)
        if cls in (Module, Parameter, Sequential, nn.Graph, nn.Node) or not isinstance(cls, type):
            continue  # containers: their reprs are tested with them (test_graph.py)
        args = {"Linear": (3, 2), "Conv2d": (1, 2, 3), "MaxPool2d": (2,), "AvgPool2d": (2,),
                "BatchNorm1d": (3,), "BatchNorm2d": (3,), "LayerNorm": (4,), "Embedding": (5, 3),
                "Shift": (np.zeros(3),), "Scale": (2.0,), "Mean": ((1,),), "Reshape": ((-1, 2),),
                "Transpose": ((0, 1),), "Slice": (1, 0)}.get(name, ())
        text = repr(cls(*args))
        assert text.startswith(name + "(") and text.endswith(")"), text


def test_no_grad_stores_nothing_and_predict_is_thread_safe():
    import threading

    from sparsenet import build_model
    from sparsenet.nn import no_grad

    model = build_model("cnn", seed=0).eval()
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    with no_grad():
        model.forward(x[:2])
    assert all(getattr(layer, name, None) is None for layer in model.layers
               for name in ("_xt", "_cols", "_mask", "_arg", "_xhat", "_x_shape"))
    expected = predict(model, x, batch_size=7)
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results.setdefault(i, []).append(predict(model, x, batch_size=7 + i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for outs in results.values():
        for out in outs:
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_inference_restores_each_modules_own_training_flag():
    from sparsenet.nn import Dropout, Linear, inference

    model = Sequential(Linear(2, 2), Dropout(0.5), Dropout(0.5))
    model.train()
    model[2].training = False  # a mixed state, as a partly frozen model has
    with inference(model) as m:
        assert m is model and not any(mod.training for _, mod in model.named_modules())
        model.forward(np.ones((1, 2), np.float32))
        assert getattr(model[0], "_xt", None) is None  # under no_grad: nothing kept for backward
    assert [mod.training for _, mod in model.named_modules()] == [True, True, True, False]
