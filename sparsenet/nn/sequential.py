"""Sequential: layers applied in order; backward runs them in reverse."""

from __future__ import annotations

from . import module as _module
from .module import Module

__all__ = ["Sequential"]


def _changed() -> None:
    _module._GENERATION[0] += 1


class _Layers(list):
    """A Sequential's layers: a list whose in-place changes (``model.layers[1] = ...``, append, ...)
    count as changes of the model, so that its cached compiled plan is rebuilt."""

    def __setitem__(self, i, v):
        _changed()
        super().__setitem__(i, v)

    def __delitem__(self, i):
        _changed()
        super().__delitem__(i)

    def __iadd__(self, other):
        _changed()
        return super().__iadd__(other)

    def append(self, v):
        _changed()
        super().append(v)

    def extend(self, vs):
        _changed()
        super().extend(vs)

    def insert(self, i, v):
        _changed()
        super().insert(i, v)

    def pop(self, i=-1):
        _changed()
        return super().pop(i)

    def remove(self, v):
        _changed()
        super().remove(v)

    def clear(self):
        _changed()
        super().clear()

    def reverse(self):
        _changed()
        super().reverse()


class Sequential(Module):
    """A chain of modules.

    >>> from sparsenet.nn import Linear, ReLU
    >>> Sequential(Linear(4, 8), ReLU(), Linear(8, 2))(np.ones((3, 4), np.float32)).shape
    (3, 2)
    """

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = _Layers(layers)
        self.input_shape: tuple | None = None  # one sample's shape, when known (zoo, files)
        self.meta: dict = {}  # JSON-serialisable facts saved with the model
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Module) or getattr(layer, "arity", 1) != 1:
                from ..errors import ConfigError
                what = type(layer).__name__ + (" (an op of several inputs: use a Graph)" if isinstance(layer, Module)
                                               else "")
                raise ConfigError(f"Sequential: expected Module instances of one input, found {what} at {i}")
            layer.name = f"layer {i} ({type(layer).__name__})"

    def __setattr__(self, name, value) -> None:
        if name == "layers" and not isinstance(value, _Layers):
            value = _Layers(value)
        super().__setattr__(name, value)

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def predict(self, x, batch_size: int = 256):
        """``sparsenet.predict(self, x, batch_size)``: outputs for `x` ([N, *input_shape] or one
        sample), validated against `input_shape`, in evaluation mode and without keeping anything for
        backward (thread-safe)."""
        return _module.predict(self, x, batch_size)

    def lower(self, builder, inputs):
        v = inputs[0]
        for layer in self.layers:
            v = layer.lower(builder, [v])
        return v

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def backward_params(self, grad) -> None:
        """`backward` without the input's gradient: layers before the first one with parameters are
        skipped, and that one computes its parameters' gradients only."""
        first = next((i for i, layer in enumerate(self.layers) if layer.parameters()), None)
        if first is None:
            return
        for layer in reversed(self.layers[first + 1:]):
            grad = layer.backward(grad)
        self.layers[first].backward_params(grad)

    def __repr__(self) -> str:
        lines = [f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
