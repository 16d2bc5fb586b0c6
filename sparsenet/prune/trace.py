"""Shapes flowing through a model, found by one forward pass of a single zero sample."""

from __future__ import annotations

import numpy as np

from ..errors import SparsenetError
from ..nn import Sequential, no_grad

__all__ = ["trace_shapes"]


def trace_shapes(model: Sequential, input_shape=None) -> list[tuple[tuple, tuple]]:
    """[(input shape, output shape)] of one sample (no batch axis) for every layer, in order.

    `input_shape` defaults to ``model.input_shape``. The model's train/eval mode is restored.
    """
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise SparsenetError("trace_shapes: the model has no input_shape; pass input_shape=(...)")
    dtype = next((l.dtype for l in model.layers if hasattr(l, "dtype")), np.float32)
    x = np.zeros((1, *shape), dtype=dtype)
    was_training = model.training
    model.eval()
    shapes = []
    try:
        with no_grad():  # nothing is kept on the layers
            for layer in model.layers:
                y = layer.forward(x)
                shapes.append((tuple(x.shape[1:]), tuple(np.shape(y)[1:])))
                x = y
    finally:
        model.train(was_training)
    return shapes
