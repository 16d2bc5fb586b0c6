"""Compiled inference plans (`sparsenet.plan`): outputs equal the layers' own forward for every zoo
model, weight format, activation and batch size; fusion where it is safe and not where a value has
other readers; buffers reused (no allocation per call but the output); the cache follows changes
to the model; threads; bad input."""

import threading
import tracemalloc

import numba
import numpy as np
import pytest

import sparsenet as sn
from sparsenet.errors import DataError, DTypeError, ShapeError
from sparsenet.formats import CSR
from sparsenet.kernels import epilogue
from sparsenet.nn import (GELU, Add, AvgPool2d, Clip, HardSigmoid, HardSwish, ReLU6, SiLU, BatchNorm1d, BatchNorm2d, Concat, Dropout, Flatten, Graph, Identity, LeakyReLU, Linear,
                          ReLU, Sequential, Sigmoid, Tanh, inference)
from sparsenet.plan import build_plan, plan_for
from sparsenet.prune import compiled, prune
from sparsenet.quantize import quantize_model as quantize


def _reference(model, x):
    with inference(model):
        return np.asarray(model.forward(x))


def _pruned(name, spec):
    model = sn.build_model(name, seed=3)
    prune(model, method="magnitude", sparsity=0.8, scope="global")
    model = compiled(model, "dense" if spec == "int8" else spec)
    return quantize(model) if spec == "int8" else model


@pytest.mark.parametrize("spec", ["dense", "csr", "bsr4x4", "int8"])
@pytest.mark.parametrize("name", ["mlp", "lenet300", "cnn"])
def test_plan_matches_the_layers_forward(name, spec):
    model = _pruned(name, spec)
    rng = np.random.default_rng(0)
    plan = build_plan(model)
    for n, batch_size in ((1, 256), (2, 256), (7, 3), (64, 256), (300, 128)):
        x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        got = plan.predict(x, batch_size)
        assert got.shape == (n, 10) and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, _reference(model, x), rtol=2e-5, atol=2e-5, err_msg=f"n={n}")


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.2), Sigmoid(), Tanh(), GELU(), GELU("none"), SiLU(), ReLU6(),
                                 Clip(0, 0.5), HardSigmoid(), HardSigmoid(0.2), HardSwish(), Clip(-0.5, 0.5),
                                 HardSigmoid(0.2, 0.25), Identity()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_every_activation_fuses_and_matches(act, dtype):
    model = Sequential(Linear(5, 70, seed=1, dtype=dtype), act, Linear(70, 3, seed=2, dtype=dtype, bias=False))
    model.layers[0].weight = CSR.from_dense(np.where(np.arange(350).reshape(70, 5) % 3, 0,
                                                     model.layers[0].weight.to_dense()))
    plan = build_plan(model, input_shape=(5,))
    generic = (isinstance(act, Clip) and act.low != 0) or (isinstance(act, HardSigmoid) and act.beta != 0.5)
    if generic:  # no fused form: the layer's own forward, as a generic step
        assert "generic" in plan.describe()
    elif not isinstance(act, Identity):
        assert f"+ {type(act).__name__}" in plan.describe() and "activation" not in plan.describe()
    x = np.random.default_rng(1).standard_normal((9, 5)).astype(dtype) * 3
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=tol, atol=tol)


def test_a_value_with_other_readers_is_not_fused_into():
    """fc1 feeds the ReLU and the Concat: the ReLU must not overwrite what the Concat reads."""
    fc1, fc2 = Linear(4, 6, seed=0, dtype=np.float64), Linear(12, 2, seed=1, dtype=np.float64)
    g = Graph({"x": (4,)}, [("fc1", fc1, ["x"]), ("relu", ReLU(), ["fc1"]), ("cat", Concat(), ["relu", "fc1"]),
                            ("out", fc2, ["cat"])], "out")
    plan = build_plan(g)
    assert "+ ReLU" not in plan.describe() and "activation" in plan.describe()
    x = np.random.default_rng(2).standard_normal((5, 4))
    h = x @ fc1.weight.to_dense().T + fc1.bias.data
    want = np.concatenate([np.maximum(h, 0), h], axis=1) @ fc2.weight.to_dense().T + fc2.bias.data
    np.testing.assert_allclose(plan.predict(x), want, rtol=1e-12, atol=1e-12)


