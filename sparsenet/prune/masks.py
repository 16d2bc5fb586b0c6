"""Masks: the hand-over between selection (which weights go) and application (what the model becomes).

A mask is a boolean array of a layer's logical weight shape [out, fan_in]: True = kept. Applying
masks keeps the weight Dense, zeroes the pruned entries and pins them with ``Parameter.mask`` so that
fine-tuning cannot bring them back; `compiled` later stores each layer in a real format, and
structured pruning physically removes whole units.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError
from ..formats import Dense
from ..nn import BatchNorm1d, BatchNorm2d, Graph, Sequential
from ..nn._weighted import WeightedLayer

__all__ = ["prunable_layers", "layer_mask", "apply_masks", "unit_followers", "sparsity_of", "get_layer",
           "set_layer", "require_chain", "named_layers"]


def named_layers(model) -> dict:
    """Every layer of `model` by name: its index in a Sequential, its node name in a Graph."""
    if isinstance(model, Sequential):
        return {str(i): l for i, l in enumerate(model.layers)}
    if isinstance(model, Graph):
        return {n.name: n.op for n in model.nodes}
    raise ConfigError(f"pruning expects a Sequential or a Graph, found {type(model).__name__}")


def get_layer(model, name: str):
    """The layer called `name` in `model` (see `prunable_layers` for the names; an int is taken as
    a Sequential's index)."""
    name = str(name)
    layers = named_layers(model)
    if name not in layers:
        raise ConfigError(f"no layer {name!r}; expected one of {list(layers)}"[:400])
    return layers[name]


def set_layer(model, name: str, layer) -> None:
    """Put `layer` in the place of the layer called `name` (a Sequential's index, a Graph's node)."""
    name = str(name)
    get_layer(model, name)
    if isinstance(model, Graph):
        model.replace(name, layer)
    else:
        model.layers[int(name)] = layer


def require_chain(model, what: str) -> None:
    """For what follows a unit along a chain only (lottery tickets and sensitivity scans of whole
    units, `unit_followers`): on a Graph, a `ConfigError` says so (`prune` and `compiled` remove a
    Graph's units through its dependency groups, `sparsenet.prune.groups`)."""
    if isinstance(model, Graph):
        raise ConfigError(f"{what}: whole units (neuron / filter granularity) are not supported on a Graph yet "
                          f"here (`prune` and `compiled` remove a Graph's units by its dependency groups); use "
                          f"an unstructured, block or N:M granularity, or a Sequential")


def prunable_layers(model, exclude=()) -> dict[str, WeightedLayer]:
    """Weighted layers (Linear, Conv2d) by name, minus `exclude`: a Sequential's layers by index
    (``"0"``, ``"1"``...), a Graph's by node name, in order.

    `exclude` holds names or the keywords 'first' / 'last' (the first / last weighted layer).
    """
    layers = {n: l for n, l in named_layers(model).items() if isinstance(l, WeightedLayer)}
    names = list(layers)
    drop = set()
    for e in exclude or ():
        e = str(e)
        if e == "last" and names:
            drop.add(names[-1])
        elif e == "first" and names:
            drop.add(names[0])
        elif e in layers:
            drop.add(e)
        else:
            raise ConfigError(f"exclude: {e!r} is not a weighted layer; expected one of {names} or 'first'/'last'")
    return {n: l for n, l in layers.items() if n not in drop}


def layer_mask(layer: WeightedLayer) -> np.ndarray:
    """The layer's current pattern as a [out, fan_in] bool array: its Parameter mask if set, else the
    stored entries of a sparse format, else everything."""
    mask = layer.weight_param.mask
    if mask is not None:
        if mask.shape == tuple(layer.weight.shape) and isinstance(layer.weight, Dense):
            return mask.copy()
        # a mask shaped like a sparse format's values (e.g. partly kept BSR blocks)
        return layer.weight.with_data(mask.astype(layer.dtype)).to_dense() != 0
    if hasattr(layer.weight, "mask"):
        return layer.weight.mask()
    return np.ones(layer.weight.shape, dtype=bool)


def sparsity_of(mask: np.ndarray) -> float:
    return 1.0 - float(mask.sum()) / mask.size if mask.size else 0.0


def unit_followers(model: Sequential, name: str) -> list:
    """Layers after weighted layer `name` that carry its output units unchanged until the next
    weighted layer: BatchNorm (whose per-unit parameters must be pruned with the unit) and the
    element-wise / pooling / flatten layers in between. The consumer is the next WeightedLayer."""
    require_chain(model, "unit_followers")
    i = int(name)
    out = []
    for layer in model.layers[i + 1:]:
        if isinstance(layer, WeightedLayer):
            break
        out.append(layer)
    return out


def apply_masks(model: Sequential, masks: dict[str, np.ndarray], *, remove_units: bool = False) -> None:
    """Zero pruned weights in place and pin them (weights become Dense with a Parameter mask).

    With `remove_units` (structured pruning), rows that a mask empties entirely are whole units: their
    bias and the gamma/beta of a BatchNorm that follows are zeroed and pinned too, so the unit outputs
    exactly zero and can be removed physically later without changing what the model computes.
    """
    for name, mask in masks.items():
        layer = get_layer(model, name)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(layer.weight.shape):
            raise ShapeError(f"mask for layer {name}: expected shape {layer.weight.shape}, found {mask.shape}")
        if isinstance(layer.weight, Dense):
            # in place: an optimiser that holds this Parameter (pruning during training) keeps working
            layer.weight.data *= mask
        else:
            layer.weight = Dense(layer.weight.to_dense() * mask)
        layer.weight_param.mask = mask.copy()
        dead = ~mask.any(axis=1)
        if not remove_units or not dead.any():
            continue
        alive = (~dead).astype(layer.dtype)
        if layer.bias is not None:
            layer.bias.data *= alive
            layer.bias.mask = alive.astype(bool)
        for follower in unit_followers(model, name):
            if isinstance(follower, (BatchNorm1d, BatchNorm2d)):
                if follower.num_features != len(alive):  # e.g. BatchNorm1d after a Flatten: not per unit
                    break
                for p in (follower.weight, follower.bias):
                    p.data *= alive.astype(p.data.dtype)
                    p.mask = alive.astype(bool)
                break
