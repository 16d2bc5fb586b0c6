"""Sequential: layers applied in order; backward runs them in reverse."""

from __future__ import annotations

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """A chain of modules.

    >>> from sparsenet.nn import Linear, ReLU
    >>> Sequential(Linear(4, 8), ReLU(), Linear(8, 2))(np.ones((3, 4), np.float32)).shape
    (3, 2)
    """

    def __init__(self, *layers: Module):
        super().__init__()
        self.layers = list(layers)
        self.input_shape: tuple | None = None  # one sample's shape, when known (zoo, files)
        self.meta: dict = {}  # JSON-serialisable facts saved with the model
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Module) or getattr(layer, "arity", 1) != 1:
                from ..errors import ConfigError
                what = type(layer).__name__ + (" (an op of several inputs: use a Graph)" if isinstance(layer, Module)
                                               else "")
                raise ConfigError(f"Sequential: expected Module instances of one input, found {what} at {i}")
            layer.name = f"layer {i} ({type(layer).__name__})"

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
        from ..runtime import predict

        return predict(self, x, batch_size=batch_size)

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

    def __repr__(self) -> str:
        lines = [f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
