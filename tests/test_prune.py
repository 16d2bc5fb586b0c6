"""`prune` end to end: every criterion x granularity gives valid, exact, deterministic masks; ties,
iterative re-pruning, scopes and errors; schedules; lottery tickets; structured pruning compiled to a
really smaller model and block pruning compiled to BSR, both computing what the masked model did.

Models are trained once per module (one epoch on a slice of digits) and every test prunes a deep copy.
"""

from __future__ import annotations

import copy
import importlib
import math

import numpy as np
import pytest

from sparsenet import predict
from sparsenet.data import load_dataset
from sparsenet.errors import ConfigError, SparsenetError
from sparsenet.formats import BSR, Dense
from sparsenet.nn import BatchNorm1d, BatchNorm2d, Linear, ReLU, Sequential
from sparsenet.prune import (CRITERIA, compiled, iterative_targets, lottery_ticket, make_granularity,
                             polynomial_sparsity, prunable_layers, prune)
from sparsenet.prune.granularity import NM, Block, Units
from sparsenet.prune.selection import NORMALIZATIONS
from sparsenet.train import fit
from sparsenet.zoo import build_model

lottery_mod = importlib.import_module("sparsenet.prune.lottery")

ARCHS = ("lenet300", "cnn")
GRANULARITIES = ("unstructured", "block4x4", "block8x1", "2:4", "4:8", "neuron")
LAYER_SPARSITY, GLOBAL_SPARSITY = 0.6, 0.7  # no x.5 counts in any layer of either model


# -- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def calib(digits):
    """Calibration data for data-driven criteria: a small slice of the training set."""
    return digits.x_train[:32], digits.y_train[:32]


@pytest.fixture(scope="module")
def train_small(digits):
    return digits.x_train[:192], digits.y_train[:192]


@pytest.fixture(scope="module")
def trained(digits):
    """{arch: model trained one epoch}: BatchNorm statistics and gradients are not the initial ones."""
    models = {}
    for arch in ARCHS:
        m = build_model(arch, seed=0)
        fit(m, digits.x_train[:256], digits.y_train[:256], epochs=1, batch_size=32, seed=0, quiet=True)
        models[arch] = m
    return models


def fresh(trained, arch):
    return copy.deepcopy(trained[arch])


# -- helpers ------------------------------------------------------------------------------------------

def rnd(x: float) -> int:
    """round(x), refusing exact halves (whose rounding the tests should not depend on)."""
    assert abs(x - math.floor(x) - 0.5) > 1e-9, f"test setup: {x} is a tie"
    return round(x)


def weights(model) -> dict:
    return {n: l.weight.to_dense().copy() for n, l in prunable_layers(model).items()}


def group_stats(gran, mask):
    """(group ids, group sizes, pruned groups) of a mask, checking groups are all-kept or all-pruned."""
    ids = gran.group_ids(mask.shape)
    sizes = np.bincount(ids.ravel())
    kept = np.bincount(ids.ravel(), weights=mask.ravel().astype(float), minlength=len(sizes))
    assert np.all((kept == 0) | (kept == sizes)), f"{gran.name}: a group is partly pruned"
    return ids, sizes, kept == 0


def check_nm(gran: NM, mask):
    rows, k = mask.shape
    full = k // gran.m
    runs = mask[:, : full * gran.m].reshape(rows, full, gran.m).sum(axis=2)
    assert np.all(runs == gran.n), f"{gran.name}: a complete run does not keep exactly {gran.n}"
    tail = k - full * gran.m
    if tail:
        assert np.all(mask[:, full * gran.m:].sum(axis=1) == min(gran.n, tail))