def test_flatten_and_dropout_cost_no_step_and_a_training_model_predicts_in_eval_mode():
    model = Sequential(Flatten(), Linear(64, 8, seed=0), ReLU(), Dropout(0.5), Linear(8, 3, seed=1))
    model.input_shape = (1, 8, 8)
    plan = build_plan(model)
    assert [s.kind for s in plan.steps] == ["ingest_fm", "product", "product"]
    model.train()
    x = np.random.default_rng(3).standard_normal((4, 1, 8, 8)).astype(np.float32)
    a, b = sn.predict(model, x), sn.predict(model, x)
    np.testing.assert_array_equal(a, b)  # no dropout
    assert model.training and all(m.training for _, m in model.named_modules())


def test_generic_steps_run_in_eval_mode_and_restore_each_flag():
    model = sn.build_model("cnn", seed=0)
    model.layers[6] = AvgPool2d(2)  # a generic step (the layer's own forward) among BatchNorms and Dropout
    assert "generic" in [s.kind for s in build_plan(model).steps]
    model.layers[1].training = False
    x = np.random.default_rng(4).standard_normal((3, 1, 8, 8)).astype(np.float32)
    got = sn.predict(model, x)
    assert [m.training for m in model.layers] == [True, False] + [True] * (len(model.layers) - 2)
    np.testing.assert_allclose(got, _reference(model, x), rtol=2e-5, atol=2e-5)
    assert model.training


def test_no_allocation_per_call_but_the_output():
    model = _pruned("lenet300", "csr")
    x = np.random.default_rng(5).standard_normal((64, 1, 8, 8)).astype(np.float32)
    plan = plan_for(model, x)
    plan.predict(x)
    tracemalloc.start()
    try:
        plan.predict(x)  # bound buffers exist: this call allocates only its output
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = plan.predict(x)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # an intermediate activation (300 x 64 float32 = 76.8 KB) allocated per call would show
    assert peak <= out.nbytes + 2048, f"a call allocated {peak} bytes for a {out.nbytes}-byte output"


def test_cache_follows_changes_to_the_model():
    model = _pruned("mlp", "csr")
    x = np.random.default_rng(6).standard_normal((2, 1, 8, 8)).astype(np.float32)
    plan = plan_for(model, x)
    assert plan_for(model, x) is plan
    first = model.predict(x)
    model.layers[1].weight.data *= 2  # in place: the plan reads the model's own arrays
    assert plan_for(model, x) is plan
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)
    assert not np.allclose(model.predict(x), first)
    model.layers[3].weight = CSR.from_dense(np.zeros(model.layers[3].weight.shape, np.float32))  # replaced
    assert plan_for(model, x) is not plan
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)
    tanh, head = Tanh(), Linear(model.layers[3].weight.shape[0], 4, seed=9)  # (building modules is a change)
    model.layers[1].bias = None
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)
    model.layers[2] = tanh  # the layer list changed in place
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)
    model.layers.pop()
    assert model.predict(x).shape == (2, model.layers[3].weight.shape[0])
    model.layers.append(head)
    assert model.predict(x).shape == (2, 4)
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)


def test_model_without_input_shape_gets_a_plan_per_sample_shape():
    model = Sequential(Flatten(), Linear(6, 2, seed=0))
    assert model.predict(np.ones((3, 6))).shape == (3, 2)
    assert model.predict(np.ones((3, 2, 3))).shape == (3, 2)
    with pytest.raises(ShapeError, match="layer 1"):
        model.predict(np.ones((3, 7)))


