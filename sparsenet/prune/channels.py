"""The channels of dependency groups (`sparsenet.prune.groups`): masking them, removing them, scoring
and selecting them.

Removal (`remove_channels`) is exact: a class whose sources are zero (its weight rows and bias, its
BatchNorm's gamma and beta, an Embedding's columns, a `Shift`'s entries) carries zeros everywhere,
so dropping it, with the columns that read it, changes no output beyond float rounding. Masking
(`mask_classes`) zeroes and pins all of a class's places, so the masked model computes what the
smaller one does; `prune_groups` is one importance -> selection -> masking pass over the groups of
the kinds a granularity prunes.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import ConfigError, SparsenetError
from ..nn import Conv2d, Graph, Linear, Parameter, Reshape, Shift, Slice
from .groups import DependencyAnalysis, analyze

__all__ = ["dead_classes", "remove_channels", "remove_dead_channels", "mask_classes", "REDUCTIONS", "scoreable",
           "group_scores", "prune_groups", "group_report"]


# -- which classes are dead -------------------------------------------------------------------------
def dead_classes(analysis: DependencyAnalysis, groups=None) -> set[int]:
    """Classes whose sources are all zero (weight rows and bias, table columns, BatchNorm gamma and
    beta, Shift entries, a depthwise filter's bias) and that are not blocked; each group keeps at
    least one channel."""
    graph = analysis.graph
    ops = {n.name: n.op for n in graph.nodes}
    zero: dict[int, bool] = {}
    for m in analysis.members:
        op = ops[m.node]
        roots = analysis.roots(m.atoms)
        if m.kind == "rows":
            w = op.weight.to_dense()
            z = ~np.any(w != 0, axis=1)
            if op.bias is not None:
                z &= op.bias.data == 0
        elif m.kind == "table":
            z = ~np.any(op.weight.to_dense() != 0, axis=0)
        elif m.kind == "bn":
            z = (op.weight.data == 0) & (op.bias.data == 0)
        elif m.kind == "depthwise":
            z = op.bias.data == 0 if op.bias is not None else np.ones(len(roots), bool)
        elif m.kind == "value" and type(op) is Shift:
            v = np.moveaxis(np.asarray(op.array), m.axis, 0).reshape(len(roots), -1) if op.array.ndim else None
            z = ~np.any(v != 0, axis=1)
        else:
            continue
        for r, zz in zip(roots.tolist(), z.tolist()):
            if r >= 0:
                zero[r] = zero.get(r, True) and bool(zz)
    sources = set()
    for m in analysis.members:
        if m.kind in ("rows", "table"):
            sources.update(analysis.roots(m.atoms).tolist())
    dead = {r for r, z in zero.items() if z and r in sources and r not in analysis.blocked}
    for g in groups if groups is not None else analysis.groups():
        if g.classes and all(c in dead for c in g.classes):
            dead.discard(g.classes[0])  # a group keeps at least one channel
    return dead


# -- removal ----------------------------------------------------------------------------------------
def _kept_along(roots: np.ndarray, removed: set, axis: int) -> np.ndarray:
    """Bool per position of `axis`: False where every class of that slice is removed."""
    gone = np.isin(roots, list(removed)) if removed else np.zeros(roots.shape, bool)
    other = tuple(a for a in range(roots.ndim) if a != axis)
    return ~gone.all(axis=other)


def remove_channels(model, removed, analysis: DependencyAnalysis | None = None):
    """A copy of `model` (a Graph) without the classes `removed` (a set of class roots of
    `analysis`, by default the analysis of `model`), and {group name: {"kind", "nodes", "before",
    "after", "removed": [channel indices]}} for the groups that lost channels. `model` is untouched.
    Blocked classes in `removed` raise a `ConfigError` naming why."""
    from .surgery import _remove_rows, _set_weight, _slice_batchnorm

    if not isinstance(model, Graph):
        raise ConfigError(f"remove_channels: expected a Graph, found {type(model).__name__}")
    analysis = analysis if analysis is not None else analyze(model)
    removed = {int(r) for r in removed}
    for r in removed:
        if r in analysis.blocked:
            raise ConfigError(f"cannot remove a channel: {analysis.blocked[r]}")
    groups = analysis.groups()
    report = {}
    for g in groups:
        gone = [c for c, r in enumerate(g.classes) if r in removed]
        if len(gone) == g.size:
            raise ConfigError(f"group {g.name!r}: removing all its {g.size} channels would leave no value")
        if gone:
            report[g.name] = {"kind": g.kind, "nodes": g.nodes, "before": g.size, "after": g.size - len(gone),
                              "removed": gone}
    if not removed:
        return copy.deepcopy(model), report
    new = copy.deepcopy(model)
    ops = {n.name: n.op for n in new.nodes}
    old = {n.name: n for n in model.nodes}
    for m in analysis.members:
        op = ops[m.node]
        keep = ~np.isin(analysis.roots(m.atoms), list(removed))
        if keep.all():
            continue
        idx = np.flatnonzero(keep)
        if m.kind == "rows":
            _remove_rows(op, idx)
        elif m.kind == "columns":
            _set_weight(op, None, idx)
            if isinstance(op, Conv2d):  # the columns of one group's inputs, kh * kw per channel
                op.in_channels = len(idx) // (op.kernel_size[0] * op.kernel_size[1]) * op.groups
            else:
                op.in_features = len(idx)
        elif m.kind == "depthwise":
            cin_keep = len(idx) // (op.out_channels // op.in_channels)
            _remove_rows(op, idx)
            op.in_channels = op.groups = cin_keep
        elif m.kind == "bn":
            _slice_batchnorm(op, idx)
        elif m.kind == "table":
            _set_weight(op, None, idx)
            op.embedding_dim = len(idx)
        elif m.kind == "value":
            if op.trainable:
                p = op.value
                q = Parameter(np.ascontiguousarray(np.take(p.data, idx, axis=m.axis)))
                if p.mask is not None:
                    q.mask = np.ascontiguousarray(np.take(p.mask, idx, axis=m.axis))
                op.value = q
            else:
                op.value = np.ascontiguousarray(np.take(op.value, idx, axis=m.axis))
        elif m.kind == "norm":  # pragma: no cover - LayerNorm's classes are blocked
            raise SparsenetError(f"node {m.node!r}: a LayerNorm's features cannot be removed")
    for name, op in ops.items():  # ops whose attributes hold sizes
        node = old[name]
        if isinstance(op, Reshape):
            k = analysis.roots(analysis.keys[name])
            shape = list(op.shape)
            for a, s in enumerate(shape):
                if s != -1 and a < k.ndim and k.shape[a] > 1:
                    shape[a] = int(_kept_along(k, removed, a).sum())
            op.shape = tuple(shape)
        elif isinstance(op, Slice):
            src = node.inputs[0]
            k = np.broadcast_to(analysis.roots(analysis.keys[src]), analysis.shapes[src])
            axis = op.axis % k.ndim
            if k.shape[axis] > 1:
                kept = _kept_along(k, removed, axis)
                lo, hi, _ = slice(op.start, op.stop).indices(len(kept))
                op.start, op.stop = int(kept[:lo].sum()), int(kept[:hi].sum())
    g = Graph(dict(new.input_shapes), [(n.name, n.op, list(n.inputs)) for n in new.nodes], list(new.outputs),
              input_dtypes=dict(new.input_dtypes) or None)
    g.meta = copy.deepcopy(model.meta)
    g.train(model.training)
    return g, report


# -- masking ----------------------------------------------------------------------------------------
def mask_classes(model, classes, analysis: DependencyAnalysis | None = None) -> dict[str, np.ndarray]:
    """Zero and pin (Parameter masks) everything of `classes` in `model` (a Graph, or a Sequential
    seen as one): weight rows and bias, readers' weight columns, depthwise filters, BatchNorm gamma and
    beta, Embedding columns, Shift and Scale entries. The model then computes exactly what the model
    without those channels computes (`remove_channels`). Returns the weighted layers' new masks."""
    from .masks import apply_masks, get_layer, layer_mask

    analysis = analysis if analysis is not None else analyze(model)
    classes = {int(c) for c in classes}
    for c in classes:
        if c in analysis.blocked:
            raise ConfigError(f"cannot prune a channel: {analysis.blocked[c]}")
    masks: dict[str, np.ndarray] = {}
    for m in analysis.members:
        gone = np.isin(analysis.roots(m.atoms), list(classes))
        if not gone.any():
            continue
        op = get_layer(model, m.node)
        if m.kind in ("rows", "columns", "depthwise", "table"):
            mask = masks.get(m.node)
            mask = layer_mask(op) if mask is None else mask
            if m.kind in ("rows", "depthwise"):
                mask[gone] = False
            else:
                mask[:, gone] = False
            masks[m.node] = mask
            if m.kind in ("rows", "depthwise") and op.bias is not None:
                _pin(op.bias, ~gone)
        elif m.kind == "bn":
            _pin(op.weight, ~gone)
            _pin(op.bias, ~gone)
        elif m.kind == "value":
            keep = np.moveaxis(np.broadcast_to(~gone, np.moveaxis(np.zeros(op.array.shape), m.axis, -1).shape),
                               -1, m.axis)
            if op.trainable:
                _pin(op.value, keep)
            else:
                op.value = op.value * keep
    apply_masks(model, masks)
    return masks


def _pin(p: Parameter, keep: np.ndarray) -> None:
    """Zero `p` where `keep` is False and pin it there (with its current mask)."""
    keep = np.asarray(keep, bool) if p.mask is None else p.mask & keep
    p.data *= keep.astype(p.data.dtype)
    p.mask = keep.copy()


# -- pruning by groups ------------------------------------------------------------------------------
REDUCTIONS = ("mean", "sum", "max")


def scoreable(group) -> bool:
    """Whether a criterion's weight scores reach the group: a Linear or convolution among its members
    (an Embedding's dimensions that nothing reads have none)."""
    return any(kind in ("rows", "columns", "depthwise") for _, kind, _ in group.members)


def group_scores(model, importance, groups, analysis, data=None, reduce: str = "mean") -> dict[str, np.ndarray]:
    """{group name: float64 [channels]}: each channel's importance, its members' scores reduced.

    A member's score for a channel is the mean of the criterion's scores over that channel's entries
    in a Linear's or convolution's weight (its rows, or the columns that read it); the channel's score
    is the `reduce` ("mean", "sum" or "max") of its members' scores. A criterion may score channels
    itself (`group_scores`, as network slimming does with BatchNorm scales). Groups that are not
    `scoreable` are left out."""
    from .masks import get_layer

    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown group reduction {reduce!r}: expected one of {REDUCTIONS}")
    if hasattr(importance, "group_scores"):
        return {g.name: importance.group_scores(model, g) for g in groups}
    groups = [g for g in groups if scoreable(g)]
    layers = {}
    for g in groups:
        for node, kind, _ in g.members:
            op = get_layer(model, node)
            if kind in ("rows", "columns", "depthwise") and isinstance(op, (Linear, Conv2d)):
                layers[node] = op
    scores = importance(model, layers, data)
    out = {}
    for g in groups:
        per = []
        for node, kind, index in g.members:
            if node not in scores or kind not in ("rows", "columns", "depthwise"):
                continue
            s = np.asarray(scores[node], np.float64)
            s = s.mean(axis=1) if kind != "columns" else s.mean(axis=0)
            per.append([s[i].mean() for i in index])
        per = np.array(per)
        out[g.name] = {"mean": per.mean, "sum": per.sum, "max": per.max}[reduce](axis=0)
    return out


def prune_groups(model, importance, granularity, sparsity, *, scope="layer", normalize="none", exclude=(),
                 data=None, reduce="mean") -> tuple[dict, dict]:
    """One importance -> selection -> masking pass over the dependency groups of `model` whose kind
    `granularity` prunes (`granularity.kinds`): `sparsity` is the fraction of each group's channels
    (scope "layer"; a dict {group name: fraction} for per-group targets) or of all of them ("global",
    scores normalised per group as `normalize` says). Channels already pruned stay pruned; every group
    keeps at least one channel. A group whose source layer (the Linear, convolution or Embedding that
    makes its channels) is in `exclude` is left alone. Returns (the weighted layers' masks,
    {group name: {"kind", "nodes", "before", "after"}})."""
    from .granularity import Unstructured
    from .masks import prunable_layers
    from .selection import select_masks

    analysis = analyze(model)
    excluded = set(prunable_layers(model)) - set(prunable_layers(model, exclude))
    every = analysis.groups()
    candidates = [g for g in every if g.kind in granularity.kinds]
    groups = [g for g in candidates if g.prunable and (scoreable(g) or hasattr(importance, "group_scores"))
              and not any(node in excluded for node, kind, _ in g.members if kind in ("rows", "table"))]
    if not groups:
        why = "; ".join(f"{g.name}: {g.reason}" for g in candidates if g.reason)[:600]
        raise ConfigError(f"granularity {granularity.name!r}: no group of kind {'/'.join(granularity.kinds)} can be "
                          f"pruned in this model (kinds found: {sorted({g.kind for g in every})})"
                          + (f"; blocked: {why}" if why else ""))
    if isinstance(sparsity, dict):
        unknown = set(sparsity) - {g.name for g in groups}
        if unknown:
            raise ConfigError(f"sparsity targets name {sorted(unknown)}, which are not prunable groups of kind "
                              f"{'/'.join(granularity.kinds)}; groups: {[g.name for g in groups]}"[:600])
        groups = [g for g in groups if g.name in sparsity]
    dead = dead_classes(analysis, every)
    raw = group_scores(model, importance, groups, analysis, data, reduce)
    free = {g.name: [c for c, b in enumerate(g.blocked) if b is None] for g in groups}
    scores = {n: raw[n][idx][:, None] for n, idx in free.items()}
    prior = {g.name: np.array([g.classes[c] not in dead for c in free[g.name]])[:, None] for g in groups}
    keep = select_masks(scores, Unstructured(), sparsity, scope=scope, normalize=normalize, prior=prior)
    gone, report = set(), {}
    for g in groups:
        pruned = [free[g.name][i] for i in np.flatnonzero(~keep[g.name][:, 0])]
        gone.update(g.classes[c] for c in pruned)
        report[g.name] = {"kind": g.kind, "nodes": g.nodes, "before": g.size, "after": g.size - len(pruned)}
    masks = mask_classes(model, gone, analysis)
    return masks, report


def group_report(model, kinds=None) -> dict:
    """{group name: {"kind", "nodes", "before", "after"}} for the prunable groups of `model` (of
    `kinds`, default all): channels before, and after removing the dead ones."""
    analysis = analyze(model)
    groups = analysis.groups()
    dead = dead_classes(analysis, groups)
    return {g.name: {"kind": g.kind, "nodes": g.nodes, "before": g.size,
                     "after": g.size - sum(c in dead for c in g.classes)}
            for g in groups if g.prunable and (kinds is None or g.kind in kinds)}


def remove_dead_channels(model):
    """A copy of `model` (a Graph) without its dead channels (`dead_classes`), and the report of
    `remove_channels` ({group name: {"kind", "nodes", "before", "after", "removed"}}, channel indices
    in the original numbering). Repeated until nothing more dies: a channel whose only non-zero
    weights read removed channels (and whose bias is zero) goes in the next pass. `model` is not
    modified."""
    analysis = analyze(model)
    dead = dead_classes(analysis)
    current, report = remove_channels(model, dead, analysis)
    if not dead:
        return current, report
    while True:
        analysis = analyze(current)
        dead = dead_classes(analysis)
        if not dead:
            return current, report
        current, more = remove_channels(current, dead, analysis)
        for name, r in more.items():  # renumber into the original channels
            first = report.get(name)
            if first is None:
                report[name] = r
                continue
            alive = [c for c in range(first["before"]) if c not in set(first["removed"])]
            first["removed"] = sorted(first["removed"] + [alive[c] for c in r["removed"]])
            first["after"] = first["before"] - len(first["removed"])
