"""Layer normalisation over each sample's last dimensions (Ba et al. 2016), as transformers use it."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, ModelFileError, ShapeError
from ._spec import array, field, number
from .module import Module, Parameter, as_float

__all__ = ["LayerNorm"]


class LayerNorm(Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` with the mean and (biased) variance over the
    last ``len(normalized_shape)`` axes of each sample; `weight` and `bias` have `normalized_shape`
    (without `elementwise_affine`, none). As PyTorch's nn.LayerNorm and ONNX's LayerNormalization.

    >>> ln = LayerNorm(4)
    >>> np.round(ln(np.array([[1.0, 2.0, 3.0, 4.0]])), 4).tolist()
    [[-1.3416, -0.4472, 0.4472, 1.3416]]
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, *,
                 dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        if (not isinstance(shape, (tuple, list)) or not shape
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise ConfigError(f"LayerNorm: expected normalized_shape of positive sizes, found {normalized_shape!r}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = float(eps)
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ConfigError(f"LayerNorm: expected eps > 0, found {eps!r}")
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype))
        else:
            self.weight = self.bias = None
        self._dtype = np.dtype(dtype)

    def own_parameters(self):
        return {"weight": self.weight, "bias": self.bias} if self.elementwise_affine else {}

    def reset_parameters(self, rng) -> None:
        if self.elementwise_affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _axes(self, x):
        k = len(self.normalized_shape)
        if x.ndim < k + 1 or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ShapeError(f"{self.name}: expected input [N, ..., {', '.join(map(str, self.normalized_shape))}], "
                             f"found shape {x.shape}")
        return tuple(range(x.ndim - k, x.ndim))

    def forward(self, x):
        x = as_float(x)
        axes = self._axes(x)
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        inv = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        xhat = (x - mean) * inv
        self._save(_xhat=xhat, _inv=inv, _axes_used=axes)
        if not self.elementwise_affine:
            return xhat
        return (xhat * self.weight.data + self.bias.data).astype(x.dtype, copy=False)

    def lower(self, builder, inputs):  # over the last axis: a kernel of its own (in place when it may)
        return builder.layernorm(self, inputs[0])

    def backward(self, grad):
        xhat, inv, axes = self._xhat, self._inv, self._axes_used
        outer = tuple(range(grad.ndim - len(axes)))
        if self.elementwise_affine:
            self.weight.grad += (grad * xhat).sum(axis=outer)
            self.bias.grad += grad.sum(axis=outer)
            g = grad * self.weight.data
        else:
            g = grad
        mean_g = g.mean(axis=axes, keepdims=True)
        mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
        return ((g - mean_g - xhat * mean_gx) * inv).astype(grad.dtype, copy=False)

    def spec(self):
        settings = {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                    "elementwise_affine": self.elementwise_affine, "dtype": str(self._dtype)}
        arrays = {"weight": self.weight.data, "bias": self.bias.data} if self.elementwise_affine else {}
        return settings, arrays

    @classmethod
    def from_spec(cls, spec, arrays, where):
        shape = field(spec, "normalized_shape", list, where)
        if not shape or len(shape) > 8 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                  for s in shape):
            raise ModelFileError(f"{where}: field 'normalized_shape' should be 1 to 8 positive sizes, found {shape!r}")
        affine = field(spec, "elementwise_affine", bool, where)
        dtype = field(spec, "dtype", str, where)
        if dtype not in ("float32", "float64"):
            raise ModelFileError(f"{where}: field 'dtype' should be float32 or float64, found {dtype!r}")
        try:
            layer = cls(tuple(shape), number(spec, "eps", where), affine, dtype=np.dtype(dtype))
        except ConfigError as e:
            raise ModelFileError(f"{where}: {e}") from None
        if affine:
            for key in ("weight", "bias"):
                a = array(arrays, key, where)
                if a.dtype != layer._dtype or a.shape != layer.normalized_shape:
                    raise ModelFileError(f"{where}: array {key!r} should be {layer._dtype} of shape "
                                         f"{layer.normalized_shape}, found {a.dtype} {a.shape}")
                if not np.all(np.isfinite(a)):
                    raise ModelFileError(f"{where}: array {key!r} holds NaN or inf")
                getattr(layer, key).data[...] = a
        return layer

    def to_onnx(self, onnx, prefix, inputs):
        if onnx.opset < 17:
            raise ConfigError(f"export_onnx: {self.name} needs opset 17 or later (LayerNormalization), "
                              f"found {onnx.opset}")
        ins = [inputs[0]]
        if self.elementwise_affine:
            ins += [onnx.const(f"{prefix}.weight", self.weight.data), onnx.const(f"{prefix}.bias", self.bias.data)]
        else:
            ones = np.ones(self.normalized_shape, onnx.dtype)
            ins += [onnx.const(f"{prefix}.weight", ones)]
        return onnx.node("LayerNormalization", ins, prefix, axis=-len(self.normalized_shape), epsilon=self.eps)

    def extra_repr(self) -> str:
        affine = "" if self.elementwise_affine else ", elementwise_affine=False"
        return f"{list(self.normalized_shape)}, eps={self.eps}{affine}"
