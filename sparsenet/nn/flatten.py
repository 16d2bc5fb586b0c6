"""Flatten [B, ...] to [B, features] (C order, as PyTorch and ONNX Flatten(axis=1))."""

import numpy as np

from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    def forward(self, x):
        shape = np.shape(x)
        self._save(_shape=shape)
        return np.reshape(x, (shape[0], int(np.prod(shape[1:]))))  # explicit: -1 fails on empty batches

    def lower(self, builder, inputs):
        return builder.alias(inputs[0], (inputs[0].features,))

    def backward(self, grad):
        return np.reshape(grad, self._shape)

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("Flatten", inputs[:1], prefix, axis=1)
