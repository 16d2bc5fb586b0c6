"""Lowering a model to the steps of a compiled plan: values, layouts and the builder modules use.

Each module says how it runs in a plan in its own file (`Module.lower(builder, inputs)`): a Linear
emits a product (over the rows of a sequence: `rows_product`), a Conv2d an unfolding and a product
(depthwise: a direct kernel), an activation fuses into the product, Add or BatchNorm that feeds it,
Flatten, Dropout and Reshape cost nothing, BatchNorm, MaxPool2d, LayerNorm and the global pool
emit steps with kernels of their own, modules with a `bound_call` (Transpose, Slice, MatMul, Mean,
Softmax, Shift, Scale, Concat, Embedding) a "bound" step whose one call the module makes on the
bound buffers, and any other module runs as a *generic* step (its own `forward`, batch-major, in
evaluation mode, its output copied into the plan's buffer).

Layouts are decided here, in one place. A value is one of
- ``"in"``: a plan input, as the user gives it ([B, *shape], any float dtype);
- ``"fm"``: feature-major [F, B] (batch contiguous), what every product reads and writes;
- ``"bm"``: batch-major [B, *shape], what generic steps read and write and what users get;
- ``"native"``: an array whose batch is not its leading axis, as PyTorch's attention exports make
  (``[T, B * H, D / H]``): `shape` is the whole shape at batch 1 and `batch_axis` the axis that
  grows with the batch. Only generic steps read and write it; a plan output must be batch-major.
The builder inserts the conversions (`ingest_*`, steps "fm_to_bm" and "bm_to_fm", both the `transpose` kernel) where a step needs the
other layout; for batch 1 the two layouts have the same bytes, but the step still runs.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..formats import Dense
from ..formats.quantized import QuantizedFormat
from ..kernels import epilogue
from ..nn.module import Module, inference

__all__ = ["Value", "Builder"]


class Value:
    """One activation of a plan: its layout, one sample's shape, its dtype and its storage.

    `root` is the value that owns the buffer (itself, or the value an alias such as a Flatten or an
    in-place activation shares memory with); `readers` counts the steps and plan outputs that read it."""

    __slots__ = ("shape", "layout", "dtype", "root", "producer", "readers", "index", "batch_axis")

    def __init__(self, shape, layout, dtype, root=None, producer=None, batch_axis=None):
        self.shape = tuple(int(s) for s in shape)  # "native": the whole shape at batch 1
        self.batch_axis = batch_axis  # "native": the axis whose size is a multiple of the batch
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self.root = self if root is None else root
        self.producer = producer
        self.readers = 1
        self.index = None  # plan input number, for "in" values

    @property
    def features(self) -> int:
        return math.prod(self.shape)

    def full_shape(self, batch: int) -> tuple:
        """The array's shape for `batch` samples (batch-major or feature-major, or native)."""
        if self.layout == "native":
            shape = list(self.shape)
            shape[self.batch_axis] *= batch
            return tuple(shape)
        return (self.features, batch) if self.layout == "fm" else (batch, *self.shape)


def _not_native(v: Value) -> None:
    if v.layout == "native":
        raise ShapeError(f"plan: a value of shape {list(v.shape)} (at batch 1) holds the batch on axis "
                         f"{v.batch_axis}: it is not batch-major (a plan's outputs must be)")


class Step:
    """A step: `kind` names it in `Plan.describe`; `reads` and `writes` are values."""

    def __init__(self, kind: str, reads, writes, what: str, **params):
        self.kind, self.reads, self.writes, self.what, self.params = kind, list(reads), writes, what, params


def _writable(v: Value) -> bool:
    """Whether a step may overwrite `v`'s buffer: nothing else reads `v`, and nothing else reads the
    value that owns the buffer (an alias such as a Flatten, or a value already overwritten in place,
    shares its buffer with it)."""
    return v.readers == 1 and (v.root is v or v.root.readers == 1)


