"""Element-wise activations and Softmax; each backward beside its forward."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..kernels import epilogue
from ._spec import field, number
from .module import Module, as_float, grad_enabled

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Identity"]


class Identity(Module):
    def forward(self, x):
        return x

    def lower(self, builder, inputs):
        return inputs[0]

    def backward(self, grad):
        return grad

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Identity", inputs[:1], prefix)


class ReLU(Module):
    def forward(self, x):
        x = as_float(x)
        if grad_enabled():  # the mask is only for backward
            self._save(_mask=x > 0)
        # a ufunc keeps x's memory layout: a Linear returns the transposed view of its feature-major
        # output, and np.where copied it back to row-major (measured: 1.1 ms per 64 x 4096
        # activation against 0.13 ms, a quarter of the sparse MLP's time at batch 64). As in
        # PyTorch, a NaN input stays NaN.
        return np.maximum(x, x.dtype.type(0))

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        return builder.activation(self, inputs[0], epilogue.RELU)

    def backward(self, grad):
        return grad * self._mask

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Relu", inputs[:1], prefix)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        x = as_float(x)
        mask = x > 0
        self._save(_mask=mask)
        zero = x.dtype.type(0)  # ufuncs keep x's layout (see ReLU)
        return np.maximum(x, zero) + x.dtype.type(self.negative_slope) * np.minimum(x, zero)

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        return builder.activation(self, inputs[0], epilogue.LEAKY_RELU, self.negative_slope)

    def backward(self, grad):
        return np.where(self._mask, grad, grad * grad.dtype.type(self.negative_slope))

    def spec(self):
        return {"negative_slope": self.negative_slope}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(number(spec, "negative_slope", where))

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("LeakyRelu", inputs[:1], prefix, alpha=self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, x):
        x = as_float(x)
        # numerically stable: exp of a non-positive number only
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        self._save(_y=y)
        return y

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        return builder.activation(self, inputs[0], epilogue.SIGMOID)

    def backward(self, grad):
        return grad * self._y * (1 - self._y)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Sigmoid", inputs[:1], prefix)


class Tanh(Module):
    def forward(self, x):
        y = np.tanh(as_float(x))
        self._save(_y=y)
        return y

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        return builder.activation(self, inputs[0], epilogue.TANH)

    def backward(self, grad):
        return grad * (1 - self._y * self._y)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Tanh", inputs[:1], prefix)


class GELU(Module):
    """GELU with the tanh approximation (as `approximate='tanh'` in PyTorch)."""

    _C = np.sqrt(2 / np.pi)

    def forward(self, x):
        x = as_float(x)
        t = np.tanh(self._C * (x + 0.044715 * x ** 3))
        self._save(_x=x, _t=t)
        return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        return builder.activation(self, inputs[0], epilogue.GELU_TANH)

    def backward(self, grad):
        x, t = self._x, self._t
        dt = (1 - t * t) * self._C * (1 + 3 * 0.044715 * x * x)
        return (grad * (0.5 * (1 + t) + 0.5 * x * dt)).astype(grad.dtype, copy=False)

    def to_onnx(self, onnx, prefix, inputs):
        """Gelu(approximate='tanh') from opset 20; before it, the tanh formula in Mul/Add/Tanh nodes."""
        name, x = prefix, inputs[0]
        if onnx.opset >= 20:
            return onnx.node("Gelu", [x], name, approximate="tanh")
        c = {k: onnx.const(f"{name}.{k}", v) for k, v in
             (("cubic", 0.044715), ("scale", np.sqrt(2 / np.pi)), ("half", 0.5), ("one", 1.0))}
        x3 = onnx.node("Mul", [onnx.node("Mul", [x, x], f"{name}.x2"), x], f"{name}.x3")
        inner = onnx.node("Add", [x, onnx.node("Mul", [x3, c["cubic"]], f"{name}.cx3")], f"{name}.inner")
        t = onnx.node("Tanh", [onnx.node("Mul", [inner, c["scale"]], f"{name}.scaled")], f"{name}.tanh")
        half_x = onnx.node("Mul", [x, c["half"]], f"{name}.halfx")
        return onnx.node("Mul", [half_x, onnx.node("Add", [t, c["one"]], f"{name}.onept")], name)


class Softmax(Module):
    """Softmax along `axis` (stable: the max is subtracted). For training a classifier, use
    `SoftmaxCrossEntropy` on logits instead; this layer is for models that output probabilities."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = int(axis)

    def forward(self, x):
        x = as_float(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for input of shape {x.shape}")
        z = np.exp(x - x.max(axis=self.axis, keepdims=True))
        y = z / z.sum(axis=self.axis, keepdims=True)
        self._save(_y=y)
        return y

    def backward(self, grad):
        y = self._y
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))

    def spec(self):
        return {"axis": self.axis}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "axis", int, where))

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Softmax", inputs[:1], prefix, axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"
