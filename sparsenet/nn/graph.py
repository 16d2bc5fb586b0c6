"""Graph: a DAG of named nodes, each an op (a `Module`) applied to named inputs (graph inputs or other
nodes' outputs); forward in topological order, backward in reverse with gradients summed where one
output feeds several nodes. `Sequential` is the simple builder of chains; `Graph.from_sequential`
and `to_sequential` convert between the two without copying layers.

Everything about a graph's structure is checked in one place (`Graph._validate`, at construction):
names printable, without ``.`` (parameters are named ``<node>.<parameter>``) and unique across
inputs and nodes, every referenced name defined, each op a `Module` whose modules no other node
uses, the op's number of inputs (``op.arity``: 1 unless the op says otherwise, ``None`` for "two or
more"), no cycle, every input and node on a path to an output. With the inputs' sample shapes
given, one zero sample is traced through the nodes, so a node that does not accept its inputs'
shapes fails there, by name; the trace is bounded in values alive at once and values touched, so a
graph whose values grow (nested Concats) is refused before it takes memory. Every failure is a
`ConfigError` (structure) or `ShapeError` (shapes) naming the node. Forward drops each value after
its last reader. `predict` takes graphs of any inputs and outputs (``{name: array}``), `evaluate`
and `fit` graphs of one output (several inputs as ``{name: array}``).

Inputs are float (the model's dtype) unless `input_dtypes` names them integer: the indices an
`Embedding` looks up stay integers through `forward`, plans and model files.

Training, prediction (through the compiled plan), `fit`/`evaluate`, model files, ONNX import and
export, pruning (unstructured and per-layer structured masks; physical removal of units is for
chains until dependency groups exist), `compiled`, int8, `summarize` and `bench` take graphs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ShapeError, SparsenetError
from . import module as _module
from .module import Module, inference, model_dtype

__all__ = ["Graph", "Node"]

_MAX_NAME = 256


@dataclass(frozen=True)
class Node:
    """One step of a graph: `op` applied to the values named by `inputs`; its output is called `name`."""

    name: str
    op: Module
    inputs: tuple[str, ...]

    def __post_init__(self):
        ins = self.inputs
        object.__setattr__(self, "inputs", (ins,) if isinstance(ins, str) else
                           tuple(ins) if isinstance(ins, (list, tuple)) else ins)


def _arity(op: Module):
    return getattr(op, "arity", 1)


def _input_dtypes(given, shapes) -> dict:
    """{input name: integer dtype} for the inputs that take integers (indices of an Embedding); the
    others take the model's float dtype."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ConfigError(f"Graph: input_dtypes should be a dict {{input name: integer dtype}}, found "
                          f"{type(given).__name__}")
    out = {}
    for name, dt in given.items():
        if name not in shapes:
            raise ConfigError(f"Graph: input_dtypes names {name!r}, which is not an input ({list(shapes)})")
        try:
            dt = np.dtype(dt)
        except TypeError:
            raise ConfigError(f"Graph: input {name!r}: {dt!r} is not a dtype") from None
        if dt.kind not in "iu":
            raise ConfigError(f"Graph: input {name!r}: input_dtypes is for integer inputs (int64, int32...), "
                              f"found {dt} (float inputs take the model's dtype)")
        out[name] = dt
    return out


def _check_name(name, what):
    # no "." in names: a node's parameters are named "<node>.<parameter>", and "a.0" beside a
    # container node "a" would give two parameters one name
    if (not isinstance(name, str) or not name or len(name) > _MAX_NAME or not name.isprintable()
            or "." in name):
        raise ConfigError(f"Graph: {what} name should be a printable string of 1 to {_MAX_NAME} characters "
                          f"without '.', found {name!r}"[:400])


