"""Shapes flowing through a model, found by one forward pass of a single zero sample."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..nn import Graph, Sequential, inference, model_dtype

__all__ = ["trace_shapes", "layer_shapes", "model_input_shape"]


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


def model_input_shape(model, input_shape=None) -> tuple:
    """One sample's input shape: `input_shape`, else the model's own (a Graph: its single input's)."""
    if isinstance(model, Graph):
        if input_shape is not None and tuple(input_shape) != model.input_shape:
            raise ConfigError(f"a Graph's input shapes are its own ({model.input_shapes}); found input_shape="
                              f"{tuple(input_shape)}")
        shape = model.input_shape
    else:
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ConfigError("the model has no (single) input shape; pass input_shape=(...)")
    return tuple(shape)


def layer_shapes(model, input_shape=None) -> dict[str, tuple[tuple, tuple]]:
    """{layer name: (input shape, output shape)} of one sample, for every layer of a Sequential (names
    "0", "1"...) or every single-input node of a Graph (by node name)."""
    if isinstance(model, Graph):
        if input_shape is not None:
            model_input_shape(model, input_shape)  # a single input's own shape, or an error
        record: dict = {}
        model.trace(record=record)
        return {name: (ins[0], out) for name, (ins, out) in record.items() if len(ins) == 1}
    return {str(i): s for i, s in enumerate(trace_shapes(model, input_shape))}