def check_pruned(before, after, result, gran_name, scope, sparsity, exclude=()):
    """Every property a pruned model must have, for any criterion."""
    gran = make_granularity(gran_name)
    expected = set(prunable_layers(before, exclude))
    if gran.structured:
        expected.discard(list(prunable_layers(before))[-1])
    assert set(result.masks) == expected
    w0, w1 = weights(before), weights(after)
    total, pruned_total, max_group, restored = 0, 0, 0, 0
    for n, layer in prunable_layers(after).items():
        if n not in result.masks:  # excluded (or the structured model's outputs): untouched
            assert layer.weight_param.mask is None, f"layer {n} should not be pruned"
            np.testing.assert_array_equal(w1[n], w0[n])
            continue
        mask = result.masks[n]
        assert mask.dtype == bool and mask.shape == w0[n].shape
        assert mask.any(), f"layer {n} pruned away"
        assert isinstance(layer.weight, Dense)
        assert layer.weight_param.mask is not None
        np.testing.assert_array_equal(layer.weight_param.mask, mask)
        np.testing.assert_array_equal(w1[n], np.where(mask, w0[n], 0))
        assert np.all(w1[n][mask] != 0), f"layer {n}: kept weights must keep their nonzero values"
        pruned = int((~mask).sum())
        total += mask.size
        pruned_total += pruned
        if isinstance(gran, NM):
            check_nm(gran, mask)
            continue
        if isinstance(gran, (Block, Units)):
            _, sizes, dead = group_stats(gran, mask)
            max_group = max(max_group, int(sizes.max()))
            if int((~dead).sum()) == 1:  # global scope never prunes a layer away: one group comes back
                restored += int(sizes[~dead].sum())
        if scope != "layer":
            continue
        if gran_name == "unstructured":
            assert pruned == rnd(sparsity * mask.size), f"layer {n}"
        elif isinstance(gran, Units):
            assert int(dead.sum()) == rnd(sparsity * mask.shape[0]), f"layer {n}: pruned rows"
        elif np.all(sizes == sizes[0]):  # equal blocks: the nearest reachable count is exact
            assert int(dead.sum()) == rnd(sparsity * len(sizes)), f"layer {n}: pruned blocks"
        else:  # edge blocks: within half the largest block of the target
            assert abs(pruned - sparsity * mask.size) <= sizes.max() / 2, f"layer {n}"
        if isinstance(gran, Units):
            check_dead_units(after, n, ~mask.any(axis=1))
    if scope == "global" and not isinstance(gran, NM):
        if gran_name == "unstructured":
            assert pruned_total == rnd(sparsity * total)
        else:
            assert abs(pruned_total - sparsity * total) <= max_group / 2 + restored
    assert abs(result.sparsity - pruned_total / total) < 1e-12


def check_dead_units(model, name, dead):
    """A removed unit outputs exactly zero: bias and the following BatchNorm's gamma/beta are pinned at 0."""
    layer = model.layers[int(name)]
    if layer.bias is not None:
        assert np.all(layer.bias.data[dead] == 0)
        np.testing.assert_array_equal(layer.bias.mask, ~dead)
    nxt = model.layers[int(name) + 1]
    if isinstance(nxt, (BatchNorm1d, BatchNorm2d)):
        for p in (nxt.weight, nxt.bias):
            assert np.all(p.data[dead] == 0)
            np.testing.assert_array_equal(p.mask, ~dead)


def bn_state(model):
    return [(l.running_mean.copy(), l.running_var.copy()) for l in model.layers
            if isinstance(l, (BatchNorm1d, BatchNorm2d))]


# -- 1. every criterion x granularity ----------------------------------------------------------------

def _cases():
    for arch in ARCHS:
        for method in [m for m in CRITERIA if m != "frequency"]:  # Embedding rows only: tests/test_text_and_ratings.py
            for gran in GRANULARITIES:
                if method == "slimming" and (gran != "neuron" or arch != "cnn"):
                    continue
                # N:M has no scope; block8x1 global adds little over block4x4 global (run time)
                scopes = ("layer",) if gran in ("2:4", "4:8", "block8x1") else ("layer", "global")
                for scope in scopes:
                    yield pytest.param(arch, method, gran, scope, id=f"{arch}-{method}-{gran}-{scope}")


def _observed_movement(model, data):
    """A Movement criterion holding the scores of one epoch of training steps on a copy of `model`."""
    from sparsenet.prune import Movement

    probe = copy.deepcopy(model)
    movement = Movement().observe_layers(prunable_layers(probe))
    fit(probe, *data, epochs=1, batch_size=8, quiet=True, after_backward=movement.observe)
    return movement


