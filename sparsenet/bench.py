"""This model against its dense equivalent, measured in one run (the ``sparsenet bench MODEL``
command is `sparsenet.cli.bench`).

The dense equivalent has the same layers with every weight stored dense (pruned entries as zeros):
what a framework that keeps zeros in dense tensors would run. The two are timed side by side in
alternating rounds (`sparsenet.timing.compare`) in this process: times are medians over the rounds,
the speedup is the median of the per-round ratios; the machine's load is recorded (CPU pressure) so
a noisy run can be recognised.
"""

from __future__ import annotations

import copy
import time
from functools import partial

import numpy as np

from ._checks import check_int
from .errors import ConfigError
from .formats import Dense
from .nn import model_dtype
from .nn._weighted import WeightedLayer
from .runtime import predict
from .timing import compare

__all__ = ["dense_equivalent", "bench_model", "sample_inputs"]


def dense_equivalent(model):
    """A copy of `model` with every weight stored dense (dequantised, zeros kept)."""
    dense = copy.deepcopy(model)
    for _, layer in dense.named_modules():  # a Sequential's layers or a Graph's nodes
        if isinstance(layer, WeightedLayer) and not isinstance(layer.weight, Dense):
            layer.weight = Dense(layer.weight.to_dense())
    return dense


def sample_inputs(model, batch: int, rng) -> np.ndarray | dict:
    """Random inputs for `batch` samples: standard normal floats of the model's dtype, or for an
    integer input (indices) integers below the smallest table that reads it (an `Embedding`); a dict
    {input name: array} for a graph of several inputs."""
    from .nn import Embedding, Graph

    if not isinstance(model, Graph):
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise ConfigError("bench: the model has no input_shape; save it with one (zoo models have it)")
        return rng.standard_normal((batch, *shape)).astype(model_dtype(model))
    out = {}
    for name, shape in model.input_shapes.items():
        if shape is None:
            raise ConfigError(f"bench: the model's input {name!r} has no shape; save it with one (zoo models have it)")
        if name in model.input_dtypes:
            sizes = [n.op.num_embeddings for n in model.nodes if name in n.inputs and isinstance(n.op, Embedding)]
            out[name] = rng.integers(0, min(sizes) if sizes else 1, (batch, *shape)).astype(model.input_dtypes[name])
        else:
            out[name] = rng.standard_normal((batch, *shape)).astype(model_dtype(model))
    return out if len(out) > 1 else next(iter(out.values()))


def _pressure():
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def bench_model(model, batches=(1, 64), *, repeats: int = 7, min_time: float = 5e-3, seed: int = 0,
                baseline=None, timer=time.perf_counter, sleep=time.sleep) -> dict:
    """`predict` time of `model` and of its dense equivalent (each through its compiled plan) at each
    batch size, in one run.

    `baseline` (a model) replaces the dense equivalent: a structurally pruned model against its
    dense original, whose layers have more units (it must take the same inputs).
    Per batch size: `repeats` alternating rounds of one sample each (at least `min_time` seconds),
    back to back with no pause, as a user's loop runs; "model_ms" and "dense_ms" are medians over the rounds, "speedup"
    the median of the per-round ratios dense / model, "speedup_range" their min and max.
    """
    batches = [check_int(b, "batch size", "bench") for b in batches]
    repeats = check_int(repeats, "repeats", "bench")
    if not batches:
        raise ConfigError("bench: expected at least one batch size, found none")
    sample_inputs(model, 1, np.random.default_rng(seed))  # the model's inputs are known
    if baseline is not None:
        _same_inputs(model, baseline)
    dense = (dense_equivalent(model) if baseline is None else baseline).eval()
    model.eval()
    rng = np.random.default_rng(seed)
    rows, before = [], _pressure()
    for b in batches:
        x = sample_inputs(model, b, rng)

        # as a user's loop runs: each model's `predict` (its compiled plan), back to back, no pause
        c = compare({"dense": partial(predict, dense, x), "model": partial(predict, model, x)}, baseline="dense",
                    rounds=repeats, min_time=min_time, timer=timer, sleep=sleep)
        ratios = c["model"].speedups
        rows.append({"batch": int(b), "model_ms": c["model"].median * 1e3, "dense_ms": c["dense"].median * 1e3,
                     "speedup": c["model"].speedup, "speedup_range": [min(ratios), max(ratios)],
                     "rounds": int(repeats)})
    return {"batches": rows, "cpu_pressure_before": before, "cpu_pressure_after": _pressure(),
            "baseline": "dense equivalent" if baseline is None else "given model"}


def _same_inputs(model, baseline) -> None:
    def inputs(m):
        if hasattr(m, "input_shapes"):
            return {k: (v, str(m.input_dtypes.get(k, "float"))) for k, v in m.input_shapes.items()}
        return {"x": (tuple(m.input_shape) if m.input_shape is not None else None, "float")}

    a, b = inputs(model), inputs(baseline)
    if a != b:
        raise ConfigError(f"bench: the baseline takes other inputs ({b}) than the model ({a})")
