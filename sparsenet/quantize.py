"""Post-training int8 weight quantisation of whole models and the compression table (the
``sparsenet quantize`` command is `sparsenet.cli.quantize`).

Every weighted layer's weight becomes QDense / QCSR / QBSR (int8 values, one float32 scale per
output channel, the same sparsity pattern); biases and BatchNorm stay float32. Pruning then
quantising is the Deep Compression pipeline (Han et al. 2016) minus weight sharing and Huffman
coding: `compression_summary` reports accuracy, memory and file bytes for each stage.

Example:
    >>> import sparsenet as sn
    >>> q = quantize_model(sn.build_model("lenet300"))
    >>> q[1].weight.format_name, q[1].weight.data.dtype, q[1].bias.data.dtype
    ('qdense', dtype('int8'), dtype('float32'))
"""

from __future__ import annotations

import copy
import os
import re

import numpy as np

from .errors import ConfigError, DTypeError
from .formats.quantized import QuantizedFormat, quantize_weight
from .nn import Graph, Sequential
from .nn._weighted import WeightedLayer

__all__ = ["quantize_model", "compression_summary", "format_compression_table", "SCHEME"]

SCHEME = "int8 symmetric per output channel"


def quantize_model(model: Sequential | Graph, *, layers=None) -> Sequential | Graph:
    """A deep copy of `model` with every weighted layer's weight quantised to int8 (see module doc);
    `layers` (names, as `named_modules` gives them) limits it to those layers: a recommender's
    embedding tables, say, whose int8 rows are a quarter of the bytes and as fast to look up, while
    its small dense layers run slower in int8 than through BLAS (BENCHMARKS.md, "Text and ratings").

    Layers already quantised are left as they are. ``meta["quantization"]`` records the scheme and,
    per layer, the format and the largest absolute rounding error (at most half the row's scale).
    The copy is for inference: training it raises (fine-tune before quantising).
    """
    if not isinstance(model, (Sequential, Graph)):
        raise ConfigError(f"quantize_model: expected a Sequential or a Graph, found {type(model).__name__}")
    if layers is not None and not isinstance(layers, str) and not (
            isinstance(layers, (list, tuple, set, frozenset)) and all(isinstance(n, str) for n in layers)):
        raise ConfigError(f"quantize_model: expected layers as layer names, found {layers!r}")
    wanted = None if layers is None else ({layers} if isinstance(layers, str) else set(layers))
    if wanted is not None:
        weighted = {n for n, m in model.named_modules() if isinstance(m, WeightedLayer)}
        unknown = sorted(wanted - weighted)
        if unknown:
            raise ConfigError(f"quantize_model: no weighted layer named {', '.join(unknown)}; the model's are "
                              f"{', '.join(sorted(weighted))}")
    out = copy.deepcopy(model)
    layers = {}
    for name, layer in out.named_modules():
        if not isinstance(layer, WeightedLayer) or isinstance(layer.weight, QuantizedFormat):
            continue
        if wanted is not None and name not in wanted:
            continue
        w = layer.weight
        if w.dtype != np.float32:
            raise DTypeError(f"quantize_model: layer {name} ({layer.name}) computes in {w.dtype}; int8 weights "
                             f"compute in float32 (convert the model to float32 first)")
        q = quantize_weight(w)
        layer.weight = q
        err = float(np.max(np.abs(w.to_dense() - q.to_dense()))) if w.size else 0.0
        layers[name] = {"format": q.spec, "float_format": w.spec, "max_abs_error": err,
                        "bytes_before": int(w.nbytes), "bytes_after": int(q.nbytes)}
    out.meta = dict(getattr(model, "meta", {}) or {})
    out.meta["quantization"] = {"scheme": SCHEME, "weight_dtype": "int8", "scale_dtype": "float32",
                                "range": [-127, 127], "layers": layers}
    return out.eval()


def _file_name(i: int, name: str) -> str:
    return f"{i:02d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_') or 'stage'}.safetensors"


def compression_summary(stages: dict, x_test, y_test, tmp_dir) -> dict:
    """Deep-Compression-style table: for each stage {name: model} (e.g. "dense fp32", "pruned",
    "pruned + int8"), test accuracy, in-memory bytes (`summarize` totals) and file bytes (the model
    saved with `save_model` into `tmp_dir`, where the files are left).

    Returns ``{name: {"accuracy", "bytes", "file_bytes", "path", "memory_ratio", "file_ratio"}}`` in
    the order given; the ratios are the first stage's bytes over this stage's (e.g. 12.3 = 12.3x
    smaller).

    >>> import tempfile, sparsenet as sn
    >>> from sparsenet.data import load_dataset
    >>> ds, m = load_dataset("digits"), sn.build_model("lenet300")
    >>> t = compression_summary({"fp32": m, "int8": quantize_model(m)}, ds.x_test, ds.y_test, tempfile.mkdtemp())
    >>> round(t["int8"]["memory_ratio"], 1)  # 4 bytes -> 1 per weight, plus scales and float32 biases
    3.8
    """
    from .io import save_model
    from .summary import summarize
    from .train import evaluate

    if not isinstance(stages, dict) or not stages:
        raise ConfigError("compression_summary: expected a non-empty dict {stage name: model}")
    os.makedirs(tmp_dir, exist_ok=True)
    rows, first = {}, None
    for i, (name, model) in enumerate(stages.items()):
        path = os.path.join(os.fspath(tmp_dir), _file_name(i, str(name)))
        save_model(model, path)
        row = {"accuracy": evaluate(model, x_test, y_test)["accuracy"],
               "bytes": int(summarize(model)["totals"]["total_bytes"]),
               "file_bytes": int(os.path.getsize(path)), "path": path}
        first = first or row
        row["memory_ratio"] = first["bytes"] / max(row["bytes"], 1)
        row["file_ratio"] = first["file_bytes"] / max(row["file_bytes"], 1)
        rows[name] = row
    return rows


def format_compression_table(table: dict) -> str:
    """The `compression_summary` result as aligned text, one line per stage."""
    width = max([len(str(n)) for n in table] + [5])
    lines = [f"{'stage':<{width}}  {'accuracy':>8}  {'bytes':>10}  {'ratio':>6}  {'file bytes':>10}  {'ratio':>6}"]
    for name, r in table.items():
        lines.append(f"{str(name):<{width}}  {r['accuracy']:>8.4f}  {r['bytes']:>10}  {r['memory_ratio']:>5.1f}x  "
                     f"{r['file_bytes']:>10}  {r['file_ratio']:>5.1f}x")
    return "\n".join(lines)
