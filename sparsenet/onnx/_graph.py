"""An ONNX graph seen as a chain: constants resolved, the data value followed from input to output.

Constants are initializers (dense or sparse), Constant nodes and any node whose inputs are all
constants (folded with onnx's reference evaluator, e.g. the Identity nodes PyTorch puts on weights).
``Shape`` nodes that read a chain value are allowed beside the chain: they evaluate to the value's
static shape with a placeholder batch size, which is how ``x.view(x.size(0), -1)`` exports.
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
        self.producer = {}
        self.consumers = defaultdict(list)
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = (i, node)
            for name in dict.fromkeys(n for n in node.input if n):
                self.consumers[name].append((i, node))
        inputs = [v for v in g.input if v.name not in self.constants]
        if len(inputs) != 1:
            raise OnnxImportError(f"ONNX graph: expected one data input, found {len(inputs)} "
                                  f"({', '.join(v.name for v in inputs) or 'none'})")
        if len(g.output) != 1:
            raise OnnxImportError(f"ONNX graph: expected one output, found {len(g.output)} "
                                  f"({', '.join(v.name for v in g.output)}): sparsenet imports single-output chains")
        self.input, self.output = inputs[0], g.output[0]
        self.shapes: dict[str, tuple | None] = {}  # chain value -> full shape (placeholder batch), if static

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
        """A Shape node's value: from a constant's shape, or a chain value's static shape."""
        src = node.input[0]
        if src in self.shapes:
            shape = self.shapes[src]
            if shape is None:
                raise OnnxImportError(f"{node_label(i, node)}: reads the shape of {src!r}, which is not static "
                                      f"(declare the input's non-batch dimensions)")
        else:
            value = self.constant(src)
            if value is None:  # a chain value not reached yet, or off the chain
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

    # -- the chain ----------------------------------------------------------------------------------
    def next_node(self, value: str):
        """The node that consumes chain value `value`, as (index, node, slot, inputs): `slot` is the
        position of the data among the node's inputs, `inputs` lists them with None for the data (and
        for omitted optional inputs) and arrays for constants. None when `value` is the graph output.
        Raises OnnxImportError on anything that is not a chain."""
        users = [(i, n) for i, n in self.consumers.get(value, []) if n.op_type != "Shape"]
        if value == self.output.name:
            if users:
                raise OnnxImportError(f"graph output {value!r} also feeds {_labels(users)}: "
                                      f"sparsenet imports chains only")
            return None
        if not users:
            raise OnnxImportError(f"value {value!r} is neither used by a node nor the graph output "
                                  f"({self.output.name!r})")
        if len(users) > 1:
            raise OnnxImportError(f"value {value!r} feeds {len(users)} nodes, {_labels(users)}: sparsenet "
                                  f"imports chains only (no branches or skip connections)")
        i, node = users[0]
        label = node_label(i, node)
        if node.domain not in _DEFAULT_DOMAINS:
            raise OnnxImportError(f"{label}: op domain {node.domain!r} is not supported")
        if list(node.input).count(value) > 1:
            raise OnnxImportError(f"{label}: uses {value!r} twice; sparsenet imports chains of one-input layers")
        inputs = []
        for k, name in enumerate(node.input):
            if not name or name == value:
                inputs.append(None)
                continue
            c = self.constant(name)
            if c is None:
                raise OnnxImportError(f"{label}: input {k} {name!r} is neither a constant nor the previous "
                                      f"node's output (the graph branches); sparsenet imports chains only")
            inputs.append(c)
        for out in node.output[1:]:
            if out and (self.consumers.get(out) or out == self.output.name):
                raise OnnxImportError(f"{label}: its extra output {out!r} is used; only the first output "
                                      f"of a node is supported")
        return i, node, list(node.input).index(value), inputs


def _labels(users) -> str:
    return ", ".join(node_label(i, n) for i, n in users)
