"""Flatten [B, ...] to [B, features] (C order, as PyTorch and ONNX Flatten(axis=1))."""

import numpy as np

from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    def forward(self, x):
        self._save(_shape=np.shape(x))
        return np.reshape(x, (np.shape(x)[0], -1))

    def backward(self, grad):
        return np.reshape(grad, self._shape)