@pytest.mark.parametrize("arch,method,gran,scope", list(_cases()))
def test_every_criterion_and_granularity(trained, calib, arch, method, gran, scope):
    sparsity = LAYER_SPARSITY if scope == "layer" else GLOBAL_SPARSITY
    # slimming scores a unit by the BatchNorm after it: the cnn's hidden Linear (8) has none
    exclude = ("8",) if method == "slimming" else ()
    if method == "movement":  # scores observed training steps, taken on a copy: `after` stays as trained
        method = _observed_movement(trained[arch], calib)
    kw = dict(method=method, granularity=gran, scope=scope, sparsity=sparsity, data=calib, seed=0,
              exclude=exclude)
    before = fresh(trained, arch)
    after = fresh(trained, arch).train()
    stats = bn_state(after)
    result = prune(after, **kw)
    check_pruned(before, after, result, gran, scope, sparsity, exclude)
    # criteria leave the training mode and the BatchNorm statistics as they were
    assert after.training
    for (m0, v0), (m1, v1) in zip(stats, bn_state(after)):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    assert result.granularity == make_granularity(gran).name and result.scope == scope
    assert after.meta["pruning"]["method"] == result.method
    if scope == "global":
        return
    # determinism: the same seed gives the same masks
    again = prune(fresh(trained, arch), **kw)
    assert set(again.masks) == set(result.masks)
    for n in result.masks:
        np.testing.assert_array_equal(again.masks[n], result.masks[n])
    if method == "random":
        other = prune(fresh(trained, arch), **(kw | {"seed": 1}))
        assert any(not np.array_equal(other.masks[n], result.masks[n]) for n in result.masks)


@pytest.mark.parametrize("method", ["taylor", "snip", "obd", "wanda", "synflow"])
def test_data_driven_criteria_leave_gradients_alone(trained, calib, method):
    """Scores come from extra forward/backward passes whose gradients must not leak into training."""
    model = fresh(trained, "lenet300")
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    prune(model, method=method, sparsity=0.5, data=calib, exclude=("3",))
    for n, p in model.named_parameters():
        if p.mask is None:  # the parameters that pruning did not touch
            np.testing.assert_array_equal(p.grad, grads[n], err_msg=n)


# -- 2. ties and iterative re-pruning ----------------------------------------------------------------

def ones_model():
    """Three Linear layers whose weights are all 1.0: Magnitude sees nothing but ties."""
    m = Sequential(Linear(8, 6, seed=0), ReLU(), Linear(6, 4, seed=1), ReLU(), Linear(4, 2, seed=2))
    for layer in prunable_layers(m).values():
        layer.weight = np.ones(layer.weight.shape, dtype=np.float32)
    m.input_shape = (8,)
    return m


def _ties_expected(gran_name, shape, sparsity):
    gran = make_granularity(gran_name)
    if isinstance(gran, NM):  # ties keep the lower columns
        return np.broadcast_to(np.arange(shape[1]) % gran.m < gran.n, shape)
    ids = gran.group_ids(shape)
    sizes = np.bincount(ids.ravel())
    assert np.all(sizes == sizes[0])
    k = rnd(sparsity * len(sizes))
    return ids >= k  # the lowest group indices go first


@pytest.mark.parametrize("gran", ["unstructured", "block2x2", "block2x1", "neuron", "2:4"])
def test_ties_prune_lowest_indices_first(gran):
    results = [prune(ones_model(), method="magnitude", granularity=gran, sparsity=0.3) for _ in range(2)]
    model = ones_model()
    for n, mask in results[0].masks.items():
        shape = model.layers[int(n)].weight.shape
        np.testing.assert_array_equal(mask, _ties_expected(gran, shape, 0.3), err_msg=f"layer {n}")
        np.testing.assert_array_equal(results[1].masks[n], mask)


def test_global_ties_go_to_the_earlier_layer():
    result = prune(ones_model(), method="magnitude", sparsity=0.5, scope="global", normalize="none")
    # 48 + 24 + 8 = 80 weights, 40 pruned: all from layer 0, lowest flat indices first
    np.testing.assert_array_equal(result.masks["0"].ravel(), np.arange(48) >= 40)
    assert result.masks["2"].all() and result.masks["4"].all()


@pytest.mark.parametrize("gran", ["unstructured", "block4x4", "neuron"])
def test_iterative_pruning_keeps_pruned_weights_pruned(trained, gran):
    """Random scores change between calls, yet what was pruned stays pruned and the count is exact."""
    model = fresh(trained, "lenet300")
    first = prune(model, method="random", granularity=gran, sparsity=0.3, seed=0)
    second = prune(model, method="random", granularity=gran, sparsity=0.65, seed=1)
    g = make_granularity(gran)
    for n, m1 in first.masks.items():
        m2 = second.masks[n]
        assert not np.any(m2 & ~m1), f"layer {n}: a pruned weight came back"
        np.testing.assert_array_equal(model.layers[int(n)].weight.to_dense()[~m2], 0)
        if gran == "unstructured":
            assert int((~m2).sum()) == rnd(0.65 * m2.size)
        else:
            _, sizes, dead = group_stats(g, m2)
            if np.all(sizes == sizes[0]):
                assert int(dead.sum()) == rnd(0.65 * len(sizes)), f"layer {n}"
            else:
                assert abs(int((~m2).sum()) - 0.65 * m2.size) <= sizes.max() / 2


