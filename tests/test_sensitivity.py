"""Sensitivity scans and the budget allocator.

Scans run on a LeNet-300-100 trained 5 epochs on digits (module fixture, well under a second); all but
one skip timing, and that one uses the shortest timer settings and checks only the record's shape (no
timing values). The allocator runs on hand-written scans whose greedy paths are worked out in comments.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.errors import ConfigError, DataError, SparsenetError
from sparsenet.prune import prune
from sparsenet.prune.sensitivity import DEFAULT_SPARSITIES, allocate, sensitivity_scan

LENET_SHAPES = {"1": [300, 64], "3": [100, 300], "5": [10, 100]}


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    model = sn.build_model("lenet300", seed=0)
    sn.fit(model, digits.x_train, digits.y_train, epochs=5, quiet=True, seed=0)
    return model


@pytest.fixture(scope="module")
def val(digits):
    return digits.x_test, digits.y_test


@pytest.fixture(scope="module")
def scan(trained, val):
    return sensitivity_scan(trained, val, time_layers=False)


def _snapshot(model):
    """Everything a scan could disturb: parameter bits, masks, weight formats, mode and meta."""
    params = [(p.data.copy(), None if p.mask is None else p.mask.copy()) for p in model.parameters()]
    formats = [type(getattr(l, "weight", None)).__name__ for l in model.layers]
    return params, formats, model.training, copy.deepcopy(model.meta)


def _assert_same(model, snap):
    params, formats, training, meta = snap
    now = [(p.data, p.mask) for p in model.parameters()]
    assert len(now) == len(params)
    for (d0, m0), (d1, m1) in zip(params, now):
        assert d0.dtype == d1.dtype and d0.tobytes() == d1.tobytes()
        assert (m0 is None and m1 is None) or np.array_equal(m0, m1)
    assert [type(getattr(l, "weight", None)).__name__ for l in model.layers] == formats
    assert model.training == training and model.meta == meta


# -- sensitivity_scan --------------------------------------------------------------------------------

def test_scan_record(scan, trained, val):
    assert scan["method"] == "magnitude" and scan["granularity"] == "unstructured"
    assert scan["sparsities"] == list(DEFAULT_SPARSITIES) and scan["batch_size"] == 64
    assert scan["formats"] == []
    assert scan["baseline_accuracy"] == sn.evaluate(trained, *val)["accuracy"]
    assert set(scan["layers"]) == set(LENET_SHAPES)
    for name, e in scan["layers"].items():
        assert e["kind"] == "Linear" and e["shape"] == LENET_SHAPES[name]
        assert e["params"] == LENET_SHAPES[name][0] * LENET_SHAPES[name][1]
        assert len(e["accuracy"]) == len(DEFAULT_SPARSITIES) and all(0 <= a <= 1 for a in e["accuracy"])
        np.testing.assert_allclose(e["reached"], scan["sparsities"], atol=1e-3)  # unstructured: exact counts
        assert e["latency_us"] == {}


def test_scan_leaves_model_untouched(trained, val):
    snap = _snapshot(trained)
    sensitivity_scan(trained, val, sparsities=(0.5, 0.9), time_layers=False)
    _assert_same(trained, snap)


def test_accuracy_at_zero_is_baseline_and_falls_when_very_sparse(scan):
    base = scan["baseline_accuracy"]
    for e in scan["layers"].values():
        assert e["accuracy"][0] == base
        assert e["accuracy"][-1] < base  # 95 % of one layer gone costs something
    mean = lambda i: np.mean([e["accuracy"][i] for e in scan["layers"].values()])  # noqa: E731
    assert mean(-1) < mean(1) - 0.05  # 0.95 vs 0.25


def test_scan_is_json_serialisable(scan):
    assert json.loads(json.dumps(scan)) == scan


def test_scan_prunes_only_that_layer(scan, trained, val):
    """Each entry is what `prune` gives with that layer alone at that sparsity."""
    i = scan["sparsities"].index(0.9)
    for name in ("1", "3"):
        m = copy.deepcopy(trained)
        result = prune(m, sparsity={name: 0.9}, scope="layer")
        assert set(result.masks) == {name}
        assert sn.evaluate(m, *val)["accuracy"] == scan["layers"][name]["accuracy"][i]


def test_scan_sparsities_sorted_with_zero(trained, val):
    s = sensitivity_scan(trained, val, sparsities=(0.9, 0.5, 0.5), time_layers=False)
    assert s["sparsities"] == [0.0, 0.5, 0.9]
    assert all(len(e["accuracy"]) == 3 for e in s["layers"].values())


def test_scan_exclude_and_structured_skip_layers(trained, val):
    s = sensitivity_scan(trained, val, sparsities=(0.5,), exclude=("last",), time_layers=False)
    assert set(s["layers"]) == {"1", "3"}
    s = sensitivity_scan(trained, val, sparsities=(0.5,), granularity="neuron", time_layers=False)
    assert set(s["layers"]) == {"1", "3"} and s["granularity"] == "units"  # a model's outputs stay
    assert s["layers"]["1"]["reached"] == [0.0, 0.5]


def test_scan_with_timing(trained, val):
    snap = _snapshot(trained)
    formats = ("dense", "CSR", "bsr4x4", "csr")
    s = sensitivity_scan(trained, val, sparsities=(0.0, 0.9), formats=formats, batch_size=8, repeats=1,
                         min_time=0.0)
    _assert_same(trained, snap)
    assert s["formats"] == ["dense", "csr", "bsr4x4"]  # normalised, duplicates dropped
    for e in s["layers"].values():
        assert set(e["latency_us"]) == {"dense", "csr", "bsr4x4"}
        for times in e["latency_us"].values():
            assert len(times) == 2 and all(math.isfinite(t) and t > 0 for t in times)
    assert json.loads(json.dumps(s)) == s
    plan = allocate(s, latency_budget_us=1e12)  # met at once: nothing pruned
    assert plan["met"] and set(plan["targets"].values()) == {0.0}
    expected = sum(min(v[0] for v in e["latency_us"].values()) for e in s["layers"].values())
    assert plan["predicted_latency_us"] == pytest.approx(expected)


def test_scan_progress_bar(trained, val):
    s = sensitivity_scan(trained, val, sparsities=(0.5,), time_layers=False, quiet=False)
    assert len(s["layers"]) == 3


def test_scan_data_driven_criterion(trained, val, digits):
    calib = (digits.x_train[:64], digits.y_train[:64])
    s = sensitivity_scan(trained, val, sparsities=(0.5,), method="taylor", data=calib, time_layers=False)
    assert s["method"] == "taylor"
    assert all(e["accuracy"][0] == s["baseline_accuracy"] for e in s["layers"].values())


@pytest.mark.parametrize("kwargs, match", [
    (dict(granularity="2:4"), "fixes the sparsity"),
    (dict(sparsities=(0.5, 1.5)), r"sparsities as a fraction in \[0, 1\], found 1.5"),
    (dict(sparsities=("half",)), "fraction"),
    (dict(sparsities=0.5), "list of fractions"),
    (dict(formats=("dense", "auto")), "auto"),
    (dict(formats=("coo",)), "format spec"),
    (dict(formats=()), "at least one format"),
    (dict(method="taylor"), "needs calibration data"),
    (dict(method="nope"), "unknown pruning method"),
    (dict(exclude=("1", "3", "5")), "no layer left"),
    (dict(exclude=("7",)), "not a weighted layer"),
    (dict(batch_size=0), "batch_size"),
    (dict(repeats=0), "repeats"),
    (dict(min_time=-1.0), "min_time"),
])
def test_scan_argument_errors(trained, val, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sensitivity_scan(trained, val, **kwargs)


def test_scan_val_data_errors(trained, val):
    with pytest.raises(SparsenetError, match="val_data"):
        sensitivity_scan(trained, val[0], time_layers=False)
    with pytest.raises(DataError, match="empty"):
        sensitivity_scan(trained, (val[0][:0], val[1][:0]), time_layers=False)


def test_timing_needs_input_shape(val):
    from sparsenet.nn import Flatten, Linear, Sequential
    m = Sequential(Flatten(), Linear(64, 10))  # no input_shape
    assert set(sensitivity_scan(m, val, sparsities=(0.5,), time_layers=False)["layers"]) == {"1"}
    with pytest.raises(SparsenetError, match="input shapes"):
        sensitivity_scan(m, val, sparsities=(0.5,))


# -- allocate on hand-written scans --------------------------------------------------------------------

def _synthetic(timed=False):
    """baseline 0.90; drops by sparsity [0, .5, .8, .9]:
    a (1000 params): 0, 0, .01, .05    b (3000): 0, .005, .02, .03    c (1000): 0, .02, .1, .2
    With tolerance .02, allowed levels: a 0/.5/.8, b 0/.5/.8, c 0/.5. Step costs (drop per weight
    removed): a->.5 0/500 = 0; b->.5 .005/1500 = 3.3e-6; b->.8 .015/900 = 1.7e-5; a->.8 .01/300 = 3.3e-5;
    c->.5 .02/500 = 4e-5. Greedy path and overall sparsity (of 5000 weights):
    1 a=.5 -> 0.10   2 b=.5 -> 0.40   3 b=.8 -> 0.58   4 a=.8 -> 0.64   5 c=.5 -> 0.74 (the most).
    Best-format latency (us): a 10,10,6,4  b 20,20,12,8  c 5,5,3,2, so along the path:
    start 35, 35, 35, 27, 23, 23."""
    scan = {"baseline_accuracy": 0.90, "sparsities": [0.0, 0.5, 0.8, 0.9], "layers": {
        "a": {"params": 1000, "accuracy": [0.90, 0.90, 0.89, 0.85]},
        "b": {"params": 3000, "accuracy": [0.90, 0.895, 0.88, 0.87]},
        "c": {"params": 1000, "accuracy": [0.90, 0.88, 0.80, 0.70]},
    }}
    if timed:
        lat = {"a": ([10, 10, 10, 10], [30, 12, 6, 4]), "b": ([20] * 4, [50, 25, 12, 8]),
               "c": ([5] * 4, [9, 6, 3, 2])}
        for n, (dense, csr) in lat.items():
            scan["layers"][n]["latency_us"] = {"dense": dense, "csr": csr}
    return scan


def _targets(a, b, c):
    return {"a": a, "b": b, "c": c}


@pytest.mark.parametrize("target, expected, reached", [
    (0.0, _targets(0.0, 0.0, 0.0), 0.0),
    (0.1, _targets(0.5, 0.0, 0.0), 0.1),
    (0.3, _targets(0.5, 0.5, 0.0), 0.4),
    (0.58, _targets(0.5, 0.8, 0.0), 0.58),
    (0.6, _targets(0.8, 0.8, 0.0), 0.64),
    (0.74, _targets(0.8, 0.8, 0.5), 0.74),
])
def test_allocate_target_met(target, expected, reached):
    plan = allocate(_synthetic(), target_sparsity=target, tolerance=0.02)
    assert plan["met"] is True and plan["targets"] == expected
    assert plan["reached_sparsity"] == pytest.approx(reached)
    drops = {"a": {0.0: 0, 0.5: 0, 0.8: 0.01}, "b": {0.0: 0, 0.5: 0.005, 0.8: 0.02}, "c": {0.0: 0, 0.5: 0.02}}
    for n, s in expected.items():
        assert plan["predicted_accuracy_drop"][n] == pytest.approx(drops[n][s], abs=1e-12)
    assert plan["predicted_latency_us"] is None  # no timings in the scan
    json.dumps(plan)


def test_allocate_target_unmet_returns_the_sparsest():
    plan = allocate(_synthetic(), target_sparsity=0.8, tolerance=0.02)
    assert plan["met"] is False and "0.8" in plan["message"]
    assert plan["targets"] == _targets(0.8, 0.8, 0.5)
    assert plan["reached_sparsity"] == pytest.approx(0.74)
    # tolerance 0: only a's free step is allowed
    plan = allocate(_synthetic(), target_sparsity=0.3, tolerance=0.0)
    assert plan["met"] is False and plan["targets"] == _targets(0.5, 0.0, 0.0)
    assert plan["reached_sparsity"] == pytest.approx(0.1)


def test_allocate_wider_tolerance_allows_more():
    # tolerance .05 also allows a=.9 (drop .05) and b=.9 (.03); c stays at .5 (.1 > .05)
    plan = allocate(_synthetic(), target_sparsity=1.0, tolerance=0.05)
    assert plan["met"] is False and plan["targets"] == _targets(0.9, 0.9, 0.5)
    assert plan["reached_sparsity"] == pytest.approx((900 + 2700 + 500) / 5000)


@pytest.mark.parametrize("budget, met, expected, latency", [
    (35, True, _targets(0.0, 0.0, 0.0), 35),
    (30, True, _targets(0.5, 0.8, 0.0), 27),
    (23, True, _targets(0.8, 0.8, 0.0), 23),
    (20, False, _targets(0.8, 0.8, 0.0), 23),  # the first fastest state on the path
])
def test_allocate_latency_budget(budget, met, expected, latency):
    plan = allocate(_synthetic(timed=True), latency_budget_us=budget, tolerance=0.02)
    assert plan["met"] is met and plan["targets"] == expected
    assert plan["predicted_latency_us"] == pytest.approx(latency)
    assert met or "latency budget" in plan["message"]


def test_allocate_ties_go_to_the_larger_layer_then_the_name():
    # equal cost per weight (2e-4): y is larger, so it moves first and alone reaches 100/300 >= 0.3
    scan = {"baseline_accuracy": 0.5, "sparsities": [0.0, 0.5], "layers": {
        "x": {"params": 100, "accuracy": [0.5, 0.49]}, "y": {"params": 200, "accuracy": [0.5, 0.48]}}}
    assert allocate(scan, target_sparsity=0.3, tolerance=0.1)["targets"] == {"x": 0.0, "y": 0.5}
    # identical layers: the lower name first, numerically for layer indices ("9" before "10")
    same = {"params": 100, "accuracy": [0.5, 0.49]}
    scan = {"baseline_accuracy": 0.5, "sparsities": [0.0, 0.5], "layers": {"10": same, "9": same}}
    assert allocate(scan, target_sparsity=0.25, tolerance=0.1)["targets"] == {"9": 0.5, "10": 0.0}


def test_allocate_is_deterministic_and_uses_reached():
    scan = _synthetic()
    plans = [allocate(copy.deepcopy(scan), target_sparsity=0.5, tolerance=0.02) for _ in range(3)]
    assert plans[0] == plans[1] == plans[2]
    # blocks reach slightly different sparsities: the overall figure uses what was reached
    scan["layers"]["a"]["reached"] = [0.0, 0.4, 0.8, 0.9]
    plan = allocate(scan, target_sparsity=0.05, tolerance=0.02)
    assert plan["targets"] == _targets(0.5, 0.0, 0.0) and plan["reached_sparsity"] == pytest.approx(0.08)


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one"),
    (dict(target_sparsity=0.5, latency_budget_us=10), "exactly one"),
    (dict(target_sparsity=1.5), "target_sparsity"),
    (dict(target_sparsity=0.5, tolerance=-0.1), "tolerance"),
    (dict(target_sparsity=0.5, tolerance=float("nan")), "tolerance"),
    (dict(latency_budget_us=-1), "latency_budget_us"),
    (dict(latency_budget_us=10), "needs timings"),
])
def test_allocate_argument_errors(kwargs, match):
    with pytest.raises(SparsenetError, match=match):
        allocate(_synthetic(), **kwargs)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.pop("layers"), "expected a scan dict"),
    (lambda s: s.update(sparsities=[0.5, 0.8, 0.9, 1.0]), "from 0.0"),
    (lambda s: s.update(sparsities=[0.0, 0.8, 0.5, 0.9]), "increase"),
    (lambda s: s.update(layers={}), "no layers"),
    (lambda s: s["layers"]["b"]["accuracy"].pop(), "layer 'b'"),
    (lambda s: s["layers"]["c"].update(params=0), "layer 'c'"),
    (lambda s: s["layers"]["a"].update(reached=[0.0]), "'reached'"),
])
def test_allocate_rejects_malformed_scans(edit, match):
    scan = _synthetic()
    edit(scan)
    with pytest.raises(SparsenetError, match=match):
        allocate(scan, target_sparsity=0.5)


# -- the plan applied -----------------------------------------------------------------------------------

@pytest.mark.parametrize("granularity", ["unstructured", "block4x4"])
def test_allocated_targets_apply_with_prune(trained, val, granularity):
    scan = sensitivity_scan(trained, val, sparsities=(0.25, 0.5, 0.8, 0.9), granularity=granularity,
                            time_layers=False)
    plan = allocate(scan, target_sparsity=0.7, tolerance=0.05)  # met or not, the targets must apply
    assert any(t > 0 for t in plan["targets"].values())
    model = copy.deepcopy(trained)
    result = prune(model, sparsity=plan["targets"], scope="layer", method=scan["method"],
                   granularity=granularity)
    assert set(result.layers) == set(plan["targets"])
    for name, target in plan["targets"].items():
        i = scan["sparsities"].index(target)
        assert result.layers[name]["reached"] == pytest.approx(scan["layers"][name]["reached"][i], abs=1e-6)
        assert result.layers[name]["reached"] == pytest.approx(target, abs=0.01)
    assert result.sparsity == pytest.approx(plan["reached_sparsity"], abs=1e-6)
