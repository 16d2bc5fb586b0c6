"""`import_onnx`: an ONNX chain, as PyTorch (legacy and dynamo exporters) and Keras/tf2onnx write
MLPs and CNNs, -> a `Sequential`.

The graph must be a chain from its one input to its one output; constants (initializers, sparse
initializers, Constant nodes, constant expressions) may join it anywhere. Each node becomes a layer,
folds into the Linear/Conv2d before it (BatchNormalization, bias Add, per-channel Mul/Div/Sub), or is
a layout step (Flatten/Reshape/Squeeze to [N, features], identity Transpose, tf2onnx's NHWC flatten,
whose column order is folded into the next Linear). Anything else raises `OnnxImportError` naming
the node (index, name, op type).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import ModelFileError, SparsenetError
from ..nn import Sequential, no_grad
from ._graph import Graph
from ._ops import OPS
from ._state import BATCH_PLACEHOLDER, State
from ._proto import FLOAT_TYPES, OnnxImportError, node_label, require_onnx

__all__ = ["import_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = tuple(sorted(OPS))


def import_onnx(source, *, fold_batchnorm: bool = True) -> Sequential:
    """Build a `Sequential` (in eval mode) from an ONNX model: a path, the file's bytes, or a ModelProto.

    Weights from dense initializers are stored Dense, weights from sparse initializers CSR with the
    stored pattern (prune and `compile` afterwards for other formats). With `fold_batchnorm`, a
    BatchNormalization directly after Gemm/MatMul/Conv is folded into that layer's weight and bias
    (in float64, rounded once); otherwise it becomes a BatchNorm1d/2d layer. ``model.input_shape``
    is the graph input's shape without the batch (None if a dimension is symbolic);
    ``model.meta["onnx"]`` records the producer, the opset and the folded nodes. Shapes are checked by
    one forward pass of a zero sample against the graph's.

    >>> model = import_onnx("model.onnx")  # doctest: +SKIP
    """
    proto = _load(source)
    graph = Graph(proto)
    dtype, batch, sample = _signature(graph)
    st = State(graph, dtype, sample, batch, fold_batchnorm)
    value = graph.input.name
    graph.shapes[value] = (batch, *st.shape) if st.static else None
    while (step := graph.next_node(value)) is not None:
        i, node, slot, inputs = step
        st.where = node_label(i, node)
        handler = OPS.get(node.op_type)
        if handler is None:
            raise OnnxImportError(f"{st.where}: op {node.op_type} is not supported "
                                  f"(supported: {', '.join(SUPPORTED_OPS)})")
        try:
            handler(st, node, _attributes(node), slot, inputs)
        except SparsenetError:
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError) as e:  # a case no check foresaw
            raise OnnxImportError(f"{st.where}: cannot import this node ({type(e).__name__}: {e})") from None
        value = node.output[0]
        graph.shapes[value] = (batch, *st.shape) if st.static else None
    st.where = f"graph output {graph.output.name!r}"
    st.flush()
    st.settle()
    model = Sequential(*st.layers)
    model.input_shape = tuple(sample) if all(d is not None for d in sample) else None
    model.meta = _meta(proto, graph, st)
    model.eval()
    _check_shapes(model, st, graph)
    return model


def _load(source):
    onnx = require_onnx()
    if isinstance(source, onnx.ModelProto):
        proto, what = source, "ONNX model"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        what = "ONNX bytes"
        try:
            proto = onnx.load_from_string(bytes(source))
        except Exception as e:  # protobuf raises DecodeError and others
            raise ModelFileError(f"{what}: not an ONNX model ({type(e).__name__}: {e})") from None
    else:
        try:
            path = os.fspath(source)
        except TypeError:
            raise SparsenetError(f"import_onnx: expected a path, bytes or onnx.ModelProto, "
                                 f"found {type(source).__name__}") from None
        what = f"ONNX file {path!r}"
        if not os.path.isfile(path):
            raise ModelFileError(f"{what}: not found")
        try:
            proto = onnx.load(path)
        except Exception as e:
            raise ModelFileError(f"{what}: not an ONNX model ({type(e).__name__}: {e})") from None
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # ValidationError, or C++ errors on malformed protos
        detail = "; ".join(line.strip(" =>") for line in str(e).splitlines() if line.strip())
        raise ModelFileError(f"{what}: not a valid ONNX model ({detail})") from None
    return proto


def _signature(graph: Graph):
    """(dtype, batch size for evaluated shapes, one sample's dims with None where symbolic)."""
    from onnx import TensorProto

    v = graph.input
    where = f"graph input {v.name!r}"
    if not v.type.HasField("tensor_type"):
        raise OnnxImportError(f"{where}: expected a tensor")
    elem = v.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        raise OnnxImportError(f"{where}: expected element type FLOAT or DOUBLE, found "
                              f"{TensorProto.DataType.Name(elem)}")
    if not v.type.tensor_type.HasField("shape"):
        raise OnnxImportError(f"{where}: declares no shape; sparsenet needs at least the rank")
    dims = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in v.type.tensor_type.shape.dim]
    if len(dims) < 2:
        raise OnnxImportError(f"{where}: expected [batch, features...], found rank {len(dims)}")
    return FLOAT_TYPES[elem], dims[0] or BATCH_PLACEHOLDER, tuple(dims[1:])


def _attributes(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, float):  # stored as float32: 1e-5, not 9.999999747378752e-06
            value = float(str(np.float32(value)))
        out[a.name] = value
    return out


def _meta(proto, graph: Graph, st: State) -> dict:
    meta = {}
    props = {p.key: p.value for p in proto.metadata_props}
    if "sparsenet.meta" in props:  # written by export_onnx
        try:
            saved = json.loads(props["sparsenet.meta"])
        except json.JSONDecodeError:
            saved = None
        if isinstance(saved, dict):
            meta.update(saved)
    meta["onnx"] = {"producer": f"{proto.producer_name} {proto.producer_version}".strip(),
                    "opset": graph.opset, "folded": list(st.folded)}
    return meta


def _declared_output(graph: Graph):
    t = graph.output.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)[1:]


def _check_shapes(model: Sequential, st: State, graph: Graph) -> None:
    """One zero sample through every layer: each must accept what the previous gives, and the result
    must have the graph's output shape."""
    if model.input_shape is None:
        return
    x = np.zeros((1, *model.input_shape), dtype=st.dtype)
    with no_grad():
        for layer, origin in zip(model.layers, st.origins):
            try:
                x = layer.forward(x)
            except SparsenetError as e:
                raise OnnxImportError(f"{origin}: the imported {type(layer).__name__} does not fit its input: "
                                      f"{e}") from None
    got = tuple(np.shape(x)[1:])
    if got != tuple(st.shape):
        raise OnnxImportError(f"the imported model gives samples of shape {got}, the ONNX graph {tuple(st.shape)}")
    declared = _declared_output(graph)
    if declared and (len(declared) != len(got) or any(d is not None and d != g for d, g in zip(declared, got))):
        raise OnnxImportError(f"graph output {graph.output.name!r}: declared sample shape {declared}, "
                              f"the imported model gives {got}")