def test_lower_target_does_not_revive_pruned_weights(trained):
    model = fresh(trained, "lenet300")
    first = prune(model, method="random", sparsity=0.6, seed=0)
    second = prune(model, method="random", sparsity=0.3, seed=1)
    for n, m1 in first.masks.items():
        assert not np.any(second.masks[n] & ~m1), f"layer {n}: pruned weights are kept again"


def test_small_sparsity_rounds_to_nothing():
    result = prune(build_model("cnn", seed=0), granularity="neuron", sparsity=0.03)
    # 16, 32 and 64 units: round(0.48) = 0, round(0.96) = 1, round(1.92) = 2 pruned
    assert {n: int((~m.any(axis=1)).sum()) for n, m in result.masks.items()} == {"0": 0, "3": 1, "8": 2}


# -- 3. scopes, exclusions, normalisations, errors ----------------------------------------------------

def test_per_layer_targets(trained):
    model = fresh(trained, "lenet300")
    targets = {"1": 0.2, "3": 0.75, "5": 0.1}
    result = prune(model, sparsity=targets)
    for n, t in targets.items():
        assert int((~result.masks[n]).sum()) == rnd(t * result.masks[n].size)
        assert result.layers[n]["target"] == t
        assert result.layers[n]["reached"] == pytest.approx(rnd(t * result.masks[n].size) / result.masks[n].size)


def test_per_layer_targets_leave_unnamed_layers_alone(trained):
    before, model = fresh(trained, "lenet300"), fresh(trained, "lenet300")
    result = prune(model, sparsity={"3": 0.5})
    assert set(result.masks) == {"3"}
    for n in ("1", "5"):
        assert model.layers[int(n)].weight_param.mask is None
        np.testing.assert_array_equal(weights(model)[n], weights(before)[n])


@pytest.mark.parametrize("exclude,untouched", [(["last"], {"5"}), (["first"], {"1"}), (["3"], {"3"}),
                                                ([3, "last"], {"3", "5"})])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_exclude(trained, exclude, untouched, scope):
    before, model = fresh(trained, "lenet300"), fresh(trained, "lenet300")
    result = prune(model, sparsity=0.7, scope=scope, exclude=exclude)
    assert set(result.masks) == {"1", "3", "5"} - untouched
    check_pruned(before, model, result, "unstructured", scope, 0.7, exclude=exclude)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("gran", ["unstructured", "neuron"])
def test_global_threshold_on_normalised_scores(trained, normalize, gran):
    """Global scope prunes the groups with the lowest normalised score (a group scores the mean of
    its weights' scores), across all layers."""
    before, model = fresh(trained, "lenet300"), fresh(trained, "lenet300")
    result = prune(model, method="magnitude", granularity=gran, scope="global", sparsity=0.6,
                   normalize=normalize)
    check_pruned(before, model, result, gran, "global", 0.6)
    pruned_scores, kept_scores = [], []
    for n, mask in result.masks.items():
        w = np.abs(weights(before)[n].astype(np.float64))
        groups, alive = (w.ravel(), mask.ravel()) if gran == "unstructured" else (w.mean(axis=1), mask[:, 0])
        scale = {"none": 1.0, "mean": groups.mean(), "l2": np.sqrt(np.sum(groups ** 2))}[normalize]
        pruned_scores.append(groups[~alive] / scale)
        if alive.sum() > 1:  # a layer's last group is kept whatever its score
            kept_scores.append(groups[alive] / scale)
    assert np.concatenate(pruned_scores).max() <= np.concatenate(kept_scores).min() * (1 + 1e-12)


def test_global_normalisation_changes_the_layer_split(trained):
    spars = {}
    for normalize in ("none", "mean"):
        r = prune(fresh(trained, "lenet300"), scope="global", sparsity=0.7, normalize=normalize)
        spars[normalize] = {n: v["reached"] for n, v in r.layers.items()}
    # raw |w| is smaller in wide layers (He init): without normalisation they take most of the pruning
    assert spars["none"]["3"] > spars["mean"]["3"]
    assert spars["none"] != spars["mean"]


