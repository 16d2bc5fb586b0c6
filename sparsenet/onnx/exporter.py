"""`export_onnx`: a `Sequential` or a `Graph` -> an ONNX model that onnxruntime runs with sparsenet's
outputs.

A Sequential has one input "input" and one output "output"; a Graph keeps its inputs' and outputs'
names (its inputs' sample shapes must be known), and its `Add` and `Concat` nodes become Sum and
Concat.

Each layer writes its own nodes (`Module.to_onnx`, in the op's file), one or a few standard ops
(default domain, opset 13 or later): Linear -> Gemm (transB=1), or MatMul + Add over the rows of a
sequence, Embedding -> Gather (integer graph inputs are INT64/INT32), Conv2d -> Conv, BatchNorm1d/2d ->
BatchNormalization, pools -> MaxPool / AveragePool (count_include_pad=1) / GlobalAveragePool +
Flatten, activations -> their op (GELU -> Gelu with approximate='tanh' from opset 20, its tanh
formula in Mul/Add/Tanh nodes before), Dropout -> Dropout (identity at inference), Identity ->
Identity. Each op gets this module's builder: ``node(op_type, inputs, name, **attributes)`` returns
the name of the value written, ``const(name, value, weight=None)`` adds an initializer, ``opset``.

Weights are dense initializers by default. With ``sparse_initializers=True``, CSR and BSR weights are
written as SparseTensorProto (linear int64 indices of the stored entries): a smaller file when the
density is below about 1/3. onnxruntime runs such models (it densifies them when loading, so they
are not faster); onnx's strict shape inference (``check_model(full_check=True)``) rejects sparse
tensors as Gemm/Conv inputs, so those files are checked with the structural checker only.

float64 models export as DOUBLE graphs; onnxruntime's CPU provider runs Gemm in double but has no
double Conv or pooling kernels.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .. import nn
from ..errors import ConfigError, SparsenetError
from ..formats import Dense
from ..nn import Graph, Sequential, model_dtype
from ._proto import ELEM_TYPE_OF, require_onnx, sparse_from_pattern

__all__ = ["export_onnx", "MIN_OPSET"]

MIN_OPSET = 13  # Softmax over one axis, Dropout's ratio input, Squeeze/Unsqueeze axes inputs


class _Builder:
    """Nodes and initializers of the graph being written."""

    def __init__(self, dtype, sparse: bool, opset: int):
        self.dtype, self.sparse, self.opset = np.dtype(dtype), sparse, opset
        self.nodes, self.initializers, self.sparse_initializers = [], [], []
        self.in_shapes = None  # one sample's shape per input of the op being written (None: not known)

    def const(self, name: str, value, weight=None, *, transposed: bool = False) -> str:
        """Add an initializer; `weight` (a WeightFormat) also gets a sparse version when asked and
        CSR/BSR (`transposed`: `value` is the weight's transpose)."""
        from onnx import numpy_helper

        value = np.array(value, dtype=self.dtype, order="C")  # keeps 0-d scalars 0-d
        self.initializers.append(numpy_helper.from_array(value, name))
        if self.sparse and weight is not None and not isinstance(weight, Dense):
            pattern = weight.mask().T if transposed else weight.mask().reshape(value.shape)
            self.sparse_initializers.append(sparse_from_pattern(name, value, pattern))
        return name

    def ints(self, name: str, values) -> str:
        """Add an int64 initializer (shapes, pads, axes)."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs, name: str, **attrs) -> str:
        from onnx import helper

        out = f"{name}.out"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out


def _wiring(model, input_shape):
    """(inputs {ONNX name: one sample's shape}, [(name, op, input names)], outputs {node: ONNX name})."""
    if isinstance(model, Graph):
        if input_shape is not None:
            raise ConfigError("export_onnx: a Graph's input shapes are its own; input_shape is for a Sequential")
        unknown = [k for k, s in model.input_shapes.items() if s is None]
        if unknown:
            raise ConfigError(f"export_onnx: the graph's inputs {unknown} have no shape; build the Graph with "
                              f"their sample shapes")
        nodes = [(n.name, n.op, list(n.inputs)) for n in model.nodes]
        return dict(model.input_shapes), nodes, {o: o for o in model.outputs}
    nodes = [(str(i), layer, ["input" if i == 0 else str(i - 1)]) for i, layer in enumerate(model.layers)]
    return {"input": _input_shape(model, input_shape)}, nodes, ({str(len(nodes) - 1): "output"} if nodes else {})


def _output_shapes(model, inputs: dict) -> list | None:
    """One sample's output shape per output (None where a size is symbolic)."""
    if not all(isinstance(s, int) for shape in inputs.values() for s in shape):
        return None
    from ..prune.trace import trace_shapes

    if isinstance(model, Sequential):
        return [list(trace_shapes(model, next(iter(inputs.values())))[-1][1])] if len(model.layers) else None
    return [list(np.shape(o)[1:]) for o in model.trace()]


def _node_shapes(model, inputs: dict) -> dict:
    """{node name: [one sample's shape per input]} from a zero sample, when the input shapes are known."""
    if not all(isinstance(s, int) for shape in inputs.values() for s in shape):
        return {}
    from ..prune.trace import trace_shapes

    if isinstance(model, Sequential):
        return {str(i): [s[0]] for i, s in enumerate(trace_shapes(model, next(iter(inputs.values()))))}
    record = {}
    model.trace(record)
    return {k: v[0] for k, v in record.items()}


def _export_dtype(model):
    """The model's dtype (`model_dtype`), which ONNX needs every layer to share."""
    dtype = model_dtype(model)
    layers = [m for _, m in model.named_modules()][1:]
    dtypes = {np.dtype(l.dtype) for l in layers if hasattr(l, "dtype")}
    dtypes |= {l.weight.data.dtype for l in layers if isinstance(l, (nn.BatchNorm1d, nn.BatchNorm2d))}
    if dtypes - {dtype}:
        found = sorted(map(str, dtypes | {dtype}))
        raise SparsenetError(f"export_onnx: expected one dtype for all layers, found {found}")
    if dtype not in ELEM_TYPE_OF:
        raise SparsenetError(f"export_onnx: expected float32 or float64 weights, found {dtype}")
    return dtype


def _input_shape(model: Sequential, input_shape):
    """One sample's input shape: given, the model's, or the first weighted layer's (symbolic H, W)."""
    shape = input_shape if input_shape is not None else model.input_shape
    if shape is not None:  # None or a name: a symbolic dimension
        return tuple(f"dim{k + 1}" if s is None else s if isinstance(s, str) else int(s) for k, s in enumerate(shape))
    first = model.layers[0] if len(model.layers) else None
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(first, nn.Conv2d):
        return (first.in_channels, "height", "width")
    raise ConfigError("export_onnx: the model has no input_shape; pass input_shape=(...) (one sample)")


def export_onnx(model: Sequential | Graph, path=None, *, sparse_initializers: bool = False, opset: int = 17,
                input_shape=None):
    """Write `model` as an ONNX file at `path` (atomically; None: do not write) and return the ModelProto.

    A Sequential's graph has one input "input" of shape ["batch", *input_shape] (`input_shape`
    defaults to ``model.input_shape``) and one output "output"; a Graph's keeps its inputs' and
    outputs' names and shapes. ``model.meta`` is kept in the metadata property
    "sparsenet.meta" (`import_onnx` restores it). See the module docstring for the op mapping and for
    `sparse_initializers`. The result passes ``onnx.checker``.

    >>> import sparsenet as sn
    >>> proto = export_onnx(sn.build_model("mlp"), None)  # doctest: +SKIP
    >>> [n.op_type for n in proto.graph.node]  # doctest: +SKIP
    ['Flatten', 'Gemm', 'Relu', 'Gemm', 'Relu', 'Gemm']
    """
    onnx = require_onnx()
    from onnx import helper

    from .. import __version__

    if not isinstance(model, (Sequential, Graph)):
        raise ConfigError(f"export_onnx: expected a Sequential or a Graph, found {type(model).__name__}")
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise ConfigError(f"export_onnx: expected an opset from {MIN_OPSET} to {top}, found {opset!r}")
    dtype = _export_dtype(model)
    inputs, nodes, outputs = _wiring(model, input_shape)
    out_shapes = _output_shapes(model, inputs)
    b = _Builder(dtype, sparse_initializers, int(opset))
    values = {k: k for k in inputs}
    record = _node_shapes(model, inputs)
    for name, op, ins in nodes:
        b.in_shapes = record.get(name)
        values[name] = op.to_onnx(b, name, [values[r] for r in ins])
        if name in outputs:  # the node's last ONNX node writes the graph output of that name
            b.nodes[-1].output[0] = values[name] = outputs[name]
    if not nodes:  # an empty Sequential
        b.node("Identity", ["input"], "identity")
        b.nodes[-1].output[0] = "output"
        outputs = {"input": "output"}
    elem = ELEM_TYPE_OF[dtype]
    index_types = getattr(model, "input_dtypes", {}) if isinstance(model, Graph) else {}
    graph = helper.make_graph(
        b.nodes, "sparsenet",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(index_types[k]) if k in index_types
                                       else elem, ["batch", *s]) for k, s in inputs.items()],
        [helper.make_tensor_value_info(o, elem, None if out_shapes is None else ["batch", *out_shapes[k]])
         for k, o in enumerate(outputs.values())],
        initializer=b.initializers)
    opsets = [helper.make_opsetid("", int(opset))]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="sparsenet",
                              producer_version=__version__, ir_version=helper.find_min_ir_version_for(opsets))
    if out_shapes is None:  # symbolic sizes: let onnx infer the output's shape
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        for out, known in zip(proto.graph.output, inferred.graph.output):
            out.CopyFrom(known)
    try:
        meta = json.dumps(getattr(model, "meta", {}) or {}, allow_nan=False)
    except (TypeError, ValueError):
        meta = None
    if meta is not None:
        helper.set_model_props(proto, {"sparsenet.meta": meta})
    onnx.checker.check_model(proto, full_check=True)  # with dense weights: types and shapes too
    if b.sparse_initializers:
        sparse = {t.values.name for t in b.sparse_initializers}
        dense = [t for t in proto.graph.initializer if t.name not in sparse]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(dense)
        proto.graph.sparse_initializer.extend(b.sparse_initializers)
        onnx.checker.check_model(proto)  # strict shape inference does not take sparse Gemm/Conv inputs
    if path is not None:
        _write(proto.SerializeToString(), os.fspath(path))
    return proto


def _write(blob: bytes, path: str) -> None:
    """Temporary file in the target directory, then rename: a failed write leaves any old file intact."""
    from ..io.atomic import atomic_writer

    with atomic_writer(path) as f:
        f.write(blob)
