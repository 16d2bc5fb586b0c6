"""What a model holds, measured: per-layer format, shape, stored values and true bytes."""

from __future__ import annotations

import numpy as np

from .nn import Module, Sequential
from .nn._weighted import WeightedLayer

__all__ = ["summarize"]


def _layer_row(name: str, layer: Module) -> dict:
    row = {"name": name, "kind": type(layer).__name__, "format": None, "shape": None,
           "params": 0, "stored": 0, "nnz": 0, "bytes": 0, "dense_bytes": 0}
    for pname, p in layer.own_parameters().items():
        if pname == "weight" and isinstance(layer, WeightedLayer):
            w = layer.weight
            row.update(format=w.spec, shape=list(w.shape))
            row["params"] += w.size
            row["stored"] += w.nnz
            row["nnz"] += w.count_nonzero()
            row["bytes"] += w.nbytes
            row["dense_bytes"] += w.size * 4  # the dense float32 original
        else:
            row["params"] += p.data.size
            row["stored"] += p.data.size
            row["nnz"] += int(np.count_nonzero(p.data))
            row["bytes"] += p.data.nbytes
            row["dense_bytes"] += p.data.size * 4
    for buf in ("running_mean", "running_var"):
        if hasattr(layer, buf):
            arr = getattr(layer, buf)
            row["bytes"] += arr.nbytes
            row["dense_bytes"] += arr.size * 4
    return row


def summarize(model: Sequential) -> dict:
    """Per-layer rows {name, kind, format, shape, params, stored, nnz, bytes, dense_bytes} and totals.

    `params` counts the dense-equivalent parameters, `stored` the values really held, `nnz` the
    nonzero ones; `bytes` is the true memory of every array (values + indices + pointers + biases +
    BatchNorm statistics) and `dense_bytes` what the same layer takes dense in float32.
    """
    rows = [_layer_row(name, layer) for name, layer in model.children()]  # a Sequential's or a Graph's
    totals = {
        "params": sum(r["params"] for r in rows),
        "stored_params": sum(r["stored"] for r in rows),
        "nonzero_params": sum(r["nnz"] for r in rows),
        "total_bytes": sum(r["bytes"] for r in rows),
        "dense_bytes": sum(r["dense_bytes"] for r in rows),
    }
    return {"layers": rows, "totals": totals}