def test_global_scope_keeps_one_group_per_layer(trained):
    result = prune(fresh(trained, "lenet300"), scope="global", sparsity=1.0, normalize="none")
    for n, mask in result.masks.items():
        assert int(mask.sum()) == 1, f"layer {n}"


@pytest.mark.parametrize("kwargs", [
    dict(method="bogus"),
    dict(granularity="bogus"),
    dict(granularity="block0x4"),
    dict(granularity="5:4"),
    dict(scope="bogus"),
    dict(scope="global", normalize="bogus"),
    dict(sparsity=1.5),
    dict(sparsity=-0.1),
    dict(sparsity={"1": 1.2}),
    dict(sparsity={"2": 0.5}),        # not a weighted layer
    dict(sparsity={"1": 0.5}, scope="global"),
    dict(method="slimming", granularity="unstructured"),
    dict(method="taylor"),            # data-driven, no data
    dict(method="snip"),
    dict(method="obd"),
    dict(method="wanda"),
    dict(method="movement"),
    dict(exclude=["bogus"]),
    dict(exclude=["1", "3", "5"]),
    dict(schedule="bogus"),
    dict(schedule="lottery"),
    dict(schedule="gradual"),         # needs train_data
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_errors(trained, kwargs):
    with pytest.raises(SparsenetError):
        prune(fresh(trained, "lenet300"), **kwargs)


def test_slimming_needs_batchnorm(trained):
    with pytest.raises(SparsenetError, match="BatchNorm"):
        prune(fresh(trained, "lenet300"), method="slimming", granularity="neuron")


def test_unknown_scope_with_nm_raises(trained):
    with pytest.raises(SparsenetError):
        prune(fresh(trained, "lenet300"), granularity="2:4", scope="bogus")


# -- 4. schedules --------------------------------------------------------------------------------------

def test_polynomial_sparsity_hand_computed():
    kw = dict(initial=0.0, final=0.8, begin=0, steps=4, frequency=10)
    # s_t = 0.8 + (0 - 0.8) * (1 - t / 40)^3 at t = 0, 10, 20, 30, 40, held between pruning steps
    expected = {0: 0.0, 5: 0.0, 10: 0.4625, 19: 0.4625, 20: 0.7, 30: 0.7875, 40: 0.8, 1000: 0.8}
    for step, s in expected.items():
        assert polynomial_sparsity(step, **kw) == pytest.approx(s, abs=1e-12), step
    kw2 = dict(initial=0.2, final=0.9, begin=100, steps=2, frequency=5)
    # 0.9 - 0.7 * (1 - t / 10)^3: t = 0 -> 0.2, t = 5 -> 0.9 - 0.7/8 = 0.8125, t = 10 -> 0.9
    assert polynomial_sparsity(99, **kw2) == 0.0
    assert polynomial_sparsity(100, **kw2) == pytest.approx(0.2)
    assert polynomial_sparsity(105, **kw2) == pytest.approx(0.8125)
    assert polynomial_sparsity(110, **kw2) == pytest.approx(0.9)
    assert polynomial_sparsity(500, **kw2) == pytest.approx(0.9)


def test_polynomial_sparsity_is_monotone():
    values = [polynomial_sparsity(t, initial=0.1, final=0.95, begin=7, steps=13, frequency=3) for t in range(100)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.95)
    with pytest.raises(SparsenetError):
        polynomial_sparsity(1, initial=0, final=0.5, begin=0, steps=0, frequency=1)


def test_iterative_targets():
    t = iterative_targets(0.9, 3)
    assert t[-1] == 0.9 and len(t) == 3
    assert t == pytest.approx([1 - 0.1 ** (1 / 3), 1 - 0.1 ** (2 / 3), 0.9])
    kept = [1.0] + [1 - s for s in t]
    ratios = [b / a for a, b in zip(kept, kept[1:])]
    assert ratios == pytest.approx([ratios[0]] * 3)  # each round prunes the same share of what remains
    assert iterative_targets(0.37, 1) == [0.37]
    with pytest.raises(SparsenetError):
        iterative_targets(0.5, 0)


def test_iterative_schedule(trained, train_small):
    model = fresh(trained, "lenet300")
    result = prune(model, schedule="iterative", rounds=3, finetune_epochs=1, sparsity=0.8,
                   train_data=train_small, val_data=train_small)
    for n, mask in result.masks.items():
        assert int((~mask).sum()) == rnd(0.8 * mask.size), f"layer {n}"
        np.testing.assert_array_equal(model.layers[int(n)].weight.to_dense()[~mask], 0)
    stages = [h["stage"] for h in result.history]
    assert stages == [f"round {r} {s}" for r in (1, 2, 3) for s in ("pruned", "fine-tuned")]
    pruned = [h for h in result.history if h["stage"].endswith("pruned")]
    assert [h["target"] for h in pruned] == pytest.approx(iterative_targets(0.8, 3))
    sp = [h["sparsity"] for h in result.history]
    assert all(a <= b + 1e-12 for a, b in zip(sp, sp[1:])) and sp[-1] == pytest.approx(0.8, abs=1e-4)
    assert all("val_accuracy" in h for h in result.history)


@pytest.mark.parametrize("schedule,extra", [("oneshot", {}), ("iterative", dict(finetune_epochs=1, rounds=2))])
def test_movement_without_observed_training_steps_is_refused(trained, calib, train_small, schedule, extra):
    """One-shot movement has no movement to score (it gave chance-level accuracy): refused, with a way out."""
    from sparsenet.prune import Movement, sensitivity_scan

    model = fresh(trained, "lenet300")
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(ConfigError, match=rf"movement importance needs observed training steps.*{schedule}"
                                          r".*schedule='gradual'.*after_backward=m\.observe") as info:
        prune(model, method="movement", schedule=schedule, sparsity=0.5, data=calib, train_data=train_small,
              **extra)
    assert isinstance(info.value, SparsenetError) and "prune:" in str(info.value)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))  # refused up front
    with pytest.raises(ConfigError, match="movement importance needs observed training steps"):
        Movement()(model, prunable_layers(model), calib)  # the criterion itself refuses too
    with pytest.raises(ConfigError, match="sensitivity_scan: movement"):
        sensitivity_scan(model, calib, method="movement", data=calib, time_layers=False)


