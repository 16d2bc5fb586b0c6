"""Activations that exporters write as formulas, found and replaced by one node before lowering.

PyTorch writes the erf GELU before opset 20 as ``x * (erf(x / sqrt 2) + 1) * 0.5``, the tanh GELU
as a polynomial under a Tanh (its legacy exporter with Mul nodes, the dynamo exporter with Pow),
SiLU at every opset as ``x * sigmoid(x)``; sparsenet's own exporter writes HardSwish before opset 14
as ``x * HardSigmoid(x)``. Orders and constants differ between exporters, so a candidate is not
matched by its shape but by what it computes: from each Erf, Tanh, Sigmoid or HardSigmoid node, the
elementwise nodes around it that read one data value `x` (and scalar constants) are collected, the
small subgraph is evaluated on test points, and when it equals an activation of `x` to float32
accuracy the subgraph becomes one ``Gelu`` (approximate ``none`` or ``tanh``), ``Swish`` (SiLU) or
``HardSwish`` node. A subgraph whose inner values are read by anything outside it is left alone
(and imported node by node).

Keras's Embedding, through tf2onnx, wraps negative indices before its Gather (``where(i < 0, i +
V, i)``, written with Cast, Less, Not, Mul and Add): `fuse_index_wraps` evaluates such an index
subgraph on every valid index 0..V-1 of the table it reads, and when it gives each index back
unchanged, the Gather reads the integer input directly (an index outside [0, V) then raises in
the Embedding, as sparsenet's indices do, instead of wrapping).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fuse_activations", "fuse_index_wraps"]

_SEEDS = ("Erf", "Tanh", "Sigmoid", "HardSigmoid")
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "HardSigmoid"}
_MAX_NODES = 12
_POINTS = np.linspace(-6.0, 6.0, 97)


def _erf(v):
    return np.vectorize(math.erf, otypes=[np.float64])(v)


# name -> (ONNX node that replaces the subgraph, the function it must equal)
_ACTIVATIONS = {
    "gelu_erf": (("Gelu", {"approximate": "none"}), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu_tanh": (("Gelu", {"approximate": "tanh"}),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "silu": (("Swish", {}), lambda x: x / (1 + np.exp(-x))),
    "hardswish": (("HardSwish", {}), lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
}


def _scalar(graph, name):
    """The float value of a constant scalar (0-d, or [1]: either broadcasts without changing the
    data's shape; a [1, 1, 1] constant could add axes), or None."""
    c = graph.constant(name)
    if c is None:
        return None
    c = np.asarray(c)
    if c.size != 1 or c.ndim > 1 or c.dtype.kind not in "fiu":
        return None
    return float(c.reshape(()))


def _scalar_array(graph, name):
    """A constant scalar (0-d or [1]) as a 0-d array of its own dtype, or None."""
    c = graph.constant(name)
    if c is None or np.asarray(c).size != 1 or np.asarray(c).ndim > 1:
        return None
    return np.asarray(c).reshape(())


def _node_args(graph, node, vals, constant):
    """`node`'s inputs: values of the subgraph (`vals`), else `constant(graph, name)`; None when an
    input is neither."""
    args = []
    for name in node.input:
        if name in vals:
            args.append(vals[name])
            continue
        c = constant(graph, name)
        if c is None:
            return None
        args.append(c)
    return args


def _evaluate(graph, nodes, x, points):
    """The subgraph `nodes` (in order) on `points` for data value `x`: {value name: array}, or None
    when a node reads something other than x, the subgraph's values and scalar constants."""
    from onnx import helper

    vals = {x: points}
    for node in nodes:
        args = _node_args(graph, node, vals, _scalar)
        if args is None:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        with np.errstate(all="ignore"):
            if op in ("Add", "Sub", "Mul", "Div", "Pow") and len(args) == 2 and not attrs:
                a, b = args
                out = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
                       "Pow": np.power}[op](a, b)
            elif op == "Erf" and not attrs:
                out = _erf(args[0])
            elif op == "Tanh" and not attrs:
                out = np.tanh(args[0])
            elif op == "Sigmoid" and not attrs:
                out = 1 / (1 + np.exp(-args[0]))
            elif op == "HardSigmoid" and set(attrs) <= {"alpha", "beta"}:
                out = np.clip(attrs.get("alpha", 0.2) * args[0] + attrs.get("beta", 0.5), 0, 1)
            else:
                return None
        vals[node.output[0]] = np.broadcast_to(np.asarray(out, np.float64), points.shape)
    return vals


def _candidates(graph, node):
    """(x, [nodes in graph order], end value) subgraphs around the seed `node`: x one of the values
    its elementwise ancestors read, the end one of the values below it along single readers."""
    ups, frontier, seen = [], [n for n in node.input if n], set()
    for _ in range(6):
        nxt = []
        for v in frontier:
            if v in seen or _scalar(graph, v) is not None:
                continue
            seen.add(v)
            ups.append(v)
            if v in graph.producer and graph.producer[v][1].op_type in _ELEMENTWISE:
                nxt.extend(n for n in graph.producer[v][1].input if n)
        frontier = nxt
    downs, out = [], node.output[0]
    for _ in range(5):
        users = graph.consumers.get(out, [])
        if len(users) != 1 or users[0][1].op_type not in _ELEMENTWISE:
            break
        out = users[0][1].output[0]
        downs.append(out)
    for end in downs:
        for x in reversed(ups):  # the farthest first
            nodes = _between(graph, x, end)
            if nodes is not None:
                yield x, nodes, end


