"""Layer surgery: physically remove dead units so that a structurally pruned model is really smaller.

A *unit* is row r of a weighted layer's [out, fan_in] weight: a Linear neuron or a Conv2d filter. It
is *dead* when it outputs exactly zero in eval (and train) mode: its weight row is all zero, its bias
entry is 0 (or there is no bias) and every BatchNorm between it and the next weighted layer has
gamma = beta = 0 for it. `apply_masks(..., remove_units=True)` leaves emptied units in that state.

A dead unit is removed together with what it feeds: the producer loses the row (weight, bias and
their Parameter masks), a BatchNorm in between loses the channel (gamma, beta, running statistics),
and the consumer (the next weighted layer) loses the matching input columns:

- Linear consumer right after the unit (or after GlobalAvgPool2d): column r;
- Linear consumer after Flatten of [C, H, W]: columns r*H*W ... (r+1)*H*W - 1;
- Conv2d consumer: columns r*kh*kw ... (r+1)*kh*kw - 1 (channel-major im2col), in_channels - 1.

Grouped and depthwise convolutions are neither producers nor consumers here: a grouped filter's
input channels would have to go with it (dependency groups, issue 14).

Removal needs every layer between producer and consumer to map 0 to 0 channel by channel (see
`_ZERO_PRESERVING`, pooling, Flatten, and BatchNorm with one feature per unit); otherwise (Sigmoid,
Softmax, a BatchNorm1d over flattened maps, an unknown layer) and for the last weighted layer (whose
units are the model's outputs), the units stay. Layers are processed front to back, so a layer loses its input columns
before its own rows are examined: a unit fed only by removed units (and with zero bias) goes too.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import ConfigError, ShapeError, SparsenetError
from ..formats import BSR, CSR, Dense
from ..nn import (GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d,
                  HardSwish, Identity, LeakyReLU, Linear, MaxPool2d, Parameter, ReLU, ReLU6, Sequential, SiLU, Tanh)
from ..nn._weighted import WeightedLayer
from .trace import trace_shapes

__all__ = ["remove_dead_units"]

# Element-wise layers with f(0) == 0: they carry a dead unit's zeros unchanged (exact types only:
# a subclass may compute something else).
_ZERO_PRESERVING = (ReLU, LeakyReLU, Tanh, GELU, SiLU, ReLU6, HardSwish, Identity, Dropout)
_BATCHNORMS = (BatchNorm1d, BatchNorm2d)


def remove_dead_units(model: Sequential, *, input_shape=None) -> tuple[Sequential, dict]:
    """A copy of `model` without its dead units, and a report {layer name: {"removed", "kept", "before"}}.

    `model` is not modified. Every weighted layer (name = its index in the Sequential) appears in the
    report; "removed" lists its removed unit indices (in the layer's original numbering). Weights keep
    their format (Dense, CSR, BSR with the same blocksize) and Parameter masks are sliced along, so
    fine-tuning the smaller model cannot revive pruned weights. A layer always keeps at least one unit.
    `input_shape` (one sample, default ``model.input_shape``) is used to trace the H*W of a Flatten;
    without it H*W is read from the width of the layer after the Flatten.

    Cost: one forward pass of one sample (when an input shape is known) plus O(out * fan_in) per layer.

    >>> from sparsenet.nn import Linear, ReLU
    >>> m = Sequential(Linear(3, 4, seed=0), ReLU(), Linear(4, 2, seed=1))
    >>> m[0].weight.data[1] = 0; m[0].bias.data[1] = 0
    >>> small, report = remove_dead_units(m)
    >>> small[0].out_features, small[2].in_features, report["0"]["removed"]
    (3, 3, [1])
    """
    if not isinstance(model, Sequential):
        raise ConfigError(f"remove_dead_units: expected a Sequential model, found {type(model).__name__}")
    new = copy.deepcopy(model)
    shape = input_shape if input_shape is not None else new.input_shape
    shapes = trace_shapes(new, shape) if shape is not None else None
    report = {}
    for i, layer in enumerate(new.layers):
        if not isinstance(layer, WeightedLayer):
            continue
        before = layer.weight_shape[0]
        removed: list[int] = []
        chain = _chain(new, i, shapes)
        if chain is not None:
            bns, consumer, group = chain
            dead = _dead_units(layer, [new.layers[j] for j in bns])
            if dead.all():  # keep one unit: zero-width layers are of no use and break shapes
                dead[0] = False
            removed = np.flatnonzero(dead).tolist()
            if removed:
                keep = np.flatnonzero(~dead)
                _remove_rows(layer, keep)
                for j in bns:
                    _slice_batchnorm(new.layers[j], keep)
                _remove_input_units(new.layers[consumer], keep, before, group)
        report[str(i)] = {"removed": removed, "kept": before - len(removed), "before": before}
    return new, report


# -- analysis ---------------------------------------------------------------------------------------
def _chain(model: Sequential, i: int, shapes) -> tuple[list[int], int, int] | None:
    """(BatchNorm indices, consumer index, input columns per unit) for producer `i`, or None when a
    layer in between does not carry the units channel-wise from zero to zero or there is no consumer."""
    layers = model.layers
    if not isinstance(layers[i], (Linear, Conv2d)):  # surgery is written per layer type
        return None
    if getattr(layers[i], "groups", 1) != 1:  # a grouped filter's input channels go with it: issue 14's groups
        return None
    n = layers[i].weight_shape[0]
    spatial = isinstance(layers[i], Conv2d)  # units on axis 1 of [B, C, H, W]
    group = 1  # features per unit once flattened
    bns = []
    for j in range(i + 1, len(layers)):
        layer, kind = layers[j], type(layers[j])
        if isinstance(layer, WeightedLayer):
            if isinstance(layer, Conv2d) and spatial:
                if layer.groups != 1:  # removing its input channel removes its filters too: not per layer
                    return None
                kh, kw = layer.kernel_size
                return bns, j, kh * kw
            if isinstance(layer, Linear) and not spatial:
                if group is None:
                    group = _width(layer, n, "in_features")
                return (bns, j, group) if group is not None else None
            return None
        if kind in _ZERO_PRESERVING:
            continue
        if kind in _BATCHNORMS:
            if group is None:
                group = _width(layer, n, "num_features")
            if group != 1 or layer.num_features != n:  # not one feature per unit
                return None
            bns.append(j)
        elif kind in (MaxPool2d, AvgPool2d) and spatial:
            continue
        elif kind is GlobalAvgPool2d and spatial:
            spatial = False
        elif kind is Flatten:
            if spatial:
                group = int(np.prod(shapes[j][0][1:])) if shapes is not None else None
            spatial = False
        else:
            return None
    return None


def _width(layer, n: int, attr: str) -> int | None:
    """Features per unit after a Flatten, read from the next sized layer when no trace is available."""
    width = getattr(layer, attr)
    return width // n if width % n == 0 else None


def _dead_units(layer: WeightedLayer, bns) -> np.ndarray:
    """Bool [out]: units whose output (after the BatchNorms `bns`) is exactly zero."""
    dead = ~np.any(layer.weight.to_dense() != 0, axis=1)
    if layer.bias is not None:
        dead &= layer.bias.data == 0
    for bn in bns:
        dead &= (bn.weight.data == 0) & (bn.bias.data == 0)
    return dead


# -- application ------------------------------------------------------------------------------------
def _remove_rows(layer: WeightedLayer, keep: np.ndarray) -> None:
    """Keep only units `keep` of the producer: weight rows, bias and their masks."""
    _set_weight(layer, keep, None)
    if isinstance(layer, Conv2d):
        layer.out_channels = len(keep)
    else:
        layer.out_features = len(keep)
    if layer.bias is not None:
        layer.bias = _slice_param(layer.bias, keep)


def _remove_input_units(layer: WeightedLayer, keep: np.ndarray, n_units: int, group: int) -> None:
    """Keep only the input columns fed by units `keep` (each unit feeds `group` consecutive columns)."""
    fan_in = layer.weight_shape[1]
    if fan_in != n_units * group:
        raise ShapeError(f"{layer.name}: expected {n_units} x {group} = {n_units * group} input columns "
                         f"from the previous weighted layer, found {fan_in}")
    cols = (keep[:, None] * group + np.arange(group)[None, :]).ravel()
    _set_weight(layer, None, cols)
    if isinstance(layer, Conv2d):
        layer.in_channels = len(keep)
    else:
        layer.in_features = len(cols)


def _slice_param(p: Parameter, keep: np.ndarray) -> Parameter:
    out = Parameter(np.ascontiguousarray(p.data[keep]))
    if p.mask is not None:
        out.mask = np.ascontiguousarray(p.mask[keep])
    return out


def _slice_batchnorm(bn, keep: np.ndarray) -> None:
    bn.weight = _slice_param(bn.weight, keep)
    bn.bias = _slice_param(bn.bias, keep)
    bn.running_mean = np.ascontiguousarray(bn.running_mean[keep])
    bn.running_var = np.ascontiguousarray(bn.running_var[keep])
    bn.num_features = len(keep)


def _set_weight(layer: WeightedLayer, rows, cols) -> None:
    """Replace the weight by its [rows][:, cols] slice in the same format, with the Parameter mask
    sliced along (None = all rows / columns)."""
    w, pmask = layer.weight, layer.weight_param.mask
    stored = _stored(w)
    trainable = stored if pmask is None else stored & (w.with_data(pmask.astype(w.dtype)).to_dense() != 0)
    rows = slice(None) if rows is None else rows
    cols = slice(None) if cols is None else cols
    dense, stored, trainable = (np.ascontiguousarray(a[rows][:, cols]) for a in (w.to_dense(), stored, trainable))
    pinned = trainable.astype(w.dtype)  # 1 where training may change the value, 0 where pinned
    if isinstance(w, Dense):
        new, new_mask = Dense(dense), trainable
    elif isinstance(w, CSR):  # the stored pattern is kept, explicit zeros included
        new = CSR.from_mask(dense, stored, w.dtype)
        new_mask = CSR.from_mask(pinned, stored, w.dtype).data != 0
    elif isinstance(w, BSR):
        block_mask = BSR.from_dense(stored.astype(w.dtype), w.blocksize).block_mask()
        new = BSR.from_block_mask(dense, block_mask, w.blocksize, w.dtype)
        new_mask = BSR.from_block_mask(pinned, block_mask, w.blocksize, w.dtype).data != 0
    else:
        raise SparsenetError(f"{layer.name}: cannot slice a weight of format {type(w).__name__}")
    # Rows and columns removed from a BSR shift the block grid: a new block can span entries that were
    # not stored before (or overhang the edge); they hold zeros and are pinned to stay zero.
    if pmask is None and np.array_equal(_stored(new), stored):
        new_mask = None
    layer.weight_shape = tuple(int(s) for s in dense.shape)
    layer.weight = new
    layer.weight_param.mask = new_mask


def _stored(w) -> np.ndarray:
    """Bool [M, K]: the entries a format stores (everything for Dense)."""
    return np.ones(w.shape, dtype=bool) if isinstance(w, Dense) else w.mask()