def test_movement_one_shot_after_observed_training_steps(trained, train_small):
    """The clean one-shot use: observe movement while fine-tuning, then prune on those scores."""
    from sparsenet.prune import Movement

    model = fresh(trained, "lenet300")
    movement = Movement().observe_layers(prunable_layers(model))
    fit(model, *train_small, epochs=1, batch_size=32, quiet=True, after_backward=movement.observe)
    assert movement.steps == 6
    result = prune(model, method=movement, sparsity=0.5)
    for n, mask in result.masks.items():
        assert int((~mask).sum()) == rnd(0.5 * mask.size)
        keep = movement.scores[n] >= np.quantile(movement.scores[n], 0.5)  # the highest movement is kept
        assert (mask & keep).sum() >= 0.95 * mask.sum()


@pytest.mark.parametrize("method", ["magnitude", "movement"])
def test_gradual_schedule(trained, train_small, method):
    model = fresh(trained, "lenet300")
    result = prune(model, method=method, schedule="gradual", finetune_epochs=2, sparsity=0.8,
                   train_data=train_small, batch_size=32)
    for n, mask in result.masks.items():
        assert int((~mask).sum()) == rnd(0.8 * mask.size), f"layer {n}"
        np.testing.assert_array_equal(model.layers[int(n)].weight.to_dense()[~mask], 0)
        np.testing.assert_array_equal(model.layers[int(n)].weight_param.mask, mask)
    steps = [h for h in result.history if h["stage"].startswith("step")]
    assert len(steps) >= 2 and result.history[-1]["stage"] == "final"
    targets = [h["target"] for h in steps]
    assert all(a < b for a, b in zip(targets, targets[1:])) and targets[-1] == pytest.approx(0.8)
    sp = [h["sparsity"] for h in result.history]
    assert all(a < b for a, b in zip(sp[: len(steps)], sp[1: len(steps)]))
    assert sp[-1] == pytest.approx(0.8, abs=1e-4)
    for h in steps:  # each pruning step reaches its own target (exact counts per layer)
        assert h["sparsity"] == pytest.approx(h["target"], abs=1e-3)


def test_gradual_rejects_per_layer_targets(trained, train_small):
    with pytest.raises(SparsenetError):
        prune(fresh(trained, "lenet300"), schedule="gradual", sparsity={"1": 0.5}, finetune_epochs=1,
              train_data=train_small)


