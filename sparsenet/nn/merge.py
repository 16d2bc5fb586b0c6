"""Ops with several inputs, for graphs (`sparsenet.nn.Graph`): `Add` (residual connections) and
`Concat`. Each backward beside its forward; backward returns one gradient per input, in order.

`Add` takes inputs of one shape or that broadcast; `Concat` inputs of the same shape but on `axis`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError
from ._spec import field
from .arith import unbroadcast
from .module import Module, as_float

__all__ = ["Add", "Concat"]


class Add(Module):
    """The elementwise sum of two or more inputs: ``y = x0 + x1 + ...``, of one shape (a residual
    connection) or broadcasting against each other as in NumPy (the batch axis is never broadcast).

    >>> Add().forward(np.ones((2, 3)), np.ones((2, 3))).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """

    arity = None  # any number >= 2

    def forward(self, *xs):
        if len(xs) < 2:
            raise ShapeError(f"{self.name}: expected two or more inputs, found {len(xs)}")
        xs = [as_float(x) for x in xs]
        shapes = [x.shape for x in xs]
        if any(s != shapes[0] for s in shapes[1:]):
            try:
                np.broadcast_shapes(*shapes)
                ok = all(len(s) == len(shapes[0]) and s[:1] == shapes[0][:1] for s in shapes)
            except ValueError:
                ok = False
            if not ok:
                raise ShapeError(f"{self.name}: expected inputs of one shape, or of one rank and batch size that "
                                 f"broadcast, found {[list(s) for s in shapes]}")
        self._save(_shapes=shapes)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x  # not in place: the result's dtype does not depend on the inputs' order
        return out

    def backward(self, grad):
        return tuple(grad if s == grad.shape else unbroadcast(grad, s) for s in self._shapes)

    def lower(self, builder, inputs):  # a kernel of its own with the activation after it fused
        return builder.add(self, inputs)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Sum", inputs, prefix)


class Concat(Module):
    """Inputs joined along `axis` (1: features or channels, the batch being axis 0).

    >>> Concat().forward(np.ones((2, 1)), np.zeros((2, 2))).tolist()
    [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """

    arity = None

    def __init__(self, axis: int = 1):
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis < 1:
            raise ConfigError(f"Concat: expected an axis >= 1 (axis 0 is the batch), found {axis!r}")
        self.axis = int(axis)

    def forward(self, *xs):
        if len(xs) < 2:
            raise ShapeError(f"{self.name}: expected two or more inputs, found {len(xs)}")
        xs = [as_float(x) for x in xs]
        a = self.axis
        first = xs[0].shape
        if any(x.ndim != len(first) or x.ndim <= a or x.shape[:a] + x.shape[a + 1:] != first[:a] + first[a + 1:]
               for x in xs):
            raise ShapeError(f"{self.name}: expected inputs that differ only on axis {a}, found "
                             f"{[list(x.shape) for x in xs]}")
        self._save(_sizes=[x.shape[a] for x in xs])
        return np.concatenate(xs, axis=a)

    def backward(self, grad):
        edges = np.cumsum(self._sizes)[:-1]
        return tuple(np.split(grad, edges, axis=self.axis))

    def spec(self):
        return {"axis": self.axis}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "axis", int, where))

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        return _concatenate, (xs, self.axis, out)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Concat", inputs, prefix, axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


def _concatenate(xs, axis, out):
    np.concatenate(xs, axis=axis, out=out)
