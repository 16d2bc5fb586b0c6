"""Layout ops on whole tensors: `Reshape`, `Transpose` and `Slice`, as ONNX and PyTorch define them.

They see the whole array, batch axis included, as a transformer's attention does (``[B, T, D] ->
[B, T, H, D/H] -> [B, H, T, D/H]``; PyTorch's own exports even merge the batch with the heads).
`Reshape` takes the target shape with one ``-1`` where the size follows from the others: the
batch-carrying dimension, so that one model runs at any batch size. Each backward undoes its
forward (a reshape back, the inverse permutation, the slice's gradient placed in zeros).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, ShapeError
from ._spec import field
from .module import Module, as_float

__all__ = ["Reshape", "Transpose", "Slice"]


def _ints(value, what, cls) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{cls}: expected {what} as a list of integers, found {value!r}")
    return tuple(int(v) for v in value)


class Reshape(Module):
    """The input with the same values in `shape` (the whole shape, batch included): at most one
    ``-1``, inferred from the input's size (put it on the dimension that carries the batch).

    >>> Reshape((-1, 3, 2)).forward(np.zeros((4, 6))).shape
    (4, 3, 2)
    """

    keeps_batch = False  # may move the batch off axis 0 (plans probe where it goes)

    def __init__(self, shape):
        super().__init__()
        shape = _ints(shape, "shape", "Reshape")
        if not shape or sum(s == -1 for s in shape) > 1 or any(s < 1 and s != -1 for s in shape):
            raise ConfigError(f"Reshape: expected positive sizes with at most one -1, found {list(shape)}")
        self.shape = shape

    def forward(self, x):
        x = np.asarray(x)
        known = math.prod(s for s in self.shape if s != -1)
        if (-1 in self.shape and (known == 0 or x.size % known)) or (-1 not in self.shape and known != x.size):
            raise ShapeError(f"{self.name}: cannot reshape an input of shape {list(x.shape)} to {list(self.shape)}")
        self._save(_in_shape=x.shape)
        return x.reshape(self.shape)

    def backward(self, grad):
        return np.asarray(grad).reshape(self._in_shape)

    def lower(self, builder, inputs):  # the same bytes seen with another shape: no step
        return builder.reshape(self, inputs[0])

    def spec(self):
        return {"shape": list(self.shape)}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "shape", list, where))

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Reshape", [inputs[0], onnx.ints(f"{prefix}.shape", self.shape)], prefix)

    def extra_repr(self) -> str:
        return f"{list(self.shape)}"


class Transpose(Module):
    """The input's axes permuted: output axis k is input axis ``perm[k]`` (as ``np.transpose``).

    >>> Transpose((0, 2, 1)).forward(np.zeros((2, 3, 4))).shape
    (2, 4, 3)
    """

    keeps_batch = False  # may move the batch off axis 0 (plans probe where it goes)

    def __init__(self, perm):
        super().__init__()
        perm = _ints(perm, "perm", "Transpose")
        if sorted(perm) != list(range(len(perm))) or len(perm) < 2:
            raise ConfigError(f"Transpose: expected a permutation of 0..n-1 (n >= 2), found {list(perm)}")
        self.perm = perm
        self._inverse = tuple(int(k) for k in np.argsort(perm))

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != len(self.perm):
            raise ShapeError(f"{self.name}: expected a {len(self.perm)}-D input, found shape {list(x.shape)}")
        return x.transpose(self.perm)

    def backward(self, grad):
        return np.asarray(grad).transpose(self._inverse)

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        """The plan's call: the permuted view of the bound input buffer copied into the output."""
        return np.copyto, (out, xs[0].transpose(self.perm))

    def spec(self):
        return {"perm": list(self.perm)}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(field(spec, "perm", list, where))

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Transpose", inputs[:1], prefix, perm=list(self.perm))

    def extra_repr(self) -> str:
        return f"{list(self.perm)}"


class Slice(Module):
    """``x[..., start:stop, ...]`` on `axis` (step 1; negative bounds count from the end, as in
    Python; `stop` None is the end). A slice that is empty, or starts past the axis, is refused.

    >>> Slice(1, 2, None).forward(np.zeros((2, 5))).shape
    (2, 3)
    """

    keeps_batch = False  # may move the batch off axis 0 (plans probe where it goes)

    def __init__(self, axis: int, start: int, stop: int | None = None):
        super().__init__()
        for what, v in (("axis", axis), ("start", start)) + ((("stop", stop),) if stop is not None else ()):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"Slice: expected an integer {what}, found {v!r}")
        self.axis, self.start = int(axis), int(start)
        self.stop = None if stop is None else int(stop)

    def _index(self, x):
        if not -x.ndim <= self.axis < x.ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for an input of shape {list(x.shape)}")
        axis = self.axis % x.ndim
        lo, hi, _ = slice(self.start, self.stop).indices(x.shape[axis])
        if hi <= lo:
            raise ShapeError(f"{self.name}: [{self.start}:{self.stop}] on axis {self.axis} of an input of shape "
                             f"{list(x.shape)} is empty")
        return (slice(None),) * axis + (slice(lo, hi),)

    def forward(self, x):
        x = np.asarray(x)
        index = self._index(x)
        self._save(_in_shape=x.shape, _where=index)
        return x[index]

    def backward(self, grad):
        grad = as_float(grad)
        out = np.zeros(self._in_shape, dtype=grad.dtype)
        out[self._where] = grad
        return out

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        return np.copyto, (out, xs[0][self._index(xs[0])])

    def spec(self):
        return {"axis": self.axis, "start": self.start, "stop": self.stop}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        stop = spec.get("stop") if isinstance(spec, dict) else None
        return cls(field(spec, "axis", int, where), field(spec, "start", int, where),
                   None if stop is None else field(spec, "stop", int, where))

    def to_onnx(self, onnx, prefix, inputs):
        stop = np.iinfo(np.int64).max if self.stop is None else self.stop
        return onnx.node("Slice", [inputs[0], onnx.ints(f"{prefix}.starts", [self.start]),
                                   onnx.ints(f"{prefix}.ends", [stop]), onnx.ints(f"{prefix}.axes", [self.axis])],
                         prefix)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, {self.start}:{'' if self.stop is None else self.stop}"
