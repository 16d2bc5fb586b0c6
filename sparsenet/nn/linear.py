"""Linear layer: y = x @ W.T + b with W [out, in] in any format."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ._spec import field
from ._weighted import WeightedLayer
from .module import check_input

__all__ = ["Linear"]


class Linear(WeightedLayer):
    """Fully connected layer. Input [B, in] -> output [B, out]; [..., in] -> [..., out] applies it to
    every leading index (each token of a sequence).

    Internally the product runs feature-major (W @ x.T, batch contiguous); the output is returned as
    the transposed view of that [out, B] array, so that a following Linear gets its feature-major
    input for free.

    >>> layer = Linear(3, 2, seed=0)
    >>> layer(np.ones((4, 3), dtype=np.float32)).shape
    (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, seed: int = 0,
                 dtype=np.float32, weight=None, bias_value=None):
        """`weight` (a [out, in] array or WeightFormat) and `bias_value` replace the seeded
        random initialisation when given."""
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight_shape = (self.out_features, self.in_features)
        self._init_params(seed, self.in_features, dtype, bias, weight, bias_value)
        self._xt = self._lead = None

    def forward(self, x):
        x = np.asarray(x)
        lead = x.shape[:-1]
        if x.ndim > 2:  # [..., in]: every leading index is a row (a transformer's tokens)
            x = x.reshape(-1, x.shape[-1])
        x = check_input(self, x, 2, 1, self.in_features)
        xt = np.ascontiguousarray(x.T, dtype=self.dtype)  # free when x is a previous layer's output
        out = self.weight.matmul(xt)  # [out, B]
        if self.bias is not None:
            out += self.bias.data[:, None]
        self._save(_xt=xt, _lead=lead)
        return out.T if len(lead) == 1 else out.T.reshape(*lead, self.out_features)

    def lower(self, builder, inputs):
        return builder.product(self, self.weight, None if self.bias is None else self.bias.data, inputs[0])

    def backward(self, grad):
        return self._backward(grad, True)

    def backward_params(self, grad) -> None:
        self._backward(grad, False)

    def _backward(self, grad, need_input: bool):
        lead = self._lead
        if len(lead) != 1:
            grad = np.asarray(grad)
            if grad.shape != (*lead, self.out_features):
                raise ShapeError(f"{self.name}: expected a gradient of shape {[*lead, self.out_features]}, found "
                                 f"{list(grad.shape)}")
            dx = self._backward_rows(grad.reshape(-1, self.out_features), need_input)
            return None if dx is None else dx.reshape(*lead, self.in_features)
        return self._backward_rows(grad, need_input)

    def _backward_rows(self, grad, need_input: bool):
        grad = check_input(self, grad, 2, 1, self.out_features, what="gradient")
        gt = np.ascontiguousarray(grad.T, dtype=self.dtype)  # [out, B]
        self._add_weight_grad(gt, self._xt)
        if self.bias is not None:
            self.bias.grad += gt.sum(axis=1)
        return self.weight.tmatmul(gt).T if need_input else None

    def spec(self):
        return self._spec_with_weights({"in_features": self.in_features, "out_features": self.out_features})

    @classmethod
    def from_spec(cls, spec, arrays, where):
        i, o = field(spec, "in_features", int, where), field(spec, "out_features", int, where)
        weight, bias, has_bias = cls._weights_from_spec(spec, arrays, where)
        return cls(i, o, has_bias, weight=weight, bias_value=bias, dtype=weight.dtype)

    def to_onnx(self, onnx, prefix, inputs):  # Gemm with transB=1: x @ W.T + b; over tokens MatMul (+ Add)
        if onnx.in_shapes and len(onnx.in_shapes[0]) > 1:
            w = onnx.const(f"{prefix}.weight", self.weight.to_dense().T, self.weight, transposed=True)
            if self.bias is None:
                return onnx.node("MatMul", [inputs[0], w], prefix)
            y = onnx.node("MatMul", [inputs[0], w], prefix)
            return onnx.node("Add", [y, onnx.const(f"{prefix}.bias", self.bias.data)], f"{prefix}.bias_add")
        return onnx.node("Gemm", self._onnx_inputs(onnx, prefix, inputs[0], self.weight.to_dense()),
                         prefix, transB=1)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self._format_repr()}, bias={self.bias is not None}"
