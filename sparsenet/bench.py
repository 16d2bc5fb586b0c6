"""This model against its dense equivalent, measured in one run (the ``sparsenet bench MODEL``
command is `sparsenet.cli.bench`).

The dense equivalent has the same layers with every weight stored dense (pruned entries as zeros):
what a framework that keeps zeros in dense tensors would run. Figures are medians of repeats in this
process; the machine's load is recorded (CPU pressure) so a noisy run can be recognised.
"""

from __future__ import annotations

import copy

import numpy as np

from .errors import ConfigError
from .formats import Dense
from .nn import no_grad
from .nn._weighted import WeightedLayer
from .timing import median_time, settle

__all__ = ["dense_equivalent", "bench_model"]


def dense_equivalent(model):
    """A copy of `model` with every weight stored dense (dequantised, zeros kept)."""
    dense = copy.deepcopy(model)
    for layer in dense.layers:
        if isinstance(layer, WeightedLayer) and not isinstance(layer.weight, Dense):
            layer.weight = Dense(layer.weight.to_dense())
    return dense


def _pressure():
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def bench_model(model, batches=(1, 64), *, repeats: int = 7, min_time: float = 5e-3, seed: int = 0) -> dict:
    """Median forward time of `model` and of its dense equivalent at each batch size, in one run."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ConfigError("bench: the model has no input_shape; save it with one (zoo models have it)")
    dense = dense_equivalent(model).eval()
    model.eval()
    rng = np.random.default_rng(seed)
    rows, before = [], _pressure()
    for b in batches:
        x = rng.standard_normal((int(b), *shape)).astype(np.float32)

        def run(m=model):
            with no_grad():
                m.forward(x)

        def run_dense(m=dense):
            with no_grad():
                m.forward(x)

        t_model, t_dense = [], []
        for _ in range(2):  # alternate so that load bursts hit both; pause: BLAS threads spin after a call
            settle()
            t_dense.append(median_time(run_dense, repeats, min_time))
            settle()
            t_model.append(median_time(run, repeats, min_time))
        tm, td = min(t_model), min(t_dense)
        rows.append({"batch": int(b), "model_ms": tm * 1e3, "dense_ms": td * 1e3, "speedup": td / tm})
    return {"batches": rows, "cpu_pressure_before": before, "cpu_pressure_after": _pressure()}