class Builder:
    """Collects the steps of a plan while the model's modules lower themselves."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.steps: list[Step] = []
        self._converted: dict[tuple[int, str], Value] = {}

    # -- values ---------------------------------------------------------------------------------------
    def input(self, index: int, shape, dtype=None) -> Value:
        """Plan input `index`: float inputs are taken in as the plan's dtype, integer ones (`dtype`,
        indices of an Embedding) as they are."""
        v = Value(shape, "in", self.dtype if dtype is None else dtype)
        v.index = index
        return v

    def alias(self, v: Value, shape) -> Value:
        """`v` seen with another sample shape of the same size (a Flatten): no step, no copy."""
        _not_native(v)
        if v.layout == "fm" and len(shape) != 1:
            v = self.as_bm(v)
        a = Value(shape, v.layout, v.dtype, root=v.root, producer=v.producer)
        a.index = v.index
        return a

    def as_fm(self, v: Value) -> Value:
        """`v` in feature-major layout (only flat samples: [F, B])."""
        _not_native(v)
        if v.layout == "fm":
            return v
        key = (id(v), "fm")
        if key not in self._converted:
            out = Value((v.features,), "fm", v.dtype)
            kind = "ingest_fm" if v.layout == "in" else "bm_to_fm"
            self._emit(Step(kind, [v], out, "input" if v.layout == "in" else "to feature-major"))
            out.readers = v.readers  # every reader of v may read this copy: no step may overwrite it alone
            self._converted[key] = out
        return self._converted[key]

    def as_bm(self, v: Value) -> Value:
        """`v` in batch-major layout."""
        _not_native(v)
        if v.layout == "bm":
            return v
        key = (id(v), "bm")
        if key not in self._converted:
            out = Value(v.shape, "bm", v.dtype)
            kind = "ingest_bm" if v.layout == "in" else "fm_to_bm"
            self._emit(Step(kind, [v], out, "input" if v.layout == "in" else "to batch-major"))
            out.readers = v.readers
            self._converted[key] = out
        return self._converted[key]

    def _emit(self, step: Step) -> Value:
        step.writes.producer = step
        self.steps.append(step)
        return step.writes

    # -- what modules emit ---------------------------------------------------------------------------
    def product(self, layer: Module, weight, bias, v: Value) -> Value:
        """act(W @ v + bias) for a [M, K] weight format (the activation fused later, by `activation`)."""
        m, k = weight.shape
        if v.layout == "native" or (len(v.shape) > 1 and v.shape[-1] == k):  # rows of a sequence
            return self.rows_product(layer, weight, bias, v)
        if v.shape != (k,):
            raise ShapeError(f"{layer.name}: expected input of shape [N, {k}], found [N, "
                             f"{', '.join(map(str, v.shape))}]")
        if v.dtype != weight.dtype:  # e.g. a float64 input to an int8 layer: the layer's own path
            return self.generic(layer, [v])
        x = self.as_fm(v)
        b = epilogue.no_bias(weight.dtype) if bias is None else bias
        out = Value((m,), "fm", weight.dtype)
        return self._emit(Step("product", [x], out, f"{layer.name}: {weight.spec}",
                               weight=weight, bias=b, act=epilogue.NONE, alpha=0.0))

    def rows_product(self, layer: Module, weight, bias, v: Value) -> Value:
        """act(x @ W.T + bias) for every row of a batch-major [..., K] value or a native one (a
        Linear over the tokens of a sequence), bias and activation fused: a Dense weight in BLAS on
        the rows as they are, other formats on the rows moved feature-major and back (`_bind`)."""
        m, k = weight.shape
        if v.layout == "in":
            v = self.as_bm(v)
        if v.layout == "fm" or not v.shape or v.shape[-1] != k or v.dtype != weight.dtype:
            return self.generic(layer, [v])
        shape = (*v.shape[:-1], m)
        out = Value(shape, v.layout, weight.dtype, batch_axis=v.batch_axis)
        b = epilogue.no_bias(weight.dtype) if bias is None else bias
        return self._emit(Step("rows_product", [v], out, f"{layer.name}: {weight.spec} over rows",
                               weight=weight, bias=b, act=epilogue.NONE, alpha=0.0))

    def layernorm(self, layer: Module, v: Value) -> Value:
        """A LayerNorm over the last axis of a batch-major or native value (`kernels.dense_layernorm`)
        into a buffer of its own; other cases run the layer's forward. Never in place: with its output
        on its input the kernel's last loop runs scalar (LLVM's overlap check fails; 2048 tokens of
        32: 136 us in place, 67 us apart)."""
        if v.layout in ("in", "fm"):
            v = self.as_bm(v)
        d = layer.normalized_shape
        if (len(d) != 1 or not layer.elementwise_affine or not v.shape or v.shape[-1] != d[0]
                or v.dtype != layer.weight.data.dtype):
            return self.generic(layer, [v])
        out = Value(v.shape, v.layout, v.dtype, batch_axis=v.batch_axis)
        return self._emit(Step("layernorm", [v], out, layer.name, module=layer))

    def reshape(self, layer: Module, v: Value) -> Value:
        """A Reshape: the same bytes seen with another shape (no step), batch-major or native as the
        probe of `generic` finds; a feature-major value is moved batch-major first."""
        if v.layout in ("in", "fm"):
            v = self.as_bm(v)
        shape, batch_axis = self._probe(layer, [v])
        layout = "bm" if batch_axis is None else "native"
        return Value(shape, layout, v.dtype, root=v.root, producer=v.producer, batch_axis=batch_axis)

    def bound(self, layer: Module, inputs: list[Value]) -> Value:
        """A step whose call the module makes at binding (`Module.bound_call(views, out)`: one NumPy
        or Numba call on the bound buffers, e.g. a Transpose's copy), batch-major or native inputs."""
        xs = [v if v.layout == "native" else self.as_bm(v) for v in inputs]
        shape, batch_axis, dtype = self._probe(layer, xs, with_dtype=True)
        out = Value(shape, "bm" if batch_axis is None else "native", dtype, batch_axis=batch_axis)
        return self._emit(Step("bound", xs, out, layer.name, module=layer))

    def conv2d(self, layer: Module, v: Value) -> Value:
        """act(conv(v) + bias) for a Conv2d over a batch-major [C, H, W] value. Without groups: the
        input unfolded (`kernels.layout.im2col`), one product of the weight format with bias and
        activation fused, and for batches the result moved to batch-major. Depthwise: the direct
        kernel (`kernels.dense_depthwise2d`) with bias and activation fused. Other groups, and a shape
        or dtype it does not take, run the layer's own forward (and its errors)."""
        if v.layout == "native":
            return self.generic(layer, [v])
        (kh, kw), s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        w = layer.weight
        # The depthwise kernel takes a dense weight: a Dense one is the layer's own array (training in
        # place is seen), an int8 one is frozen and expanded once; a CSR/BSR one would be a copy made
        # at binding that training in place leaves stale, so it runs the layer's forward instead.
        dense_taps = isinstance(w, QuantizedFormat) or (isinstance(w, Dense) and w.data.flags.c_contiguous)
        if (len(v.shape) != 3 or v.shape[0] != layer.in_channels or v.shape[1] + 2 * p < d * (kh - 1) + 1
                or v.shape[2] + 2 * p < d * (kw - 1) + 1 or self.dtype != w.dtype
                or (layer.groups != 1 and not (layer.depthwise and dense_taps))):
            return self.generic(layer, [v])
        v = self.as_bm(v)
        if v.dtype != w.dtype:
            return self.generic(layer, [v])
        c, h, wd = v.shape
        oh, ow = layer.output_shape(h, wd)
        out = Value((layer.out_channels, oh, ow), "bm", w.dtype)
        bias = epilogue.no_bias(w.dtype) if layer.bias is None else layer.bias.data
        kind = "depthwise2d" if layer.depthwise else "conv2d"
        # a Dense float32 weight (its own array) runs the direct kernel, whose epilogue can take
        # the BatchNorm after it (`batchnorm`); other formats unfold the input for their product
        direct = (kind == "conv2d" and type(w) is Dense and w.dtype == np.float32 and w.data.flags.c_contiguous)
        return self._emit(Step(kind, [v], out, f"{layer.name}: {w.spec}", weight=w, bias=bias,
                               act=epilogue.NONE, alpha=0.0, kernel=(kh, kw), stride=s, padding=p, dilation=d,
                               direct=direct, bn=None, residual=None))

    def activation(self, layer: Module, v: Value, act: int, alpha: float = 0.0) -> Value:
        """act(v): fused into the product that made `v` when nothing else reads `v`, else an
        in-place pass (or a copy and a pass when `v` has other readers), in either layout."""
        step = v.producer
        fusable = step is not None and (step.kind in ("conv2d", "depthwise2d", "add", "rows_product", "batchnorm")
                                        or step.kind == "product" and v.layout == "fm")
        if (fusable and step.writes is v and step.params["act"] == epilogue.NONE and v.readers == 1):
            step.params.update(act=act, alpha=float(alpha))
            step.what += f" + {type(layer).__name__}"
            return v
        if v.layout == "in":
            v = self.as_bm(v)
        in_place = _writable(v)
        out = Value(v.shape, v.layout, v.dtype, root=v.root if in_place else None, batch_axis=v.batch_axis)
        return self._emit(Step("activation", [v], out, layer.name, act=act, alpha=float(alpha)))

    def batchnorm(self, layer: Module, v: Value) -> Value:
        """A BatchNorm in evaluation mode (`layer`: its statistics, gamma, beta and eps are read at
        every call), in place when nothing else reads `v`, in either layout. A channel count or a
        dtype that does not fit runs the layer's own forward (and its errors)."""
        if v.layout == "native":
            return self.generic(layer, [v])
        if v.layout == "in":
            v = self.as_bm(v)
        if (not v.shape or v.shape[0] != layer.num_features or len(v.shape) != layer._ndim - 1
                or v.dtype != layer.running_mean.dtype):
            return self.generic(layer, [v])
        step = v.producer
        if (step is not None and (step.kind == "conv2d" and step.params["direct"] or step.kind == "depthwise2d")
                and step.writes is v and step.params["act"] == epilogue.NONE and step.params["bn"] is None
                and v.readers == 1):
            # folded into the convolution before it, from its statistics at every call
            # (`kernels.dense_batchnorm_fold`): the direct convolution's epilogue scales and shifts,
            # a depthwise one's taps are scaled and its bias shifted; the activation after it fuses too
            step.params["bn"] = layer
            step.what += f" + {type(layer).__name__}"
            return v
        in_place = _writable(v)
        out = Value(v.shape, v.layout, v.dtype, root=v.root if in_place else None)
        return self._emit(Step("batchnorm", [v], out, layer.name, module=layer, act=epilogue.NONE, alpha=0.0))

    def maxpool2d(self, layer: Module, v: Value) -> Value:
        """A MaxPool2d over a batch-major [C, H, W] value (a shape it does not take runs its own
        forward, which raises its error)."""
        (kh, kw), (sh, sw), p = layer.kernel_size, layer.stride, layer.padding
        if v.layout == "native" or len(v.shape) != 3 or v.shape[1] + 2 * p < kh or v.shape[2] + 2 * p < kw:
            return self.generic(layer, [v])
        v = self.as_bm(v)
        c, h, w = v.shape
        out = Value((c, layer.out_size(h, 0), layer.out_size(w, 1)), "bm", v.dtype)  # ceil mode: the kernel
        # leaves out what a window overhangs, as it leaves out the padding
        return self._emit(Step("maxpool2d", [v], out, layer.name, kernel=(kh, kw), stride=(sh, sw), padding=p))

    def add(self, layer: Module, inputs: list[Value]) -> Value:
        """The sum of two values of one shape (a residual connection), into the first one's buffer
        when nothing else reads it; an activation after it fuses (`kernels.dense_add`). Both in
        feature-major layout if both are, else batch-major. Other cases run the layer's forward."""
        if len(inputs) != 2 or inputs[0].shape != inputs[1].shape or (
                any(v.layout == "native" for v in inputs) and not (
                    inputs[0].layout == inputs[1].layout and inputs[0].batch_axis == inputs[1].batch_axis)):
            return self.generic(layer, inputs)
        a, b = inputs
        if not (a.layout == b.layout and a.layout in ("fm", "native")):
            a, b = self.as_bm(a), self.as_bm(b)
        if a.dtype != self.dtype or b.dtype != self.dtype:
            return self.generic(layer, inputs)
        for conv, other in ((a, b), (b, a)):  # a residual connection after a direct convolution:
            # added in its epilogue (after the BatchNorm folded there), when `other` is computed first
            step = conv.producer
            if (step is not None and step.kind == "conv2d" and step.params["direct"] and step.writes is conv
                    and step.params["act"] == epilogue.NONE and step.params["residual"] is None
                    and conv.readers == 1 and other.layout == "bm" and other.root is not conv.root
                    and (other.producer is None or other.producer in self.steps[:self.steps.index(step)])):
                step.params["residual"] = other
                step.reads.append(other)
                step.what += f" + {type(layer).__name__}"
                return conv
        in_place = _writable(a) and a.root is not b.root
        out = Value(a.shape, a.layout, a.dtype, root=a.root if in_place else None, batch_axis=a.batch_axis)
        return self._emit(Step("add", [a, b], out, layer.name, act=epilogue.NONE, alpha=0.0))

    def global_avgpool(self, layer: Module, v: Value) -> Value:
        """The mean over H and W of a [C, H, W] value (`kernels.dense_global_avgpool`), batch-major."""
        if v.layout == "native" or len(v.shape) != 3:
            return self.generic(layer, [v])
        v = self.as_bm(v)
        out = Value((v.shape[0],), "bm", v.dtype)
        return self._emit(Step("global_avgpool", [v], out, layer.name))

    def generic(self, layer: Module, inputs: list[Value]) -> Value:
        """`layer.forward` on batch-major (or native) inputs, in evaluation mode; its output's shape
        comes from zero inputs of batch 1 and 2 (which also check the shapes, with the layer's own
        errors): batch-major when its leading axis grows with the batch, native when another one does."""
        xs = [v if v.layout == "native" else self.as_bm(v) for v in inputs]
        shape, batch_axis, dtype = self._probe(layer, xs, with_dtype=True)
        out = Value(shape, "bm" if batch_axis is None else "native", dtype, batch_axis=batch_axis)
        modules = [m for _, m in layer.named_modules()]
        return self._emit(Step("generic", xs, out, layer.name, module=layer, modules=modules))

    def _probe(self, layer: Module, xs: list[Value], with_dtype: bool = False):
        """(shape, batch axis or None, [dtype]) of `layer`'s output for inputs `xs`, from zero inputs:
        one sample's shape when the output is batch-major, else the whole shape at batch 1 and the axis
        that grows with the batch. Ops that may move the batch (``keeps_batch`` False) and native
        inputs are run at batch 2 as well."""
        modules = [m for _, m in layer.named_modules()]
        probe = any(x.layout == "native" for x in xs) or not all(getattr(m, "keeps_batch", True) for m in modules)
        with inference(layer):
            y1 = np.asarray(layer.forward(*[np.zeros(x.full_shape(1), x.dtype) for x in xs]))
            y2 = (np.asarray(layer.forward(*[np.zeros(x.full_shape(2), x.dtype) for x in xs])) if probe
                  else np.empty((2, *y1.shape[1:]), y1.dtype))  # the batch on axis 0, as the op declares
        dtype = y1.dtype if y1.dtype.kind == "f" else self.dtype
        grows = [k for k, (a, b) in enumerate(zip(y1.shape, y2.shape)) if a != b]
        if y1.ndim != y2.ndim or len(grows) != 1 or y2.shape[grows[0]] != 2 * y1.shape[grows[0]]:
            raise ShapeError(f"{layer.name}: its output ({list(y1.shape)} for one sample, {list(y2.shape)} for two) "
                             f"does not hold the batch on one axis")
        shape, axis = (y1.shape[1:], None) if grows[0] == 0 and y1.shape[0] == 1 else (y1.shape, grows[0])
        return (shape, axis, dtype) if with_dtype else (shape, axis)
