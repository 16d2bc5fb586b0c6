"""Lowering state: the layers built so far, a Linear/Conv2d still open to folds, pending layout
steps, and the checks every op handler shares (attributes, constants, per-channel vectors, pads).

`State.shape` follows one sample's shape as ONNX sees it (ints, None where not static).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import nn
from ..formats import CSR, Dense
from ..nn._im2col import conv_output_size
from ..errors import SparsenetError
from ._proto import OnnxImportError

__all__ = ["State", "BATCH_PLACEHOLDER", "shown", "check_attrs", "attr_ints", "const_input", "const_ints", "as_floats",
           "per_channel", "one_int", "spatial_pads", "symmetric_pad", "out_size", "need_rank"]

# Stands for a symbolic batch size in evaluated shapes (``x.view(x.size(0), -1)`` exports read it).
BATCH_PLACEHOLDER = 1_000_003


def shown(batch, full) -> str:
    """A whole shape with the placeholder batch shown as N (``[12, N*2, 8]``), for messages."""
    p = batch if batch == BATCH_PLACEHOLDER else None
    return "[" + ", ".join("?" if d is None else ("N" if d == p else f"N*{d // p}") if p and d % p == 0 else str(d)
                           for d in full) + "]"


@dataclass
class _Affine:
    """A Linear or Conv2d not built yet. Folds land here, in float64, before the one cast to the
    model's dtype, so that folding BatchNorm is exact arithmetic rounded once."""

    weight: np.ndarray           # float64 [out, fan_in]
    pattern: np.ndarray | None   # stored entries (from a sparse initializer), None for dense
    bias: np.ndarray | None      # float64 [out]
    origin: str
    name: str                    # the ONNX node's name
    conv: dict | None = None     # in_channels, kernel_size, stride, padding, groups, dilation
    rows: bool = False           # a Linear applied to every row of [..., in] (its units: the last axis)

    def build(self, dtype):
        w = self.weight.astype(dtype)
        fmt = Dense(w) if self.pattern is None else CSR.from_mask(w, self.pattern, dtype)
        bias = None if self.bias is None else self.bias.astype(dtype)
        out, fan_in = self.weight.shape
        if self.conv is None:
            return nn.Linear(fan_in, out, bias is not None, weight=fmt, bias_value=bias, dtype=dtype)
        c = self.conv
        return nn.Conv2d(c["in_channels"], out, c["kernel_size"], c["stride"], c["padding"], bias is not None,
                         groups=c["groups"], dilation=c["dilation"], weight=fmt, bias_value=bias, dtype=dtype)


class State:
    """What lowering a chain of one-input nodes accumulates: layers (with the node each came from)
    and pending steps. A graph is lowered as such chains joined by Add and Concat nodes."""

    def __init__(self, graph, dtype, shape, batch, fold_batchnorm: bool, integer: bool = False, lead=None):
        self.graph, self.dtype = graph, dtype
        self.integer = integer      # the value holds integer indices (from an integer graph input)
        self.shape = tuple(shape)   # the axes after the first, as ONNX sees them (one sample's shape)
        self.batch = batch          # batch size that evaluated shapes use (declared, or the placeholder)
        # the size of axis 0: the batch, unless an op moved it (PyTorch's attention: [T, B * H, d])
        self.lead = batch if lead is None else lead
        self.fold = fold_batchnorm
        self.layers, self.origins, self.names, self.folded = [], [], [], []
        self.affine: _Affine | None = None
        self.gap = None        # (layer index, (h, w), origin): GlobalAvgPool2d whose [N, C, 1, 1] awaits a flatten
        self.nhwc = None       # origin of a Transpose to NHWC that awaits its flatten
        self.col_perm = None   # (column permutation, origin) for the next MatMul/Gemm
        self.where = "input"   # label of the node being lowered
        self.node_name = ""    # its name in the ONNX graph

    @property
    def static(self) -> bool:
        return all(d is not None for d in self.shape)

    @property
    def full(self) -> tuple:
        """The whole shape as evaluated shapes see it (the batch as `batch`, maybe merged: a multiple)."""
        return (self.lead, *self.shape)

    @property
    def batch_first(self) -> bool:
        return self.lead == self.batch

    def set_full(self, full) -> None:
        self.lead, self.shape = full[0], tuple(full[1:])

    def fail(self, message: str):
        raise OnnxImportError(f"{self.where}: {message}")

    def flush(self) -> None:
        if self.affine is not None:
            a, self.affine = self.affine, None
            try:
                layer = a.build(self.dtype)
            except SparsenetError as e:  # a layer refusing its arguments: name the node it came from
                raise OnnxImportError(f"{a.origin}: {e}") from None
            self._append(layer, a.origin, a.name)

    def open_affine(self, weight, pattern, bias, conv=None) -> None:
        """Start a Linear (conv None) or Conv2d from the current node; later folds may change it."""
        self.flush()
        self.affine = _Affine(weight, pattern, bias, self.where, self.node_name, conv)

    def emit(self, layer) -> None:
        self.flush()
        self._append(layer, self.where, self.node_name)

    def _append(self, layer, origin, name) -> None:
        layer.eval()
        self.layers.append(layer)
        self.origins.append(origin)
        self.names.append(name)

    def settle(self, keep_perm: bool = False) -> None:
        """Before an op that is not element-wise: an unflattened global pool becomes an AvgPool2d over
        the whole map (its output keeps the 1x1 dims), and an NHWC transpose must have been consumed."""
        if self.gap is not None:
            idx, (h, w), origin = self.gap
            if h is None or w is None:
                self.fail(f"the [N, C, 1, 1] output of {origin} must be flattened first (its input size is not "
                          f"static, so it cannot become an AvgPool2d)")
            self.layers[idx] = nn.AvgPool2d((h, w), (h, w)).eval()
            self.gap = None
        pending = self.nhwc or (None if keep_perm or self.col_perm is None else self.col_perm[1])
        if pending:
            self.fail(f"the NHWC Transpose {pending} is supported only when a flatten and then MatMul/Gemm "
                      f"follow it (tf2onnx's layout)")

    def affine_target(self) -> _Affine | None:
        """The Linear/Conv2d a fold may modify: the one that directly produced the current value."""
        plain = self.gap is None and self.nhwc is None and self.col_perm is None
        return self.affine if plain else None


