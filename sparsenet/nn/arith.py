"""Elementwise products and differences of two computed values, with NumPy broadcasting: `Mul`
(gates: a squeeze-and-excitation block's ``x * sigmoid(fc(pool(x)))``), `Sub` and `Div`. Each
backward sums the gradient over the axes an input was broadcast along (`unbroadcast`). The batch
axis is never broadcast: both inputs have the same batch size. (`Add`, the residual sum of two or
more values of one shape, is in `merge`.) `Shift` and `Scale` add or multiply by a constant
(trainable or fixed) instead of a second computed value.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFileError, ShapeError
from ._spec import array, field
from .module import Module, Parameter, as_float

__all__ = ["Mul", "Sub", "Div", "Shift", "Scale", "unbroadcast"]


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


class _WithConstant(Module):
    """``x (op) value`` for a constant `value` that broadcasts against the input (NumPy's rules, from
    the last axis; a leading size-1 axis broadcasts over the batch). With `trainable` the value is a
    `Parameter` (a learned position embedding, a bias); otherwise a fixed array (an attention scale)."""

    _onnx_type = ""

    def __init__(self, value, *, trainable: bool = True, dtype=np.float32):
        super().__init__()
        value = np.array(value, dtype=dtype)
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise ConfigError(f"{type(self).__name__}: expected a finite float value")
        self.trainable = bool(trainable)
        self.value = Parameter(value) if self.trainable else value

    @property
    def array(self) -> np.ndarray:
        return self.value.data if self.trainable else self.value

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def own_parameters(self):
        return {"value": self.value} if self.trainable else {}

    def _check(self, x):
        x = as_float(x)
        c = self.array
        try:
            shape = np.broadcast_shapes(x.shape, c.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ShapeError(f"{self.name}: a value of shape {list(c.shape)} does not broadcast to the input's "
                             f"{list(x.shape)}")
        return x

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def _grad_value(self, g) -> None:
        if self.trainable:
            self.value.grad += unbroadcast(g, self.value.data.shape)

    def spec(self):
        return {"trainable": self.trainable}, {"value": self.array}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        value = array(arrays, "value", where)
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise ModelFileError(f"{where}: array 'value' should be finite floats, found {value.dtype}")
        return cls(value, trainable=field(spec, "trainable", bool, where), dtype=value.dtype)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node(self._onnx_type, [inputs[0], onnx.const(f"{prefix}.value", self.array)], prefix)

    def extra_repr(self) -> str:
        return f"{list(self.array.shape)}, trainable={self.trainable}"


class Shift(_WithConstant):
    """``x + value`` (a learned position embedding, a bias outside a Linear).

    >>> Shift(np.ones((1, 3, 2))).forward(np.zeros((4, 3, 2))).shape
    (4, 3, 2)
    """

    _onnx_type = "Add"

    def forward(self, x):
        return self._check(x) + self.array

    def backward(self, grad):
        self._grad_value(grad)
        return grad

    def bound_call(self, xs, out):  # the value's own array: trained in place, seen
        return np.add, (xs[0], self.array, out)


class Scale(_WithConstant):
    """``x * value`` (attention's 1/sqrt(d) when not trainable, a learned gain when trainable).

    >>> Scale(0.5, trainable=False).forward(np.ones((2, 2))).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """

    _onnx_type = "Mul"

    def forward(self, x):
        x = self._check(x)
        self._save(_x=x)
        return x * self.array

    def backward(self, grad):
        if self.trainable:
            self._grad_value(grad * self._x)
        return grad * self.array

    def bound_call(self, xs, out):
        return np.multiply, (xs[0], self.array, out)
