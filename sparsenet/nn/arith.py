"""Elementwise products and differences of two computed values, with NumPy broadcasting: `Mul`
(gates: a squeeze-and-excitation block's ``x * sigmoid(fc(pool(x)))``), `Sub` and `Div`. Each
backward sums the gradient over the axes an input was broadcast along (`unbroadcast`). The batch
axis is never broadcast: both inputs have the same batch size. (`Add`, the residual sum of two or
more values of one shape, is in `merge`.)
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .module import Module, as_float

__all__ = ["Mul", "Sub", "Div", "unbroadcast"]


def unbroadcast(grad: np.ndarray, shape) -> np.ndarray:
    """`grad` (of the broadcast result's shape) summed down to `shape`."""
    shape = tuple(shape)
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and grad.shape[k] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


class _Binary(Module):
    arity = 2

    def _operands(self, a, b):
        a, b = as_float(a), as_float(b)
        if a.ndim == 0 or b.ndim == 0 or a.shape[0] != b.shape[0]:
            raise ShapeError(f"{self.name}: expected two inputs of one batch size, found shapes "
                             f"{list(a.shape)} and {list(b.shape)}")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ShapeError(f"{self.name}: inputs of shapes {list(a.shape)} and {list(b.shape)} do not "
                             f"broadcast") from None
        self._save(_a=a, _b=b, _shape=shape)
        return a, b

    def _onnx_op(self) -> str:
        return type(self).__name__

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node(self._onnx_op(), inputs, prefix)


class Mul(_Binary):
    """``a * b`` (broadcasting).

    >>> Mul()(np.ones((2, 3, 2, 2)), np.full((2, 3, 1, 1), 2.0)).shape
    (2, 3, 2, 2)
    """

    def forward(self, a, b):
        a, b = self._operands(a, b)
        return a * b

    def backward(self, grad):
        return unbroadcast(grad * self._b, self._a.shape), unbroadcast(grad * self._a, self._b.shape)


class Sub(_Binary):
    """``a - b`` (broadcasting)."""

    def forward(self, a, b):
        a, b = self._operands(a, b)
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self._a.shape), unbroadcast(-grad, self._b.shape)


class Div(_Binary):
    """``a / b`` (broadcasting); a zero in `b` gives inf or NaN as in NumPy."""

    def forward(self, a, b):
        a, b = self._operands(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):  # inf and NaN as NumPy gives them, unwarned
            return a / b

    def backward(self, grad):
        a, b = self._a, self._b
        return unbroadcast(grad / b, a.shape), unbroadcast(-grad * a / (b * b), b.shape)
