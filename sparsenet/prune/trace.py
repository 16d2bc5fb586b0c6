"""Shapes flowing through a model, found by one forward pass of a single zero sample."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..nn import Sequential, inference, model_dtype

__all__ = ["trace_shapes"]


def trace_shapes(model: Sequential, input_shape=None) -> list[tuple[tuple, tuple]]:
    """[(input shape, output shape)] of one sample (no batch axis) for every layer, in order.

    `input_shape` defaults to ``model.input_shape``. The model's train/eval mode is restored.
    """
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ConfigError("trace_shapes: the model has no input_shape; pass input_shape=(...)")
    x = np.zeros((1, *shape), dtype=model_dtype(model))
    shapes = []
    with inference(model):  # nothing is kept on the layers
        for layer in model.layers:
            y = layer.forward(x)
            shapes.append((tuple(x.shape[1:]), tuple(np.shape(y)[1:])))
            x = y
    return shapes
