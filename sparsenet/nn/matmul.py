"""`MatMul`: the product of two computed values (attention's ``Q @ K^T`` and ``P @ V``), batched and
broadcast as ``np.matmul``; no weight (a weight times the data is a `Linear`)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .arith import unbroadcast
from .module import Module, as_float

__all__ = ["MatMul"]


class MatMul(Module):
    """``a @ b`` over the last two axes of two inputs of two or more dimensions, the leading axes
    broadcast.

    >>> MatMul().forward(np.ones((2, 3, 4)), np.ones((2, 4, 5))).shape
    (2, 3, 5)
    """

    arity = 2

    def forward(self, a, b):
        a, b = as_float(a), as_float(b)
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"{self.name}: expected [..., M, K] @ [..., K, N], found shapes {list(a.shape)} and "
                             f"{list(b.shape)}")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(f"{self.name}: the leading axes of {list(a.shape)} and {list(b.shape)} do not "
                             f"broadcast") from None
        self._save(_a=a, _b=b)
        return np.matmul(a, b)

    def backward(self, grad):
        a, b = self._a, self._b
        ga = np.matmul(grad, np.swapaxes(b, -1, -2))
        gb = np.matmul(np.swapaxes(a, -1, -2), grad)
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        return np.matmul, (xs[0], xs[1], out)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("MatMul", inputs, prefix)
