"""Layout ops: global pooling, flatten, reshape, squeeze and transpose, as far as a chain of
sparsenet layers can express them.

A GlobalAveragePool's [N, C, 1, 1] output becomes GlobalAvgPool2d's [N, C] when a flatten follows
(which is then dropped), and an AvgPool2d over the whole map otherwise. tf2onnx's NHWC flatten
(Transpose [0, 2, 3, 1] then a flatten) becomes a plain Flatten whose column order is folded into
the next MatMul/Gemm.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ._state import BATCH_PLACEHOLDER, State, check_attrs, const_ints, need_rank, shown

__all__ = ["LAYOUT_OPS", "reshape_to", "show"]


def _axes(st, inputs, attrs, rank: int):
    """The axes of a ReduceMean/Squeeze (input 1, int64, or the attribute) in [0, rank), or None."""
    if len(inputs) > 1 and inputs[1] is not None:
        axes = const_ints(st, inputs, 1, "axes")
    elif "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    else:
        return None
    if any(not -rank <= a < rank for a in axes):
        st.fail(f"axes={axes} are out of range for a {rank}-D input")
    return sorted({a % rank for a in axes})


def _start_global_pool(st, keepdims: bool) -> None:
    st.settle()
    need_rank(st, 4, "[N, C, H, W]")
    st.emit(nn.GlobalAvgPool2d())
    if keepdims:
        st.gap = (len(st.layers) - 1, tuple(st.shape[1:]), st.where)
        st.shape = (st.shape[0], 1, 1)
    else:
        st.shape = (st.shape[0],)


def _global_average_pool(st, node, attrs, slot, inputs):
    check_attrs(st, attrs)
    _start_global_pool(st, True)


def _reduce_mean(st, node, attrs, slot, inputs):
    """Over [2, 3] of [N, C, H, W]: global average pooling; over other axes, a Mean layer."""
    check_attrs(st, attrs, "axes", "keepdims", "noop_with_empty_axes")
    r = len(st.shape) + 1
    axes = _axes(st, inputs, attrs, r)
    keep = bool(attrs.get("keepdims", 1))
    if axes is None:
        st.fail("ReduceMean over every axis (no axes) is not supported: it would average the batch")
    if r == 4 and axes == [2, 3] and st.batch_first:
        _start_global_pool(st, keep)
        return
    full = st.full
    if any(full[a] is None or (st.batch == BATCH_PLACEHOLDER and full[a] % st.batch == 0)
           or a == 0 for a in axes):
        st.fail(f"ReduceMean over axes {axes} of {show(st, full)} is not supported (it averages axis 0, the "
                f"batch, or a size that is not static)")
    st.settle()
    st.emit(nn.Mean(axes, keep))
    st.set_full(tuple(1 if k in axes else d for k, d in enumerate(full) if keep or k not in axes))


def _to_flat(st: State) -> None:
    """The current value becomes [N, features]."""
    if st.gap is not None:  # GlobalAvgPool2d already gives [N, C]
        st.gap = None
        st.shape = st.shape[:1]
        return
    if st.nhwc is not None:
        h, w, c = st.shape
        if not st.static:
            st.fail(f"flattening the NHWC Transpose {st.nhwc} needs static sizes")
        perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
        st.col_perm, st.nhwc = (perm, st.nhwc), None
    st.emit(nn.Flatten())
    st.shape = (int(np.prod(st.shape)) if st.static else None,)


def _flatten(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "axis")
    r = len(st.shape) + 1
    axis = int(attrs.get("axis", 1))
    if (axis + r if axis < 0 else axis) != 1:
        st.fail(f"axis={axis} is not supported: sparsenet flattens to [N, features] (axis 1)")
    _to_flat(st)


def _reshape_result(full, target, allowzero):
    """ONNX Reshape's output shape for static `full`, or None if `target` is invalid for it."""
    out = list(target)
    for k, t in enumerate(out):
        if t == 0 and not allowzero:
            if k >= len(full):
                return None
            out[k] = full[k]
    total = int(np.prod(full))
    if out.count(-1) > 1 or any(t < -1 for t in out):
        return None
    if -1 in out:
        known = int(np.prod([t for t in out if t != -1]))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out) if int(np.prod(out)) == total else None


def show(st: State, full) -> str:
    """A shape with the placeholder batch shown as N (``[12, N*2, 8]``)."""
    return shown(st.batch, full)


