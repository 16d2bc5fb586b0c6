"""Sensitivity analysis: how much accuracy each layer loses, and how fast it runs, as it is pruned alone;
and an allocator that turns a global budget into per-layer targets.

`sensitivity_scan` prunes one layer at a time (on copies: the model is never touched) to each of a
list of sparsities, evaluates accuracy on a validation split and, optionally, times that layer's
forward in each storage format. `allocate` reads such a scan (a plain JSON-ready dict, so scans can
be saved, edited or written by hand) and returns ``{layer name: sparsity}`` ready for
``prune(model, sparsity=targets, scope="layer")``.

>>> import sparsenet as sn
>>> from sparsenet.data import load_dataset
>>> ds = load_dataset("digits")
>>> model = sn.build_model("lenet300", seed=0)
>>> _ = sn.fit(model, ds.x_train, ds.y_train, epochs=2, quiet=True)
>>> scan = sensitivity_scan(model, (ds.x_test, ds.y_test), sparsities=(0.0, 0.5, 0.9), time_layers=False)
>>> sorted(scan["layers"]), scan["sparsities"]
(['1', '3', '5'], [0.0, 0.5, 0.9])
>>> plan = allocate(scan, target_sparsity=0.5, tolerance=0.05)
>>> sorted(plan["targets"]), plan["met"]
(['1', '3', '5'], True)
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .._checks import check_fraction, check_int, check_nonnegative
from ..errors import ConfigError, DataError, SparsenetError
from ..timing import compare
from ..train import evaluate
from .api import prune_step
from .compiler import _convert, _pattern, _random_input, _spec, _with_weight, parse_format_spec
from .granularity import make_granularity
from .importance import Importance, Movement, make_importance
from .masks import get_layer, layer_mask, prunable_layers, require_chain, sparsity_of
from .trace import layer_shapes

__all__ = ["sensitivity_scan", "allocate"]

DEFAULT_SPARSITIES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)
_EPS = 1e-9  # float slack when comparing fractions and accuracy drops


class _CachedScores(Importance):
    """Scores one layer once (on the unpruned weights) and reuses them for every sparsity, so that a
    layer's masks are nested across sparsities and data-driven criteria run once per layer."""

    def __init__(self, inner: Importance):
        self.inner, self.name = inner, inner.name
        self.needs_data, self.structured_only = inner.needs_data, inner.structured_only
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, model, layers, data=None):
        missing = {n: l for n, l in layers.items() if n not in self.cache}
        if missing:
            self.cache.update(self.inner(model, missing, data))
        return {n: self.cache[n] for n in layers}


def _check_sparsities(sparsities) -> list[float]:
    try:
        values = [check_fraction(s, "sparsities", "sensitivity_scan") for s in sparsities]
    except TypeError:
        raise ConfigError(f"sensitivity_scan: expected sparsities as a list of fractions in [0, 1], "
                          f"found {sparsities!r}") from None
    return sorted(set(values) | {0.0})  # 0.0 is the allocator's starting point


def _check_formats(formats) -> list[str]:
    if isinstance(formats, str):
        formats = (formats,)
    specs = []
    for f in formats:
        name, bs = parse_format_spec(f)
        if name == "auto":
            raise ConfigError("sensitivity_scan formats: expected fixed specs ('dense', 'csr', 'bsrRxC'), "
                              "found 'auto' (the scan times every format it is given)")
        specs.append(_spec(name, bs))
    specs = list(dict.fromkeys(specs))
    if not specs:
        raise ConfigError("sensitivity_scan formats: expected at least one format to time, found none")
    return specs


def _time_formats(layer, x, specs, repeats, min_time) -> dict[str, float]:
    """{spec: median microseconds of layer.forward(x)} with the layer's pattern stored in each format,
    the formats timed side by side in alternating rounds (`timing.compare`). No pause before the
    samples (`settle`), as the scan has never paused: a 0.15 s pause per sample would make it
    several times slower, though a sparse sample right after dense may share the cores with
    OpenBLAS threads still spinning (PERF-NOTES)."""
    pattern = _pattern(layer)
    values = layer.weight.to_dense() * pattern
    fns = {}
    for spec in specs:
        trial = _with_weight(layer, _convert(values, pattern, *parse_format_spec(spec))[0])
        fns[spec] = lambda trial=trial: trial.forward(x)
    medians = compare(fns, rounds=repeats, min_time=min_time).medians()
    return {spec: round(medians[spec] * 1e6, 3) for spec in specs}


