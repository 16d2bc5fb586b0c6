"""Layers: one per file, re-exported here."""

from .activation import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .graph import Graph, Node
from .linear import Linear
from .merge import Add, Concat
from .module import Module, Parameter, grad_enabled, inference, model_dtype, no_grad
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .sequential import Sequential

__all__ = [
    "Module", "Parameter", "Sequential", "Graph", "Node", "no_grad", "grad_enabled", "inference", "model_dtype",
    "Linear", "Conv2d",
    "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Identity",
    "Dropout", "BatchNorm1d", "BatchNorm2d",
    "Add", "Concat",
]
