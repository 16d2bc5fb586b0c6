"""`sparsenet.timing`: the one timing primitive, checked with a fake clock (no real speed is asserted):
rotating order, calibration, medians and spread, the speedup as the median of per-round ratios,
settle before every sample, and errors on bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsenet.errors import SparsenetError, TimingError
from sparsenet.timing import Comparison, Timing, compare, time_call

from fake_clock import FakeClock


def _fake(clock, **kw):
    return dict(timer=clock, sleep=clock.sleep, **kw)


# -- order ----------------------------------------------------------------------------------------------

def test_rounds_rotate_the_order():
    clock = FakeClock()
    fns = {n: clock.work(n, 1e-3) for n in "abc"}
    compare(fns, **_fake(clock, rounds=4, min_time=0.0, warmup=1))
    warm_and_calibrate = ["a"] * 4 + ["b"] * 4 + ["c"] * 4  # one warm-up call, three calibration tries of 1 call
    rounds = ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert clock.calls() == warm_and_calibrate + rounds


def test_two_candidates_alternate():
    clock = FakeClock()
    compare({"dense": clock.work("dense", 1e-3), "csr": clock.work("csr", 1e-3)},
            **_fake(clock, rounds=5, min_time=0.0, warmup=0))
    assert clock.calls()[6:] == ["dense", "csr", "csr", "dense", "dense", "csr", "csr", "dense", "dense", "csr"]


# -- statistics -----------------------------------------------------------------------------------------

def test_speedup_is_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    clock = FakeClock()
    # calls 0-2 calibrate (min_time 0: one call per sample), calls 3-5 are the rounds' samples
    base = clock.work("base", [1.0] * 3 + [1.0, 2.0, 10.0])
    cand = clock.work("cand", [1.0] * 3 + [2.0, 1.0, 5.0])
    c = compare({"base": base, "cand": cand}, baseline="base", **_fake(clock, rounds=3, min_time=0.0, warmup=0))
    assert c["base"].samples == (1.0, 2.0, 10.0) and c["cand"].samples == (2.0, 1.0, 5.0)
    assert c["cand"].speedups == (0.5, 2.0, 2.0)
    # the median of the ratios; the ratio of medians would be 2 / 2 = 1, their mean 1.5
    assert c["cand"].speedup == 2.0
    assert c["base"].speedups == (1.0, 1.0, 1.0)
    assert c.speedups() == {"base": 1.0, "cand": 2.0}
    assert c.medians() == {"base": 2.0, "cand": 2.0}


def test_median_and_spread_over_rounds():
    clock = FakeClock()
    # call 0 warms up, calls 1-3 calibrate (one call per sample since min_time is 0), calls 4-8 are the rounds
    fn = clock.work("f", [0.0] * 4 + [3.0, 1.0, 5.0, 2.0, 4.0])
    t = time_call(fn, **_fake(clock, rounds=5, min_time=0.0, warmup=1))
    assert isinstance(t, Timing)
    assert t.samples == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert (t.median, t.min, t.max, t.iqr) == (3.0, 1.0, 5.0, (2.0, 4.0))
    d = t.to_dict()
    assert d["median"] == 3.0 and d["rounds"] == 5 and d["calls_per_sample"] == 1 and "speedup" not in d
    assert d["samples"] == [3.0, 1.0, 5.0, 2.0, 4.0]


def test_calibration_makes_each_sample_last_min_time():
    clock = FakeClock()
    c = compare({"fast": clock.work("fast", 1e-4), "slow": clock.work("slow", 5e-3)},
                **_fake(clock, rounds=3, min_time=1e-3, warmup=0))
    # 1 call takes 0.1 ms < 1 ms: scaled to ceil(1.2 * 1 ms / 0.1 ms) = 12 calls, tried three times;
    # 5 ms needs no loop (tried three times too)
    assert c["fast"].calls_per_sample == 12 and c["slow"].calls_per_sample == 1
    assert c["fast"].samples == pytest.approx((1e-4,) * 3) and c["slow"].samples == pytest.approx((5e-3,) * 3)
    assert clock.calls().count("fast") == 1 + 3 * 12 + 3 * 12 and clock.calls().count("slow") == 3 + 3


def test_a_preempted_calibration_try_does_not_end_the_calibration():
    clock = FakeClock()
    # the first try (1 call) stalls for ~4 ms, and the second; the third shows the call takes ~0.12 ms
    # (powers of 2: the fake clock adds them exactly)
    call, stall, min_time = 2.0 ** -13, 2.0 ** -8, 2.0 ** -10
    t = time_call(clock.work("f", [stall, stall] + [call] * 100), **_fake(clock, rounds=1, min_time=min_time, warmup=0))
    assert t.calls_per_sample == 10 and t.samples == (call,)  # ceil(1.2 * min_time / call) = ceil(9.6)


def test_calibration_doubles_at_least_and_stops_at_a_cap():
    clock = FakeClock()
    c = compare({"grow": clock.work("grow", 0.6e-3)}, **_fake(clock, rounds=1, min_time=1e-3, warmup=0))
    assert c["grow"].calls_per_sample == 2  # 1.2 x 1 / 0.6 = 2, at least doubling
    t = time_call(lambda: None, timer=lambda: 0.0, sleep=lambda s: None, rounds=1, min_time=1.0, warmup=0)
    assert t.calls_per_sample == 1 << 20  # a clock that never moves cannot loop for ever


def test_a_sample_of_zero_seconds_gives_an_infinite_or_undefined_ratio():
    clock = FakeClock()
    c = compare({"b": clock.work("b", [0.0, 0.0, 0.0, 1.0, 0.0]), "z": clock.work("z", 0.0)}, baseline="b",
                **_fake(clock, rounds=2, min_time=0.0, warmup=0))
    assert c["z"].speedups[0] == math.inf and math.isnan(c["z"].speedups[1])


# -- settle ---------------------------------------------------------------------------------------------

def test_settle_sleeps_before_each_warm_up_and_each_sample_outside_the_timed_region():
    clock = FakeClock()
    # a's first call after each pause is slow (its pool wakes up): it must not be timed
    a_costs = [1e-3] * 4 + [9.0, 1e-3] * 3
    c = compare({"a": clock.work("a", a_costs), "b": clock.work("b", 2e-3)}, baseline="a",
                **_fake(clock, rounds=3, min_time=0.0, warmup=1, settle=0.5))
    s = ("sleep", 0.5)
    prelude = [s] + ["a"] * 4 + [s] + ["b"] * 4  # pause, warm-up, calibration (three tries)
    rounds = [s, "a", "a", s, "b", "b", s, "b", "b", s, "a", "a", s, "a", "a", s, "b", "b"]  # pause, wake, sample
    assert clock.log == prelude + rounds
    assert c["a"].samples == pytest.approx((1e-3,) * 3)  # neither the pauses nor the wake-up calls are timed
    assert c["b"].speedup == pytest.approx(0.5)


def test_after_a_pause_the_whole_calibrated_loop_runs_once_untimed():
    clock = FakeClock()
    # 2 calls per sample; after each pause, the first two calls are slow (threads waking up)
    costs = [1e-3] * 8 + [4e-3, 4e-3, 1e-3, 1e-3] * 3  # warm-up 1, calibration tries of 1, 2, 2 and 2 calls
    t = time_call(clock.work("a", costs), **_fake(clock, rounds=3, min_time=1.5e-3, warmup=1, settle=0.1))
    assert t.calls_per_sample == 2 and t.samples == pytest.approx((1e-3,) * 3)
    s = ("sleep", 0.1)
    assert clock.log == [s] + ["a"] * 8 + ([s] + ["a"] * 4) * 3


def test_no_settle_no_sleep():
    clock = FakeClock()
    compare({"a": clock.work("a", 1e-3)}, **_fake(clock, rounds=3, min_time=0.0))
    assert not [e for e in clock.log if not isinstance(e, str)]


def test_real_clock_gives_positive_figures():
    c = compare({"sum": lambda: sum(range(50)), "noop": lambda: None}, baseline="sum", rounds=3, min_time=1e-4)
    assert isinstance(c, Comparison) and list(c.timings) == ["sum", "noop"]
    for t in c.timings.values():
        assert len(t.samples) == 3 and t.median > 0 and t.calls_per_sample >= 1
        assert t.samples[0] * t.calls_per_sample >= 1e-4 * 0.5  # calibrated loop, allowing for clock jitter
    assert np.isfinite(c["noop"].speedup) and c["noop"].speedup > 0


# -- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(rounds=0), "rounds >= 1"), (dict(rounds=-2), "rounds >= 1"), (dict(rounds=1.5), "rounds"),
    (dict(rounds=True), "rounds"), (dict(warmup=-1), "warmup >= 0"), (dict(min_time=-1e-3), "min_time"),
    (dict(min_time=float("nan")), "min_time"), (dict(min_time="1"), "min_time"), (dict(settle=-0.1), "settle"),
    (dict(settle=float("inf")), "settle"), (dict(baseline="csr"), "baseline 'csr' is not a candidate"),
    (dict(timer=None), "callable timer"), (dict(sleep=0.1), "callable timer and sleep"),
])
def test_bad_arguments_raise_timing_errors(kwargs, match):
    called = []
    with pytest.raises(TimingError, match=match) as info:
        compare({"dense": lambda: called.append(1)}, **kwargs)
    assert isinstance(info.value, SparsenetError) and isinstance(info.value, ValueError)
    assert not called  # checked before anything runs


@pytest.mark.parametrize("candidates,match", [
    ({}, "non-empty dict"), ([lambda: None], "non-empty dict"), (None, "non-empty dict"),
    ({"a": 3}, "candidate 'a' is not callable"), ({1: lambda: None}, "names as strings"),
])
def test_bad_candidates_raise_timing_errors(candidates, match):
    with pytest.raises(TimingError, match=match):
        compare(candidates)


def test_time_call_checks_its_arguments_too():
    with pytest.raises(TimingError, match="rounds >= 1"):
        time_call(lambda: None, rounds=0)
    with pytest.raises(TimingError, match="not callable"):
        time_call(42)


def test_speedups_without_a_baseline_is_an_error():
    clock = FakeClock()
    c = compare({"a": clock.work("a", 1.0)}, **_fake(clock, rounds=1, min_time=0.0))
    assert c["a"].speedup is None and c["a"].speedups is None
    with pytest.raises(TimingError, match="no baseline"):
        c.speedups()


# -- callers: the figures they report come from the primitive ------------------------------------------

def _ms_sequence(*ms):
    return iter([m * 1e-3 for m in ms])


def test_bench_reports_medians_and_the_median_of_per_round_ratios():
    from fake_clock import MeteredLinear
    from sparsenet.bench import bench_model
    from sparsenet.nn import Sequential
    from sparsenet.prune.compiler import _store_formats

    clock = FakeClock()
    # per format, through `predict`: the plan's build (a zero sample traced through the metered
    # layer, a generic step), the warm-up, calibration (three tries of 1 call >= min_time), then one
    # sample per round, back to back with no pause
    costs = {"dense": _ms_sequence(9, 9, 9, 9, 9, 2, 1, 10),
             "csr": _ms_sequence(9, 9, 9, 9, 9, 1, 2, 5)}
    model = Sequential(MeteredLinear(8, 4, seed=0).meter(clock, lambda spec: next(costs[spec])))
    model.input_shape = (8,)
    _store_formats(model, "csr")  # in place: the metered layer stays the one in `model`
    out = bench_model(model, batches=(1,), repeats=3, min_time=1e-3, timer=clock, sleep=clock.sleep)
    (row,) = out["batches"]
    assert row["dense_ms"] == pytest.approx(2.0) and row["model_ms"] == pytest.approx(2.0)
    assert row["speedup"] == pytest.approx(2.0)  # ratios 2, 0.5, 2; the ratio of medians would be 1
    assert row["speedup_range"] == pytest.approx([0.5, 2.0]) and row["rounds"] == 3
    assert clock.calls() == ["dense"] * 5 + ["csr"] * 5 + ["dense"] + ["csr"] * 2 + ["dense"] * 2 + ["csr"]
    assert not [e for e in clock.log if isinstance(e, tuple)]  # no pause: as a user's loop runs


class _FakeModel:
    """Stands in for a model in the sweep's latency phase: each forward costs fake seconds."""

    def __init__(self, clock, name, cost):
        self.run = clock.work(name, cost)

    def eval(self):
        return self

    def forward(self, x):
        self.run()


