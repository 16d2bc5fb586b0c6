"""`import_onnx`: an ONNX graph, as PyTorch (legacy and dynamo exporters) and Keras/tf2onnx write
MLPs, CNNs, residual networks, transformers and recommenders, -> a `Sequential` (a chain) or a `Graph`.

Constants (initializers, sparse initializers, Constant nodes, constant expressions, shapes) may join
the data anywhere. A node that reads one data value becomes a layer, folds into the Linear/Conv2d
before it (BatchNormalization, bias Add, per-channel Mul/Div/Sub), becomes a `Shift`/`Scale` (an Add
or Mul by any other constant), or is a layout step: Flatten/Reshape/Squeeze to [N, features], tf2onnx's
NHWC flatten (its column order folded into the next Linear), and general Reshape, Transpose,
Squeeze/Unsqueeze, Slice, Split (one Slice chain per output) and Gather at constant indices.
Shapes are followed whole, with a placeholder
for a symbolic batch, so that PyTorch's attention exports, which move the batch and merge it with
the heads (``[T, N * H, d]``), import: a Reshape's batch-carrying dimension becomes its -1. An Add or
Sum of several data values becomes an `Add` node, a Concat a `Concat`, a MatMul of two an attention
`MatMul`; a value read by several nodes is shared. Integer graph inputs (INT64, INT32) are indices:
a Gather of a constant table at them is an `Embedding`. Anything else raises `OnnxImportError`
naming the node (index, name, op type).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from .. import nn
from ..errors import ModelFileError, SparsenetError
from ..nn import Sequential, no_grad
from ._fuse import fuse_activations, fuse_index_wraps
from ._graph import Graph
from ._ops import OPS, _holds_batch, _slice
from ._state import BATCH_PLACEHOLDER, State, shown
from ._proto import FLOAT_TYPES, OnnxImportError, node_label, require_onnx

__all__ = ["import_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = tuple(sorted((*OPS, "Split")))
_JOINS = ("Add", "Sum", "Concat", "Mul", "Sub", "Div", "MatMul")  # ops that may read several data values
_BINARY = {"Mul": nn.Mul, "Sub": nn.Sub, "Div": nn.Div}
_INDEX_OPS = ("Gather", "Identity", "Cast")  # what may read integer indices
INDEX_TYPES = {7: np.dtype(np.int64), 6: np.dtype(np.int32)}


def import_onnx(source, *, fold_batchnorm: bool = True) -> Sequential | nn.Graph:
    """Build a model (in eval mode) from an ONNX model: a path, the file's bytes, or a ModelProto.

    A graph whose nodes form one chain from its one input to its one output gives a `Sequential`;
    any other (residual connections, several inputs or outputs) a `Graph` whose inputs, nodes and
    outputs are named after the ONNX graph's (characters other than letters, digits, ``_`` and ``-``
    become ``_``). Weights from dense initializers are stored Dense, weights from sparse
    initializers CSR with the stored pattern (prune and `compile` afterwards for other formats).
    With `fold_batchnorm`, a BatchNormalization directly after Gemm/MatMul/Conv is folded into that
    layer's weight and bias (in float64, rounded once); otherwise it becomes a BatchNorm1d/2d layer.
    ``model.input_shape`` (``input_shapes`` for a Graph) is the graph input's shape without the
    batch (None if a dimension is symbolic); ``model.meta["onnx"]`` records the producer, the opset
    and the folded nodes. Shapes are checked by one forward pass of a zero sample against the graph's.

    >>> model = import_onnx("model.onnx")  # doctest: +SKIP
    """
    proto = _load(source)
    graph = Graph(proto)
    fuse_activations(graph)
    fuse_index_wraps(graph)
    dtype, batch, samples, index_types = _signature(graph)
    return _Lowering(graph, dtype, batch, fold_batchnorm, index_types).run(proto, samples)


class _Lowering:
    """The ONNX nodes, in their (topological) order, lowered as chains of one-input layers (each a
    `State` that starts at a graph input or at a shared or joined value) and the nodes that join them."""

    def __init__(self, graph: Graph, dtype, batch, fold: bool, index_types: dict):
        self.graph, self.dtype, self.batch, self.fold = graph, dtype, batch, fold
        self.index_types = index_types  # integer graph inputs -> their dtype
        self.integer: set[str] = set(index_types)  # values holding integer indices
        self.data: set[str] = set()     # ONNX values computed from the graph's inputs
        self.open: dict[str, tuple[State, str]] = {}  # value -> (chain that ends at it, the name it starts at)
        self.named: dict[str, str] = {}  # value -> its sparsenet input or node name
        self.shape: dict[str, tuple] = {}  # value -> one sample's shape (None where not static)
        self.lead: dict[str, int] = {}   # value -> the size of its axis 0, where that is not the batch
        self.nodes: list[tuple] = []     # (name, op, input names) of the Graph
        self.taken: set[str] = set()
        self.folded: list[str] = []
        self.origins: dict[str, str] = {}  # sparsenet node name -> label of the ONNX node it came from

    def run(self, proto, samples):
        g = self.graph
        for v, sample in zip(g.inputs, samples):
            self.data.add(v.name)
            self.named[v.name] = self._name(v.name)
            self.shape[v.name] = tuple(sample)
            self._record(v.name)
        for i, node in enumerate(g.nodes):
            if node.op_type == "Shape" or not any(n in self.data for n in node.input):
                continue  # a constant, folded when a node reads it
            self._lower(i, node)
        outputs = [o.name for o in g.outputs]
        for o in outputs:
            if o not in self.data:
                raise OnnxImportError(f"graph output {o!r}: is a constant, not computed from the graph's inputs")
            if o in self.lead:
                raise OnnxImportError(f"graph output {o!r}: its first axis is not the batch (shape "
                                      f"{shown(self.batch, (self.lead[o], *self.shape[o]))})")
        for v in sorted(self.data - set(outputs)):
            if not g.data_users(v) and v not in self.named:
                k, node = g.producer[v]
                raise OnnxImportError(f"{node_label(k, node)}: its output {v!r} is neither used by a node nor a "
                                      f"graph output ({', '.join(map(repr, outputs))})")
        chain = len(g.inputs) == 1 and len(outputs) == 1 and outputs[0] in self.open and not self.index_types
        if chain and self.open[outputs[0]][1] == self.named[g.inputs[0].name] and not self.nodes:
            st, _ = self.open[outputs[0]]
            st.where = f"graph output {outputs[0]!r}"
            st.flush()
            st.settle()
            model = Sequential(*st.layers)
            sample = samples[0]
            model.input_shape = tuple(sample) if all(d is not None for d in sample) else None
            self.folded += st.folded
            model.meta = _meta(proto, g, self.folded)
            model.eval()
            _check_chain(model, st, g)
            return model
        names = [self._materialize(o, f"graph output {o!r}") for o in outputs]
        inputs = {self.named[v.name]: (tuple(s) if all(d is not None for d in s) else None)
                  for v, s in zip(g.inputs, samples)}
        try:
            model = nn.Graph(inputs, self.nodes, names, check_shapes=False,
                             input_dtypes={self.named[k]: v for k, v in self.index_types.items()})
        except SparsenetError as e:
            raise OnnxImportError(f"the imported graph is not valid: {e}") from None
        model.meta = _meta(proto, g, self.folded)
        model.eval()
        _check_graph(model, [self.shape[o] for o in outputs], self.origins, g)
        return model

    # -- one node -----------------------------------------------------------------------------------
    def _lower(self, i, node):
        g = self.graph
        label = node_label(i, node)
        inputs = g.node_inputs(i, node, self.data)
        data_in = [n for n in node.input if n in self.data]
        out = node.output[0]
        if node.op_type == "Split":
            self._split(i, node, label, data_in, inputs)
            return
        if len(data_in) == 1:
            value = data_in[0]
            st, start = self._chain_to(value, label)
            st.where, st.node_name = label, node.name or f"{node.op_type}_{i}"
            handler = OPS.get(node.op_type)
            if handler is None:
                raise OnnxImportError(f"{label}: op {node.op_type} is not supported "
                                      f"(supported: {', '.join(SUPPORTED_OPS)})")
            if st.integer and node.op_type not in _INDEX_OPS:
                raise OnnxImportError(f"{label}: {node.op_type} of integer indices is not supported (indices may "
                                      f"only be looked up, by Gather of a constant table)")
            try:
                handler(st, node, _attributes(node), list(node.input).index(value), inputs)
            except SparsenetError:
                raise
            except (ArithmeticError, LookupError, TypeError, ValueError) as e:  # a case no check foresaw
                raise OnnxImportError(f"{label}: cannot import this node ({type(e).__name__}: {e})") from None
            self.open[out] = (st, start)
            self.shape[out] = tuple(st.shape)
            if not st.batch_first:
                self.lead[out] = st.lead
            if st.integer:
                self.integer.add(out)
        else:
            self._join(i, node, label, data_in, inputs)
        self.data.add(out)
        self._record(out)

    def _split(self, i, node, label, data_in, inputs):
        """A Split of one data value along a non-batch axis: each output a chain of its own from the
        value, beginning with a `Slice` (a node of several outputs becomes several one-output nodes)."""
        if data_in != [node.input[0]]:
            raise OnnxImportError(f"{label}: Split of {len(data_in)} values computed from the graph's inputs is not "
                                  f"supported (expected the data as its first input, sizes as constants)")
        value = node.input[0]
        if value in self.integer:
            raise OnnxImportError(f"{label}: Split of integer indices is not supported")
        attrs = _attributes(node)
        unknown = [k for k in attrs if k not in ("axis", "split", "num_outputs")]
        if unknown:
            raise OnnxImportError(f"{label}: attribute {unknown[0]!r} is not supported")
        start = self._materialize(value, label)

        def chain():
            st = State(self.graph, self.dtype, self.shape[value], self.batch, self.fold, False, self.lead.get(value))
            st.where = label
            return st

        st0 = chain()
        full = st0.full
        axis = int(attrs.get("axis", 0))
        if not -len(full) <= axis < len(full):
            raise OnnxImportError(f"{label}: axis={axis} is out of range for a {len(full)}-D input")
        axis %= len(full)
        size, n = full[axis], len(node.output)
        if (axis == 0 and st0.batch_first) or (size is not None and _holds_batch(st0, size)):
            raise OnnxImportError(f"{label}: a Split of axis {axis} of {shown(self.batch, full)} is not supported "
                                  f"(it holds the batch)")
        given = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
        if given is not None:
            sizes = [int(v) for v in np.asarray(given).reshape(-1)]
        elif size is None:
            raise OnnxImportError(f"{label}: a Split of an axis whose size is not static needs its sizes")
        else:  # equal parts, the last one smaller (ONNX)
            part = -(-size // n)
            sizes = [min(part, size - k * part) for k in range(n)]
        if len(sizes) != n or any(v < 1 for v in sizes) or (size is not None and sum(sizes) != size):
            raise OnnxImportError(f"{label}: split sizes {sizes} do not cut axis {axis} of size {size} into "
                                  f"{n} non-empty parts")
        lo = 0
        for k, (out, part) in enumerate(zip(node.output, sizes)):
            st = chain()
            st.node_name = f"{node.name or f'Split_{i}'}_{k}"
            bounds = [None, np.array([lo]), np.array([lo + part]), np.array([axis])]
            _slice(st, node, {}, 0, bounds)
            lo += part
            self.open[out] = (st, start)
            self.shape[out] = tuple(st.shape)
            if not st.batch_first:
                self.lead[out] = st.lead
            self.data.add(out)
            self._record(out)

    def _join(self, i, node, label, data_in, inputs):
        """An Add/Sum or Concat of several data values: an `Add` or `Concat` node of the Graph."""
        if node.op_type not in _JOINS:
            raise OnnxImportError(f"{label}: {node.op_type} reads {len(data_in)} values computed from the graph's "
                                  f"inputs; only {', '.join(_JOINS)} may join several (the others take "
                                  f"one, beside constants)")
        if any(v is not None for v in inputs):
            raise OnnxImportError(f"{label}: {node.op_type} of values computed from the graph's inputs and "
                                  f"constants together is not supported")
        if any(v in self.integer for v in data_in):
            raise OnnxImportError(f"{label}: {node.op_type} of integer indices is not supported (indices may "
                                  f"only be looked up, by Gather of a constant table)")
        attrs = _attributes(node)
        shapes = [self.shape[v] for v in data_in]
        leads = [self.lead.get(v, self.batch) for v in data_in]
        names = [self._materialize(v, label) for v in data_in]
        lead = leads[0]
        if any(x != self.batch for x in leads) and node.op_type != "MatMul":
            raise OnnxImportError(f"{label}: {node.op_type} of values whose batch is not their first axis is not "
                                  f"supported")
        if node.op_type == "MatMul":
            if attrs:
                raise OnnxImportError(f"{label}: attribute {next(iter(attrs))!r} is not supported")
            (a, b) = [(x, *s) for x, s in zip(leads, shapes)]
            if len(a) < 2 or len(b) < 2 or None in a or None in b or a[-1] != b[-2]:
                raise OnnxImportError(f"{label}: MatMul of values of shapes {shown(self.batch, a)} and "
                                      f"{shown(self.batch, b)} is not supported (expected static [..., M, K] and "
                                      f"[..., K, N])")
            try:
                full = (*np.broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1])
            except ValueError:
                raise OnnxImportError(f"{label}: the leading axes of {shown(self.batch, a)} and "
                                      f"{shown(self.batch, b)} do not broadcast") from None
            op, lead, shape = nn.MatMul(), full[0], tuple(full[1:])
        elif node.op_type == "Concat":
            unknown = [k for k in attrs if k != "axis"]
            if unknown:
                raise OnnxImportError(f"{label}: attribute {unknown[0]!r} is not supported")
            rank = len(shapes[0]) + 1
            axis = int(attrs.get("axis", 1))
            if not -rank <= axis < rank or axis % rank == 0:
                raise OnnxImportError(f"{label}: axis={axis} is not supported (expected a non-batch axis of "
                                      f"the {rank}-D inputs)")
            axis %= rank
            op = nn.Concat(axis)
            if any(len(s) != len(shapes[0]) for s in shapes) or any(
                    a != b for s in shapes for k, (a, b) in enumerate(zip(s, shapes[0]))
                    if k != axis - 1 and a is not None and b is not None):
                raise OnnxImportError(f"{label}: inputs of sample shapes {shapes} differ beyond axis {axis}")
            sizes = [s[axis - 1] for s in shapes]
            joined = list(shapes[0])
            joined[axis - 1] = None if None in sizes else sum(sizes)
            shape = tuple(joined)
        elif node.op_type in _BINARY or (node.op_type == "Add" and len(shapes) == 2 and shapes[0] != shapes[1]):
            if attrs:
                raise OnnxImportError(f"{label}: attribute {next(iter(attrs))!r} is not supported")
            if len(shapes) != 2 or len(shapes[0]) != len(shapes[1]):
                raise OnnxImportError(f"{label}: {node.op_type} of values of sample shapes {shapes} is not "
                                      f"supported (expected two values of one rank)")
            shape = []
            for a, b in zip(*shapes):
                if a is not None and b is not None and a != b and 1 not in (a, b):
                    raise OnnxImportError(f"{label}: sample shapes {shapes} do not broadcast")
                shape.append(None if a is None or b is None else max(a, b))
            op, shape = _BINARY.get(node.op_type, nn.Add)(), tuple(shape)
        else:
            if attrs:
                raise OnnxImportError(f"{label}: attribute {next(iter(attrs))!r} is not supported")
            known = {s for s in shapes if None not in s}
            if len(known) > 1 or any(len(s) != len(shapes[0]) for s in shapes):
                raise OnnxImportError(f"{label}: adds inputs of sample shapes {shapes}: broadcasting between "
                                      f"computed values is not supported (expected one shape)")
            op = nn.Add()
            shape = next(iter(known)) if known else shapes[0]
        name = self._add_node(node.name or f"{node.op_type}_{i}", op, names, label)
        self.named[node.output[0]] = name
        self.shape[node.output[0]] = shape
        if lead != self.batch:
            self.lead[node.output[0]] = lead

    # -- chains -------------------------------------------------------------------------------------
    def _chain_to(self, value, label):
        """The chain a node reading `value` continues: `value`'s own when the node is its only reader,
        else a new one from `value`'s node (shared)."""
        g = self.graph
        shared = len(g.data_users(value)) > 1 or value in (o.name for o in g.outputs)
        if value in self.open and not shared:
            return self.open.pop(value)
        start = self._materialize(value, label)
        return State(g, self.dtype, self.shape[value], self.batch, self.fold, value in self.integer,
                     self.lead.get(value)), start

    def _materialize(self, value, label) -> str:
        """The Graph name of `value`, adding the layers of the chain that ends at it as nodes."""
        if value in self.named:
            return self.named[value]
        st, start = self.open.pop(value)
        st.where = label
        st.flush()
        st.settle()
        self.folded += st.folded
        name = start
        for layer, origin, onnx_name in zip(st.layers, st.origins, st.names):
            name = self._add_node(onnx_name, layer, [name], origin)
        self.named[value] = name
        return name

    def _add_node(self, onnx_name, op, inputs, origin) -> str:
        name = self._name(onnx_name)
        self.nodes.append((name, op, inputs))
        self.origins[name] = origin
        return name

    def _name(self, onnx_name: str) -> str:
        """A Graph name from an ONNX name: letters, digits, '_' and '-' kept, the rest '_', made unique."""
        base = re.sub(r"[^A-Za-z0-9_-]", "_", onnx_name).strip("_")[:100] or "node"
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def _record(self, value):
        """Keep `value`'s full shape for the Shape nodes that may read it."""
        s = self.shape.get(value)
        lead = self.lead.get(value, self.batch)
        self.graph.shapes[value] = (lead, *s) if s is not None and None not in s else None


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
    """(dtype, batch size for evaluated shapes, each input's sample dims with None where symbolic)."""
    from onnx import TensorProto

    dtypes, batches, samples, index_types = set(), set(), [], {}
    for v in graph.inputs:
        where = f"graph input {v.name!r}"
        if not v.type.HasField("tensor_type"):
            raise OnnxImportError(f"{where}: expected a tensor")
        elem = v.type.tensor_type.elem_type
        if elem not in FLOAT_TYPES and elem not in INDEX_TYPES:
            raise OnnxImportError(f"{where}: expected element type FLOAT or DOUBLE (data) or INT64 or INT32 "
                                  f"(indices), found {TensorProto.DataType.Name(elem)}")
        if not v.type.tensor_type.HasField("shape"):
            raise OnnxImportError(f"{where}: declares no shape; sparsenet needs at least the rank")
        dims = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in v.type.tensor_type.shape.dim]
        if len(dims) < (1 if elem in INDEX_TYPES else 2):
            raise OnnxImportError(f"{where}: expected [batch, features...], found rank {len(dims)}")
        if elem in INDEX_TYPES:
            index_types[v.name] = INDEX_TYPES[elem]
        else:
            dtypes.add(FLOAT_TYPES[elem])
        batches.add(dims[0])
        samples.append(tuple(dims[1:]))
    if len(dtypes) > 1:
        raise OnnxImportError(f"graph inputs: expected one element type, found {sorted(map(str, dtypes))}")
    batch = next(iter(batches - {None}), None) if len(batches - {None}) <= 1 else None
    return (dtypes.pop() if dtypes else np.dtype(np.float32)), batch or BATCH_PLACEHOLDER, samples, index_types


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


