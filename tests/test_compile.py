"""The formats pass behind `sparsenet.prune.compiled` (`_store_formats`, in place, tested layer by layer
on the model each test builds), then `compiled` itself: fixed specs keep what the masked model computes, BSR stores exactly the kept blocks,
pruned entries stay zero during fine-tuning, "auto" picks the fastest measured candidate (ties by
bytes; the choice logic is checked with a fake clock and layers that cost fake seconds, never real
speed), spec and input errors; `compiled` returns a copy and leaves the model alone; the deprecated
names still work and warn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsenet import SGD, SoftmaxCrossEntropy
from sparsenet.errors import ConfigError, SparsenetError
from sparsenet.formats import BSR, CSR, Dense
from sparsenet.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential
from sparsenet.prune import compiled
from sparsenet.prune import compiler as compile_mod
from sparsenet.prune.compiler import _store_formats, parse_format_spec
from sparsenet.prune.masks import apply_masks

from fake_clock import FakeClock, MeteredConv2d, MeteredLinear, MeteredSequential


def _no_pause(seconds):
    pass


FIXED_SPECS = ["dense", "csr", "bsr4x4", "bsr8x1", "bsr16x1", "bsr1x4", "bsr2x3"]
FAST = dict(repeats=1, min_time=0.0, sleep=_no_pause)  # real timings in tests: as short as possible


def _metered_layer(clock, cost, calls=None, shape=(48, 32)):
    """A one-layer model, Linear(shape[1] -> shape[0]), whose forward costs fake seconds by format."""
    model = Sequential(MeteredLinear(shape[1], shape[0], seed=0).meter(clock, cost, calls))
    model.input_shape = (shape[1],)
    return model


def _clock(clock):
    return dict(timer=clock, sleep=clock.sleep)


def _samples(clock):
    """The spec timed in each stretch of the clock's log between two pauses (a warm-up with its
    calibration, or one sample), in order; what ran before the first pause (tracing) is left out."""
    out, current = [], None
    for event in clock.log:
        if isinstance(event, tuple):  # a pause
            if current:
                out.append(current)
            current = []
        elif current is not None:
            current.append(event)
    if current:
        out.append(current)
    assert all(len(set(run)) == 1 for run in out), "one candidate per stretch between pauses"
    return [run[0] for run in out]


# -- models and patterns ------------------------------------------------------------------------------

def _mlp(dtype=np.float32, seed=0):
    m = Sequential(Linear(24, 32, seed=seed, dtype=dtype), ReLU(), Linear(32, 10, seed=seed + 1, dtype=dtype))
    m.input_shape = (24,)
    return m


def _cnn(dtype=np.float32, seed=0):
    m = Sequential(Conv2d(2, 8, 3, padding=1, seed=seed, dtype=dtype), BatchNorm2d(8), ReLU(),
                   Conv2d(8, 6, 3, stride=2, seed=seed + 1, dtype=dtype), Flatten(),
                   Linear(6 * 3 * 3, 5, seed=seed + 2, dtype=dtype))
    m.input_shape = (2, 7, 7)
    return m


def _weighted(model):
    return {str(i): l for i, l in enumerate(model.layers) if hasattr(l, "weight_param")}


def _random_masks(model, keep=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.random(l.weight.shape) < keep for n, l in _weighted(model).items()}


def _block_pattern(shape, blocksize, keep=0.3, seed=0):
    """[M, K] pattern made of whole R x C blocks (edge blocks cut at the shape) and its block grid."""
    r, c = blocksize
    grid = (-(-shape[0] // r), -(-shape[1] // c))
    bmask = np.random.default_rng(seed).random(grid) < keep
    bmask.flat[0] = True
    return np.kron(bmask, np.ones((r, c), dtype=bool))[: shape[0], : shape[1]], bmask


def _input(model, batch=5, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, *model.input_shape)).astype(np.float32)


def _logits(model, x):
    model.eval()
    y = np.array(model(x))
    model.train()
    return y


def _fine_tune(model, x, steps=3, seed=2):
    labels = np.random.default_rng(seed).integers(0, 5, size=x.shape[0])
    opt, loss = SGD(model.parameters(), lr=0.1, momentum=0.9), SoftmaxCrossEntropy()
    for _ in range(steps):
        opt.zero_grad()
        loss(model(x), labels)
        model.backward(loss.backward())
        opt.step()


# -- specs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("auto", ("auto", None)), ("dense", ("dense", None)), ("csr", ("csr", None)),
    ("bsr4x4", ("bsr", (4, 4))), ("bsr16x1", ("bsr", (16, 1))), (" BSR1x4 ", ("bsr", (1, 4))),
])
def test_parse_format_spec(spec, expected):
    assert parse_format_spec(spec) == expected


@pytest.mark.parametrize("spec", ["coo", "bsr", "bsr4", "bsr0x4", "bsr4x0", "bsr-1x4", "bsr4x4x4", "", 4, None])
def test_bad_spec_raises_with_the_valid_specs(spec):
    with pytest.raises(ConfigError, match="bsrRxC"):
        parse_format_spec(spec)
    model = _mlp()
    before = [l.weight for l in _weighted(model).values()]
    with pytest.raises(ConfigError, match="bsrRxC"):
        _store_formats(model, spec)
    with pytest.raises(ConfigError, match="bsrRxC"):
        _store_formats(model, {"0": spec})
    assert [l.weight for l in _weighted(model).values()] == before  # validated before anything changed


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"), (dict(batch_size=-3), "batch_size"),
    (dict(batch_size=2.5), "batch_size"), (dict(batch_size=True), "batch_size"),
    (dict(repeats=0), "repeats"), (dict(min_time=-1.0), "min_time"), (dict(seed=-1), "seed"),
    (dict(blocksizes=((4, 0),)), "blocksizes"), (dict(blocksizes=(4,)), "blocksizes"),
    (dict(formats={"1": "csr"}), "not a weighted layer"), (dict(formats={"7": "csr"}), "not a weighted layer"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _store_formats(_mlp(), **{"formats": "csr", **kwargs})


def test_auto_without_input_shape_raises():
    model = _mlp()
    model.input_shape = None
    with pytest.raises(SparsenetError, match="input_shape"):
        _store_formats(model, "auto", **FAST)
    _store_formats(model, "csr")  # fixed specs need no shapes
    _store_formats(model, "auto", input_shape=(24,), **FAST)


def test_not_a_sequential_raises():
    with pytest.raises(SparsenetError, match="Sequential"):
        _store_formats(Linear(3, 2), "csr")


# -- fixed specs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", FIXED_SPECS)
@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_fixed_spec_converts_every_layer_and_keeps_outputs(build, spec):
    model = build()
    masks = _random_masks(model)
    apply_masks(model, masks)
    x = _input(model)
    expected = _logits(model, x)
    biases = {n: l.bias.data.copy() for n, l in _weighted(model).items()}

    record = _store_formats(model, spec)

    name, bs = parse_format_spec(spec)
    for n, layer in _weighted(model).items():
        w = layer.weight
        assert w.format_name == name and getattr(w, "blocksize", None) == bs
        assert w.dtype == np.float32 and w.shape == masks[n].shape
        assert np.array_equal(layer.bias.data, biases[n])
        assert np.all(w.to_dense()[~masks[n]] == 0)
        stored = w.mask() if name != "dense" else np.ones(w.shape, dtype=bool)
        assert np.all(stored[masks[n]])  # every kept entry is stored
        if name == "csr":
            assert np.array_equal(w.mask(), masks[n])  # exactly the kept entries
        assert record[n] == {"format": spec, "density": round(float(masks[n].mean()), 6),
                             "bytes": w.nbytes, "converted": True}
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)
    assert model.meta["compile"]["layers"] == record and model.meta["compile"]["formats"] == spec
    json.dumps(model.meta)


def test_fixed_spec_keeps_float64_and_uses_nonzeros_without_a_mask():
    model = _mlp(np.float64)
    w0 = model[0].weight.to_dense()
    w0[:, ::2] = 0  # zeros but no Parameter mask: the pattern is the nonzeros
    model[0].weight = w0
    x = _input(model)
    expected = _logits(model, x)
    _store_formats(model, "csr")
    assert model[0].weight.dtype == np.float64 and model[0].weight.nnz == np.count_nonzero(w0)
    assert model[2].weight.nnz == model[2].weight.size  # no zeros: all stored
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-12)


def test_block_pattern_to_bsr_stores_exactly_the_kept_blocks():
    model = Sequential(Linear(22, 30, seed=3))  # neither 30 nor 22 is a multiple of 4: edge blocks
    pattern, bmask = _block_pattern((30, 22), (4, 4))
    apply_masks(model, {"0": pattern})
    _store_formats(model, "bsr4x4")
    w = model[0].weight
    assert isinstance(w, BSR) and w.blocksize == (4, 4)
    assert np.array_equal(w.block_mask(), bmask) and w.nblocks == bmask.sum()
    assert np.array_equal(w.mask(), pattern)
    assert model[0].weight_param.mask is None  # the blocks hold the pattern: nothing to pin
    w.check()  # full validation, including zeros beyond the logical shape


def test_dense_spec_pins_the_pattern_only_when_something_is_pruned():
    model = _mlp()
    masks = _random_masks(model)
    apply_masks(model, {"0": masks["0"]})
    _store_formats(model, "dense")
    assert np.array_equal(model[0].weight_param.mask, masks["0"])
    assert model[2].weight_param.mask is None


@pytest.mark.parametrize("spec", ["dense", "csr", "bsr4x4", "bsr16x1"])
def test_pruned_entries_stay_zero_during_fine_tuning(spec):
    model = _mlp()
    masks = _random_masks(model, keep=0.2)
    apply_masks(model, masks)
    _store_formats(model, spec)
    if spec.startswith("bsr"):  # an unstructured pattern in blocks: the stored pruned entries are pinned
        mask = model[0].weight_param.mask
        assert mask is not None and mask.shape == model[0].weight.data.shape and mask.dtype == bool
        assert not mask.all()
    before = {n: l.weight.to_dense() for n, l in _weighted(model).items()}
    _fine_tune(model, _input(model, batch=16))
    for n, layer in _weighted(model).items():
        after = layer.weight.to_dense()
        assert np.all(after[~masks[n]] == 0), f"layer {n}: pruned entries came back"
        assert not np.array_equal(after[masks[n]], before[n][masks[n]]), f"layer {n}: nothing was trained"
        assert layer.weight.spec == spec


def test_recompiling_a_bsr_layer_keeps_its_unstructured_pattern():
    model = _mlp()
    masks = _random_masks(model)
    apply_masks(model, masks)
    x = _input(model)
    expected = _logits(model, x)
    _store_formats(model, "bsr4x4")
    _store_formats(model, "csr")  # the pattern comes from the BSR-shaped mask, not the whole blocks
    for n, layer in _weighted(model).items():
        assert np.array_equal(layer.weight.mask(), masks[n]) and layer.weight_param.mask is None
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", FIXED_SPECS + ["auto"])
def test_fully_pruned_layer_compiles(spec):
    model = _mlp()
    apply_masks(model, {"0": np.zeros((32, 24), dtype=bool)})
    x = _input(model)
    expected = _logits(model, x)
    record = _store_formats(model, spec, **FAST)
    assert record["0"]["density"] == 0.0
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)


def test_dict_formats_leave_unnamed_layers_alone():
    model = _mlp()
    apply_masks(model, _random_masks(model))
    kept = model[2].weight
    record = _store_formats(model, {0: "bsr8x1"})
    assert model[0].weight.spec == "bsr8x1" and record["0"]["converted"]
    assert model[2].weight is kept and model[2].weight_param.mask is not None
    assert record["2"]["format"] == "dense" and not record["2"]["converted"]
    assert model.meta["compile"]["formats"] == {"0": "bsr8x1"}
    json.dumps(model.meta)


# -- auto ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_auto_with_real_timer_picks_a_timed_candidate(build):
    model = build()
    masks = _random_masks(model, keep=0.1)
    apply_masks(model, masks)
    x = _input(model)
    expected = _logits(model, x)

    record = _store_formats(model, "auto", batch_size=4, **FAST)

    json.dumps(model.meta)
    meta = model.meta["compile"]
    assert meta["layers"] == record and meta["batch_size"] == 4 and meta["formats"] == "auto"
    assert isinstance(meta["threads"], int) and meta["threads"] >= 1
    for n, layer in _weighted(model).items():
        entry = record[n]
        assert {"dense", "csr"} <= set(entry["timings_us"])  # density 0.1: both are candidates
        assert entry["format"] in entry["timings_us"] and entry["format"] == layer.weight.spec
        assert all(t > 0 for t in entry["timings_us"].values())
        assert entry["bytes"] == layer.weight.nbytes
        assert np.all(layer.weight.to_dense()[~masks[n]] == 0)
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)


def test_auto_on_an_unpruned_layer_keeps_it_dense():
    model = _mlp()  # no zeros at all: only dense is worth timing
    x = _input(model)
    expected = _logits(model, x)
    record = _store_formats(model, **FAST)
    for n, layer in _weighted(model).items():
        assert record[n]["format"] == "dense" and list(record[n]["timings_us"]) == ["dense"]
        assert isinstance(layer.weight, Dense) and layer.weight_param.mask is None
        assert record[n]["density"] == 1.0
    np.testing.assert_array_equal(_logits(model, x), expected)


def test_auto_picks_the_fastest_candidate():
    clock, calls = FakeClock(), []
    times = {"dense": 5e-6, "csr": 4e-6, "bsr4x4": 3e-6, "bsr8x1": 1e-6, "bsr16x1": 2e-6, "bsr1x4": 6e-6}
    model = _metered_layer(clock, times, calls)
    pattern, _ = _block_pattern((48, 32), (16, 4), keep=0.3)  # whole 16x4 blocks: every shape fits
    apply_masks(model, {"0": pattern})

    record = _store_formats(model, batch_size=7, repeats=3, min_time=1e-3, **_clock(clock))

    # all of them were timed: a warm-up and calibration each, then 3 rounds of one sample each in
    # rotating order, every stretch after a pause; then the whole model's 3 plans in the same way
    names = list(times)
    rounds = [names[r:] + names[:r] for r in range(3)]
    timed = _samples(clock)
    assert timed[:24] == names + sum(rounds, []) and len(timed) == 24 + 3 * (1 + 3)
    assert {e for e in clock.log if isinstance(e, tuple)} == {("sleep", 0.12)}
    shapes = [c["shape"] for c in calls]
    # traced once, once more by each plan built (a plan per candidate and per whole-model plan), then timed
    assert shapes.count((1, 32)) == 1 + len(names) + 3 and set(shapes) == {(1, 32), (7, 32)}
    assert all(c["dtype"] == np.float32 for c in calls)
    assert record["0"]["format"] == "bsr8x1" and model[0].weight.spec == "bsr8x1"
    assert record["0"]["timings_us"] == pytest.approx({k: v * 1e6 for k, v in times.items()})
    assert np.array_equal(model[0].weight.mask(), pattern) and model[0].weight_param.mask is None


def test_auto_breaks_ties_by_bytes():
    clock, calls = FakeClock(), []
    model = _metered_layer(clock, lambda spec: 1e-3, calls)
    pattern, _ = _block_pattern((48, 32), (16, 4), keep=0.3)
    apply_masks(model, {"0": pattern})
    record = _store_formats(model, **_clock(clock))
    smallest = min(calls, key=lambda c: c["nbytes"])
    distinct = {(c["spec"], c["nbytes"]) for c in calls}
    assert sum(nbytes == smallest["nbytes"] for _, nbytes in distinct) == 1  # the test means something
    assert record["0"]["format"] == smallest["spec"] and record["0"]["bytes"] == smallest["nbytes"]

    # a slower candidate never wins on bytes: dense is bigger but faster
    clock = FakeClock()
    model2 = _metered_layer(clock, lambda s: 1e-3 if s == "dense" else 2e-3)
    model2.input_shape = None
    apply_masks(model2, {"0": pattern})
    assert _store_formats(model2, input_shape=(32,), **_clock(clock))["0"]["format"] == "dense"


def test_auto_skips_hopeless_candidates():
    clock, calls = FakeClock(), []
    def linear(fan_in, out, seed):
        return MeteredLinear(fan_in, out, seed=seed).meter(clock, lambda spec: 1e-3, calls)

    model = Sequential(linear(32, 48, 0), ReLU(), linear(48, 16, 1), ReLU(), linear(16, 8, 2))
    model.input_shape = (32,)
    scattered = np.zeros((48, 32), dtype=bool)
    scattered[np.arange(48), (np.arange(48) * 7) % 32] = True  # one entry per row: blocks would be mostly zeros
    rows, _ = _block_pattern((16, 48), (1, 4), keep=0.4)  # 1x4 blocks: 4x4 / 8x1 / 16x1 store too much
    apply_masks(model, {"0": scattered, "2": rows, "4": np.ones((8, 16), dtype=bool)})
    record = _store_formats(model, blocksizes=((4, 4), (16, 1), (1, 4), (4, 4)), repeats=2, **_clock(clock))
    seen = {}
    for c in calls:
        seen.setdefault(c["layer"], set()).add(c["spec"])
    assert seen == {model[0].name: {"dense", "csr"}, model[2].name: {"dense", "csr", "bsr1x4"},
                    model[4].name: {"dense"}}  # unpruned: CSR and blocks would only add bytes
    assert {n: set(e["timings_us"]) for n, e in record.items()} == {
        "0": {"dense", "csr"}, "2": {"dense", "csr", "bsr1x4"}, "4": {"dense"}}


def test_auto_times_conv_layers_on_their_traced_input():
    clock, calls = FakeClock(), []

    def cost(spec):
        return 1e-4 if spec == "csr" else 1e-3

    model = Sequential(MeteredConv2d(2, 8, 3, padding=1, seed=0).meter(clock, cost, calls), BatchNorm2d(8), ReLU(),
                       MeteredConv2d(8, 6, 3, stride=2, seed=1).meter(clock, cost, calls), Flatten(),
                       MeteredLinear(6 * 3 * 3, 5, seed=2).meter(clock, cost, calls))
    model.input_shape = (2, 7, 7)
    masks = _random_masks(model, keep=0.15)
    apply_masks(model, masks)
    x = _input(model)
    expected = _logits(model, x)
    calls.clear()
    record = _store_formats(model, batch_size=3, **_clock(clock))
    assert {c["shape"] for c in calls if c["shape"][0] == 3} == {(3, 2, 7, 7), (3, 8, 7, 7), (3, 54)}
    assert {c["shape"] for c in calls if c["shape"][0] != 3} == {(1, 2, 7, 7), (1, 8, 7, 7), (1, 54)}  # tracing
    assert all(record[n]["format"] == "csr" for n in masks)
    for n, layer in _weighted(model).items():
        assert isinstance(layer.weight, CSR) and np.array_equal(layer.weight.mask(), masks[n])
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)


def test_package_compile_function_survives_importing_the_compile_module():
    import sparsenet.prune

    assert callable(sparsenet.prune.compiled) and sparsenet.prune.compiled is compiled


# -- compiled: the one public function -----------------------------------------------------------------

def test_compiled_returns_a_compiled_copy_and_leaves_the_model_alone():
    model = _mlp()
    masks = _random_masks(model)
    apply_masks(model, masks)
    x = _input(model)
    expected = _logits(model, x)
    before = {n: (l.weight, l.weight_param.mask) for n, l in _weighted(model).items()}

    small = compiled(model, "csr")

    assert small is not model
    for n, layer in _weighted(model).items():  # the original: same objects, still dense and masked
        assert (layer.weight, layer.weight_param.mask) == before[n] and layer.weight.spec == "dense"
    assert all(l.weight.spec == "csr" for l in _weighted(small).values())
    assert set(small.meta["compile"]["layers"]) == {"0", "2"} and "removed_units" in small.meta["compile"]
    assert "compile" not in model.meta
    np.testing.assert_allclose(_logits(small, x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="batch_size"):
        compiled(model, "csr", batch_size=0)


def test_compiled_removes_dead_units():
    model = _mlp()
    rows = np.ones((32, 24), dtype=bool)
    rows[:5] = False  # five dead units in layer 0 (their bias is zeroed too)
    apply_masks(model, {"0": rows})
    model[0].bias.data[:5] = 0
    small = compiled(model, "dense")
    assert small[0].weight.shape == (27, 24) and small[2].weight.shape == (10, 27)
    assert small.meta["compile"]["removed_units"]["0"]["removed"] == [0, 1, 2, 3, 4]
    assert model[0].weight.shape == (32, 24)


def test_deprecated_compile_names_warn_and_give_the_same_result():
    import sparsenet.prune as prune_pkg

    model = _mlp()
    apply_masks(model, _random_masks(model))
    x = _input(model)
    new = compiled(model, "bsr4x4")
    with pytest.warns(DeprecationWarning, match=r"sparsenet\.prune\.compile is deprecated.*sparsenet\.prune\.compiled"):
        old = prune_pkg.compile(model, "bsr4x4")
    assert old.meta["compile"]["layers"] == new.meta["compile"]["layers"]
    np.testing.assert_array_equal(_logits(old, x), _logits(new, x))
    # the in-place name keeps its old behaviour: `model` compiled, the record returned
    with pytest.warns(DeprecationWarning, match=r"compile_model is deprecated.*sparsenet\.prune\.compiled"):
        record = compile_mod.compile_model(model, "bsr4x4")
    assert record == new.meta["compile"]["layers"] and model[0].weight.spec == "bsr4x4"
    np.testing.assert_array_equal(_logits(model, x), _logits(new, x))


def test_one_format_spec_spelling():
    """`weight.spec` is the one spelling (QBSR with its block shape); format_spec_of warns and agrees."""
    from sparsenet.formats.quantized import quantize_weight
    from sparsenet.prune.report import pruning_report

    model = _mlp()
    apply_masks(model, _random_masks(model))
    small = compiled(model, "bsr4x4")
    q = quantize_weight(small[0].weight)
    assert q.spec == "qbsr4x4" and small[0].weight.spec == "bsr4x4"
    with pytest.warns(DeprecationWarning, match=r"format_spec_of.*weight\.spec"):
        assert compile_mod.format_spec_of(q) == q.spec
    from sparsenet.quantize import quantize_model
    from sparsenet.summary import summarize

    qm = quantize_model(small)
    assert qm.meta["quantization"]["layers"]["0"]["format"] == "qbsr4x4"
    assert summarize(qm)["layers"][0]["format"] == "qbsr4x4"
    assert pruning_report(small, qm)["layers"][0]["format"] == "qbsr4x4"
    assert "qbsr4x4" in repr(qm[0])


def test_layer_mask_of_a_compiled_bsr_layer_is_its_kept_pattern():
    from sparsenet.prune.masks import layer_mask

    model = _mlp()
    masks = _random_masks(model)
    apply_masks(model, masks)
    _store_formats(model, "bsr4x4")
    assert np.array_equal(layer_mask(model[0]), masks["0"])


def test_auto_prefers_the_smaller_format_within_measurement_noise():
    pattern, _ = _block_pattern((48, 32), (16, 4), keep=0.3)
    # CSR is 2 % slower than dense (within the 3 % noise band) and much smaller: it wins
    clock = FakeClock()
    model = _metered_layer(clock, lambda s: {"dense": 1.00e-3, "csr": 1.02e-3}.get(s, 5e-3))
    apply_masks(model, {"0": pattern})
    assert _store_formats(model, **_clock(clock))["0"]["format"] == "csr"
    # 10 % slower is outside the band: the faster dense wins
    clock = FakeClock()
    model2 = _metered_layer(clock, lambda s: {"dense": 1.00e-3, "csr": 1.10e-3}.get(s, 5e-3))
    apply_masks(model2, {"0": pattern})
    assert _store_formats(model2, **_clock(clock))["0"]["format"] == "dense"


def test_whole_model_check_falls_back_to_dense_when_the_mix_is_slower():
    clock = FakeClock()
    pattern0, _ = _block_pattern((48, 32), (16, 4), keep=0.3)
    pattern2, _ = _block_pattern((16, 48), (16, 4), keep=0.3)

    def alone(spec):  # alone, every layer is fastest in CSR
        return 1e-3 if spec == "csr" else 2e-3

    def formats(m):
        return {l.weight.format_name for l in m.layers if hasattr(l, "weight")}

    def two_layers(in_a_model):
        m = MeteredSequential(MeteredLinear(32, 48, seed=0).meter(clock, alone), ReLU(),
                              MeteredLinear(48, 16, seed=1).meter(clock, alone)).meter(clock, in_a_model)
        m.input_shape = (32,)
        apply_masks(m, {"0": pattern0, "2": pattern2})
        return m

    # in the model, the all-dense plan is 10 % faster
    model = two_layers(lambda m: 0.9e-3 if formats(m) == {"dense"} else 1e-3)
    x = np.random.default_rng(0).random((5, 32), dtype=np.float32)
    expected = _logits(model, x)
    record = _store_formats(model, batch_size=5, **_clock(clock))
    assert model.meta["compile"]["plan"] == "dense"
    assert model.meta["compile"]["model_timings_us"] == pytest.approx({"chosen": 1e3, "dense": 0.9e3, "sparse": 1e3})
    assert [record[n]["format"] for n in ("0", "2")] == ["dense", "dense"]
    assert formats(model) == {"dense"}
    np.testing.assert_allclose(_logits(model, x), expected, rtol=1e-5, atol=1e-6)
    # a sparse plan as fast as dense (within the 3 % noise band) wins: it holds fewer bytes
    model2 = two_layers(lambda m: 1.02e-3 if "csr" in formats(m) else 1e-3)
    _store_formats(model2, batch_size=5, **_clock(clock))
    assert model2.meta["compile"]["plan"] in {"chosen", "sparse"} and model2[0].weight.format_name == "csr"
    # a sparse plan 10 % slower than all-dense is out, however small
    model3 = two_layers(lambda m: 1.1e-3 if "csr" in formats(m) else 1e-3)
    _store_formats(model3, batch_size=5, **_clock(clock))
    assert model3.meta["compile"]["plan"] == "dense" and model3[0].weight.format_name == "dense"


def test_auto_with_real_timers_records_the_plan():
    model = Sequential(Linear(32, 48, seed=0), ReLU(), Linear(48, 16, seed=1))
    model.input_shape = (32,)
    pattern0, _ = _block_pattern((48, 32), (16, 4), keep=0.3)
    apply_masks(model, {"0": pattern0})
    _store_formats(model, batch_size=4, repeats=1, min_time=0.0)
    assert model.meta["compile"]["plan"] in {"chosen", "dense", "sparse"}
    import json
    json.dumps(model.meta)
