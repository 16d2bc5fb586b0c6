"""An ONNX graph indexed for import: constants resolved, the data's values told from constants.

Constants are initializers (dense or sparse), Constant nodes and any node whose inputs are all
constants (folded with onnx's reference evaluator, e.g. the Identity nodes PyTorch puts on weights).
``Shape`` nodes that read a data value evaluate to the value's static shape with a placeholder
batch size, which is how ``x.view(x.size(0), -1)`` exports.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ._proto import OnnxImportError, node_label, sparse_to_dense

__all__ = ["Graph"]

# Ops never folded even when their inputs are constant: random draws and control flow.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                 "Bernoulli", "If", "Loop", "Scan", "SequenceMap"}
_DEFAULT_DOMAINS = ("", "ai.onnx")


class Graph:
    """Index of one ModelProto's main graph: producers, consumers, constants, the data input/output."""

    def __init__(self, model):
        from onnx import numpy_helper

        g = model.graph
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
        if self.opset is None:
            raise OnnxImportError("ONNX model: no default-domain opset import")
        self.nodes = list(g.node)
        self.constants: dict[str, np.ndarray] = {}
        self.patterns: dict[str, np.ndarray] = {}  # stored-entry masks of sparse initializers
        for t in g.initializer:
            self.constants[t.name] = numpy_helper.to_array(t)
        for s in g.sparse_initializer:
            self.constants[s.values.name], self.patterns[s.values.name] = sparse_to_dense(s)
        self.index()
        self.inputs = [v for v in g.input if v.name not in self.constants]
        if not self.inputs:
            raise OnnxImportError("ONNX graph: expected at least one data input, found none")
        self.outputs = list(g.output)
        if not self.outputs:
            raise OnnxImportError("ONNX graph: expected at least one output, found none")
        self.shapes: dict[str, tuple | None] = {}  # data value -> full shape (placeholder batch), if static

    def index(self) -> None:
        """(Re)build the producer and consumer indexes of `nodes`."""
        self.producer = {}
        self.consumers = defaultdict(list)
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = (i, node)
            for name in dict.fromkeys(n for n in node.input if n):
                self.consumers[name].append((i, node))

    # -- constants ----------------------------------------------------------------------------------
    def constant(self, name: str, _depth: int = 0):
        """The constant value of `name`, or None if it depends on the data (beyond static shapes)."""
        if name in self.constants:
            return self.constants[name]
        if name not in self.producer or _depth > 200:
            return None
        i, node = self.producer[name]
        if node.domain not in _DEFAULT_DOMAINS or node.op_type in _NOT_FOLDABLE:
            return None
        if node.op_type == "Shape":
            values = [self._shape_of(i, node)]
        elif node.op_type == "Constant":
            values = [self._constant_node(i, node)]
        else:
            args = {}
            for n in node.input:
                if n and n not in args:
                    v = self.constant(n, _depth + 1)
                    if v is None:
                        return None
                    args[n] = v
            values = self._fold(i, node, args)
        if any(v is None for v in values):
            return None
        for out, v in zip(node.output, values):
            if out:
                self.constants[out] = v
        return self.constants.get(name)

    def _shape_of(self, i, node):
        """A Shape node's value: from a constant's shape, or a data value's static shape."""
        src = node.input[0]
        if src in self.shapes:
            shape = self.shapes[src]
            if shape is None:
                raise OnnxImportError(f"{node_label(i, node)}: reads the shape of {src!r}, which is not static "
                                      f"(declare the input's non-batch dimensions)")
        else:
            value = self.constant(src)
            if value is None:  # a data value not reached yet
                return None
            shape = value.shape
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return np.array(shape, dtype=np.int64)[attrs.get("start", 0):attrs.get("end", None)]

    def _constant_node(self, i, node):
        from onnx import helper, numpy_helper

        if len(node.attribute) != 1:
            raise OnnxImportError(f"{node_label(i, node)}: expected exactly one value attribute")
        a = node.attribute[0]
        value = helper.get_attribute_value(a)
        if a.name == "value":
            return numpy_helper.to_array(value)
        if a.name == "sparse_value":
            dense, mask = sparse_to_dense(value)
            self.patterns[node.output[0]] = mask
            return dense
        if a.name in ("value_float", "value_floats"):
            return np.array(value, dtype=np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(value, dtype=np.int64)
        raise OnnxImportError(f"{node_label(i, node)}: unsupported constant attribute {a.name!r}")

    def _fold(self, i, node, args):
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
            return evaluator.run(None, {k: v for k, v in args.items() if k in node.input})
        except Exception as e:  # the reference evaluator raises many types
            raise OnnxImportError(f"{node_label(i, node)}: cannot evaluate this constant expression "
                                  f"({type(e).__name__}: {e})") from None

    # -- the data's path --------------------------------------------------------------------------
    def data_users(self, value: str) -> list:
        """The nodes that read `value` as data, as (index, node); ``Shape`` nodes read only its static
        shape (they evaluate as constants) and are not counted."""
        return [(i, n) for i, n in self.consumers.get(value, []) if n.op_type != "Shape"]

    def node_inputs(self, i: int, node, data: set) -> list:
        """`node`'s inputs: None for data values (in `data`) and omitted optional inputs, arrays for
        constants. Raises OnnxImportError for an input that is neither, for a foreign op domain and for
        a used extra output (only a node's first output is supported)."""
        label = node_label(i, node)
        if node.domain not in _DEFAULT_DOMAINS:
            raise OnnxImportError(f"{label}: op domain {node.domain!r} is not supported")
        inputs = []
        for k, name in enumerate(node.input):
            if not name or name in data:
                inputs.append(None)
                continue
            c = self.constant(name)
            if c is None:
                raise OnnxImportError(f"{label}: input {k} {name!r} is neither a constant nor computed from the "
                                      f"graph's inputs by the nodes before it")
            inputs.append(c)
        outputs = {o.name for o in self.outputs}
        for out in node.output[1:] if node.op_type != "Split" else ():  # a Split's outputs are all kept
            if out and (self.consumers.get(out) or out in outputs):
                raise OnnxImportError(f"{label}: its extra output {out!r} is used; only the first output "
                                      f"of a node is supported")
        return inputs


def _labels(users) -> str:
    return ", ".join(node_label(i, n) for i, n in users)
