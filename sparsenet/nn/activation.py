"""Element-wise activations and Softmax; each backward beside its forward.

Each activation with a code in `sparsenet.kernels.epilogue` fuses into the product before it in a
compiled plan (``lower``); the formulas here and there are the same.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFileError, ShapeError
from .. import kernels
from ..kernels import epilogue
from ._spec import field, number
from .module import Module, as_float, grad_enabled

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Clip", "ReLU6", "HardSigmoid", "HardSwish",
           "Softmax", "Identity"]


def _sigmoid(x):
    """A stable logistic sigmoid in x's dtype (exp of a non-positive number only)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf(x):
    out = np.empty(x.size, dtype=x.dtype)
    epilogue.erf_into(np.ascontiguousarray(x).reshape(-1), out)
    return out.reshape(x.shape)


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
        y = _sigmoid(as_float(x))
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
    """GELU: ``x * Phi(x)``, with Phi the normal CDF (``approximate="none"``, PyTorch's default,
    ONNX's Gelu) or its tanh approximation (``approximate="tanh"``). The default here is "tanh",
    sparsenet's GELU before both forms existed (files written then hold the tanh form).

    >>> round(float(GELU("none")(np.array([1.0]))[0]), 6), round(float(GELU("tanh")(np.array([1.0]))[0]), 6)
    (0.841345, 0.841192)
    """

    _C = np.sqrt(2 / np.pi)
    _FORMS = ("tanh", "none")

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        if approximate not in self._FORMS:
            raise ConfigError(f"GELU: expected approximate 'none' (erf) or 'tanh', found {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        x = as_float(x)
        if self.approximate == "none":
            phi = ((1 + _erf(x * x.dtype.type(np.sqrt(0.5)))) * x.dtype.type(0.5))
            self._save(_x=x, _phi=phi)
            return x * phi
        t = np.tanh(self._C * (x + 0.044715 * x ** 3))
        self._save(_x=x, _t=t)
        return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)

    def lower(self, builder, inputs):  # fused into the product before it (sparsenet.kernels.epilogue)
        code = epilogue.GELU_ERF if self.approximate == "none" else epilogue.GELU_TANH
        return builder.activation(self, inputs[0], code)

    def backward(self, grad):
        x = self._x
        if self.approximate == "none":  # Phi(x) + x * phi(x)
            density = np.exp(-0.5 * x * x) * x.dtype.type(1 / np.sqrt(2 * np.pi))
            return (grad * (self._phi + x * density)).astype(grad.dtype, copy=False)
        t = self._t
        dt = (1 - t * t) * self._C * (1 + 3 * 0.044715 * x * x)
        return (grad * (0.5 * (1 + t) + 0.5 * x * dt)).astype(grad.dtype, copy=False)

    def spec(self):
        return {"approximate": self.approximate}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        form = field(spec, "approximate", str, where) if "approximate" in spec else "tanh"  # 0.1 files: tanh
        if form not in cls._FORMS:
            raise ModelFileError(f"{where}: field 'approximate' should be 'none' or 'tanh', found {form!r}")
        return cls(form)

    def to_onnx(self, onnx, prefix, inputs):
        """Gelu from opset 20; before it, the formula in elementary nodes (which `import_onnx` reads
        back as a GELU)."""
        name, x = prefix, inputs[0]
        if onnx.opset >= 20:
            return onnx.node("Gelu", [x], name, approximate=self.approximate)
        if self.approximate == "none":  # as PyTorch writes it: x * (erf(x / sqrt 2) + 1) * 0.5
            c = {k: onnx.const(f"{name}.{k}", v) for k, v in (("sqrt2", np.sqrt(2.0)), ("one", 1.0), ("half", 0.5))}
            e = onnx.node("Erf", [onnx.node("Div", [x, c["sqrt2"]], f"{name}.scaled")], f"{name}.erf")
            xe = onnx.node("Mul", [x, onnx.node("Add", [e, c["one"]], f"{name}.onept")], f"{name}.xphi2")
            return onnx.node("Mul", [xe, c["half"]], name)
        c = {k: onnx.const(f"{name}.{k}", v) for k, v in
             (("cubic", 0.044715), ("scale", np.sqrt(2 / np.pi)), ("half", 0.5), ("one", 1.0))}
        x3 = onnx.node("Mul", [onnx.node("Mul", [x, x], f"{name}.x2"), x], f"{name}.x3")
        inner = onnx.node("Add", [x, onnx.node("Mul", [x3, c["cubic"]], f"{name}.cx3")], f"{name}.inner")
        t = onnx.node("Tanh", [onnx.node("Mul", [inner, c["scale"]], f"{name}.scaled")], f"{name}.tanh")
        half_x = onnx.node("Mul", [x, c["half"]], f"{name}.halfx")
        return onnx.node("Mul", [half_x, onnx.node("Add", [t, c["one"]], f"{name}.onept")], name)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """SiLU (swish): ``x * sigmoid(x)``."""

    def forward(self, x):
        x = as_float(x)
        s = _sigmoid(x)
        self._save(_x=x, _s=s)
        return x * s

    def lower(self, builder, inputs):
        return builder.activation(self, inputs[0], epilogue.SILU)

    def backward(self, grad):
        s = self._s
        return grad * (s * (1 + self._x * (1 - s)))

    def to_onnx(self, onnx, prefix, inputs):  # as PyTorch writes it; `import_onnx` reads it back as SiLU
        return onnx.node("Mul", [inputs[0], onnx.node("Sigmoid", inputs[:1], f"{prefix}.sigmoid")], prefix)