def test_threads_share_a_plan_with_their_own_buffers():
    model = _pruned("lenet300", "csr")
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((n, 1, 8, 8)).astype(np.float32) for n in (1, 5, 64, 64, 1, 17)]
    want = [_reference(model, x) for x in xs]
    errors = []

    def work(i):
        for _ in range(200):
            got = model.predict(xs[i])
            if not np.allclose(got, want[i], rtol=2e-5, atol=2e-5):
                errors.append(i)
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_bad_input_is_refused_at_the_boundary():
    model = sn.build_model("mlp", seed=0)
    x = np.zeros((3, 1, 8, 8), np.float32)
    for bad, err, match in ((np.where(np.arange(192).reshape(x.shape) == 5, np.nan, x), DataError, "1 NaN/inf"),
                            (np.full(x.shape, 1e300), DataError, "overflow"),
                            (x.astype(np.complex64), DTypeError, "complex"),
                            (np.zeros((3, 64)), ShapeError, r"\[N, 1, 8, 8\]")):
        with pytest.raises(err, match=match):
            model.predict(bad)
    assert model.predict(x[0]).shape == (10,)
    assert model.predict(x[:0]).shape == (0, 10)
    assert model.predict(np.zeros((2, 1, 8, 8), np.int64)).dtype == np.float32
    np.testing.assert_allclose(model.predict(np.asfortranarray(np.ones((4, 1, 8, 8)))),
                               _reference(model, np.ones((4, 1, 8, 8), np.float32)), rtol=2e-5, atol=2e-5)


def test_several_inputs_and_outputs_through_run():
    a, b = Linear(3, 4, seed=0, dtype=np.float64), Linear(7, 2, seed=1, dtype=np.float64)
    g = Graph({"u": (3,), "v": (3,)}, [("fa", a, ["u"]), ("t", Tanh(), ["fa"]), ("cat", Concat(), ["t", "v"]),
                                       ("fb", b, ["cat"])], ["fb", "t"])
    rng = np.random.default_rng(8)
    u, v = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    got = build_plan(g).run(u, v, batch_size=4)
    want = g.forward(u, v)
    assert len(got) == 2
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(gv, wv, rtol=1e-12, atol=1e-12)


@pytest.mark.nojit
def test_plan_runs_without_jit():
    model = Sequential(Flatten(), Linear(6, 5, seed=0), ReLU(), Linear(5, 2, seed=1), Sigmoid())
    model.layers[1].weight = CSR.from_dense(np.triu(model.layers[1].weight.to_dense()))
    x = np.random.default_rng(9).standard_normal((3, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(model.predict(x[:1]), _reference(model, x[:1]), rtol=2e-6, atol=2e-6)


def test_quiet_blas_stops_the_pool_only_with_one_thread_and_blas_still_works():
    from sparsenet.kernels import _blas

    _blas.quiet_blas()
    if not _blas._POOLS:
        pytest.skip("no OpenBLAS (pthreads) loaded")
    a = np.random.default_rng(10).standard_normal((600, 600))
    want = a @ a  # threaded: the pool is up
    started = threading.Event()
    stop = threading.Event()
    other = threading.Thread(target=lambda: (started.set(), stop.wait()))
    other.start()
    started.wait()
    try:
        assert threading.active_count() > 1
        _ = a @ a
        _blas.quiet_blas()  # another Python thread might be inside BLAS: left alone
        assert any(avail.value for avail, _ in _blas._POOLS)
    finally:
        stop.set()
        other.join()
    if threading.active_count() != 1:
        pytest.skip(f"threads left by earlier tests: {[t.name for t in threading.enumerate()]}")
    _blas.quiet_blas()
    assert not any(avail.value for avail, _ in _blas._POOLS)
    np.testing.assert_allclose(a @ a, want, rtol=1e-12, atol=1e-9)  # the pool starts again


# -- tapes: a small plan as one compiled call -------------------------------------------------------
def _without_tape(monkeypatch, plan, batch):
    from sparsenet.plan import _tape

    monkeypatch.setattr(_tape, "_ENABLED", False)
    prog = plan._bind(batch)
    monkeypatch.setattr(_tape, "_ENABLED", True)
    return prog


@pytest.mark.parametrize("spec,dtype", [(spec, dtype) for spec in ("dense", "csr", "bsr4x4", "bsr8x1", "bsr16x1")
                                         for dtype in (np.float32, np.float64)] +
                         [("int8-dense", np.float32), ("int8-csr", np.float32), ("int8-bsr4x4", np.float32)])
def test_tape_gives_the_same_bits_as_the_call_by_call_path(spec, dtype, monkeypatch):
    """Every weight format's serial product in a tape: the same kernels with the same argument
    types, so the same bits, at batch 1 and at a small batch (serial kernels too)."""
    from sparsenet.plan._tape import _Tape, tape_of

    model = Sequential(Linear(64, 40, seed=1, dtype=dtype), ReLU(), Linear(40, 24, seed=2, dtype=dtype), Tanh(),
                       Linear(24, 10, seed=3, dtype=dtype))
    prune(model, method="magnitude", sparsity=0.75, scope="global")
    model = compiled(model, spec.removeprefix("int8-"))
    model = quantize(model) if spec.startswith("int8") else model
    plan = build_plan(model, input_shape=(64,))
    rng = np.random.default_rng(2)
    for batch in (1, 3):
        tape = tape_of(plan._bind(batch), plan.dtype)
        assert isinstance(tape, _Tape), f"batch {batch}: {plan.describe()}"
        calls = _without_tape(monkeypatch, plan, batch)
        x = rng.standard_normal((batch, 64)).astype(plan.dtype)
        got, want = np.empty((batch, 10), plan.dtype), np.empty((batch, 10), plan.dtype)
        assert tape.run1(x, got) == 0 and calls.run1(x, want) == 0
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, _reference(model, x), rtol=1e-5, atol=1e-5)
        # another input dtype: cast outside the tape, same result
        x64 = x.astype(np.float64 if plan.dtype == np.float32 else np.float32)
        assert tape.run1(x64, got) == 0 and calls.run1(x64, want) == 0
        np.testing.assert_array_equal(got, want)


def test_tape_runs_an_unfused_activation_and_reports_bad_input():
    from sparsenet.kernels import chain
    from sparsenet.plan._tape import _Tape

    # ReLU fuses into the first product; Tanh after it runs as an in-place epilogue row
    model = Sequential(Linear(6, 5, seed=1), ReLU(), Tanh(), Linear(5, 4, seed=2))
    plan = build_plan(model, input_shape=(6,))
    assert isinstance(plan._program(1), _Tape) and "activation" in plan.describe(), plan.describe()
    assert chain.EPILOGUE in plan._program(1).tape[:, 0]
    x = np.random.default_rng(0).standard_normal((1, 6)).astype(np.float32)
    np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=1e-6, atol=1e-6)
    x[0, 3] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf"):
        plan.predict(x)
    ro = np.zeros((1, 6), np.float32)
    ro.flags.writeable = False  # a read-only input takes the cast path (no new compiled signature)
    np.testing.assert_allclose(plan.predict(ro), _reference(model, ro), rtol=1e-6, atol=1e-6)