def _between(graph, x, end, ops=_ELEMENTWISE):
    """The nodes on paths from `x` to `end` (every ancestor of `end` up to x that is not a constant),
    in graph order; None when `end` depends on another data value or on a node whose op is not in
    `ops`, or the subgraph is large. (Constants are leaves; the evaluators refuse those that are
    not scalars.)"""
    seen, stack, found = set(), [end], {}
    while stack:
        v = stack.pop()
        if v == x or v in seen:
            continue
        seen.add(v)
        if graph.constant(v) is not None:  # a constant, or a constant expression
            continue
        if v not in graph.producer:
            return None
        i, node = graph.producer[v]
        if node.op_type not in ops:
            return None
        found[i] = node
        if len(found) > _MAX_NODES:
            return None
        stack.extend(n for n in node.input if n)
    return [found[i] for i in sorted(found)] or None


def fuse_activations(graph) -> int:
    """Replace formula activations in `graph` (an `onnx._graph.Graph`) by one node each; returns
    how many were replaced. The graph's node list and indexes are rebuilt."""
    from onnx import helper

    outputs = {o.name for o in graph.outputs}
    replaced, used = {}, set()
    for i, node in enumerate(graph.nodes):
        if node.op_type not in _SEEDS or i in used:
            continue
        for x, nodes, end in _candidates(graph, node):
            idxs = {graph.producer[n.output[0]][0] for n in nodes}
            if idxs & used:
                continue
            inner = {n.output[0] for n in nodes} - {end}
            if inner & outputs or any(j not in idxs for v in inner for j, _ in graph.consumers.get(v, [])):
                continue  # an inner value is read outside the subgraph
            vals = _evaluate(graph, nodes, x, _POINTS)
            if vals is None:
                continue
            got = vals[end]
            for name, ((op, attrs), fn) in _ACTIVATIONS.items():
                want = fn(_POINTS)
                if np.all(np.abs(got - want) <= 1e-6 * (1 + np.abs(want))):
                    last = max(idxs)
                    replaced[last] = helper.make_node(op, [x], [end], name=(nodes[-1].name or end) + "_fused",
                                                      **attrs)
                    used |= idxs
                    break
            if i in used:
                break
    if not replaced:
        return 0
    graph.nodes = [replaced.get(k, n) for k, n in enumerate(graph.nodes) if k not in used or k in replaced]
    graph.index()
    return len(replaced)


_INDEX_OPS = {"Cast", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal", "Not", "And", "Or", "Add",
              "Sub", "Mul", "Where"}
_ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def _evaluate_index(graph, nodes, x, points):
    """`nodes` (in order) on the integer `points` for the index value `x`, in NumPy's dtypes (casts
    as ONNX's): the end value, or None when a node reads anything but x, the subgraph's values and
    scalar constants, or is not one of the index ops."""
    from onnx import helper

    vals = {x: points}
    for node in nodes:
        args = _node_args(graph, node, vals, _scalar_array)
        if args is None:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        with np.errstate(all="ignore"):
            if op == "Cast" and set(attrs) <= {"to", "saturate"} and attrs.get("to") in _ONNX_DTYPES:
                out = np.asarray(args[0]).astype(_ONNX_DTYPES[attrs["to"]])
            elif op in ("Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal", "And", "Or", "Add", "Sub",
                        "Mul") and len(args) == 2 and not attrs:
                out = {"Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
                       "GreaterOrEqual": np.greater_equal, "Equal": np.equal, "And": np.logical_and,
                       "Or": np.logical_or, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](*args)
            elif op == "Not" and not attrs:
                out = np.logical_not(args[0])
            elif op == "Where" and len(args) == 3 and not attrs:
                out = np.where(*args)
            else:
                return None
        vals[node.output[0]] = np.broadcast_to(np.asarray(out), points.shape)
    return vals[nodes[-1].output[0]]


def fuse_index_wraps(graph) -> int:
    """Let each Gather of a constant table [V, ...] whose indices are computed from one integer
    graph input, by index ops that give every index 0..V-1 back unchanged, read that input
    directly (the subgraph's nodes that nothing else reads are dropped); returns how many."""
    from onnx import NodeProto

    integer_inputs = {v.name for v in graph.inputs if v.type.tensor_type.elem_type in (6, 7)}
    rewired = 0
    for k, node in enumerate(list(graph.nodes)):
        if node.op_type != "Gather" or len(node.input) != 2 or node.input[1] in integer_inputs:
            continue
        table = graph.constant(node.input[0])
        if table is None or np.asarray(table).ndim < 1:
            continue
        for x in integer_inputs:
            nodes = _between(graph, x, node.input[1], _INDEX_OPS)
            if nodes is None:
                continue
            points = np.arange(np.asarray(table).shape[0], dtype=np.int64)
            got = _evaluate_index(graph, nodes, x, points)
            if got is not None and got.dtype.kind in "iu" and np.array_equal(got, points):
                copy = NodeProto()  # the caller's ModelProto stays as it was
                copy.CopyFrom(node)
                copy.input[1] = x
                graph.nodes[k] = copy
                rewired += 1
                break
    if rewired:
        outputs = {o.name for o in graph.outputs}
        graph.index()
        while True:  # drop the index nodes nothing reads any more
            dead = [k for k, n in enumerate(graph.nodes) if n.op_type in _INDEX_OPS
                    and not any(graph.consumers.get(o) or o in outputs for o in n.output)]
            if not dead:
                break
            graph.nodes = [n for k, n in enumerate(graph.nodes) if k not in dead]
            graph.index()
    return rewired