def test_sweep_latency_reports_medians_and_the_median_of_per_round_ratios():
    from sparsenet.sweep.timing import measure_point
    from sparsenet.timing import SETTLE_SECONDS

    clock = FakeClock()
    # warm-up, calibration (three tries), then per round an untimed call after the pause and the sample
    dense = _FakeModel(clock, "dense", [0.0, 1.0, 1.0, 1.0, 7.0, 2.0, 7.0, 1.0, 7.0, 10.0])
    compiled = _FakeModel(clock, "compiled", [0.0, 1.0, 1.0, 1.0, 7.0, 1.0, 7.0, 2.0, 7.0, 5.0])
    out = measure_point(dense, compiled, np.zeros((4, 3)), batch_sizes=(64,), repeats=3, min_time=0.5,
                        timer=clock, sleep=clock.sleep)
    assert set(out) == {64} and out[64]["batch"] == 4  # x is shorter than the batch size
    assert out[64]["dense_s"] == pytest.approx(2.0) and out[64]["compiled_s"] == pytest.approx(2.0)
    assert out[64]["speedup"] == pytest.approx(2.0) and out[64]["speedup_range"] == pytest.approx([0.5, 2.0])
    assert clock.calls()[8:] == ["dense"] * 2 + ["compiled"] * 4 + ["dense"] * 4 + ["compiled"] * 2
    assert [e for e in clock.log if isinstance(e, tuple)] == [("sleep", SETTLE_SECONDS)] * 8
