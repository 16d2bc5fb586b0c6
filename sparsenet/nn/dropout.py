"""Inverted dropout with its own seeded generator (active in training mode only)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._spec import field, number
from .module import Module, as_float

__all__ = ["Dropout"]


class Dropout(Module):
    def __init__(self, p: float = 0.5, *, seed: int = 0):
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"Dropout: expected 0 <= p < 1, found {p}")
        self.p = float(p)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        x = as_float(x)
        if not self.training or self.p == 0:
            self._save(_mask=None)
            return x
        keep = 1.0 - self.p
        mask = (self.rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
        self._save(_mask=mask)
        return x * mask

    def lower(self, builder, inputs):
        return inputs[0]  # plans run in evaluation mode: nothing is dropped

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask

    def spec(self):
        return {"p": self.p, "seed": self.seed}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(number(spec, "p", where), seed=field(spec, "seed", int, where))

    def to_onnx(self, onnx, prefix, inputs):  # identity at inference; the ratio is kept for a round trip
        return onnx.node("Dropout", [inputs[0], onnx.const(f"{prefix}.ratio", np.array(self.p))], prefix)

    def extra_repr(self) -> str:
        return f"p={self.p}"