def sensitivity_scan(model, val_data, *, sparsities=DEFAULT_SPARSITIES, method="magnitude",
                     granularity="unstructured", data=None, exclude=(), formats=("dense", "csr", "bsr4x4"),
                     batch_size=64, time_layers=True, repeats=3, min_time=1e-3, quiet=True) -> dict:
    """Accuracy (and latency) of `model` with each prunable layer pruned alone to each sparsity.

    For every layer (by name, as in `prunable_layers`) and every sparsity s, a deep copy of `model`
    has that layer alone pruned to s with `prune_step` (scope 'layer'; a layer's scores are computed
    once, so its masks are nested across s) and is evaluated on ``val_data = (x, y)``. With
    `time_layers`, the pruned layer's forward on a random [batch_size, *input] batch (shapes from
    `trace_shapes`) is timed in each of `formats` (fixed specs: 'dense', 'csr', 'bsrRxC') with
    `sparsenet.timing.compare`: the formats side by side in `repeats` alternating rounds, each the
    median of its samples of at least `min_time` seconds. `model` is left
    untouched. 0.0 is always scanned; sparsities are sorted. Layers already pruned keep their pruned
    weights (s is the layer's total sparsity). Structured granularities skip the last layer (its
    outputs are the model's); N:M is rejected (its sparsity is fixed).

    method, granularity, data: as in `prune` (data = calibration (x, y) for data-driven criteria).
    Cost: layers * sparsities evaluations, plus with timing about
    layers * sparsities * formats * (repeats + 2) * min_time seconds.

    Returns a JSON-serialisable dict::

        {"baseline_accuracy", "method", "granularity", "sparsities": [s...], "batch_size", "formats",
         "layers": {name: {"kind", "shape", "params", "accuracy": [per s], "reached": [per s],
                           "latency_us": {spec: [per s]}}}}

    "reached" is the sparsity actually reached (blocks and units prune whole groups); "latency_us"
    is empty without `time_layers`.
    """
    from .._progress import progress

    levels = _check_sparsities(sparsities)
    batch_size = check_int(batch_size, "batch_size", "sensitivity_scan")
    importance = make_importance(method)
    gran = make_granularity(granularity)
    if gran.structured:
        require_chain(model, "sensitivity_scan")  # before any work
    if gran.local:
        raise ConfigError(f"sensitivity_scan: granularity {gran.name!r} fixes the sparsity; expected "
                          f"'unstructured', 'blockRxC' or 'neuron'/'filter'")
    if importance.needs_data and data is None:
        raise ConfigError(f"sensitivity_scan: method {importance.name!r} needs calibration data: pass data=(x, y)")
    if isinstance(importance, Movement):
        importance.require_observed(prunable_layers(model, exclude), "sensitivity_scan",
                                    "a scan prunes without training")
    try:
        x_val, y_val = val_data
    except (TypeError, ValueError):
        raise ConfigError("sensitivity_scan: expected val_data=(x, y)") from None
    if len(x_val) == 0:
        raise DataError("sensitivity_scan: val_data is empty; expected at least one sample")
    if time_layers:
        specs = _check_formats(formats)
        repeats = check_int(repeats, "repeats", "sensitivity_scan")
        min_time = check_nonnegative(min_time, "min_time (seconds)", "sensitivity_scan")

    base = copy.deepcopy(model)  # nothing below touches `model`, not even its train/eval mode
    layers = prunable_layers(base, exclude)
    if gran.structured:
        layers.pop(list(prunable_layers(base))[-1], None)
    if not layers:
        raise ConfigError("sensitivity_scan: no layer left to scan (all excluded)")
    others = {n: [o for o in prunable_layers(base) if o != n] for n in layers}
    shapes = None
    if time_layers:
        try:
            shapes = layer_shapes(base)
        except SparsenetError as e:
            raise ConfigError(f"sensitivity_scan with time_layers needs the layers' input shapes: {e}") from e
    rng = np.random.default_rng(0)
    scores = _CachedScores(importance)

    result = {
        "baseline_accuracy": float(evaluate(base, x_val, y_val)["accuracy"]),
        "method": importance.name,
        "granularity": gran.name,
        "sparsities": levels,
        "batch_size": batch_size,
        "formats": specs if time_layers else [],
        "layers": {},
    }
    bar = progress(total=len(layers) * len(levels), disable=quiet, desc="sensitivity", unit="run", leave=False)
    try:
        for name, layer in layers.items():
            shape = [int(d) for d in layer.weight.shape]
            entry = {"kind": type(layer).__name__, "shape": shape, "params": int(np.prod(shape)),
                     "accuracy": [], "reached": [], "latency_us": {s: [] for s in specs} if time_layers else {}}
            x = _random_input(layer, shapes[name][0], batch_size, rng) if time_layers else None
            for s in levels:
                bar.set_postfix(layer=name, sparsity=s)
                trial = copy.deepcopy(base)
                if s > 0:
                    prune_step(trial, scores, gran, s, scope="layer", exclude=others[name], data=data)
                pruned = get_layer(trial, name)
                entry["reached"].append(round(sparsity_of(layer_mask(pruned)), 6))
                entry["accuracy"].append(float(evaluate(trial, x_val, y_val)["accuracy"]))
                if time_layers:
                    for spec, us in _time_formats(pruned, x, specs, repeats, float(min_time)).items():
                        entry["latency_us"][spec].append(us)
                bar.update()
            result["layers"][name] = entry
    finally:
        bar.close()
    return result


