"""Constant padding of image batches ([B, C, H, W]): PyTorch's ZeroPad2d/ConstantPad2d, ONNX's Pad."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ModelFileError, ShapeError
from ._spec import int_list, number
from .module import Module, as_float

__all__ = ["Pad2d"]

_MAX_PAD = 1 << 12  # a file asking for more is refused (the output could take gigabytes)


class Pad2d(Module):
    """`value` added around each image: `pads` rows on top and bottom, columns left and right (one
    int for all four, or (top, bottom, left, right)); an asymmetric "same" padding before a strided
    convolution is ``Pad2d((0, 1, 0, 1))``.

    >>> Pad2d((1, 0, 0, 2))(np.ones((1, 1, 2, 2))).shape
    (1, 1, 3, 4)
    """

    def __init__(self, pads=1, value: float = 0.0):
        super().__init__()
        pads = (pads,) * 4 if isinstance(pads, (int, np.integer)) else tuple(pads)
        if len(pads) != 4 or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and 0 <= p
                                     for p in pads):
            raise ConfigError(f"Pad2d: expected pads of 4 non-negative ints (top, bottom, left, right), found {pads!r}")
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)
        if not np.isfinite(self.value):
            raise ConfigError(f"Pad2d: expected a finite value, found {value!r}")

    def forward(self, x):
        x = as_float(x)
        if x.ndim != 4:
            raise ShapeError(f"{self.name}: expected a 4-D input [N, C, H, W], found shape {x.shape}")
        t, b, left, right = self.pads
        self._save(_hw=x.shape[2:])
        return np.pad(x, ((0, 0), (0, 0), (t, b), (left, right)), constant_values=x.dtype.type(self.value))

    def backward(self, grad):
        t, _, left, _ = self.pads
        h, w = self._hw
        return np.ascontiguousarray(grad[:, :, t:t + h, left:left + w])

    def spec(self):
        return {"pads": list(self.pads), "value": self.value}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        pads = int_list(spec, "pads", 4, where)
        if max(pads) > _MAX_PAD:
            raise ModelFileError(f"{where}: pads {pads} should be at most {_MAX_PAD}")
        try:
            return cls(tuple(pads), number(spec, "value", where))
        except ConfigError as e:
            raise ModelFileError(f"{where}: {e}") from None

    def to_onnx(self, onnx, prefix, inputs):
        t, b, left, right = self.pads
        pads = onnx.ints(f"{prefix}.pads", [0, 0, t, left, 0, 0, b, right])
        value = onnx.const(f"{prefix}.value", self.value)
        return onnx.node("Pad", [inputs[0], pads, value], prefix, mode="constant")

    def extra_repr(self) -> str:
        return f"pads={self.pads}" + (f", value={self.value}" if self.value else "")