def reshape_to(st: State, out, what: str) -> None:
    """A general Reshape of the value to the whole shape `out`: the dimension that carries the
    (placeholder) batch becomes the Reshape's -1, so that the model runs at any batch size."""
    st.settle()
    if not st.static or any(d is None for d in out):
        st.fail(f"{what}: a reshape of {show(st, st.full)} to {show(st, out)} needs static sizes")
    if st.batch == BATCH_PLACEHOLDER:
        carry = [k for k, d in enumerate(out) if d % st.batch == 0]
    else:  # a declared batch size: only reshapes that keep it first can be told apart
        carry = [0] if st.batch_first and out[0] == st.batch else []
    if len(carry) != 1:
        st.fail(f"{what}: cannot tell which dimension of {show(st, out)} holds the batch (export the model with a "
                f"dynamic batch axis)")
    spec = list(out)
    spec[carry[0]] = -1
    st.emit(nn.Reshape(spec))
    st.set_full(tuple(out))


def _layout_change(st: State, out, what: str) -> None:
    """A reshape-like op giving full shape `out`: nothing, a flatten, or a general Reshape."""
    full = st.full
    if out == full:
        return
    if (st.batch_first and out is not None and len(out) == 2 and out[0] == st.batch
            and (not st.static or out[1] == np.prod(st.shape))):
        _to_flat(st)
        return
    if out is None:
        st.fail(f"{what} is not supported: only a flatten to [N, features], a no-op or a reshape of static sizes")
    reshape_to(st, out, what)


def _reshape(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "allowzero")
    if slot != 0:
        st.fail("the data must be the first input")
    target = const_ints(st, inputs, 1, "shape")
    allowzero = int(attrs.get("allowzero", 0))
    full = st.full
    if st.static:
        out = _reshape_result(full, target, allowzero)
    elif len(target) == 2 and ((target[0] == 0 and not allowzero) or target[0] == st.batch) and target[1] == -1:
        out = (st.batch, None)
    elif len(target) == 2 and target[0] == -1 and target[1] > 0:
        out = (st.batch, target[1])
    else:
        out = None
    _layout_change(st, out, f"Reshape to {target}")


def _squeeze(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "axes")
    full = st.full
    axes = _axes(st, inputs, attrs, len(full))
    if axes is None:
        if not st.static:
            st.fail("Squeeze without axes needs static sizes")
        axes = [k for k, d in enumerate(full) if d == 1]
    if 0 in axes and st.batch_first:
        st.fail("squeezing the batch axis is not supported")
    if any(full[a] != 1 for a in axes):
        st.fail(f"axes {axes} are not all of size 1 in {show(st, full)}")
    _layout_change(st, tuple(d for k, d in enumerate(full) if k not in axes), f"Squeeze of axes {axes}")


def _unsqueeze(st, node, attrs, slot, inputs):
    check_attrs(st, attrs, "axes")
    full = st.full
    if slot != 0:
        st.fail("the data must be the first input")
    axes = _axes(st, inputs, attrs, len(full) + len(attrs.get("axes", inputs[1] if len(inputs) > 1 else ())))
    if not axes:
        st.fail("expected axes")
    out = list(full)
    for a in axes:
        out.insert(a, 1)
    reshape_to(st, tuple(out), f"Unsqueeze at axes {axes}")


def _transpose(st, node, attrs, slot, inputs):
    """Identity; tf2onnx's NHWC flatten (perm [0, 2, 3, 1] then a flatten: folded into the next
    MatMul/Gemm); any other permutation, a Transpose layer."""
    check_attrs(st, attrs, "perm")
    r = len(st.shape) + 1
    perm = [int(p) for p in attrs.get("perm", range(r - 1, -1, -1))]
    if sorted(perm) != list(range(r)):
        st.fail(f"perm={perm} is not a permutation of the {r} axes")
    if perm == list(range(r)):
        return
    users = st.graph.data_users(node.output[0])
    if perm == [0, 2, 3, 1] and r == 4 and st.batch_first and len(users) == 1 and users[0][1].op_type in (
            "Flatten", "Reshape"):
        st.settle()
        st.nhwc = st.where
        st.shape = (st.shape[1], st.shape[2], st.shape[0])
        return
    st.settle()
    st.emit(nn.Transpose(perm))
    st.set_full(tuple(st.full[p] for p in perm))


LAYOUT_OPS = {"GlobalAveragePool": _global_average_pool, "ReduceMean": _reduce_mean, "Flatten": _flatten,
              "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Transpose": _transpose}