def test_tape_sees_in_place_weight_changes_and_is_not_used_where_it_does_not_apply():
    from sparsenet.plan._tape import _Tape

    model = sn.build_model("lenet300", seed=0)
    prune(model, method="magnitude", sparsity=0.9, scope="global")
    model = compiled(model, "csr")
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    plan = plan_for(model, x)
    before = model.predict(x)
    assert isinstance(plan._program(1), _Tape)
    model.layers[-1].bias.data[:] += 1.0  # in place: the same plan, the tape reads the model's array
    np.testing.assert_allclose(model.predict(x), before + 1.0, rtol=1e-5, atol=1e-5)
    assert plan_for(model, x) is plan
    # a parallel kernel (batch 256 on this model) or a generic layer: call by call
    assert not isinstance(plan._program(256), _Tape)
    cnn = sn.build_model("cnn", seed=0)
    assert not isinstance(plan_for(cnn, x)._program(1), _Tape)


def test_a_graph_whose_input_shapes_change_in_place_gets_a_new_plan():
    g = Graph({"x": (4,)}, [("flat", Flatten(), ["x"]), ("fc", Linear(4, 3, seed=1), ["flat"])], "fc")
    x = np.ones((2, 4), np.float32)
    first = plan_for(g, x)
    assert plan_for(g, x) is first
    want = g.predict(x)
    g.input_shapes["x"] = (2, 2)  # in place: the generation does not move
    with pytest.raises(ShapeError, match=r"\[N, 2, 2\]"):
        g.predict(x)
    assert plan_for(g, x) is not first
    np.testing.assert_allclose(g.predict(x.reshape(2, 2, 2)), want, rtol=1e-6)