# -- allocation -------------------------------------------------------------------------------------
def _name_key(name: str):
    return (0, int(name), "") if name.isascii() and name.isdigit() else (1, 0, name)


def _read_scan(scan, need_latency: bool):
    """(levels, baseline, {name: (params, drops, reached, best latency or None)}) from a scan dict."""
    try:
        levels = [float(s) for s in scan["sparsities"]]
        baseline = float(scan["baseline_accuracy"])
        layers = dict(scan["layers"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("allocate: expected a scan dict with 'sparsities', 'baseline_accuracy' and "
                          "'layers' (see sensitivity_scan)") from None
    if sorted(set(levels)) != levels or not levels or levels[0] != 0.0 or levels[-1] > 1.0:
        raise ConfigError(f"allocate: expected the scan's sparsities to increase from 0.0 to at most 1.0, "
                          f"found {levels}")
    if not layers:
        raise ConfigError("allocate: the scan holds no layers")
    n = len(levels)
    out = {}
    for name, e in layers.items():
        params = int(e.get("params", 0))
        acc = [float(a) for a in e.get("accuracy", ())]
        if params < 1 or len(acc) != n:
            raise ConfigError(f"allocate: layer {name!r}: expected 'params' >= 1 and {n} accuracies "
                              f"(one per sparsity), found params={e.get('params')!r}, {len(acc)} accuracies")
        reached = [float(r) for r in e.get("reached", levels)]
        if len(reached) != n:
            raise ConfigError(f"allocate: layer {name!r}: expected {n} 'reached' sparsities, found {len(reached)}")
        lat = e.get("latency_us") or {}
        best = None
        if lat:
            if any(len(v) != n for v in lat.values()):
                raise ConfigError(f"allocate: layer {name!r}: expected {n} latencies per format in 'latency_us'")
            best = [min(float(v[i]) for v in lat.values()) for i in range(n)]
        elif need_latency:
            raise ConfigError(f"allocate: latency_budget_us needs timings, but layer {name!r} has no "
                              f"'latency_us' (scan with time_layers=True)")
        out[str(name)] = (params, [baseline - a for a in acc], reached, best)
    return levels, baseline, out


def allocate(scan: dict, *, target_sparsity=None, latency_budget_us=None, tolerance=0.01) -> dict:
    """Per-layer sparsity targets meeting a global budget, from a `sensitivity_scan` result.

    Give exactly one budget: `target_sparsity` (overall fraction of the scanned layers' weights,
    weighted by parameters) or `latency_budget_us` (sum over layers of each layer's fastest format's
    latency, in microseconds). `tolerance`: the largest accuracy drop (baseline minus accuracy,
    a fraction) a layer may cost on its own.

    Algorithm: a layer's allowed sparsities are the scanned ones whose drop is <= tolerance (0.0 is
    always allowed). Every layer starts at 0.0; while the budget is not met, of the layers that can still
    move to a higher allowed sparsity, the one whose step costs the least accuracy per weight removed,
    (drop(next) - drop(now)) / (params * (reached(next) - reached(now))), moves there; ties go to the
    larger layer, then to the lower name. So the cheapest weights go first, wherever they are. Drops
    are predicted as if layers were independent (per layer, as scanned); "predicted_total_drop" is their
    sum. The result is deterministic.

    If the budget cannot be met within the tolerance, no error is raised: "met" is False, "message" says
    why, and the allocation is the best the greedy path reached (the sparsest for a sparsity target;
    the fastest, earliest on ties, for a latency budget).

    Returns ``{"targets": {name: sparsity}, "predicted_accuracy_drop": {name: drop},
    "predicted_total_drop", "reached_sparsity", "predicted_latency_us" (None without timings),
    "met", "message", "tolerance"}``; ``targets`` goes straight to
    ``prune(model, sparsity=targets, scope="layer", method=..., granularity=...)`` (use the scan's).

    >>> scan = {"baseline_accuracy": 0.9, "sparsities": [0.0, 0.5], "layers": {
    ...     "a": {"params": 100, "accuracy": [0.9, 0.89]}, "b": {"params": 100, "accuracy": [0.9, 0.8]}}}
    >>> allocate(scan, target_sparsity=0.25, tolerance=0.05)["targets"]
    {'a': 0.5, 'b': 0.0}
    """
    if (target_sparsity is None) == (latency_budget_us is None):
        raise ConfigError("allocate: expected exactly one of target_sparsity or latency_budget_us, found "
                          + ("both" if target_sparsity is not None else "neither"))
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        tolerance = math.nan
    if not tolerance >= 0:
        raise ConfigError(f"allocate: expected tolerance >= 0 (an accuracy fraction), found {tolerance!r}")
    by_latency = latency_budget_us is not None
    if by_latency:
        budget = check_nonnegative(latency_budget_us, "latency_budget_us (microseconds)", "allocate")
    else:
        budget = check_fraction(target_sparsity, "target_sparsity", "allocate")
    levels, _, layers = _read_scan(scan, by_latency)
    names = sorted(layers, key=_name_key)
    allowed = {n: [0] + [i for i in range(1, len(levels)) if layers[n][1][i] <= tolerance + _EPS] for n in names}
    total_params = sum(layers[n][0] for n in names)
    timed = all(layers[n][3] is not None for n in names)

    def sparsity(state):
        return sum(layers[n][0] * layers[n][2][state[n]] for n in names) / total_params

    def latency(state):
        return sum(layers[n][3][state[n]] for n in names) if timed else None

    def met(state):
        return latency(state) <= budget + _EPS if by_latency else sparsity(state) >= budget - _EPS

    state = {n: 0 for n in names}
    best = dict(state)
    while not met(state):
        moves = []
        for n in names:
            nxt = [i for i in allowed[n] if i > state[n]]
            if not nxt:
                continue
            params, drops, reached, _ = layers[n]
            removed = params * (reached[nxt[0]] - reached[state[n]])
            cost = (drops[nxt[0]] - drops[state[n]]) / removed if removed > 0 else math.inf
            cost = float(f"{cost:.9g}")  # equal costs computed in different orders must tie
            moves.append((cost, -params, _name_key(n), n, nxt[0]))
        if not moves:
            break
        *_, n, i = min(moves)
        state[n] = i
        if by_latency and latency(state) < latency(best) - _EPS:
            best = dict(state)
    ok = met(state)
    if not ok and by_latency:
        state = best
    if ok:
        message = "budget met"
    elif by_latency:
        message = (f"latency budget {budget:g} us not met within tolerance {tolerance:g}: the fastest "
                   f"allocation found takes {latency(state):g} us")
    else:
        message = (f"target sparsity {budget:g} not met within tolerance {tolerance:g}: at most "
                   f"{sparsity(state):.4g} is reachable with every layer at its sparsest allowed level")
    drops = {n: float(layers[n][1][state[n]]) for n in names}
    return {
        "targets": {n: float(levels[state[n]]) for n in names},
        "predicted_accuracy_drop": drops,
        "predicted_total_drop": float(sum(drops.values())),
        "reached_sparsity": float(sparsity(state)),
        "predicted_latency_us": float(latency(state)) if timed else None,
        "met": bool(ok),
        "message": message,
        "tolerance": tolerance,
    }
