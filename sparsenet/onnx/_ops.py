"""ONNX ops -> sparsenet layers: one small handler per op, all working on one `State`.

A handler gets (state, node, attributes, data slot, inputs) and either emits a layer, folds the op
into the Linear/Conv2d before it (BatchNormalization, a bias Add, a per-channel Mul...), or records
a layout step (`_layout`) that a later op resolves.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..errors import SparsenetError
from ..formats import CSR, Dense
from ._layout import LAYOUT_OPS, reshape_to, show
from ._proto import FLOAT_TYPES, OnnxImportError
from ._state import (BATCH_PLACEHOLDER, State, as_floats, attr_ints, check_attrs, const_input, const_ints, need_rank, one_int,
                     out_size, per_channel, spatial_pads, symmetric_pad)

__all__ = ["OPS"]


# -- element-wise ----------------------------------------------------------------------------------
def _simple(cls):
    def handler(st, node, attrs, slot, inputs):
        check_attrs(st, attrs)
        st.emit(cls())
    return handler


def _leaky_relu(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "alpha")
    st.emit(nn.LeakyReLU(float(attrs.get("alpha", 0.01))))


def _gelu(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "approximate")
    form = attrs.get("approximate", "none")
    if form not in ("none", "tanh"):
        st.fail(f"approximate={form!r} is not supported (expected 'none' or 'tanh')")
    st.emit(nn.GELU(form))


def _swish(st, node, attrs, slot, inputs):
    """Swish (opset 24), and what `_fuse` makes of ``x * sigmoid(x)``: a SiLU."""
    check_attrs(st, attrs, "alpha")
    if float(attrs.get("alpha", 1.0)) != 1.0:
        st.fail(f"alpha={attrs['alpha']} is not supported (SiLU is Swish with alpha 1)")
    st.emit(nn.SiLU())


def _clip(st, node, attrs, slot, inputs):
    """Clip: bounds from attributes before opset 11, from constant inputs after; (0, inf) is a ReLU,
    (0, 6) a ReLU6."""
    check_attrs(st, attrs, "min", "max")
    if slot != 0:
        st.fail("the data must be the first input")
    bounds = [attrs.get("min", -np.inf), attrs.get("max", np.inf)]
    for k in (1, 2):
        if len(inputs) > k and inputs[k] is not None:
            v = np.asarray(inputs[k])
            if v.size != 1 or v.dtype.kind != "f":
                st.fail(f"input {k} ({('min', 'max')[k - 1]}): expected a float scalar, found "
                        f"{v.dtype} of shape {v.shape}")
            bounds[k - 1] = float(v.reshape(()))
    low, high = bounds
    if low == 0 and high == np.inf:
        st.emit(nn.ReLU())
    elif low == 0 and high == 6:
        st.emit(nn.ReLU6())
    elif np.isfinite(low) and np.isfinite(high) and low < high:
        st.emit(nn.Clip(low, high))
    else:
        st.fail(f"min={low}, max={high} is not supported (expected finite min < max, or min 0 without max)")


def _hardsigmoid(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "alpha", "beta")
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6):  # PyTorch's 1/6, written as a float32
        alpha = 1 / 6
    try:
        st.emit(nn.HardSigmoid(alpha, beta))
    except SparsenetError as e:
        st.fail(str(e))


def _dropout(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "seed", "ratio", "is_test")
    ratio = attrs.get("ratio", 0.5)
    if len(inputs) > 1 and inputs[1] is not None:
        ratio = as_floats(st, np.asarray(inputs[1]), "ratio", any_float=True)
        if ratio.shape != ():
            st.fail(f"ratio: expected a scalar, found shape {ratio.shape}")
    if len(inputs) > 2 and inputs[2] is not None:
        mode = np.asarray(inputs[2])
        if mode.dtype != np.bool_ or mode.shape != ():
            st.fail(f"training_mode: expected a bool scalar, found element type {mode.dtype} of shape {mode.shape}")
        if bool(mode):
            st.fail("training_mode=True is not supported (export the model in eval mode)")
    p = float(str(np.asarray(ratio, dtype=np.float32)))  # float32 in the graph: 0.25, not 0.2500000x
    if not 0 <= p < 1:
        st.fail(f"ratio={p} is not supported (expected 0 <= ratio < 1)")
    st.emit(nn.Dropout(p))


def _identity(st, node, attrs, slot, inputs):
    check_attrs(st, attrs)


def _cast(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "to", "saturate", "round_mode")
    if st.integer:
        if attrs.get("to") not in (6, 7):  # INT32, INT64
            st.fail(f"a Cast of integer indices to element type {attrs.get('to')} is not supported")
        return
    if FLOAT_TYPES.get(attrs.get("to")) != st.dtype:
        st.fail(f"a Cast to element type {attrs.get('to')} is not supported (the model computes in {st.dtype})")


ELEMENTWISE = {"Relu": _simple(nn.ReLU), "Sigmoid": _simple(nn.Sigmoid), "Tanh": _simple(nn.Tanh),
               "LeakyRelu": _leaky_relu, "Gelu": _gelu, "Swish": _swish, "Clip": _clip,
               "HardSigmoid": _hardsigmoid, "HardSwish": _simple(nn.HardSwish),
               "Dropout": _dropout, "Identity": _identity, "Cast": _cast}


def _softmax(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "axis")
    st.settle()
    r = len(st.shape) + 1
    axis = int(attrs.get("axis", -1 if st.graph.opset >= 13 else 1))
    if not -r <= axis < r:
        st.fail(f"axis={axis} is out of range for a {r}-D input")
    axis %= r
    if st.graph.opset < 13 and r != 2:
        st.fail("Softmax before opset 13 works on the input coerced to 2-D; only 2-D inputs are supported")
    if (axis == 0 and st.batch_first) or _holds_batch(st, st.full[axis]):
        st.fail("a Softmax over the batch axis is not supported")
    st.emit(nn.Softmax(-1 if axis == r - 1 else axis))


def _holds_batch(st, size) -> bool:
    """Whether an evaluated size is (a multiple of) the placeholder batch."""
    return st.batch == BATCH_PLACEHOLDER and size is not None and size % st.batch == 0


# -- weighted layers and what folds into them ------------------------------------------------------
def _linear(st: State, w, pattern, bias) -> None:
    """A [out, in] float64 weight applied to [N, in] data (or to every row of [..., in]): a Linear
    (pending folds)."""
    st.settle(keep_perm=True)
    if len(st.shape) != 1:
        if st.col_perm is not None or st.shape[-1] is None or st.shape[-1] != w.shape[1]:
            st.fail(f"expected a 2-D input [N, features] (or [..., {w.shape[1]}]), found "
                    f"[N, {', '.join(map(str, st.shape))}]; flatten it first")
        st.open_affine(w, pattern, bias)
        st.affine.rows = True
        st.shape = (*st.shape[:-1], w.shape[0])
        return
    if st.col_perm is not None:  # the data was flattened in NHWC order: reorder the weight's columns
        perm, origin = st.col_perm
        if perm.size != w.shape[1]:
            st.fail(f"expects {w.shape[1]} input features, but the NHWC flatten of {origin} gives {perm.size}")
        w = w[:, perm]
        pattern = None if pattern is None else pattern[:, perm]
        st.col_perm = None
    if st.shape[0] is not None and st.shape[0] != w.shape[1]:
        st.fail(f"expects {w.shape[1]} input features, found {st.shape[0]}")
    st.open_affine(w, pattern, bias)
    st.shape = (w.shape[0],)


def _gemm(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "alpha", "beta", "transA", "transB", "broadcast")
    if slot != 0:
        st.fail("the data must be input A (a constant times the data is not a layer)")
    if attrs.get("transA", 0):
        st.fail("transA=1 is not supported: the data must be [N, features]")
    b = as_floats(st, const_input(st, inputs, 1, "weight B", ndim=2), "weight B")
    pattern = st.graph.patterns.get(node.input[1])
    trans_b = bool(attrs.get("transB", 0))
    w = b if trans_b else b.T
    if pattern is not None and not trans_b:
        pattern = pattern.T
    w = float(attrs.get("alpha", 1.0)) * w
    bias = None
    if len(inputs) > 2 and inputs[2] is not None:
        bias = float(attrs.get("beta", 1.0)) * per_channel(st, inputs[2], w.shape[0], 2, "bias C")
    _linear(st, np.ascontiguousarray(w), pattern, bias)


def _matmul(st, node, attrs, slot, inputs):
    check_attrs(st, attrs)
    if slot != 0:
        st.fail("the data must be the first input (a constant times the data is not a layer)")
    b = as_floats(st, const_input(st, inputs, 1, "weight", ndim=2), "weight")
    pattern = st.graph.patterns.get(node.input[1])
    _linear(st, np.ascontiguousarray(b.T), None if pattern is None else pattern.T, None)


def _conv(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
    st.settle()
    if slot != 0:
        st.fail("the data must be input X")
    w = as_floats(st, const_input(st, inputs, 1, "weight W"), "weight W")
    if w.ndim != 4:
        st.fail(f"only 2-D convolutions are supported (weight of shape {w.shape})")
    need_rank(st, 4, "[N, C, H, W]")
    out, cin_g, kh, kw = w.shape
    group = attr_ints(st, attrs, "group", 1, low=1, n=1)[0]
    if out % group:
        st.fail(f"group={group} does not divide the {out} output channels of the weight {w.shape}")
    cin = cin_g * group
    dilation = one_int(st, attr_ints(st, attrs, "dilations", [1, 1], low=1, n=2), "dilations")
    kernel = attr_ints(st, attrs, "kernel_shape", [kh, kw], low=1, n=2)
    if tuple(kernel) != (kh, kw):
        st.fail(f"kernel_shape={kernel} does not match the weight {w.shape}")
    if st.shape[0] is not None and st.shape[0] != cin:
        st.fail(f"expects {cin} input channels ({cin_g} per group, group={group}), found {st.shape[0]}")
    stride = one_int(st, attr_ints(st, attrs, "strides", [1, 1], low=1, n=2), "strides")
    extent = (dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    pads = spatial_pads(st, attrs, extent, (stride, stride))
    pad = pads[0]
    if len(set(pads)) != 1:  # e.g. Keras's "same" at stride 2 (tf2onnx: [0, 0, 1, 1]): a Pad2d first
        st.settle()
        top, left, bottom, right = pads
        st.emit(nn.Pad2d((top, bottom, left, right), 0.0))
        c, h, w_ = st.shape
        st.shape = (c, None if h is None else h + top + bottom, None if w_ is None else w_ + left + right)
        pad = 0
    bias = None
    if len(inputs) > 2 and inputs[2] is not None:
        bias = as_floats(st, const_input(st, inputs, 2, "bias B", ndim=1), "bias B")
        if bias.shape != (out,):
            st.fail(f"expected a bias of shape ({out},), found {bias.shape}")
    pattern = st.graph.patterns.get(node.input[1])
    conv = {"in_channels": cin, "kernel_size": (kh, kw), "stride": stride, "padding": pad, "groups": group,
            "dilation": dilation}
    st.open_affine(w.reshape(out, -1), None if pattern is None else pattern.reshape(out, -1), bias, conv)
    st.shape = (out, out_size(st, st.shape[1], extent[0], stride, pad), out_size(st, st.shape[2], extent[1], stride, pad))


def _per_unit(st, target, c, op):
    """The constant as one value per output unit of `target` ([out]), or None when it is not."""
    out = target.weight.shape[0]
    c = np.asarray(c)
    if getattr(target, "rows", False):  # a Linear over rows: its units are the last axis
        if c.ndim > len(st.full) or any(d != 1 for d in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, out)):
            return None
        return np.broadcast_to(as_floats(st, c, f"{op} constant").reshape(-1), (out,)).copy()
    try:
        return per_channel(st, c, out, len(st.shape) + 1, f"{op} constant")
    except OnnxImportError:
        return None


def _with_constant(st, node, slot, c):
    """x + c, x - c, c - x, x * c, x / c for a constant that is not folded: Shift and Scale layers
    (trainable when the constant holds more than one value: a position embedding, a gain)."""
    op = node.op_type
    c = as_floats(st, np.asarray(c), f"{op} constant")
    full = st.full
    if not st.static or c.ndim > len(full) or any(
            d != 1 and (f is None or d != f or _holds_batch(st, f)) for d, f in zip(c.shape[::-1], full[::-1])):
        st.fail(f"{op} of the data {show(st, full)} and a constant of shape {list(c.shape)} is not supported "
                f"(the constant must broadcast to the data's non-batch axes)")
    if op == "Div" and slot != 0:
        st.fail("Div of a constant by the data is not supported")
    if op == "Div" and np.any(c == 0):
        st.fail("division by zero")
    trainable = c.size > 1
    c = c.astype(st.dtype)
    if op == "Sub" and slot != 0:  # c - x
        st.emit(nn.Scale(np.array(-1, st.dtype), trainable=False, dtype=st.dtype))
        op = "Add"
    if op in ("Add", "Sub"):
        st.emit(nn.Shift(c if op == "Add" else -c, trainable=trainable, dtype=st.dtype))
    else:
        st.emit(nn.Scale(c if op == "Mul" else (1 / c.astype(np.float64)).astype(st.dtype), trainable=trainable,
                         dtype=st.dtype))


def _arith(st, node, attrs, slot, inputs):
    """Add/Sub/Mul/Div by a constant: folded into the Linear/Conv2d just before when it is one
    value per output unit, else a Shift or Scale layer."""
    check_attrs(st, attrs)
    op = node.op_type
    target = st.affine_target()
    v = None if target is None or (slot != 0 and op in ("Sub", "Div")) else _per_unit(st, target, inputs[1 - slot], op)
    if v is None:
        _with_constant(st, node, slot, inputs[1 - slot])
        return
    out = target.weight.shape[0]
    bias = np.zeros(out) if target.bias is None else target.bias
    if op == "Add":
        target.bias = bias + v
    elif op == "Sub":
        target.bias = bias - v
    else:
        if op == "Div":
            if np.any(v == 0):
                st.fail("division by zero")
            v = 1.0 / v
        target.weight = target.weight * v[:, None]
        target.bias = None if target.bias is None else target.bias * v
    st.folded.append(st.where)


def _batchnorm(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "epsilon", "momentum", "training_mode", "spatial", "is_test", "consumed_inputs")
    if attrs.get("training_mode", 0):
        st.fail("training_mode=1 is not supported (export the model in eval mode)")
    if attrs.get("spatial", 1) != 1:
        st.fail("spatial=0 is not supported")
    if slot != 0:
        st.fail("the data must be input X")
    scale, beta, mean, var = (as_floats(st, const_input(st, inputs, k, what, ndim=1), what, any_float=True)
                              for k, what in enumerate(("scale", "B", "input_mean", "input_var"), start=1))
    eps = float(attrs.get("epsilon", 1e-5))
    if np.any(var + eps <= 0):
        st.fail("input_var + epsilon must be positive")
    target = st.affine_target()
    if st.fold and target is not None:
        n = target.weight.shape[0]
        if any(v.shape != (n,) for v in (scale, beta, mean, var)):
            st.fail(f"expected parameters of shape ({n},)")
        s = scale / np.sqrt(var + eps)
        target.weight = target.weight * s[:, None]
        target.bias = ((0.0 if target.bias is None else target.bias) - mean) * s + beta
        st.folded.append(st.where)
        return
    st.settle()
    rank = len(st.shape) + 1
    if rank not in (2, 4):
        st.fail(f"expected a 2-D or 4-D input, found {rank}-D")
    n = scale.shape[0]
    if st.shape[0] is not None and st.shape[0] != n or any(v.shape != (n,) for v in (beta, mean, var)):
        st.fail(f"parameters of shape ({n},) do not fit {st.shape[0]} channels")
    cls = nn.BatchNorm1d if rank == 2 else nn.BatchNorm2d
    # ONNX's momentum is the share of the old statistic kept, sparsenet's the share of the new one taken
    momentum = float(str(np.float32(min(max(1.0 - float(attrs.get("momentum", 0.9)), 0.0), 1.0))))
    layer = cls(n, eps=eps, momentum=momentum, dtype=st.dtype)
    layer.weight.data[:], layer.bias.data[:] = scale, beta
    layer.running_mean[:], layer.running_var[:] = mean, var
    st.emit(layer)


def _layernorm(st, node, attrs, slot, inputs):
    """LayerNormalization (opset 17) over the last axes, with constant scale and bias."""
    check_attrs(st, attrs, "axis", "epsilon", "stash_type")
    if slot != 0:
        st.fail("the data must be input X")
    st.settle()
    rank = len(st.shape) + 1
    axis = int(attrs.get("axis", -1))
    if not -rank <= axis < rank or axis % rank == 0:
        st.fail(f"axis={axis} is not supported (expected a non-batch axis of the {rank}-D input)")
    normalized = st.shape[axis % rank - 1:]
    if any(d is None for d in normalized):
        st.fail(f"normalizes over axes of unknown size {normalized}")
    scale = as_floats(st, const_input(st, inputs, 1, "Scale"), "Scale")
    bias = (as_floats(st, const_input(st, inputs, 2, "B"), "B") if len(inputs) > 2 and inputs[2] is not None
            else np.zeros(normalized))
    try:
        scale, bias = (np.broadcast_to(v, normalized) for v in (scale, bias))
    except ValueError:
        st.fail(f"Scale {scale.shape} and B {bias.shape} do not broadcast to the normalized shape {normalized}")
    layer = nn.LayerNorm(normalized, float(attrs.get("epsilon", 1e-5)), dtype=st.dtype)
    layer.weight.data[...], layer.bias.data[...] = scale, bias
    st.emit(layer)


def _pad(st, node, attrs, slot, inputs):
    """Pad in constant mode of the two spatial axes of [N, C, H, W] (pads and value from inputs from
    opset 11, attributes before; opset 18's axes input)."""
    check_attrs(st, attrs, "mode", "pads", "value")
    if slot != 0:
        st.fail("the data must be input 0")
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        st.fail(f"mode={mode!r} is not supported (only 'constant')")
    st.settle()
    need_rank(st, 4, "[N, C, H, W]")
    pads = [int(p) for p in attrs["pads"]] if "pads" in attrs else const_ints(st, inputs, 1, "pads")
    value = float(attrs.get("value", 0.0))
    if len(inputs) > 2 and inputs[2] is not None:
        v = np.asarray(inputs[2])
        if v.size != 1:
            st.fail(f"constant_value: expected a scalar, found shape {v.shape}")
        value = float(v.reshape(()))
    if len(inputs) > 3 and inputs[3] is not None:  # axes: pads are given for these axes only
        axes = [a % 4 for a in const_ints(st, inputs, 3, "axes")]
        full = [0] * 8
        for k, a in enumerate(axes):
            full[a], full[a + 4] = pads[k], pads[k + len(axes)]
        pads = full
    if len(pads) != 8:
        st.fail(f"pads={pads}: expected 8 values for a 4-D input")
    if any(pads[k] for k in (0, 1, 4, 5)) or min(pads) < 0:
        st.fail(f"pads={pads} are not supported (only non-negative padding of the two spatial axes)")
    try:
        st.emit(nn.Pad2d((pads[2], pads[6], pads[3], pads[7]), value))
    except SparsenetError as e:
        st.fail(str(e))
    c, h, w = st.shape
    st.shape = (c, None if h is None else h + pads[2] + pads[6], None if w is None else w + pads[3] + pads[7])


# -- lookups ---------------------------------------------------------------------------------------
def _gather(st, node, attrs, slot, inputs):
    """Gather of a constant [rows, dim] table's rows (axis 0) at integer data: an Embedding."""
    check_attrs(st, attrs, "axis")
    if slot == 0:
        _gather_data(st, node, attrs, inputs)
        return
    axis = int(attrs.get("axis", 0))
    table = const_input(st, inputs, 0, "table")
    if table.ndim != 2 or axis not in (0, -2):
        st.fail(f"expected a 2-D table looked up on axis 0, found a table of shape {list(table.shape)} on axis {axis}")
    if not st.integer:
        st.fail("expected integer indices (int64 or int32) computed from an integer graph input, found float data")
    w = as_floats(st, table, "table").astype(st.dtype)
    pattern = st.graph.patterns.get(node.input[0])
    fmt = Dense(w) if pattern is None else CSR.from_mask(w, pattern, st.dtype)
    st.emit(nn.Embedding(w.shape[0], w.shape[1], weight=fmt, dtype=st.dtype))
    st.shape = (*st.shape, w.shape[1])
    st.integer = False


def _gather_data(st, node, attrs, inputs):
    """Gather of the data at a constant index on one axis: a Slice of that index (the axis dropped
    for a scalar index, as PyTorch's attention picks q, k and v)."""
    r = len(st.full)
    axis = int(attrs.get("axis", 0))
    if not -r <= axis < r:
        st.fail(f"axis={axis} is out of range for a {r}-D input")
    axis %= r
    index = const_input(st, inputs, 1, "indices")
    size = st.full[axis]
    if index.dtype.kind not in "iu" or index.ndim > 1 or size is None or _holds_batch(st, size) or (
            axis == 0 and st.batch_first):
        st.fail(f"Gather on axis {axis} of {show(st, st.full)} at indices {index.tolist()} is not supported "
                f"(expected constant int64 indices on an axis of static size that does not hold the batch)")
    flat = [int(i) % size if -size <= int(i) < size else None for i in index.reshape(-1)]
    if None in flat or (index.ndim == 1 and flat != list(range(flat[0], flat[0] + len(flat)))) or not flat:
        st.fail(f"indices {index.tolist()} on an axis of size {size}: expected one index, or a run of consecutive ones")
    st.settle()
    st.emit(nn.Slice(axis, flat[0], flat[0] + len(flat)))
    full = list(st.full)
    full[axis] = len(flat)
    st.set_full(tuple(full))
    if index.ndim == 0:
        reshape_to(st, tuple(d for k, d in enumerate(full) if k != axis), "Gather at a scalar index")


def _slice(st, node, attrs, slot, inputs):
    """Slice at constant starts/ends (step 1) on axes that do not hold the batch: Slice layers."""
    check_attrs(st, attrs)
    if slot != 0:
        st.fail("the data must be the first input")
    starts, ends = const_ints(st, inputs, 1, "starts"), const_ints(st, inputs, 2, "ends")
    r = len(st.full)
    axes = const_ints(st, inputs, 3, "axes") if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = const_ints(st, inputs, 4, "steps") if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or any(t != 1 for t in steps):
        st.fail(f"starts {starts}, ends {ends}, axes {axes}, steps {steps}: expected one of each per axis, steps 1")
    st.settle()
    for start, end, axis in zip(starts, ends, axes):
        if not -r <= axis < r:
            st.fail(f"axis {axis} is out of range for a {r}-D input")
        axis %= r
        size = st.full[axis]
        if size is None or _holds_batch(st, size) or (axis == 0 and st.batch_first):
            st.fail(f"a Slice of axis {axis} of {show(st, st.full)} is not supported (its size is not static, or "
                    f"it holds the batch)")
        lo, hi, _ = slice(start, end).indices(size)
        if hi <= lo:
            st.fail(f"[{start}:{end}] on axis {axis} of size {size} is empty")
        if (lo, hi) == (0, size):
            continue
        st.emit(nn.Slice(axis, lo, hi))
        full = list(st.full)
        full[axis] = hi - lo
        st.set_full(tuple(full))


# -- pooling ---------------------------------------------------------------------------------------
def _pool(st, node, attrs, slot, inputs):
    is_max = node.op_type == "MaxPool"
    extra = ("storage_order",) if is_max else ("count_include_pad",)
    check_attrs(st, attrs, "auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", *extra)
    st.settle()
    need_rank(st, 4, "[N, C, H, W]")
    kernel = tuple(attr_ints(st, attrs, "kernel_shape", (), low=1))
    if len(kernel) != 2:
        st.fail(f"kernel_shape={list(kernel)}: only 2-D pooling is supported")
    strides = tuple(attr_ints(st, attrs, "strides", (1, 1), low=1, n=2))
    dilations = attr_ints(st, attrs, "dilations", [1, 1], low=1, n=2)
    if dilations != [1, 1]:
        st.fail(f"dilations={dilations} are not supported (only 1)")
    pad = symmetric_pad(st, attrs, kernel, strides)
    ceil = attrs.get("ceil_mode", 0)
    if ceil not in (0, 1):
        st.fail(f"ceil_mode={ceil} is not supported (expected 0 or 1)")
    for n, k, s in zip(st.shape[1:], kernel, strides):
        out_size(st, n, k, s, pad)  # raises for an input smaller than the kernel
    try:
        layer = (nn.MaxPool2d(kernel, strides, pad, bool(ceil)) if is_max else
                 nn.AvgPool2d(kernel, strides, pad, bool(attrs.get("count_include_pad", 0)), bool(ceil)))
    except SparsenetError as e:
        st.fail(str(e))
    sizes = [None if n is None else layer.out_size(n, a) for a, n in enumerate(st.shape[1:])]
    st.emit(layer)
    st.shape = (st.shape[0], *sizes)


OPS = {
    **ELEMENTWISE,
    "Softmax": _softmax,
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv,
    "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith,
    "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm,
    "MaxPool": _pool, "AveragePool": _pool, "Pad": _pad, "Gather": _gather, "Slice": _slice,
    **LAYOUT_OPS,
}