class Graph(Module):
    """A DAG of named nodes.

    inputs: {name: one sample's shape (or None)} or a list of names; nodes: (name, op, input names)
    triples or `Node`s, in any order; outputs: a name or a list of names.

    >>> from sparsenet.nn import Add, Linear, ReLU
    >>> g = Graph({"x": (4,)}, [("fc", Linear(4, 4), ["x"]), ("relu", ReLU(), ["fc"]),
    ...                         ("res", Add(), ["relu", "x"])], "res")
    >>> g.forward(np.ones((2, 4), np.float32)).shape
    (2, 4)
    """

    # Bounds of the traced zero sample: values alive at once, and values read and written in all (a
    # Concat of Concats doubles its values at every node, an Add may read one input a million times:
    # a few kB of file could otherwise ask for gigabytes or hours).
    _TRACE_VALUES = 1 << 24
    _TRACE_WORK = 1 << 30

    def __init__(self, inputs, nodes, outputs, *, check_shapes: bool = True, input_dtypes=None):
        super().__init__()
        if isinstance(inputs, dict):
            pairs = list(inputs.items())
        elif isinstance(inputs, (list, tuple)):
            pairs = [(k, None) for k in inputs]
        else:
            raise ConfigError(f"Graph: inputs should be a dict of names to shapes or a list of names, found "
                              f"{type(inputs).__name__}")
        self.input_shapes = {}
        for name, shape in pairs:
            _check_name(name, "input")
            if name in self.input_shapes:
                raise ConfigError(f"Graph: input {name!r} is defined twice")
            if shape is not None and not (isinstance(shape, (list, tuple)) and all(
                    isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)):
                raise ConfigError(f"Graph: input {name!r} should have a shape of positive sizes (or None), "
                                  f"found {shape!r}")
            self.input_shapes[name] = None if shape is None else tuple(int(s) for s in shape)
        self.input_dtypes = _input_dtypes(input_dtypes, self.input_shapes)
        if isinstance(outputs, str):
            outputs = (outputs,)
        if not isinstance(outputs, (list, tuple)):
            raise ConfigError(f"Graph: outputs should be a node name or a list of them, found {outputs!r}")
        self.outputs = tuple(outputs)
        given = []
        for i, n in enumerate(nodes):
            if isinstance(n, Node):
                given.append(n)
            elif isinstance(n, (tuple, list)) and len(n) == 3:
                given.append(Node(*n))
            else:
                raise ConfigError(f"Graph: node {i} should be a Node or a (name, op, inputs) triple, found {n!r}")
        self.nodes: list[Node] = self._validate(given)
        self._free_after = self._liveness(self.nodes)
        self.meta: dict = {}
        for node in self.nodes:
            node.op.name = f"node {node.name!r} ({type(node.op).__name__})"
        shapes = list(self.input_shapes.values())
        if (check_shapes and all(s is not None for s in shapes)
                and sum(math.prod(s) for s in shapes) <= self._TRACE_VALUES):  # larger: checked at first use
            self.trace()

    # -- structure ----------------------------------------------------------------------------------
    def _validate(self, nodes: list[Node]) -> list[Node]:
        """The nodes in topological order, after every structural check (see the module docstring)."""
        if not self.input_shapes:
            raise ConfigError("Graph: expected at least one input")
        defined = set(self.input_shapes)
        by_name, ops = {}, {}
        for node in nodes:
            _check_name(node.name, "node")
            if node.name in defined or node.name in by_name:
                raise ConfigError(f"Graph: name {node.name!r} is defined twice")
            if not isinstance(node.op, Module):
                raise ConfigError(f"Graph: node {node.name!r} should hold a Module, found {type(node.op).__name__}")
            for _, m in node.op.named_modules():  # a container op's layers count too
                if id(m) in ops:
                    raise ConfigError(f"Graph: node {node.name!r} uses the same {type(m).__name__} object as node "
                                      f"{ops[id(m)]!r} (a module keeps what its backward needs: one node each)")
                ops[id(m)] = node.name
            if not (isinstance(node.inputs, tuple) and all(isinstance(r, str) for r in node.inputs)):
                raise ConfigError(f"Graph: node {node.name!r} should read a list of names, found {node.inputs!r}")
            arity = _arity(node.op)
            if (arity is None and len(node.inputs) < 2) or (arity is not None and len(node.inputs) != arity):
                want = "two or more" if arity is None else str(arity)
                raise ConfigError(f"Graph: node {node.name!r} ({type(node.op).__name__}) takes {want} inputs, "
                                  f"found {len(node.inputs)}: {list(node.inputs)}")
            by_name[node.name] = node
        names = defined | set(by_name)
        for node in nodes:
            for ref in node.inputs:
                if ref not in names:
                    raise ConfigError(f"Graph: node {node.name!r} reads {ref!r}, which no input or node defines")
        if not self.outputs:
            raise ConfigError("Graph: expected at least one output")
        for out in self.outputs:
            if out not in by_name:
                raise ConfigError(f"Graph: output {out!r} should name a node, found "
                                  f"{'an input' if out in defined else 'nothing of that name'}")
        if len(set(self.outputs)) != len(self.outputs):
            raise ConfigError(f"Graph: outputs {list(self.outputs)} name a node twice")
        # Kahn's algorithm, stable in the given order
        waiting = {n.name: sum(ref in by_name for ref in n.inputs) for n in nodes}
        readers: dict[str, list[str]] = {}
        for n in nodes:
            for ref in n.inputs:
                readers.setdefault(ref, []).append(n.name)
        ready = deque(n.name for n in nodes if waiting[n.name] == 0)
        order = []
        while ready:
            name = ready.popleft()
            order.append(by_name[name])
            for r in readers.get(name, []):
                waiting[r] -= 1
                if waiting[r] == 0:
                    ready.append(r)
        if len(order) != len(nodes):
            stuck = sorted(k for k, v in waiting.items() if v > 0)
            raise ConfigError(f"Graph: nodes {stuck[:10]} form a cycle (or depend on one)")
        # every input and node must lead to an output
        live, stack = set(), list(self.outputs)
        while stack:
            name = stack.pop()
            if name in live:
                continue
            live.add(name)
            if name in by_name:
                stack.extend(by_name[name].inputs)
        unused = [k for k in self.input_shapes if k not in live] + [n.name for n in order if n.name not in live]
        if unused:
            raise ConfigError(f"Graph: {unused[:10]} lead to no output (remove them, or name them as outputs)")
        return order

    def trace(self, record: dict | None = None, *, whole: bool = False) -> tuple[np.ndarray, ...]:
        """The outputs for one zero sample of the declared input shapes (each ``[1, ...]``, in the
        order of `outputs`), computed node by node in evaluation mode: a node that does not accept its
        inputs' shapes raises `ShapeError` naming it, and so does a graph whose values would grow past
        the trace's bounds (see `_TRACE_VALUES`). Needs every input's shape. With `record` (a dict),
        fills it with ``{node: ([one sample's shape per input], output shape)}``; with `whole`, the
        traced arrays' whole shapes instead (the batch of 1 included, wherever a layout op put it)."""
        if any(s is None for s in self.input_shapes.values()):
            raise ConfigError(f"Graph.trace: inputs {[k for k, s in self.input_shapes.items() if s is None]} "
                              f"have no shape")
        total = sum(math.prod(s) for s in self.input_shapes.values())
        if total > self._TRACE_VALUES:
            raise ShapeError(f"Graph: one sample of the inputs holds {total} values, more than the trace's "
                             f"bound {self._TRACE_VALUES}")
        dtype = model_dtype(self)
        values = {k: np.zeros((1, *s), dtype=self.input_dtypes.get(k, dtype)) for k, s in self.input_shapes.items()}
        live, work = total, 0
        with inference(self):
            for i, node in enumerate(self.nodes):
                ins = [values[r] for r in node.inputs]
                reads = sum(v.size for v in ins)  # also what a Concat writes
                work += reads
                if live + reads > self._TRACE_VALUES or work > self._TRACE_WORK:
                    raise ShapeError(f"Graph: tracing one sample through node {node.name!r} "
                                     f"({type(node.op).__name__}) would hold more than {self._TRACE_VALUES} "
                                     f"values at once or touch more than {self._TRACE_WORK} (its inputs hold "
                                     f"{reads}, {live} are alive)")
                try:
                    values[node.name] = out = np.asarray(node.op.forward(*ins))
                except SparsenetError as e:
                    raise ShapeError(f"Graph: node {node.name!r} ({type(node.op).__name__}) does not accept "
                                     f"inputs of shapes {[list(v.shape[1:]) for v in ins]} (one sample): "
                                     f"{e}") from None
                if record is not None:
                    cut = 0 if whole else 1
                    record[node.name] = ([tuple(v.shape[cut:]) for v in ins], tuple(out.shape[cut:]))
                live += out.size
                work += out.size
                for name in self._free_after[i]:
                    live -= values.pop(name).size
        return tuple(values[o] for o in self.outputs)

    @property
    def input_shape(self):
        """One sample's shape when the graph has a single input of known shape, else None."""
        if len(self.input_shapes) == 1:
            return next(iter(self.input_shapes.values()))
        return None

    @input_shape.setter
    def input_shape(self, shape) -> None:
        if len(self.input_shapes) != 1:
            raise ConfigError(f"Graph: input_shape is for single-input graphs; this one has inputs "
                              f"{list(self.input_shapes)}")
        self.input_shapes = {next(iter(self.input_shapes)): None if shape is None else tuple(shape)}

    def children(self):
        return [(node.name, node.op) for node in self.nodes]

    # -- computing ----------------------------------------------------------------------------------
    def lower(self, builder, inputs):
        """Each node lowered in topological order; every value learns how many nodes and outputs read
        it (a product's activation fuses only into a value nothing else reads)."""
        readers: dict[str, int] = {}
        for node in self.nodes:
            for r in node.inputs:
                readers[r] = readers.get(r, 0) + 1
        for o in self.outputs:
            readers[o] = readers.get(o, 0) + 1
        values = dict(zip(self.input_shapes, inputs))
        for name, v in values.items():
            v.readers = readers.get(name, 0)
        for node in self.nodes:
            ins = [values[r] for r in node.inputs]
            v = node.op.lower(builder, ins)
            count = readers.get(node.name, 0)
            if any(v is x for x in ins):  # the node passed its input through: both names read it
                v.readers += count - 1
            else:
                v.readers = count
            values[node.name] = v
        outs = [values[o] for o in self.outputs]
        return outs[0] if len(outs) == 1 else outs

    def forward(self, /, *xs, **named):
        """Outputs for the inputs given in order (``forward(x)``) or by name (``forward(x=..., y=...)``);
        one output is returned as an array, several as a tuple in the order of `outputs`."""
        names = list(self.input_shapes)
        if named and xs:
            raise ConfigError("Graph.forward: give the inputs either in order or by name, not both")
        if named:
            if set(named) != set(names):
                raise ConfigError(f"Graph.forward: expected inputs {names}, found {sorted(named)}")
            values = dict(named)
        else:
            if len(xs) != len(names):
                raise ConfigError(f"Graph.forward: expected {len(names)} inputs {names}, found {len(xs)}")
            values = dict(zip(names, xs))
        for node, free in zip(self.nodes, self._free_after):
            values[node.name] = node.op.forward(*[values[r] for r in node.inputs])
            for name in free:
                del values[name]
        outs = tuple(values[o] for o in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def backward(self, *grads):
        """Gradients with respect to the inputs (one array, or a tuple in input order), given one
        upstream gradient per output, after a forward. Where a value feeds several nodes (or is an
        output and feeds a node), its gradients are summed."""
        if len(grads) == 1 and isinstance(grads[0], tuple):
            grads = grads[0]
        if len(grads) != len(self.outputs):
            raise ConfigError(f"Graph.backward: expected {len(self.outputs)} gradients (one per output), "
                              f"found {len(grads)}")
        out = self._backward(grads, None)
        out = tuple(out.get(k) for k in self.input_shapes)  # None for an input without a gradient
        return out[0] if len(out) == 1 else out

    def backward_params(self, *grads) -> None:
        """`backward` without the inputs' gradients: a node computes only the gradients that reach a
        parameter (nodes with no parameter upstream are skipped; a node with parameters whose
        inputs have none upstream computes its parameters' gradients only)."""
        if len(grads) == 1 and isinstance(grads[0], tuple):
            grads = grads[0]
        if len(grads) != len(self.outputs):
            raise ConfigError(f"Graph.backward_params: expected {len(self.outputs)} gradients (one per output), "
                              f"found {len(grads)}")
        cached = self.__dict__.get("_wanted")  # (generation, set): any change to the graph bumps it
        if cached is None or cached[0] != _module.generation():
            wanted: set[str] = set()  # values with a parameter upstream: their gradients are needed
            for node in self.nodes:
                if node.op.parameters() or any(ref in wanted for ref in node.inputs):
                    wanted.add(node.name)
            cached = self.__dict__["_wanted"] = (_module.generation(), wanted)
        self._backward(grads, cached[1])

    def _backward(self, grads, wanted: set | None) -> dict:
        """Gradients summed per value, nodes in reverse order; with `wanted`, only those of the
        values it names (see `backward_params`). Returns what reached the graph's inputs."""
        acc: dict[str, np.ndarray] = {}

        def add(name, g):
            if g is None or (wanted is not None and name not in wanted):
                return  # no gradient (an integer input of an Embedding), or one nothing needs
            acc[name] = g if name not in acc else acc[name] + g  # never in place: g may be shared

        for name, g in zip(self.outputs, grads):
            add(name, g)
        for node in reversed(self.nodes):
            g = acc.pop(node.name, None)
            if g is None:
                continue
            if wanted is not None and not any(ref in wanted for ref in node.inputs):
                node.op.backward_params(g)
                continue
            g_in = node.op.backward(g)
            g_in = g_in if isinstance(g_in, tuple) else (g_in,)
            for ref, gi in zip(node.inputs, g_in):
                add(ref, gi)
        return acc

    def predict(self, x, batch_size: int = 256):
        """``sparsenet.predict(self, x, batch_size)``: an array for a single-input graph, else
        ``{input name: array}``; several outputs come back as ``{output name: array}``."""
        return _module.predict(self, x, batch_size)

    # -- conversions --------------------------------------------------------------------------------
    @classmethod
    def from_sequential(cls, seq) -> "Graph":
        """The chain `seq` as a graph with input ``"x"`` and nodes named ``"0"``, ``"1"``, ... (the
        parameter names stay ``"1.weight"``...). The graph uses `seq`'s layers, not copies."""
        from .sequential import Sequential

        if not isinstance(seq, Sequential) or not len(seq):
            raise ConfigError(f"Graph.from_sequential: expected a non-empty Sequential, found {seq!r}")
        nodes = [(str(i), layer, ["x" if i == 0 else str(i - 1)]) for i, layer in enumerate(seq.layers)]
        g = cls({"x": seq.input_shape}, nodes, str(len(seq) - 1))
        g.meta = dict(seq.meta)
        return g

    def _liveness(self, nodes) -> list[list[str]]:
        """After node i, the values read for the last time there (dropped by forward)."""
        last = {}
        for i, node in enumerate(nodes):
            for r in node.inputs:
                last[r] = i
        free = [[] for _ in nodes]
        for name, i in last.items():
            if name not in self.outputs:
                free[i].append(name)
        return free

    def replace(self, name: str, op: Module) -> None:
        """Let node `name` compute with `op` instead (same inputs; e.g. a layer with its weight in
        another format, as `sparsenet.prune.compiled` makes). The new graph is validated as a new one
        would be (the op's arity, no module shared with another node) and, when every input's shape is
        known, traced; on any error the graph stays as it was."""
        index = next((i for i, n in enumerate(self.nodes) if n.name == name), None)
        if index is None:
            raise ConfigError(f"Graph.replace: no node {name!r}; nodes are {[n.name for n in self.nodes]}"[:400])
        before, free = self.nodes, self._free_after
        nodes = list(before)
        nodes[index] = Node(name, op, nodes[index].inputs)
        nodes = self._validate(nodes)  # ConfigError naming the node, graph untouched
        self.nodes, self._free_after = nodes, self._liveness(nodes)  # (attribute sets: plans are rebuilt)
        shapes = list(self.input_shapes.values())
        if all(s is not None for s in shapes) and sum(math.prod(s) for s in shapes) <= self._TRACE_VALUES:
            try:
                self.trace()
            except BaseException:
                self.nodes, self._free_after = before, free  # the graph as it was
                raise
        op.name = f"node {name!r} ({type(op).__name__})"

    def to_sequential(self):
        """This graph as a `Sequential`, when it is a chain (one input, one output, one input per
        node, each value read once); the layers are shared, not copied."""
        from .sequential import Sequential

        chain = len(self.input_shapes) == 1 and len(self.outputs) == 1
        previous = next(iter(self.input_shapes))
        for node in self.nodes:
            chain = chain and node.inputs == (previous,)
            previous = node.name
        if not chain:
            raise ConfigError("Graph.to_sequential: only a chain (one input, each node reading the one before) "
                              "is a Sequential")
        seq = Sequential(*[n.op for n in self.nodes])
        seq.input_shape = self.input_shape
        seq.meta = dict(self.meta)
        return seq

    def __repr__(self) -> str:
        lines = [f"  {n.name} = {n.op!r}({', '.join(n.inputs)})" for n in self.nodes]
        return (f"Graph(inputs={list(self.input_shapes)}, outputs={list(self.outputs)},\n" + "\n".join(lines) + "\n)")
