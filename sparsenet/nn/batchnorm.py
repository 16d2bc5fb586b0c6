"""Batch normalisation over features ([B, F]) or channels ([B, C, H, W])."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError
from ._spec import field, float_vector, number
from .module import Module, Parameter, as_float, check_input

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _ndim = 2
    _axes = (0,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype=np.float32):
        super().__init__()
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = Parameter(np.ones(self.num_features, dtype=dtype))   # gamma
        self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))    # beta
        self.running_mean = np.zeros(self.num_features, dtype=dtype)
        self.running_var = np.ones(self.num_features, dtype=dtype)

    def own_parameters(self):
        return {"weight": self.weight, "bias": self.bias}

    def _shape(self, v):
        return v.reshape((1, -1) + (1,) * (self._ndim - 2))

    def forward(self, x):
        x = as_float(check_input(self, x, self._ndim, 1, self.num_features))
        if self.training:
            mean = x.mean(axis=self._axes)
            var = x.var(axis=self._axes)
            n = x.size // self.num_features
            m = self.momentum
            self.running_mean[:] = (1 - m) * self.running_mean + m * mean
            self.running_var[:] = (1 - m) * self.running_var + m * var * (n / max(n - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - self._shape(mean)) * self._shape(inv_std)
        self._save(_xhat=xhat, _inv_std=inv_std)
        return (xhat * self._shape(self.weight.data) + self._shape(self.bias.data)).astype(x.dtype, copy=False)

    def backward(self, grad):
        xhat, inv_std = self._xhat, self._inv_std
        self.weight.grad += (grad * xhat).sum(axis=self._axes)
        self.bias.grad += grad.sum(axis=self._axes)
        g = grad * self._shape(self.weight.data)
        if not self.training:  # running statistics are constants
            return g * self._shape(inv_std)
        mean_g = g.mean(axis=self._axes, keepdims=True)
        mean_gx = (g * xhat).mean(axis=self._axes, keepdims=True)
        return ((g - mean_g - xhat * mean_gx) * self._shape(inv_std)).astype(grad.dtype, copy=False)

    def lower(self, builder, inputs):  # evaluation mode: one pass, in place (sparsenet.kernels.dense_batchnorm)
        return builder.batchnorm(self, inputs[0])

    def buffers(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def reset_parameters(self, rng) -> None:
        self.weight.data[...] = 1
        self.bias.data[...] = 0
        self.running_mean[:] = 0
        self.running_var[:] = 1

    def spec(self):
        return ({"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum},
                {"weight": self.weight.data, "bias": self.bias.data, **self.buffers()})

    @classmethod
    def from_spec(cls, spec, arrays, where):
        n = field(spec, "num_features", int, where)
        layer = cls(n, eps=number(spec, "eps", where), momentum=number(spec, "momentum", where),
                    dtype=float_vector(arrays, "weight", n, where).dtype)
        layer.weight.data[:] = arrays["weight"]
        layer.bias.data[:] = float_vector(arrays, "bias", n, where)
        layer.running_mean[:] = float_vector(arrays, "running_mean", n, where)
        var = float_vector(arrays, "running_var", n, where)
        if np.any(var < 0):
            raise ModelFileError(f"{where}: running_var holds negative values")
        layer.running_var[:] = var
        return layer

    def to_onnx(self, onnx, prefix, inputs):  # ONNX's momentum is the share of the old statistic kept
        consts = [onnx.const(f"{prefix}.{k}", v) for k, v in (
            ("weight", self.weight.data), ("bias", self.bias.data),
            ("running_mean", self.running_mean), ("running_var", self.running_var))]
        return onnx.node("BatchNormalization", [inputs[0], *consts], prefix,
                         epsilon=self.eps, momentum=1.0 - self.momentum)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Normalises each feature of [B, F] input."""


class BatchNorm2d(_BatchNorm):
    """Normalises each channel of [B, C, H, W] input over batch and space."""

    _ndim = 4
    _axes = (0, 2, 3)
