"""What Linear and Conv2d share: a 2-D weight in any format plus an optional bias."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..formats import Dense, WeightFormat
from ..formats.base import check_float_dtype
from ._spec import decode_weight, encode_weight, field, float_vector
from .init import kaiming_uniform, uniform_bias
from .module import Module, Parameter

__all__ = ["WeightedLayer"]


class WeightedLayer(Module):
    """A layer whose weight is a [out, fan_in] matrix in any format (Dense, CSR, BSR)."""

    weight_shape: tuple[int, int]
    # The float formats its weight may take (format names; None: every one): what `compiled(..., "auto")`
    # times for it.
    float_formats: tuple[str, ...] | None = None

    def _init_params(self, seed, fan_in, dtype, has_bias, weight=None, bias_value=None) -> None:
        """Seeded He initialisation, unless explicit `weight` / `bias_value` are given."""
        dtype = check_float_dtype(dtype, f"{self.name} dtype")
        rng = np.random.default_rng(seed)
        if weight is None:
            weight = kaiming_uniform(rng, self.weight_shape, fan_in, dtype)
        elif not isinstance(weight, WeightFormat):
            weight = np.asarray(weight, dtype=dtype)
        self.weight = weight
        if not has_bias:
            self.bias = None
            return
        if bias_value is None:
            bias_value = uniform_bias(rng, self.weight_shape[0], fan_in, self.weight.dtype)
        bias_value = np.asarray(bias_value)
        if bias_value.shape != (self.weight_shape[0],):
            raise ShapeError(f"{self.name}: expected a bias of shape ({self.weight_shape[0]},), "
                             f"found {bias_value.shape}")
        self.bias = Parameter(np.ascontiguousarray(bias_value, dtype=self.weight.dtype))

    @property
    def weight(self) -> WeightFormat:
        return self._weight

    @weight.setter
    def weight(self, fmt) -> None:
        """Replace the weight (any format of the right shape); its values become the trainable data.

        The layer keeps its `weight_param` (its contents are replaced, see `Parameter.replace`), so an
        optimiser built before the assignment goes on updating this layer; it starts that parameter's
        state afresh (moments of the old values or of another format's layout would not line up)."""
        self.set_weight(fmt)

    def set_weight(self, fmt, carry=None) -> None:
        """``layer.weight = fmt``, where `carry` (see `Parameter.replace`) may say which entry of the
        old values each new one continues, so that an optimiser keeps their state (dynamic sparse
        training, which moves a few entries of a pattern)."""
        if not isinstance(fmt, WeightFormat):
            fmt = Dense(np.array(fmt))
        current = getattr(self, "_weight", None)
        if current is not None and fmt.dtype != current.dtype:
            raise DTypeError(f"{self.name}: expected a {current.dtype} weight, found {fmt.dtype} "
                             f"(convert it with .astype({str(current.dtype)!r}))")
        if tuple(fmt.shape) != tuple(self.weight_shape):
            raise ShapeError(f"{self.name}: expected a weight of shape {self.weight_shape}, found {fmt.shape}")
        if current is None:
            self.weight_param = Parameter(fmt.data)
        else:
            self.weight_param.replace(fmt.data, carry)  # validates carry first: on an error nothing changed
        self._weight = fmt

    def _add_weight_grad(self, gt: np.ndarray, xt: np.ndarray) -> None:
        """weight gradient += gt @ xt.T at the stored entries (gt [out, n], xt [fan_in, n]); also in
        full into `dense_grad` while someone asks for it (`want_dense_grad`: RigL's regrowth)."""
        self.weight_param.grad += self.weight.sampled_grad(gt, xt)
        dense = self.__dict__.get("_dense_grad")
        if dense is not None:
            dense += gt @ xt.T

    def want_dense_grad(self, on: bool = True) -> None:
        """From now on (``on``), accumulate the gradient of every weight entry, stored or not, into
        `dense_grad` (zeroed here); ``on=False`` stops and frees it. What RigL's regrowth reads."""
        self.__dict__["_dense_grad"] = np.zeros(self.weight_shape, self.dtype) if on else None

    @property
    def dense_grad(self) -> np.ndarray | None:
        """The dense weight gradient accumulated since `want_dense_grad`, or None."""
        return self.__dict__.get("_dense_grad")

    @property
    def dtype(self) -> np.dtype:
        return self._weight.dtype

    def own_parameters(self) -> dict[str, Parameter]:
        params = {"weight": self.weight_param}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def reset_parameters(self, rng) -> None:
        """He-uniform weight and uniform bias as at construction, under the current masks."""
        fan_in = self.weight.shape[1]
        p = self.weight_param
        p.data[...] = kaiming_uniform(rng, p.data.shape, fan_in, p.data.dtype)
        p.apply_mask()
        if self.bias is not None:
            self.bias.data[...] = uniform_bias(rng, self.bias.data.shape[0], fan_in, self.bias.data.dtype)
            self.bias.apply_mask()

    def _spec_with_weights(self, settings: dict) -> tuple[dict, dict]:
        """`settings` plus the weight (any format, `encode_weight`) and the bias."""
        wspec, warrays = encode_weight(self.weight)
        spec = dict(settings, bias=self.bias is not None, weight=wspec)
        arrays = {f"weight.{k}": v for k, v in warrays.items()}
        if self.bias is not None:
            arrays["bias"] = self.bias.data
        return spec, arrays

    @staticmethod
    def _weights_from_spec(spec, arrays, where):
        """(weight, bias or None, has bias) of a spec `_spec_with_weights` wrote, validated."""
        weight = decode_weight(field(spec, "weight", dict, where),
                               {k[7:]: v for k, v in arrays.items() if k.startswith("weight.")}, where)
        has_bias = field(spec, "bias", bool, where)
        bias = float_vector(arrays, "bias", weight.shape[0], where) if has_bias else None
        return weight, bias, has_bias

    def _onnx_inputs(self, onnx, prefix, x, weight) -> list[str]:
        """[x, weight initializer (`weight`: the dense value in ONNX's shape), bias initializer]."""
        inputs = [x, onnx.const(f"{prefix}.weight", weight, self.weight)]
        if self.bias is not None:
            inputs.append(onnx.const(f"{prefix}.bias", self.bias.data))
        return inputs

    def _format_repr(self) -> str:
        w = self._weight
        fmt = w.spec
        return f"{fmt}, density={w.density:.3f}"
