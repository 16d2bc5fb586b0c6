"""`Mean`: the mean over some axes (ONNX's ReduceMean), e.g. a text classifier's pooling over the
tokens of each sequence."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import ConfigError, ShapeError
from ._spec import field
from .module import Module, as_float

__all__ = ["Mean"]


class Mean(Module):
    """The mean over `axes` (never axis 0, the batch), kept as size-1 axes with `keepdims`.

    >>> Mean((1,)).forward(np.ones((2, 5, 3))).shape
    (2, 3)
    """

    def __init__(self, axes, keepdims: bool = False):
        super().__init__()
        axes = (axes,) if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool) else axes
        if (not isinstance(axes, (list, tuple)) or not axes or len(set(axes)) != len(axes)
                or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a != 0 for a in axes)):
            raise ConfigError(f"Mean: expected distinct non-zero axes (axis 0 is the batch), found {axes!r}")
        self.axes, self.keepdims = tuple(int(a) for a in axes), bool(keepdims)

    def _resolved(self, x):
        if any(not -x.ndim <= a < x.ndim for a in self.axes) or any(a % x.ndim == 0 for a in self.axes):
            raise ShapeError(f"{self.name}: axes {list(self.axes)} are out of range (or the batch) for an input "
                             f"of shape {list(x.shape)}")
        return tuple(sorted(a % x.ndim for a in self.axes))

    def forward(self, x):
        x = as_float(x)
        axes = self._resolved(x)
        self._save(_in_shape=x.shape, _axes=axes)
        return x.mean(axis=axes, keepdims=self.keepdims)

    def backward(self, grad):
        shape, axes = self._in_shape, self._axes
        g = np.asarray(grad) if self.keepdims else np.expand_dims(grad, axes)
        n = int(np.prod([shape[a] for a in axes]))
        return np.broadcast_to(g / n, shape).copy()

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        """Over consecutive axes of a contiguous input: `kernels.dense_mean_axis` on the input seen
        as [before, reduced, after] (9 us -> 1 us for the zoo transformer's pooling at batch 1);
        otherwise NumPy's mean."""
        x = xs[0]
        axes = self._resolved(x)
        if axes == tuple(range(axes[0], axes[-1] + 1)) and x.flags.c_contiguous and out.flags.c_contiguous:
            shape = x.shape
            before, after = int(np.prod(shape[:axes[0]])), int(np.prod(shape[axes[-1] + 1:]))
            reduced = int(np.prod([shape[a] for a in axes]))
            return kernels.dense_mean_axis, (x.reshape(before, reduced, after), out.reshape(before, after))
        return np.mean, (x, axes, None, out, self.keepdims)

    def spec(self):
        return {"axes": list(self.axes), "keepdims": self.keepdims}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "axes", list, where), field(spec, "keepdims", bool, where))

    def to_onnx(self, onnx, prefix, inputs):
        if onnx.opset >= 18:  # axes became an input
            return onnx.node("ReduceMean", [inputs[0], onnx.ints(f"{prefix}.axes", self.axes)], prefix,
                             keepdims=int(self.keepdims))
        return onnx.node("ReduceMean", inputs[:1], prefix, axes=list(self.axes), keepdims=int(self.keepdims))

    def extra_repr(self) -> str:
        return f"axes={list(self.axes)}, keepdims={self.keepdims}"