def test_finetuning_never_revives_pruned_weights(trained, train_small):
    model = fresh(trained, "lenet300")
    before = weights(model)
    result = prune(model, sparsity=0.8, finetune_epochs=2, train_data=train_small, lr=1e-2)
    assert [h["stage"] for h in result.history] == ["pruned", "fine-tuned"]
    after = weights(model)
    for n, mask in result.masks.items():
        np.testing.assert_array_equal(after[n][~mask], 0)
        np.testing.assert_array_equal(model.layers[int(n)].weight_param.mask, mask)
        assert not np.array_equal(after[n][mask], before[n][mask]), "fine-tuning did not train"
    # a second fine-tuning run, outside prune, with a fresh optimiser
    fit(model, *train_small, epochs=1, lr=1e-2, quiet=True)
    for n, mask in result.masks.items():
        np.testing.assert_array_equal(weights(model)[n][~mask], 0)


def test_finetuning_keeps_removed_units_dead(trained, train_small):
    """Structured pruning pins bias and BatchNorm gamma/beta too: after fine-tuning the units still
    output zero, so compiled removes them."""
    model = fresh(trained, "cnn")
    result = prune(model, granularity="neuron", sparsity=0.5, finetune_epochs=1, train_data=train_small,
                   lr=1e-2)
    for n, mask in result.masks.items():
        np.testing.assert_array_equal(model.layers[int(n)].weight.to_dense()[~mask], 0)
        check_dead_units(model, n, ~mask.any(axis=1))
    removed = compiled(model, formats="dense").meta["compile"]["removed_units"]
    for n, mask in result.masks.items():
        assert removed[n]["removed"] == np.flatnonzero(~mask.any(axis=1)).tolist()


# -- 5. lottery tickets ------------------------------------------------------------------------------

def test_lottery_ticket_reaches_target(digits, train_small):
    model = build_model("lenet300", seed=0)
    result = lottery_ticket(model, train_small, sparsity=0.8, rounds=2, epochs=2,
                            val_data=(digits.x_test[:100], digits.y_test[:100]))
    total = sum(m.size for m in result.masks.values())
    assert sum(int((~m).sum()) for m in result.masks.values()) == rnd(0.8 * total)
    assert result.schedule == "lottery" and len(result.history) == 3
    sp = [h["sparsity"] for h in result.history]
    assert sp[0] == 0.0 and sp[1] == pytest.approx(iterative_targets(0.8, 2)[0], abs=1e-4)
    assert sp[2] == pytest.approx(0.8, abs=1e-4)
    assert all("val_accuracy" in h for h in result.history)
    for n, mask in result.masks.items():
        np.testing.assert_array_equal(model.layers[int(n)].weight.to_dense()[~mask], 0)
        np.testing.assert_array_equal(model.layers[int(n)].weight_param.mask, mask)


def _recording_fit(calls):
    """A stand-in for `fit`: records the parameters it starts from, then moves every one of them (as
    training would) under its mask, and perturbs BatchNorm statistics."""
    def fake_fit(model, x, y, *, seed=0, **kw):
        calls.append({"params": {n: p.data.copy() for n, p in model.named_parameters()},
                      "masks": {n: None if p.mask is None else p.mask.copy() for n, p in model.named_parameters()},
                      "bn": bn_state(model)})
        rng = np.random.default_rng(1000 + len(calls))
        for p in model.parameters():
            p.data += rng.uniform(0.5, 1.0, p.data.shape).astype(p.data.dtype)
            p.apply_mask()
        for layer in model.layers:
            if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
                layer.running_mean += 1
                layer.running_var += 2
    return fake_fit


@pytest.mark.parametrize("arch", ARCHS)
def test_lottery_rewinds_survivors_to_initial_values(monkeypatch, train_small, arch):
    calls = []
    monkeypatch.setattr(lottery_mod, "fit", _recording_fit(calls))
    model = build_model(arch, seed=0)
    init = {n: p.data.copy() for n, p in model.named_parameters()}
    init_bn = bn_state(model)
    lottery_ticket(model, train_small, sparsity=0.75, rounds=2, epochs=2)
    assert len(calls) == 3  # dense training, then one retraining per round
    for call in calls[1:]:
        for n, value in call["params"].items():
            mask = call["masks"][n]
            expected = init[n] if mask is None else init[n] * mask
            np.testing.assert_array_equal(value, expected, err_msg=n)
        for (m0, v0), (m1, v1) in zip(init_bn, call["bn"]):
            np.testing.assert_array_equal(m1, m0)
            np.testing.assert_array_equal(v1, v0)
    # the weights were pruned before the retraining runs
    assert any(m is not None and not m.all() for m in calls[1]["masks"].values())