# -- checks shared by the handlers ---------------------------------------------------------------
def check_attrs(st: State, attrs: dict, *allowed: str) -> None:
    for k in attrs:
        if k not in allowed:
            st.fail(f"attribute {k!r} is not supported")


def attr_ints(st: State, attrs: dict, name: str, default, *, low: int, n: int | None = None) -> list[int]:
    """Attribute `name` (or `default`) as a list of ints, `n` of them, each >= `low`: a zero stride,
    group, kernel or dilation fails here, naming the node and the attribute, not as a division by zero.
    (onnx.checker has already checked the attribute's type.)"""
    values = attrs.get(name, default)
    scalar = isinstance(values, (int, np.integer))
    values = [int(values)] if scalar else [int(v) for v in values]
    shown = values[0] if scalar else values
    if n is not None and len(values) != n:
        st.fail(f"attribute {name}={shown}: expected {n} values")
    if any(v < low for v in values):
        want = ("a positive integer" if scalar else "positive integers") if low == 1 else f"values >= {low}"
        st.fail(f"attribute {name}={shown}: expected {want}")
    return values


def const_input(st: State, inputs, k: int, what: str, ndim=None) -> np.ndarray:
    v = inputs[k] if k < len(inputs) else None
    if v is None:
        st.fail(f"missing constant input {k} ({what})")
    v = np.asarray(v)
    if ndim is not None and v.ndim != ndim:
        st.fail(f"expected a {ndim}-D {what}, found shape {v.shape}")
    return v


def const_ints(st: State, inputs, k: int, what: str) -> list[int]:
    """Constant input `k`, which ONNX types as int64 (a shape, axes), as a list of ints."""
    v = const_input(st, inputs, k, what, ndim=1)
    if v.dtype.kind not in "iu":
        st.fail(f"{what}: expected an integer (int64) tensor, found element type {v.dtype}")
    return [int(t) for t in v]


def as_floats(st: State, v: np.ndarray, what: str, *, any_float: bool = False) -> np.ndarray:
    """`v` in float64 for folding. ONNX types it as the data (T): it must have the model's float type
    (`st.dtype`), or any float type with `any_float` (BatchNormalization's T1/T2, Dropout's ratio)."""
    if v.dtype.kind != "f" or not (any_float or v.dtype == st.dtype):
        expected = "a float tensor" if any_float else f"{st.dtype} values (the graph's data is {st.dtype})"
        st.fail(f"{what}: expected {expected}, found element type {v.dtype}")
    v = v.astype(np.float64)
    if not np.all(np.isfinite(v)):
        st.fail(f"{what}: holds NaN or inf")
    return v


def per_channel(st: State, c, n: int, rank: int, what: str) -> np.ndarray:
    """A constant that broadcasts against [N, n, 1, ...] (rank dims) as one value per channel, as [n]."""
    c = as_floats(st, np.asarray(c), what)
    if c.ndim > rank:
        st.fail(f"{what} of shape {c.shape} has more dims than the data")
    cs = (1,) * (rank - c.ndim) + c.shape
    if cs[0] != 1 or cs[1] not in (1, n) or any(d != 1 for d in cs[2:]):
        st.fail(f"{what} of shape {c.shape} is not one value per channel of {n}")
    return np.broadcast_to(c.reshape(cs[1]), (n,)).copy()


def one_int(st: State, values, what: str) -> int:
    values = [int(v) for v in values]
    if len(values) != 2 or values[0] != values[1]:
        st.fail(f"{what}={values} is not supported: sparsenet uses one value for height and width")
    return values[0]


def spatial_pads(st: State, attrs: dict, kernel, strides) -> list[int]:
    """A Conv's/pool's padding from pads or auto_pad, in ONNX's order [top, left, bottom, right]
    (SAME_UPPER puts an odd row or column at the end, SAME_LOWER at the start)."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = attr_ints(st, attrs, "pads", [0, 0, 0, 0], low=0)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s in zip(st.shape[1:], kernel, strides):
            if size is None:
                st.fail(f"auto_pad={auto} needs static input sizes")
            total = max((-(-size // s) - 1) * s + k - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
        pads = begin + end
    else:
        st.fail(f"auto_pad={auto!r} is not supported")
    if len(pads) != 4:
        st.fail(f"pads={pads}: expected 4 values for a 2-D window")
    return [int(p) for p in pads]


def symmetric_pad(st: State, attrs: dict, kernel, strides) -> int:
    """The one symmetric padding of a pool from pads or auto_pad."""
    pads = spatial_pads(st, attrs, kernel, strides)
    if len(set(pads)) != 1:
        st.fail(f"pads={pads} are not supported: sparsenet pads every side of a pool by the same amount")
    return pads[0]


def out_size(st: State, size, k: int, s: int, p: int):
    if size is None:
        return None
    out = conv_output_size(size, k, s, p)
    if out < 1:
        st.fail(f"input size {size} is smaller than kernel {k} with padding {p}")
    return out


def need_rank(st: State, want: int, layout: str) -> None:
    if len(st.shape) + 1 != want:
        dims = ", ".join(map(str, st.shape))
        st.fail(f"expected a {want}-D input {layout}, found {len(st.shape) + 1}-D [N, {dims}]")
