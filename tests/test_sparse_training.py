"""Training that stays sparse: the input gradient over W.T's pattern, gradients of the parameters
only (`backward_params`), the fused optimiser updates (the same bits as NumPy's expressions),
gradient clipping, optimiser state carried across a pattern change, and dynamic sparse training
(SET, RigL: `sparsenet.prune.sparse_train`) with its layer densities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import sparsenet as sn
from sparsenet import SGD, Adam, AdamW, kernels
from sparsenet.errors import ConfigError, ShapeError
from sparsenet.formats import BSR, CSR
from sparsenet.nn import Add, Conv2d, Flatten, Graph, Linear, Parameter, ReLU, Sequential
from sparsenet.prune import DynamicSparsity, layer_densities, sparse_train
from strategies import SETTINGS, sparse_matrices


# -- W.T's pattern ----------------------------------------------------------------------------------

@SETTINGS
@given(case=sparse_matrices())
def test_transpose_pattern_is_the_csr_of_w_transposed(case):
    w = CSR.from_mask(case.w, case.mask)
    indices_t, indptr_t, perm = kernels.csr_transpose_pattern(w.indices, w.indptr, w.shape[1])
    want = CSR.from_mask(case.w.T, case.mask.T)
    np.testing.assert_array_equal(indptr_t, want.indptr)
    np.testing.assert_array_equal(indices_t, want.indices)
    np.testing.assert_array_equal(w.data[perm], want.data)
    values = np.full(w.nnz, np.nan, w.dtype)
    for kern in (kernels.csr_transpose_values, kernels.csr_transpose_values_serial):
        kern(w.data, perm, values)
        np.testing.assert_array_equal(values, want.data)


@pytest.mark.nojit
@pytest.mark.parametrize("blocksize", [(1, 1), (2, 3), (4, 1)])
def test_bsr_tmatmul_over_transposed_blocks(blocksize):
    rng = np.random.default_rng(sum(blocksize))
    w = rng.standard_normal((9, 7)).astype(np.float32)
    b = BSR.from_dense(w, blocksize)
    dy = rng.standard_normal((9, 5)).astype(np.float32)
    np.testing.assert_allclose(b.tmatmul(dy), w.T @ dy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.tmatmul(dy[:, :1]), w.T @ dy[:, :1], rtol=1e-5, atol=1e-5)


def test_transposed_pattern_is_kept_until_the_pattern_changes():
    w = CSR.from_dense(np.array([[1.0, 0, 2], [0, 3, 0]], np.float32))
    first = w._transposed_pattern()
    assert all(a is b for a, b in zip(first, w._transposed_pattern()))
    w.data[:] = [5, 6, 7]  # new values, same pattern: the same pattern, the new values
    np.testing.assert_array_equal(w.tmatmul(np.eye(2, dtype=np.float32)), w.to_dense().T)
    w.indices = w.indices.copy()  # another pattern array: built again
    assert w._transposed_pattern()[0] is not first[0]


# -- gradients of the parameters only ------------------------------------------------------------------

def _grads(model):
    return [p.grad.copy() for p in model.parameters()]


def test_backward_params_gives_backwards_parameter_gradients_without_the_first_input_gradient(monkeypatch):
    rng = np.random.default_rng(0)
    model = Sequential(Flatten(), Linear(12, 8, seed=1), ReLU(), Linear(8, 3, seed=2))
    model[1].weight = CSR.from_dense(np.where(rng.random((8, 12)) < 0.5, model[1].weight.to_dense(), 0))
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    model.zero_grad()
    model.forward(x)
    model.backward(g)
    want = _grads(model)
    calls = []
    original = CSR.tmatmul
    monkeypatch.setattr(CSR, "tmatmul", lambda self, dy: calls.append(1) or original(self, dy))
    model.zero_grad()
    model.forward(x)
    assert model.backward_params(g) is None
    assert not calls, "the first weighted layer computed an input gradient nobody needs"
    for a, b in zip(want, _grads(model)):
        np.testing.assert_array_equal(a, b)


def test_graph_backward_params_skips_what_reaches_no_parameter(monkeypatch):
    rng = np.random.default_rng(1)
    fa, out = Linear(6, 4, seed=1), Linear(4, 2, seed=3)
    g = Graph({"a": (6,), "b": (4,)},
              [("fa", fa, "a"), ("relu_b", ReLU(), "b"),  # relu_b: no parameter upstream
               ("mix", Add(), ["fa", "relu_b"]), ("pre", Linear(4, 4, seed=2), "mix"), ("out", out, "relu_b")],
              ["pre", "out"])
    xa, xb = rng.standard_normal((3, 6)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    ga, gb = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    g.zero_grad()
    g.forward(xa, xb)
    g.backward(ga, gb)
    want = _grads(g)
    relu_calls = []
    original = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, grad: relu_calls.append(1) or original(self, grad))
    g.zero_grad()
    g.forward(xa, xb)
    assert g.backward_params(ga, gb) is None
    assert not relu_calls, "a node with no parameter upstream ran its backward"
    for a, b in zip(want, _grads(g)):
        np.testing.assert_array_equal(a, b)


# -- optimiser updates ------------------------------------------------------------------------------------

def _numpy_adam(p, g, m, v, t, lr, b1, b2, eps, wd, decoupled):
    """Adam as the NumPy expressions computed it before the fused kernel (float32 stays float32)."""
    if wd and not decoupled:
        g = g + wd * p
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    step = lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    if wd and decoupled:
        p -= (lr * wd * p).astype(p.dtype, copy=False)
    p -= step.astype(p.dtype, copy=False)


def _numpy_sgd(p, g, buf, lr, momentum, wd, nesterov):
    g = g + wd * p if wd else g
    if momentum:
        if buf is None:
            buf = g.copy()
        else:
            buf *= momentum
            buf += g
        g = g + momentum * buf if nesterov else buf
    p -= (lr * g).astype(p.dtype, copy=False)
    return buf


@pytest.mark.nojit
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("opt", ["adam", "adam-wd", "adamw", "sgd", "sgd-plain", "sgd-nesterov-wd"])
@pytest.mark.parametrize("size", [0, 7, 70_000])  # 70 000 values: the parallel build (threshold lowered)
def test_fused_updates_give_numpys_bits(opt, dtype, size, monkeypatch):
    monkeypatch.setattr(sn.optim, "PARALLEL_MIN_VALUES", 50_000)
    rng = np.random.default_rng(size)
    p0 = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    param = Parameter(p0.copy())
    make = {"adam": lambda ps: Adam(ps, lr=0.01), "adam-wd": lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
            "adamw": lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
            "sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.9),
            "sgd-plain": lambda ps: SGD(ps, lr=0.1),
            "sgd-nesterov-wd": lambda ps: SGD(ps, lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True)}
    o = make[opt]([param])
    ref, m, v, buf = p0.copy(), np.zeros_like(p0), np.zeros_like(p0), None
    for t, g in enumerate(grads, start=1):
        param.grad[...] = g
        o.step()
        if opt.startswith("adam"):
            _numpy_adam(ref, g, m, v, t, o.lr, o.b1, o.b2, o.eps, o.weight_decay, o.decoupled)
        else:
            buf = _numpy_sgd(ref, g, buf, o.lr, o.momentum, o.weight_decay, o.nesterov)
    np.testing.assert_array_equal(param.data, ref)


def test_max_grad_norm_clips_the_global_norm():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    o = SGD([a, b], lr=1.0, max_grad_norm=1.0)
    a.grad[...] = [3.0, 0.0]
    b.grad[...] = [4.0]
    assert o.grad_norm() == pytest.approx(5.0)
    o.step()
    np.testing.assert_allclose(np.concatenate([a.data, b.data]), [-0.6, 0, -0.8])
    a.grad[...] = [0.3, 0.0]  # below the bound: untouched
    b.grad[...] = [0.4]
    o.step()
    np.testing.assert_allclose(np.concatenate([a.data, b.data]), [-0.9, 0, -1.2])
    with pytest.raises(ConfigError, match="max_grad_norm > 0"):
        Adam([a], max_grad_norm=0)


def test_carried_state_follows_its_entries_and_new_entries_start_at_zero():
    layer = Linear(3, 2, seed=0)
    layer.weight = CSR.from_dense(np.array([[1.0, 0, 2], [0, 3, 0]], np.float32))
    opt = Adam(layer.parameters(), lr=0.1)
    layer.weight_param.grad[...] = [1.0, 2.0, 3.0]
    opt.step()
    m_before = opt.state[0]["m"].copy()
    # new pattern: (0, 0) kept, (0, 2) dropped, (1, 1) kept, (1, 2) grown
    new = CSR(np.array([5.0, 6.0, 0.0], np.float32), np.array([0, 1, 2]), np.array([0, 1, 3]), (2, 3))
    layer.set_weight(new, carry=[0, 2, -1])
    layer.weight_param.grad[...] = 0
    opt.step()
    st = opt.state[0]
    assert st["t"] == 2  # the step count goes on
    np.testing.assert_allclose(st["m"], [m_before[0] * 0.9, m_before[2] * 0.9, 0.0], rtol=1e-6)
    layer.weight = CSR.from_dense(np.ones((2, 3), np.float32))  # a plain assignment: a fresh start
    layer.weight_param.grad[...] = 1
    opt.step()
    assert opt.state[0]["t"] == 1
    with pytest.raises(ShapeError, match="carry of shape"):
        layer.set_weight(CSR.from_dense(np.ones((2, 3), np.float32)), carry=[0, 1])
    before = layer.weight
    with pytest.raises(ShapeError, match=r"holding -1 or indices below 6, found \[-2, 1\]"):
        layer.set_weight(CSR.from_dense(np.ones((2, 3), np.float32)), carry=[0, 1, -2, 0, 0, 0])
    assert layer.weight is before and layer.weight_param.data is before.data  # a refused carry changes nothing


def test_state_is_carried_only_across_one_replacement():
    layer = Linear(3, 2, seed=0)
    layer.weight = CSR.from_dense(np.ones((2, 3), np.float32))
    opt = Adam(layer.parameters(), lr=0.1)
    layer.weight_param.grad[...] = 1
    opt.step()
    w = layer.weight
    layer.set_weight(CSR(w.data.copy(), w.indices, w.indptr, w.shape), carry=np.arange(6))
    layer.set_weight(CSR(w.data.copy(), w.indices, w.indptr, w.shape), carry=np.arange(6))
    opt.step()  # the state describes the contents two replacements ago: dropped, not mis-carried
    assert opt.state[0]["t"] == 1


def test_dense_grad_is_the_full_weight_gradient():
    rng = np.random.default_rng(2)
    layer = Linear(5, 4, seed=0)
    layer.weight = CSR.from_dense(np.where(rng.random((4, 5)) < 0.4, 1.0, 0.0).astype(np.float32))
    x = rng.standard_normal((6, 5)).astype(np.float32)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    assert layer.dense_grad is None
    layer.want_dense_grad()
    layer.forward(x)
    layer.backward_params(g)
    np.testing.assert_allclose(layer.dense_grad, g.T @ x, rtol=1e-5, atol=1e-6)
    stored = layer.weight.mask()
    np.testing.assert_allclose(layer.weight_param.grad, (g.T @ x)[stored], rtol=1e-5, atol=1e-6)
    layer.want_dense_grad(False)
    assert layer.dense_grad is None


# -- dynamic sparse training -------------------------------------------------------------------------------

def _mlp(seed=0):
    return Sequential(Linear(16, 32, seed=seed), ReLU(), Linear(32, 24, seed=seed + 1), ReLU(),
                      Linear(24, 4, seed=seed + 2))


def _layers(model):
    return {str(i): layer for i, layer in enumerate(model.layers) if isinstance(layer, Linear)}


@pytest.mark.parametrize("distribution", ["uniform", "er", "erk"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_layer_densities_meet_the_budget(distribution, sparsity):
    layers = _layers(_mlp())
    d = layer_densities(layers, sparsity, distribution)
    sizes = {n: np.prod(layer.weight_shape) for n, layer in layers.items()}
    kept = sum(d[n] * sizes[n] for n in layers)
    assert kept == pytest.approx((1 - sparsity) * sum(sizes.values()))
    assert all(0 <= v <= 1 for v in d.values())
    if distribution != "uniform" and 0 < sparsity:
        # the small last layer (24 -> 4) is denser than the large middle one (32 -> 24)
        assert d["4"] > d["2"]


def test_erk_caps_layers_at_dense_and_spreads_the_rest():
    layers = {"big": Linear(1000, 1000), "tiny": Linear(2, 2)}
    d = layer_densities(layers, 0.5, "erk")
    assert d["tiny"] == 1.0
    assert d["big"] == pytest.approx((0.5 * (1e6 + 4) - 4) / 1e6)


def test_erk_counts_a_convolutions_kernel():
    conv, lin = Conv2d(4, 8, 3), Linear(36, 8)  # both hold 288 weights
    d_erk = layer_densities({"c": conv, "l": lin}, 0.8, "erk")
    d_er = layer_densities({"c": conv, "l": lin}, 0.8, "er")
    # ER sees (out, in) only: the conv's (8, 4) scores (8 + 4) / 32, the linear's (8 + 36) / 288;
    # ERK adds the kernel: (8 + 4 + 3 + 3) / 288, less than ER's 12 / 32
    eps_er = 0.2 * 576 / (12 / 32 * 288 + 44 / 288 * 288)
    assert d_er["c"] == pytest.approx(eps_er * 12 / 32)
    eps_erk = 0.2 * 576 / (18 / 288 * 288 + 44 / 288 * 288)
    assert d_erk["c"] == pytest.approx(eps_erk * 18 / 288) and d_erk["l"] == pytest.approx(eps_erk * 44 / 288)


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    return x, (x[:, :4].argmax(axis=1)).astype(np.int64)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_sparse_train_keeps_csr_and_the_stored_count_while_the_pattern_moves(method):
    model = _mlp()
    x, y = _data()
    r = sparse_train(model, x, y, method=method, sparsity=0.8, epochs=6, batch_size=16, delta_t=5,
                     drop_fraction=0.5, seed=3)
    layers = _layers(model)
    assert r.dense == [n for n, d in r.densities.items() if d == 1.0]  # ERK's capped layers stay Dense
    for name, layer in layers.items():
        if name in r.dense:
            assert isinstance(layer.weight, sn.Dense), name
            continue
        assert isinstance(layer.weight, CSR), name
        want = int(round(r.densities[name] * np.prod(layer.weight_shape)))
        assert layer.weight.nnz == max(want, 1), name
    assert r.updates and all(u["step"] % 5 == 0 for u in r.updates)
    assert r.updates[-1]["step"] <= int(0.75 * 36)
    assert sum(sum(u["moved"].values()) for u in r.updates) > 0, "no connection ever moved"
    fracs = [u["fraction"] for u in r.updates]
    assert fracs == sorted(fracs, reverse=True) and fracs[0] <= 0.5
    assert model.meta["pruning"]["method"] == method
    assert all(layer.dense_grad is None for layer in layers.values())  # RigL's probes are off again


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_sparse_train_is_reproducible_bit_for_bit(method):
    x, y = _data()
    outs = []
    for _ in range(2):
        model = _mlp(seed=4)
        sparse_train(model, x, y, method=method, sparsity=0.7, epochs=3, batch_size=16, delta_t=3, seed=9)
        outs.append([(layer.weight.indices.copy(), layer.weight.data.copy()) for layer in _layers(model).values()])
    for (ia, da), (ib, db) in zip(*outs):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(da, db)


def test_rigl_grows_where_the_dense_gradient_is_largest_and_drops_the_smallest():
    layer = Linear(4, 2, seed=0)
    model = Sequential(layer)
    dst = DynamicSparsity(model, method="rigl", sparsity=0.5, distribution="uniform", total_steps=10,
                          delta_t=1, drop_fraction=0.5, end_fraction=1.0)
    w = layer.weight
    assert isinstance(w, CSR) and w.nnz == 4
    w.data[:] = [0.5, -3.0, 2.0, 0.01]  # the two smallest: 0.01 and 0.5
    stored = w.mask()
    layer.want_dense_grad()
    grad = np.arange(8, dtype=np.float32).reshape(2, 4)
    grad[stored] = 0  # (a dropped place may regrow, as in RigL, if its gradient is among the largest)
    layer.dense_grad[...] = grad
    entry = dst.update(0)  # fraction 0.5 at step 0: two move
    assert entry["moved"] == {"0": 2}
    new = layer.weight.to_dense()
    free = np.flatnonzero(~stored.reshape(-1))
    largest = free[np.argsort(-grad.reshape(-1)[free], kind="stable")[:2]]
    kept = np.abs(w.to_dense()).reshape(-1)
    want = np.zeros(8, np.float32)
    for v in (-3.0, 2.0):
        want[np.flatnonzero(kept == abs(v))] = v
    want[largest] = 0.0  # grown at zero
    np.testing.assert_array_equal(new.reshape(-1), want)
    assert set(np.flatnonzero(layer.weight.mask().reshape(-1))) == set(np.flatnonzero(want != 0)) | set(largest)


def test_sparse_train_in_blocks_keeps_bsr():
    model = _mlp()
    x, y = _data()
    r = sparse_train(model, x, y, method="rigl", sparsity=0.75, epochs=3, batch_size=16, delta_t=4,
                     blocksize=(4, 4), seed=1)
    assert sum(sum(u["moved"].values()) for u in r.updates) > 0, "no block ever moved"
    for name, layer in _layers(model).items():
        if name in r.dense:
            continue
        assert isinstance(layer.weight, BSR) and layer.weight.blocksize == (4, 4)
        layer.weight.check()  # edge blocks zero beyond the shape, sorted block columns
        gm, gk = -(-layer.weight_shape[0] // 4), -(-layer.weight_shape[1] // 4)
        assert layer.weight.nblocks == max(int(round(r.densities[name] * gm * gk)), 1), name


def test_sparse_train_learns_the_digits():
    from sparsenet.data import load_dataset

    ds = load_dataset("digits")
    model = sn.build_model("lenet300", seed=0)
    sparse_train(model, ds.x_train, ds.y_train, method="rigl", sparsity=0.9, epochs=10, batch_size=32, delta_t=50)
    assert sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"] > 0.85
    layers = sn.prune.prunable_layers(model).values()
    total = sum(np.prod(layer.weight_shape) for layer in layers)
    assert sum(layer.weight.nnz for layer in layers) == pytest.approx(0.1 * total, rel=0.01)


@pytest.mark.parametrize("bad, match", [
    ({"method": "snip"}, "expected method in"),
    ({"distribution": "gauss"}, "expected distribution in"),
    ({"sparsity": 1.5}, "sparsity as a fraction"),
    ({"delta_t": 0}, "delta_t >= 1"),
    ({"blocksize": (0, 2)}, "blocksize"),
])
def test_sparse_train_rejects_bad_settings(bad, match):
    x, y = _data()
    with pytest.raises(ConfigError, match=match):
        sparse_train(_mlp(), x, y, epochs=1, **bad)


def test_sparse_train_keeps_a_depthwise_convolution_dense():
    model = Sequential(Conv2d(2, 2, 3, groups=2), Flatten(), Linear(2 * 6 * 6, 3))
    x = np.random.default_rng(0).standard_normal((8, 2, 8, 8)).astype(np.float32)
    r = sparse_train(model, x, np.arange(8) % 3, epochs=2, batch_size=4, delta_t=1, sparsity=0.5)
    assert r.dense == ["0"] and r.densities["0"] == 1.0 and isinstance(model[0].weight, sn.Dense)
    assert isinstance(model[2].weight, CSR) and model[2].weight.nnz == 108
    only_depthwise = Sequential(Conv2d(2, 2, 3, groups=2))
    with pytest.raises(ConfigError, match=r"no weighted layer to make sparse \(grouped or depthwise convolutions \['0'\]"):
        sparse_train(only_depthwise, x, np.zeros(8, np.int64), epochs=1)
    with pytest.raises(ConfigError, match="keeps no dense weight gradient"):
        model[0].want_dense_grad()


def test_depthwise_and_grouped_backward_params_skip_the_input_gradient():
    rng = np.random.default_rng(3)
    for conv in (Conv2d(4, 4, 3, groups=4, padding=1), Conv2d(4, 6, 3, groups=2)):
        x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
        out = conv.forward(x)
        g = rng.standard_normal(out.shape).astype(np.float32)
        conv.zero_grad()
        conv.backward(g)
        want = _grads(conv)
        conv.zero_grad()
        conv.forward(x)
        assert conv.backward_params(g) is None
        for a, b in zip(want, _grads(conv)):
            np.testing.assert_array_equal(a, b)


def test_bad_data_is_refused_before_the_model_is_touched():
    model = _mlp()
    before = type(model[0].weight)
    x, y = _data()
    for bad_x, bad_y, err in ((x, y[:-1], ShapeError), ({}, y, ConfigError), (np.float32(1.0), y, ShapeError),
                              (x, y.astype(np.float32), sn.DataError)):
        with pytest.raises(err):
            sparse_train(model, bad_x, bad_y, epochs=1)
        assert type(model[0].weight) is before
    with pytest.raises(ConfigError, match="lr_schedule"):
        sparse_train(model, x, y, lr_schedule="linear")
    assert type(model[0].weight) is before


def test_optimiser_state_holds_only_the_stored_entries():
    layer = Linear(50, 40, seed=0)
    layer.weight = CSR.from_dense(np.where(np.arange(2000).reshape(40, 50) % 10 == 0, 1.0, 0.0).astype(np.float32))
    for opt in (Adam(layer.parameters()), SGD(layer.parameters(), momentum=0.9)):
        layer.weight_param.grad[...] = 1
        opt.step()
        assert all(v.shape == (200,) for v in opt.state[0].values() if isinstance(v, np.ndarray))
        assert opt.state[0], "no state kept"


def test_sparse_train_a_cnn_keeps_its_convolutions_sparse():
    rng = np.random.default_rng(5)
    model = sn.build_model("cnn", seed=0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    r = sparse_train(model, x, y, method="rigl", sparsity=0.8, epochs=2, batch_size=16, delta_t=2, seed=0)
    convs = {str(i): layer for i, layer in enumerate(model.layers) if isinstance(layer, Conv2d)}
    assert r.dense == ["0", "11"]  # ERK gives the 1 -> 16 stem (144 weights) and the 64 -> 10 head all they hold
    assert isinstance(convs["0"].weight, sn.Dense) and all(isinstance(c.weight, CSR) for n, c in convs.items() if n != "0")
    assert sum(sum(u["moved"].values()) for u in r.updates) > 0
    assert np.isfinite(sn.predict(model, x)).all()


def test_state_of_a_fortran_ordered_parameter_accumulates():
    rng = np.random.default_rng(0)
    data = np.asfortranarray(rng.standard_normal((3, 4)))
    p, ref = Parameter(data), data.copy()
    opt = Adam([p], lr=0.01)
    m, v = np.zeros_like(ref), np.zeros_like(ref)
    for t in range(1, 4):
        g = rng.standard_normal((3, 4))
        p.grad[...] = g
        opt.step()
        _numpy_adam(ref, g, m, v, t, 0.01, 0.9, 0.999, 1e-8, 0.0, False)
    np.testing.assert_allclose(p.data, ref, rtol=1e-12)
    np.testing.assert_allclose(opt.state[0]["m"], m, rtol=1e-12)


def test_a_place_dropped_and_chosen_again_keeps_its_weight_and_state():
    layer = Linear(4, 1, seed=0)
    model = Sequential(layer)
    dst = DynamicSparsity(model, method="rigl", sparsity=0.5, distribution="uniform", total_steps=10,
                          delta_t=1, drop_fraction=0.5, end_fraction=1.0)
    w = layer.weight
    w.data[:] = [0.5, -0.25]
    stored = np.flatnonzero(w.mask().reshape(-1))
    opt = Adam(model.parameters(), lr=0.1)
    layer.weight_param.grad[...] = [1.0, 2.0]
    opt.step()
    values, m = w.data.copy(), opt.state[0]["m"].copy()
    layer.want_dense_grad()
    grad = np.zeros((1, 4), np.float32)
    grad[0, stored[1]] = 9.0  # the stored entry -0.25 is dropped (smallest) and regrown (largest gradient)
    free = [c for c in range(4) if c not in stored]
    grad[0, free[0]] = 5.0
    layer.dense_grad[...] = grad
    entry = dst.update(0)  # fraction 0.5 at step 0: one of the two is dropped
    assert entry["moved"] == {"0": 0}  # and chosen again: not a move
    np.testing.assert_array_equal(layer.weight.data, values)
    layer.weight_param.grad[...] = 0
    opt.step()
    np.testing.assert_allclose(opt.state[0]["m"], m * 0.9, rtol=1e-6)