def test_lottery_rewind_epoch(monkeypatch, train_small):
    calls = []
    monkeypatch.setattr(lottery_mod, "fit", _recording_fit(calls))
    model = build_model("lenet300", seed=0)
    lottery_ticket(model, train_small, sparsity=0.5, rounds=1, epochs=3, rewind_epoch=1)
    assert len(calls) == 3  # rewind_epoch, the rest of dense training, the retraining
    early = calls[1]["params"]  # the weights after `rewind_epoch` epochs
    for n, value in calls[2]["params"].items():
        mask = calls[2]["masks"][n]
        np.testing.assert_array_equal(value, early[n] if mask is None else early[n] * mask, err_msg=n)


def test_lottery_control_reinitialises(monkeypatch, train_small):
    runs = {}
    for control in (False, True):
        calls = []
        monkeypatch.setattr(lottery_mod, "fit", _recording_fit(calls))
        lottery_ticket(build_model("lenet300", seed=0), train_small, sparsity=0.75, rounds=2, epochs=2,
                       control=control)
        runs[control] = calls
    rewound, control = runs[False][1], runs[True][1]
    for n, value in control["params"].items():
        mask = control["masks"][n]
        np.testing.assert_array_equal(mask, rewound["masks"][n])  # same pruning: both trained alike
        if mask is not None:
            np.testing.assert_array_equal(value[~mask], 0)
            assert np.all(value[mask] != 0)
        if n.endswith("weight"):
            assert not np.array_equal(value, rewound["params"][n]), n


def test_lottery_errors(train_small):
    with pytest.raises(SparsenetError):
        lottery_ticket(build_model("lenet300"), train_small, epochs=2, rewind_epoch=2)


# -- 6. structured pruning, compiled ------------------------------------------------------------------

SMALLER = {
    "lenet300": {"1": (150, 64), "3": (50, 150), "5": (10, 50)},
    # conv 16 -> 8 filters, conv 32 -> 16 (8 * 3 * 3 inputs), Linear 64 -> 32 (16 channels * 4 * 4 inputs)
    "cnn": {"0": (8, 9), "3": (16, 72), "8": (32, 256), "11": (10, 32)},
}


def assert_same_outputs(a, b, x):
    ya, yb = predict(a, x), predict(b, x)
    np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-5 * float(np.abs(ya).max()))


@pytest.mark.parametrize("arch", ARCHS)
def test_neuron_pruning_compiles_to_smaller_model(trained, digits, arch):
    model = fresh(trained, arch)
    before_shapes = {n: l.weight.shape for n, l in prunable_layers(model).items()}
    result = prune(model, granularity="neuron", sparsity=0.5)
    small = compiled(model, formats="dense")
    assert {n: tuple(l.weight.shape) for n, l in prunable_layers(small).items()} == SMALLER[arch]
    assert {n: l.weight.shape for n, l in prunable_layers(model).items()} == before_shapes  # left alone
    for n, mask in result.masks.items():
        assert small.meta["compile"]["removed_units"][n]["removed"] == np.flatnonzero(~mask.any(axis=1)).tolist()
    for layer in small.layers:
        if isinstance(layer, BatchNorm2d):
            assert layer.num_features in (8, 16) and layer.running_mean.shape == (layer.num_features,)
    assert_same_outputs(model, small, digits.x_test[:128])


# -- 7. block pruning, compiled to BSR ----------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("gran,fmt,blocksize", [("block4x4", "bsr4x4", (4, 4)), ("block8x1", "bsr8x1", (8, 1))])
def test_block_pruning_compiles_to_bsr(trained, digits, arch, gran, fmt, blocksize):
    model = fresh(trained, arch)
    result = prune(model, granularity=gran, sparsity=0.75)
    small = compiled(model, formats=fmt)
    g = make_granularity(gran)
    for n, layer in prunable_layers(small).items():
        w = layer.weight
        assert isinstance(w, BSR) and tuple(w.blocksize) == blocksize, f"layer {n}"
        mask = result.masks[n]
        assert w.shape == mask.shape
        ids, _, dead = group_stats(g, mask)
        grid = w.block_mask()
        np.testing.assert_array_equal(grid.ravel(), ~dead)  # exactly the kept blocks are stored
        np.testing.assert_array_equal(w.to_dense(), model.layers[int(n)].weight.to_dense())
        assert layer.weight_param.mask is None  # whole blocks kept: nothing stored needs pinning
    assert_same_outputs(model, small, digits.x_test[:128])