def _meta(proto, graph: Graph, folded: list) -> dict:
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
                    "opset": graph.opset, "folded": list(folded)}
    return meta


def _declared(v):
    """A value's declared sample shape (None where a size is not given), or None."""
    t = v.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)[1:]


def _check_declared(v, got) -> None:
    declared = _declared(v)
    if declared and (len(declared) != len(got) or any(d is not None and d != g for d, g in zip(declared, got))):
        raise OnnxImportError(f"graph output {v.name!r}: declared sample shape {declared}, "
                              f"the imported model gives {got}")


def _check_chain(model: Sequential, st: State, graph: Graph) -> None:
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
    _check_declared(graph.outputs[0], got)


def _check_graph(model: nn.Graph, expected: list, origins: dict, graph: Graph) -> None:
    """A zero sample through the graph (when its inputs' shapes are static): every node must accept its
    inputs, and each output must have the shape lowering followed and the graph declares."""
    if any(s is None for s in model.input_shapes.values()):
        return
    record = {}
    try:
        outs = model.trace(record)
    except SparsenetError as e:
        raise OnnxImportError(f"the imported graph does not fit its shapes: {e}") from None
    for o, v, want, got in zip(model.outputs, graph.outputs, expected, outs):
        got = tuple(np.shape(got)[1:])
        if want is not None and None not in want and tuple(want) != got:
            raise OnnxImportError(f"{origins.get(o, o)}: the imported model gives samples of shape {got}, "
                                  f"the ONNX graph {tuple(want)}")
        _check_declared(v, got)