# -- BatchNorm and MaxPool2d steps -----------------------------------------------------------------
def _randomize_batchnorms(model, seed):
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.running_mean[:] = rng.standard_normal(m.num_features)
            m.running_var[:] = rng.random(m.num_features) + 0.5
            m.weight.data[:] = rng.standard_normal(m.num_features)
            m.bias.data[:] = rng.standard_normal(m.num_features)


def test_batchnorm_and_maxpool_run_as_kernels_and_match_the_layers():
    model = sn.build_model("cnn", seed=2)
    _randomize_batchnorms(model, 3)
    plan = build_plan(model)
    kinds = [s.kind for s in plan.steps]
    # each BatchNorm follows a dense convolution: folded into its epilogue, with the ReLU after it
    assert kinds.count("batchnorm") == 0 and kinds.count("maxpool2d") == 1 and kinds.count("conv2d") == 2
    assert [s.what.split(": ", 1)[1] for s in plan.steps if s.kind == "conv2d"] == ["dense + BatchNorm2d + ReLU"] * 2
    assert "generic" not in kinds
    rng = np.random.default_rng(4)
    for n in (1, 3, 64):
        x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=1e-5, atol=1e-5)
    # statistics updated in place (as training does) are read at the next call, without a rebuild
    before = plan_for(model, x)
    bn = model.layers[1]
    bn.running_mean[:] += 0.5
    bn.running_var[:] *= 1.5
    bn.weight.data[:] *= 2
    bn.bias.data[:] -= 0.25
    model.layers[0].weight.data *= 0.5  # the convolution's weight too
    assert plan_for(model, x) is before
    for n in (1, 5, 64):
        x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_batchnorm1d_runs_on_feature_major_values(dtype):
    model = Sequential(Linear(6, 5, seed=1, dtype=dtype), BatchNorm1d(5, dtype=dtype), ReLU(),
                       Linear(5, 3, seed=2, dtype=dtype))
    _randomize_batchnorms(model, 5)
    plan = build_plan(model, input_shape=(6,))
    assert [s.kind for s in plan.steps] == ["ingest_fm", "product", "batchnorm", "product"]  # ReLU fused
    assert plan.steps[2].params["act"] == epilogue.RELU
    x = np.random.default_rng(6).standard_normal((9, 6)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=tol, atol=tol)


def test_batchnorm_does_not_overwrite_a_value_that_is_read_again():
    bn = BatchNorm1d(6)
    nodes = [("fc", Linear(6, 6, seed=1), ["x"]), ("bn", bn, ["fc"]), ("act", Tanh(), ["bn"]),
             ("cat", Concat(), ["act", "fc"]), ("head", Linear(12, 2, seed=2), ["cat"])]
    g = Graph({"x": (6,)}, nodes, "head")
    _randomize_batchnorms(g, 7)
    plan = build_plan(g)
    step = next(s for s in plan.steps if s.kind == "batchnorm")
    assert step.writes.root is not step.reads[0].root  # fc is read by the Concat too: a copy
    x = np.random.default_rng(8).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(plan.predict(x), _reference(g, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,hw", [(2, None, 0, (8, 8)), (3, 1, 1, (5, 7)), (3, 2, 1, (8, 5)),
                                                      (2, 1, 0, (3, 3)), ((3, 2), (2, 1), 1, (6, 6))])
@pytest.mark.parametrize("ceil", [False, True])
def test_maxpool2d_step_matches_the_layer_exactly(kernel, stride, padding, hw, ceil):
    from sparsenet.nn import MaxPool2d

    pool = MaxPool2d(kernel, stride, padding, ceil_mode=ceil)
    model = Sequential(pool)
    model.input_shape = (3, *hw)
    plan = build_plan(model)
    assert [s.kind for s in plan.steps] == ["ingest_bm", "maxpool2d"]
    x = np.random.default_rng(9).standard_normal((4, 3, *hw)).astype(np.float32)
    np.testing.assert_array_equal(plan.predict(x), _reference(model, x))


@pytest.mark.parametrize("spec", ["dense", "csr", "bsr4x4", "int8"])
@pytest.mark.parametrize("kernel,stride,padding,hw", [(3, 1, 1, (8, 8)), (1, 1, 0, (5, 7)), (3, 2, 0, (9, 6)),
                                                      ((2, 3), 2, 1, (6, 5)), (5, 1, 2, (4, 4))])
