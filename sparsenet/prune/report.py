"""The pruning report: per layer, what pruning changed, measured in shapes, parameters, true bytes
and theoretical FLOPs; and the whole model's totals."""

from __future__ import annotations

import numpy as np

from ..nn._weighted import WeightedLayer
from ..nn.conv import Conv2d
from ..nn.embedding import Embedding
from ..summary import summarize
from .masks import named_layers
from .trace import layer_shapes

__all__ = ["pruning_report", "model_flops", "format_report", "format_groups"]


def _positions(layer, out_shape) -> int:
    """Output positions per sample a weight row is applied at: oh*ow for Conv2d, the leading axes for
    Linear (1 for [features], the tokens of [tokens, features]), 0 for an Embedding (a lookup)."""
    if isinstance(layer, Embedding):
        return 0
    if isinstance(layer, Conv2d):
        return int(np.prod(out_shape[1:]))
    return int(np.prod(out_shape[:-1]))


def model_flops(model, input_shape=None) -> dict:
    """Theoretical multiply-add FLOPs (2 per multiply-add) of the weighted layers (Linear, Conv2d;
    an Embedding's lookup counts none, nor do products of two activations) for one sample:
    {"dense": as if every weight were stored and nonzero, "sparse": counting nonzero weights only,
    "layers": {name: (dense, sparse)}}."""
    shapes = layer_shapes(model, input_shape)
    layers, dense, sparse = {}, 0, 0
    for name, layer in named_layers(model).items():
        if isinstance(layer, WeightedLayer):
            pos = _positions(layer, shapes[name][1])
            d = 2 * layer.weight.size * pos
            s = 2 * layer.weight.count_nonzero() * pos
            layers[name] = (d, s)
            dense += d
            sparse += s
    return {"dense": dense, "sparse": sparse, "layers": layers}


def pruning_report(before, after, input_shape=None) -> dict:
    """Compare a model (a Sequential or a Graph) before pruning with its pruned (and usually
    compiled) version.

    Layers are matched by position (pruning and compilation keep the layers and their names). Per weighted layer:
    shape before/after, parameters before (dense) and after (nonzero, biases included), sparsity
    relative to the original shape, format, true bytes before/after, FLOPs before/after. Totals
    cover every layer (BatchNorm included).
    """
    sb, sa = summarize(before), summarize(after)
    fb, fa = model_flops(before, input_shape), model_flops(after, input_shape)
    rows = []
    for i, ((name, lb), la) in enumerate(zip(named_layers(before).items(), named_layers(after).values())):
        if not isinstance(lb, WeightedLayer):
            continue
        rb, ra = sb["layers"][i], sa["layers"][i]
        rows.append({
            "name": name, "kind": type(lb).__name__,
            "shape_before": list(lb.weight.shape), "shape_after": list(la.weight.shape),
            "params_before": rb["params"], "params_after": ra["nnz"],
            "sparsity": 1.0 - la.weight.count_nonzero() / lb.weight.size if lb.weight.size else 0.0,
            "format": la.weight.spec,
            "bytes_before": rb["bytes"], "bytes_after": ra["bytes"],
            "flops_before": fb["layers"][name][0], "flops_after": fa["layers"][name][1],
        })
    tb, ta = sb["totals"], sa["totals"]
    totals = {
        "params_before": tb["params"], "params_after": ta["nonzero_params"],
        "stored_params_after": ta["stored_params"],
        "bytes_before": tb["total_bytes"], "bytes_after": ta["total_bytes"],
        "flops_before": fb["dense"], "flops_after": fa["sparse"],
    }
    totals["params_ratio"] = totals["params_after"] / max(totals["params_before"], 1)
    totals["bytes_ratio"] = totals["bytes_after"] / max(totals["bytes_before"], 1)
    totals["flops_speedup"] = totals["flops_before"] / max(totals["flops_after"], 1)
    return {"layers": rows, "totals": totals}


def format_report(report: dict) -> str:
    """The report as a fixed-width text table."""
    wn = max([6] + [len(str(r["name"])) + 2 for r in report["layers"]])  # a graph's node names can be long
    wk = max([8] + [len(r["kind"]) + 2 for r in report["layers"]])
    head = (f"{'layer':<{wn}}{'kind':<{wk}}{'shape before':>14}{'shape after':>14}{'params':>16}{'sparsity':>10}"
            f"{'format':>9}{'bytes':>20}{'MFLOPs':>16}")
    lines = [head]
    for r in report["layers"]:
        lines.append(
            f"{r['name']:<{wn}}{r['kind']:<{wk}}{'x'.join(map(str, r['shape_before'])):>14}"
            f"{'x'.join(map(str, r['shape_after'])):>14}{r['params_before']:>8}->{r['params_after']:<6}"
            f"{r['sparsity']:>10.3f}{r['format']:>9}{r['bytes_before']:>10}->{r['bytes_after']:<8}"
            f"{r['flops_before'] / 1e6:>7.3f}->{r['flops_after'] / 1e6:<7.3f}")
    t = report["totals"]
    lines.append(f"total: params {t['params_before']} -> {t['params_after']} ({t['params_ratio']:.1%}), "
                 f"bytes {t['bytes_before']} -> {t['bytes_after']} ({t['bytes_ratio']:.1%}), "
                 f"FLOPs {t['flops_before']} -> {t['flops_after']} ({t['flops_speedup']:.2f}x fewer)")
    return "\n".join(lines)


def format_groups(removed: dict) -> str:
    """The units that structured pruning removed (``meta["compile"]["removed_units"]``) as text: per
    dependency group of a Graph, its kind, nodes and channels before -> after; per layer of a
    Sequential, its units before -> after. Empty when nothing was removed."""
    rows = []
    for name, r in (removed or {}).items():
        after = r["after"] if "after" in r else r.get("kept")
        if after is None or after == r["before"]:
            continue
        nodes = ", ".join(r.get("nodes", [name]))
        rows.append((str(name), r.get("kind", "units"), f"{r['before']} -> {after}", nodes))
    if not rows:
        return ""
    wn = max(8, *(len(r[0]) + 2 for r in rows))
    lines = [f"{'group':<{wn}}{'kind':<9}{'channels':>12}  nodes"]
    lines += [f"{n:<{wn}}{k:<9}{c:>12}  {nodes[:300]}" for n, k, c, nodes in rows]
    return "\n".join(lines)
