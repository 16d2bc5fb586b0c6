"""Layers: one per file, re-exported here.

An op is one class in one file holding everything about it: forward and backward, parameters
(`own_parameters`, `buffers`, `reset_parameters`), its spec for model files (`spec`, `from_spec`),
its ONNX nodes (`to_onnx`) and its compiled-plan steps (`lower`). `OPS` lists the ops that model
files can hold, by the name they are stored under. Adding an op: its file here, its line in `OPS`,
and, if ONNX files may contain it, a handler in `sparsenet.onnx._ops` (which maps ONNX's ops, many
to one, onto these).
"""

from .activation import (GELU, Clip, HardSigmoid, HardSwish, Identity, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU,
                         Softmax, Tanh)
from .arith import Div, Mul, Scale, Shift, Sub
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .layernorm import LayerNorm
from .graph import Graph, Node
from .linear import Linear
from .matmul import MatMul
from .merge import Add, Concat
from .pad import Pad2d
from .module import Module, Parameter, grad_enabled, inference, model_dtype, no_grad
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .reduce import Mean
from .reshape import Reshape, Slice, Transpose
from .sequential import Sequential

# The ops a model file may hold, by the kind name it stores (`sparsenet.io.layers`).
OPS = {cls.__name__: cls for cls in (
    Linear, Conv2d, Embedding, BatchNorm1d, BatchNorm2d, LayerNorm, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Flatten, Pad2d,
    ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Clip, ReLU6, HardSigmoid, HardSwish, Softmax, Identity, Dropout,
    Add, Concat, Mul, Sub, Div, Shift, Scale, MatMul, Mean, Reshape, Transpose, Slice)}

__all__ = [
    "OPS",
    "Module", "Parameter", "Sequential", "Graph", "Node", "no_grad", "grad_enabled", "inference", "model_dtype",
    "Linear", "Conv2d", "Embedding",
    "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Pad2d",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Clip", "ReLU6", "HardSigmoid", "HardSwish", "Softmax",
    "Identity",
    "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "Add", "Concat", "Mul", "Sub", "Div", "Shift", "Scale", "MatMul", "Mean", "Reshape", "Transpose", "Slice",
]