def test_conv2d_step_matches_the_layer(spec, kernel, stride, padding, hw):
    from sparsenet.nn import Conv2d

    conv = Conv2d(3, 8, kernel, stride, padding, seed=5)
    model = Sequential(conv, ReLU(), Conv2d(8, 4, 1, bias=False, seed=6))
    model.input_shape = (3, *hw)
    prune(model, method="magnitude", sparsity=0.6)
    model = compiled(model, "dense" if spec == "int8" else spec)
    if spec == "int8":
        model = quantize(model)
    plan = build_plan(model)
    steps = [(s.kind, s.what) for s in plan.steps]
    assert [k for k, _ in steps] == ["ingest_bm", "conv2d", "conv2d"]
    assert steps[1][1].endswith("+ ReLU")  # fused into the convolution's product
    rng = np.random.default_rng(7)
    for n in (1, 3, 64):
        x = rng.standard_normal((n, 3, *hw)).astype(np.float32)
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5, err_msg=f"n={n}")


@pytest.mark.parametrize("spec", ["dense", "csr", "int8"])
def test_depthwise_grouped_and_dilated_convolutions_in_plans(spec):
    """A MobileNet-style block: a 1x1 expansion, a depthwise 3x3 (strided, then dilated) with ReLU6
    fused, a grouped 1x1 (the layer's own forward), HardSwish."""
    from sparsenet.nn import Conv2d

    model = Sequential(Conv2d(4, 12, 1, seed=1), ReLU6(), Conv2d(12, 12, 3, 2, 1, groups=12, seed=2), ReLU6(),
                       Conv2d(12, 24, 3, 1, 2, groups=12, dilation=2, seed=3), HardSwish(),
                       Conv2d(24, 8, 1, groups=4, seed=4), ReLU())
    model.input_shape = (4, 9, 8)
    prune(model, method="magnitude", sparsity=0.5)
    model = compiled(model, "dense" if spec == "int8" else spec)
    if spec == "int8":
        model = quantize(model)
    plan = build_plan(model)
    kinds = [s.kind for s in plan.steps]
    if spec == "csr":  # a sparse depthwise weight runs the layer's forward (a bound dense copy would go stale)
        assert "depthwise2d" not in kinds and kinds.count("generic") == 3
    else:
        assert kinds == ["ingest_bm", "conv2d", "depthwise2d", "depthwise2d", "generic", "activation"]
        assert [s.what.rsplit(" + ", 1)[-1] for s in plan.steps[1:4]] == ["ReLU6", "ReLU6", "HardSwish"]
    rng = np.random.default_rng(7)
    for n in (1, 3, 64):
        x = rng.standard_normal((n, 4, 9, 8)).astype(np.float32)
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5, err_msg=f"n={n}")
    if spec != "int8":  # a weight changed in place (as an optimiser step does) is seen by the bound plan
        dw = model.layers[2].weight_param.data
        dw *= 2
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("spec", ["dense", "int8"])
def test_batchnorms_fold_into_the_convolutions_before_them_and_see_changes_in_place(spec):
    """Conv -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> Conv -> BN: every BatchNorm folds into the
    convolution before it (the direct kernel's epilogue; the depthwise taps scaled at every call;
    an int8 weight's convolution keeps its BatchNorm step), outputs equal the layers'; statistics,
    affine parameters and dense weights changed in place afterwards are seen by the same plan."""
    from sparsenet.nn import Conv2d

    model = Sequential(Conv2d(3, 16, 1, seed=1), BatchNorm2d(16), ReLU6(), Conv2d(16, 16, 3, 1, 1, groups=16, seed=2),
                       BatchNorm2d(16), ReLU6(), Conv2d(16, 8, 1, seed=3), BatchNorm2d(8))
    model.input_shape = (3, 6, 6)
    _randomize_batchnorms(model, 8)
    if spec == "int8":
        model = quantize(model)
    plan = build_plan(model)
    kinds = [s.kind for s in plan.steps]
    if spec == "dense":
        assert kinds == ["ingest_bm", "conv2d", "depthwise2d", "conv2d"]
        assert all("+ BatchNorm2d" in s.what for s in plan.steps[1:])
    else:  # int8 convolutions unfold for their product, whose epilogue has no affine: BatchNorm steps
        assert kinds.count("batchnorm") >= 2
    rng = np.random.default_rng(9)
    for n in (1, 4, 64):
        x = rng.standard_normal((n, 3, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5, err_msg=f"n={n}")
    model.predict(x)
    before = plan_for(model, x)
    for layer in model.layers:
        if isinstance(layer, BatchNorm2d):
            layer.running_mean[:] += 0.3
            layer.running_var[:] *= 0.7
            layer.weight.data[:] *= -1.5
            layer.bias.data[:] += 0.2
        elif spec == "dense":
            layer_w = getattr(layer, "weight_param", None)
            if layer_w is not None:
                layer_w.data *= 1.25
    assert plan_for(model, x) is before  # no rebuild: the bound programs read the arrays
    for n in (1, 4, 64):
        x = rng.standard_normal((n, 3, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=2e-5, atol=2e-5, err_msg=f"n={n}")


@pytest.mark.nojit
def test_conv2d_in_float64_and_a_conv_of_another_dtype():
    from sparsenet.nn import Conv2d

    model = Sequential(Conv2d(2, 3, 3, dtype=np.float64, seed=1))
    model.input_shape = (2, 5, 5)
    plan = build_plan(model)
    assert [s.kind for s in plan.steps] == ["ingest_bm", "conv2d"] and plan.dtype == np.float64
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=1e-12, atol=1e-12)
    mixed = Sequential(Conv2d(2, 3, 3, seed=1), Conv2d(3, 2, 1, dtype=np.float64, seed=2))  # computes in float32
    mixed.input_shape = (2, 5, 5)
    plan = build_plan(mixed)
    assert [s.kind for s in plan.steps] == ["ingest_bm", "conv2d", "generic"]  # the float64 layer's own forward
    np.testing.assert_allclose(plan.predict(x), _reference(mixed, x.astype(np.float32)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_residual_adds_and_global_pools_are_steps_with_the_activation_fused(name):
    """The zoo graphs: each residual Add in the epilogue of the dense convolution before it (after
    its BatchNorm; ResNet's ReLU after it fused too), the global pool a kernel step, nothing
    generic; outputs equal the graph's forward within rounding."""
    import sparsenet as sn

    model = sn.build_model(name, seed=3)
    for _, m in model.named_modules():  # BatchNorm statistics off their initial 0 and 1
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            rng = np.random.default_rng(len(m.running_mean))
            m.running_mean[:] = rng.standard_normal(m.num_features) * 0.1
            m.running_var[:] = rng.uniform(0.5, 2, m.num_features)
    plan = build_plan(model)
    kinds = [s.kind for s in plan.steps]
    assert "generic" not in kinds and kinds.count("global_avgpool") == 1
    adds = [s for s in plan.steps if s.kind == "conv2d" and "+ Add" in s.what]
    assert "add" not in kinds and len(adds) == sum(isinstance(n.op, Add) for n in model.nodes) == 3
    assert all(s.what.endswith("BatchNorm2d + Add" + (" + ReLU" if name == "resnet" else "")) for s in adds)
    rng = np.random.default_rng(4)
    for n in (1, 5, 64):
        x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(plan.predict(x), _reference(model, x), rtol=1e-4, atol=1e-5, err_msg=f"n={n}")


def test_an_add_whose_input_is_read_again_does_not_overwrite_it():
    fc = Linear(4, 4, seed=0, dtype=np.float64)
    g = Graph({"x": (4,)}, [("fc", fc, ["x"]), ("add", Add(), ["fc", "x"]), ("relu", ReLU(), ["add"]),
                            ("cat", Concat(), ["relu", "fc"])], "cat")
    plan = build_plan(g)
    assert [s.kind for s in plan.steps].count("add") == 1
    x = np.random.default_rng(5).standard_normal((3, 4))
    h = x @ fc.weight.to_dense().T + fc.bias.data
    np.testing.assert_allclose(plan.predict(x), np.concatenate([np.maximum(h + x, 0), h], axis=1), rtol=1e-12)


def test_an_input_copy_read_by_two_steps_is_not_overwritten_by_one():
    """The plan copies an input once per layout and both readers share the copy: an in-place
    activation on it would hand the other reader its output (the ReLU here overwrote x for the
    Concat until conversions counted their source's readers)."""
    g = Graph({"x": (5,)}, [("relu", ReLU(), ["x"]), ("cat", Concat(), ["relu", "x"])], "cat")
    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(build_plan(g).predict(x), np.concatenate([np.maximum(x, 0), x], axis=1))


# -- a large batch split between threads --------------------------------------------------------------
def _split_resnet():
    model = sn.build_model("resnet", seed=3)
    _randomize_batchnorms(model, 11)
    return model


def test_split_rows_covers_the_batch_in_parts_and_only_when_it_pays(monkeypatch):
    from sparsenet.plan import _bind

    plan = build_plan(_split_resnet())
    assert _bind.split_rows(plan, 64, 2) == [(0, 32), (32, 64)]  # the defaults: a CNN at batch 64
    assert _bind.split_rows(plan, 1, 2) is None and _bind.split_rows(plan, 64, 1) is None
    assert _bind.split_rows(plan, 8, 2) is None  # four samples per part use each weight ~40 times
    monkeypatch.setattr(_bind, "PLAN_SPLIT_WORK", 0)
    monkeypatch.setattr(_bind, "PLAN_SPLIT_REUSE", 0)
    assert _bind.split_rows(plan, 7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert _bind.split_rows(plan, 2, 4) == [(0, 1), (1, 2)]  # no more parts than rows
    monkeypatch.setattr(_bind, "PLAN_SPLIT_WORK", plan._work * 64 + 1)
    assert _bind.split_rows(plan, 64, 2) is None  # less work than the threshold: one thread
    # a plan with a generic step (a module's Python forward) or BLAS products is never split
    monkeypatch.setattr(_bind, "PLAN_SPLIT_WORK", 0)
    generic = Sequential(Linear(8, 8, seed=1), Clip(-1.0, 1.0), Linear(8, 2, seed=2))  # no fused form
    assert _bind.split_rows(build_plan(generic, (8,)), 64, 2) is None
    wide = build_plan(Sequential(Linear(256, 256, seed=1), ReLU(), Linear(256, 4, seed=2)), (256,))
    assert _bind.split_rows(wide, 4, 2) == [(0, 2), (2, 4)]  # parts small enough for Numba's kernel
    assert _bind.split_rows(wide, 2048, 2) is None  # parts that call BLAS (from 2^20 multiply-adds)
    monkeypatch.setattr(_bind, "PLAN_SPLIT_REUSE", 256)  # an MLP uses each weight once per sample:
    assert _bind.split_rows(wide, 64, 2) is None  # its weights' bytes bound it, parallel kernels split them


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_a_split_batch_gives_the_same_bits_and_the_same_errors(monkeypatch):
    """Parts of a batch in threads of their own (serial kernels, each thread's own buffers) give
    the bits of the batch in one thread; a non-finite value in the second part is reported as in
    one thread; several callers at once get their own results."""
    from sparsenet.plan import _bind

    model = _split_resnet()
    rng = np.random.default_rng(12)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        monkeypatch.setattr(_bind, "PLAN_SPLIT_WORK", 1 << 62)
        whole = model.predict(x)
        monkeypatch.setattr(_bind, "PLAN_SPLIT_WORK", 0)
        plan = plan_for(model, x)
        assert _bind.split_rows(plan, 64, 2) == [(0, 32), (32, 64)]
        np.testing.assert_array_equal(model.predict(x), whole)
        np.testing.assert_allclose(whole, _reference(model, x), rtol=1e-4, atol=1e-5)
        bad = x.copy()
        bad[40, 0, 3, 3] = np.nan
        with pytest.raises(DataError, match="expected finite values, found 1 NaN"):
            model.predict(bad)
        outs = [None] * 4

        def call(k):
            outs[k] = model.predict(x[k:k + 60])

        workers = [threading.Thread(target=call, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        for k in range(4):
            np.testing.assert_array_equal(outs[k], whole[k:k + 60])
    finally:
        numba.set_num_threads(before)