class Clip(Module):
    """``min(max(x, low), high)``. The gradient passes where low < x < high (as PyTorch's
    Hardtanh and ReLU6).

    >>> Clip(-1.0, 1.0)(np.array([-3.0, 0.5, 3.0])).tolist()
    [-1.0, 0.5, 1.0]
    """

    def __init__(self, low: float = 0.0, high: float = 6.0):
        super().__init__()
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ConfigError(f"{type(self).__name__}: expected finite low < high, found low {low}, high {high}")
        self.low, self.high = low, high

    def forward(self, x):
        x = as_float(x)
        self._save(_mask=(x > self.low) & (x < self.high))
        return np.clip(x, x.dtype.type(self.low), x.dtype.type(self.high))

    def lower(self, builder, inputs):
        if self.low == 0:  # fused as CLIP0 (ReLU6 and its kin)
            return builder.activation(self, inputs[0], epilogue.CLIP0, self.high)
        return builder.generic(self, inputs)

    def backward(self, grad):
        return grad * self._mask

    def spec(self):
        return {"low": self.low, "high": self.high}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        try:
            return cls(number(spec, "low", where), number(spec, "high", where))
        except ConfigError as e:
            raise ModelFileError(f"{where}: {e}") from None

    def to_onnx(self, onnx, prefix, inputs):
        low, high = onnx.const(f"{prefix}.low", self.low), onnx.const(f"{prefix}.high", self.high)
        return onnx.node("Clip", [inputs[0], low, high], prefix)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class ReLU6(Clip):
    """``min(max(x, 0), 6)``: `Clip` (0, 6), as MobileNets use it."""

    def __init__(self):
        super().__init__(0.0, 6.0)

    def spec(self):
        return {}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls()

    def extra_repr(self) -> str:
        return ""


class HardSigmoid(Module):
    """``min(max(alpha * x + beta, 0), 1)``: ONNX's HardSigmoid; the defaults are PyTorch's
    Hardsigmoid (``relu6(x + 3) / 6``); Keras 2's hard_sigmoid has alpha 0.2."""

    def __init__(self, alpha: float = 1 / 6, beta: float = 0.5):
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        if not (np.isfinite(self.alpha) and np.isfinite(self.beta) and self.alpha > 0):
            raise ConfigError(f"HardSigmoid: expected a finite alpha > 0 and a finite beta, found {alpha}, {beta}")

    def forward(self, x):
        x = as_float(x)
        z = x * x.dtype.type(self.alpha) + x.dtype.type(self.beta)
        self._save(_mask=(z > 0) & (z < 1))
        return np.clip(z, 0, 1).astype(x.dtype, copy=False)

    def lower(self, builder, inputs):
        if self.beta == 0.5:  # the fused form has beta 0.5 (PyTorch's and Keras's)
            return builder.activation(self, inputs[0], epilogue.HARDSIGMOID, self.alpha)
        return builder.generic(self, inputs)

    def backward(self, grad):
        return grad * (self._mask * grad.dtype.type(self.alpha))

    def spec(self):
        return {"alpha": self.alpha, "beta": self.beta}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        try:
            return cls(number(spec, "alpha", where), number(spec, "beta", where))
        except ConfigError as e:
            raise ModelFileError(f"{where}: {e}") from None

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("HardSigmoid", inputs[:1], prefix, alpha=self.alpha, beta=self.beta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.6g}, beta={self.beta:.6g}"


class HardSwish(Module):
    """``x * min(max(x / 6 + 1/2, 0), 1)`` (MobileNetV3; PyTorch's Hardswish, ONNX's HardSwish)."""

    def forward(self, x):
        x = as_float(x)
        self._save(_x=x)
        return x * np.clip(x / x.dtype.type(6) + x.dtype.type(0.5), 0, 1).astype(x.dtype, copy=False)

    def lower(self, builder, inputs):
        return builder.activation(self, inputs[0], epilogue.HARDSWISH)

    def backward(self, grad):
        x = self._x  # 0 below -3, 1 above 3, (2x + 3) / 6 between (PyTorch's convention at the ends)
        d = np.where(x < -3, 0, np.where(x > 3, 1, (2 * x + 3) / 6)).astype(grad.dtype, copy=False)
        return grad * d

    def to_onnx(self, onnx, prefix, inputs):
        if onnx.opset >= 14:
            return onnx.node("HardSwish", inputs[:1], prefix)
        gate = onnx.node("HardSigmoid", inputs[:1], f"{prefix}.gate", alpha=1 / 6, beta=0.5)
        return onnx.node("Mul", [inputs[0], gate], prefix)


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

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        """Over the last axis: a kernel over the rows; over another, this layer's forward."""
        x = xs[0]
        if self.axis in (-1, x.ndim - 1) and x.flags.c_contiguous and out.flags.c_contiguous and x.shape[-1]:
            return kernels.dense_softmax_rows, (x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
        return _softmax_into, (self, x, out)

    def spec(self):
        return {"axis": self.axis}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "axis", int, where))

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Softmax", inputs[:1], prefix, axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


def _softmax_into(layer, x, out):
    np.copyto(out, layer.forward(x))
