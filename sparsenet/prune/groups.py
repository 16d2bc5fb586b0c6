"""Dependency groups: which channels of a graph must be removed together, and their removal.

Removing output channel r of a convolution is only half of it: whatever reads that channel must lose
it too (the next convolution's input columns, a BatchNorm's statistics), and on a graph one channel
is rarely alone: a residual `Add` ties the channels of every branch that feeds it, a depthwise
convolution ties its outputs to its inputs, an attention head is rows of Q, K and V plus columns of
the output projection. Torch-Pruning's DepGraph (Fang et al., CVPR 2023) is the reference; this is
our own formulation of it.

How it is computed (`analyze`): every channel a layer creates is an *atom* (a Linear's or a
convolution's output rows, an Embedding's dimensions; a model input's channels are atoms that can
never go). One zero sample is traced through the graph for shapes; each value carries a *key
tensor*: for every position of one sample (the batch axis kept as size 1), the atom it belongs to,
with size-1 axes where the atom does not depend on the position (spatial axes, tokens). Each op
says how its output's keys follow from its inputs' (layout ops move keys as they move values) and
which atoms it ties together (union-find):

- element-wise ops with broadcasting (`Add`, `Sub`, `Mul`, `Div`), `Concat` along a non-channel
  axis: the inputs' atoms at the same position are one;
- `Concat` along the channel axis: the output's channel ranges are the inputs' (no tie);
- a depthwise convolution: each output channel is its input channel; a grouped one ties the
  same in-group position of every group (each group must keep as many channels as the others);
- `MatMul` of two activations (attention): the contracted positions are tied, and so is everything
  at one position of the batch axes, so that one head of Q, K, V and of the output projection's
  input is one atom;
- `Reshape`, `Transpose`, `Flatten`, `Slice` move keys; a `Linear`, a convolution or an `Embedding`
  starts new atoms for its outputs.

A *class* (union-find root) is one channel of a group; a *group* is the classes that live in the
same places (the same members: weight rows, weight columns, per-channel parameters). A class is
*blocked*, with the reason kept, when removing it would change what the model computes or cannot be
written: a model input's or output's channels, an op that maps 0 to something else before a layer
reads it (`Sigmoid`, a `Softmax` over channels, a `Pad2d` with a non-zero value), a normalisation
over the channels (`LayerNorm`: removing a feature changes the others' mean and variance), an op
this module does not know.

What is done with the groups (masking, removal, scores, selection) is `sparsenet.prune.channels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..nn import (GELU, Add, AvgPool2d, BatchNorm1d, BatchNorm2d, Clip, Concat, Conv2d, Div, Dropout, Embedding,
                  Flatten, GlobalAvgPool2d, Graph, HardSigmoid, HardSwish, Identity, LayerNorm, LeakyReLU, Linear,
                  MatMul, MaxPool2d, Mean, Mul, Pad2d, ReLU, ReLU6, Reshape, Scale, Sequential, Shift,
                  Sigmoid, SiLU, Slice, Softmax, Sub, Tanh, Transpose)

__all__ = ["Group", "Member", "DependencyAnalysis", "analyze", "dependency_groups"]

# element-wise ops with f(0) == 0 (exact types: a subclass may compute something else)
_ZERO_PRESERVING = (ReLU, LeakyReLU, Tanh, GELU, SiLU, ReLU6, HardSwish, Identity, Dropout)
# element-wise ops with f(0) != 0: a removed channel would carry f(0) to its readers
_ZERO_CHANGING = (Sigmoid, HardSigmoid)


@dataclass
class Member:
    """One place a group's channels live: `kind` is "rows" (a Linear's or convolution's output rows
    and bias), "columns" (a reader's weight columns), "depthwise" (a depthwise or grouped
    convolution's rows and bias that follow its input channels), "bn" (a BatchNorm's per-channel
    parameters and statistics), "norm" (a LayerNorm's affine parameters), "table" (an Embedding's
    columns), "value" (a Shift's or Scale's entries along `axis`). `atoms[i]` is the atom of index i
    along the member's axis."""

    node: str
    kind: str
    atoms: np.ndarray
    axis: int = 0


@dataclass
class Group:
    """Channels removed together. `classes[c]` is channel c's class; `members` are (node, kind,
    [indices of channel c in that member's axis for every c]); `kind` is "filters" (convolution
    outputs), "neurons" (Linear outputs), "heads" (attention heads), "dims" (embedding dimensions);
    `blocked[c]` says why channel c cannot be removed (None: it can)."""

    name: str
    kind: str
    classes: list
    members: list = field(repr=False)
    blocked: list = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> bool:
        return any(b is None for b in self.blocked)

    @property
    def reason(self) -> str | None:
        """Why no channel of the group can be removed (None when some can)."""
        return None if self.prunable else next(b for b in self.blocked if b is not None)

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(m[0] for m in self.members))

    def describe(self) -> dict:
        return {"kind": self.kind, "channels": self.size, "nodes": self.nodes,
                "prunable": sum(b is None for b in self.blocked), "reason": self.reason}


def _compress(keys: np.ndarray) -> np.ndarray:
    """Axes along which the keys do not change become size 1."""
    for a in range(keys.ndim):
        if keys.shape[a] > 1 and np.all(keys == keys.take([0], axis=a)):
            keys = keys.take([0], axis=a)
    return keys


class DependencyAnalysis:
    """The atoms, ties, members and key tensors of one graph (see the module docstring)."""

    def __init__(self, graph: Graph):
        if any(s is None for s in graph.input_shapes.values()):
            raise ConfigError(f"dependency groups need every input's shape; inputs "
                              f"{[k for k, s in graph.input_shapes.items() if s is None]} have none "
                              f"(set model.input_shape, or build the model with build_model)")
        self.graph = graph
        self.parent: list[int] = []
        self._blocks: dict[int, str] = {}
        self.members: list[Member] = []
        self.keys: dict[str, np.ndarray] = {}   # value name -> key tensor (atoms)
        self.shapes: dict[str, tuple] = {}      # value name -> whole shape of the traced batch of 1
        self._rules: list = []                  # (rule, input names, output name) for the zero pass
        self.heads: set[int] = set()            # atoms tied through a MatMul's batch axes
        self.input_atoms: dict[int, str] = {}   # atom -> the model input it is a channel of
        record: dict = {}
        graph.trace(record=record, whole=True)  # whole shapes: a layout op may move the batch off axis 0
        for name, shape in graph.input_shapes.items():
            self.shapes[name] = (1, *shape)
            if name in graph.input_dtypes:  # indices: no channels
                self.keys[name] = np.full((1,) * (len(shape) + 1), -1, np.int64)
            else:
                axis = 1 if len(shape) == 3 else len(shape)  # [C, H, W]: channels; else the last axis
                atoms = self.new(shape[axis - 1])
                self.input_atoms.update((int(a), name) for a in atoms)
                self.keys[name] = self._along(atoms, len(shape) + 1, axis)
                self.block(self.keys[name], f"input {name!r}'s channels (a model's inputs are never pruned)")
        for node in graph.nodes:
            ins, out = record[node.name]
            self.shapes[node.name] = tuple(out)
            keys = [self.keys[r] for r in node.inputs]
            try:
                k, rule = self._op(node, keys, [tuple(s) for s in ins], tuple(out))
            except Exception as e:  # never a crash: what could not be followed cannot be pruned
                k, rule = self._opaque(node, keys, len(out), f"node {node.name!r} ({type(node.op).__name__}) "
                                                            f"could not be analysed ({type(e).__name__}: {e})"[:300])
            if k.ndim != len(out) or any(a not in (1, b) for a, b in zip(k.shape, out)):
                k, rule = self._opaque(node, keys, len(out), f"node {node.name!r} ({type(node.op).__name__}): "
                                                            f"keys of shape {k.shape} for a value of {out}")
            self.keys[node.name] = k
            self._rules.append((rule, node.inputs, node.name))
        for o in graph.outputs:
            self.block(self.keys[o], f"output {o!r}'s channels (a model's outputs are never pruned)")
        self._finish()

    # -- union-find ---------------------------------------------------------------------------------
    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        """The class (root) of each atom; -1 stays -1. After the walk, one lookup in a frozen table
        (a ResNet-50's readers' columns are millions of atoms)."""
        atoms = np.asarray(atoms, dtype=np.int64)
        table = getattr(self, "_root", None)
        if table is None:
            flat = atoms.ravel()
            out = np.array([self.find(int(a)) if a >= 0 else -1 for a in flat], dtype=np.int64)
            return out.reshape(atoms.shape)
        return np.where(atoms >= 0, table[np.maximum(atoms, 0)], -1)

    def union(self, a: np.ndarray, b: np.ndarray, reason_if_none: str = "") -> None:
        """Tie a[i] to b[i] (broadcast); a position with an atom against one without blocks the atom."""
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        pairs = np.unique(np.stack([a.ravel(), b.ravel()], axis=1), axis=0)
        for x, y in pairs:
            if x < 0 or y < 0:
                if x >= 0 or y >= 0:
                    self.block(np.array([max(x, y)]), reason_if_none or "meets a value without channels")
                continue
            rx, ry = self.find(int(x)), self.find(int(y))
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def block(self, atoms, reason: str) -> None:
        for a in np.unique(np.asarray(atoms)):
            if a >= 0:
                self._blocks.setdefault(int(a), reason)

    @staticmethod
    def _along(atoms: np.ndarray, ndim: int, axis: int) -> np.ndarray:
        shape = [1] * ndim
        shape[axis] = len(atoms)
        return atoms.reshape(shape)

    def _member(self, node, kind, atoms, axis=0) -> None:
        self.members.append(Member(node, kind, np.asarray(atoms, np.int64).ravel(), axis))

    # -- ops ----------------------------------------------------------------------------------------
    def _op(self, node, keys, ins, out):
        """The output's key tensor and the node's zero rule: "pass" (a zero class stays zero),
        "taint" (0 maps to a non-zero value), "product" (zero when any factor is zero), "sink" (a
        weighted layer reads the input), "new" (fresh atoms)."""
        op, name = node.op, node.name
        kind = type(op)
        nd = len(out)  # whole shapes (the batch of 1 included)
        k = keys[0]
        if kind in _ZERO_PRESERVING:
            return k, "pass"
        if kind in (MaxPool2d, AvgPool2d, Pad2d):
            self._free(k, (2, 3), name, "a window over channels" if kind is not Pad2d else "padding over channels")
            return k, "taint" if kind is Pad2d and op.value != 0 else "pass"
        if kind in _ZERO_CHANGING or (kind is Clip and not op.low <= 0 <= op.high):
            return k, "taint"
        if kind in (BatchNorm1d, BatchNorm2d):
            if not self._only(k, (1,)):
                self.block(k, f"node {name!r} ({kind.__name__}) normalises positions that are not its features")
            else:
                self._member(name, "bn", np.broadcast_to(k, ins[0]).reshape(1, ins[0][1], -1)[0, :, 0])
            return k, "pass"
        if kind is LayerNorm:
            axes = tuple(range(nd - len(op.normalized_shape), nd))
            if any(k.shape[a] > 1 for a in axes):
                self.block(k, f"node {name!r} (LayerNorm) normalises over these features: removing one changes "
                              f"the others' mean and variance")
                if op.elementwise_affine and len(axes) == 1 and self._only(k, axes):
                    self._member(name, "norm", k.reshape(-1))
            return k, "pass"
        if kind is Softmax:
            if k.shape[op.axis % nd] > 1:
                self.block(k, f"node {name!r} (Softmax) normalises over these channels")
            return k, "taint"
        if kind in (Add, Sub, Mul, Div):
            if kind is Div:
                self.block(keys[1], f"node {name!r} (Div) divides by these channels")
            return self._unify(keys, nd, name), "product" if kind in (Mul, Div) else "pass"
        if kind is Concat:
            return self._concat(op.axis % nd, keys, ins, nd, name), "pass"
        if kind in (Shift, Scale):
            return self._constant(op, k, ins[0], name)
        if kind is Linear:
            if not self._only(k, (nd - 1,)):
                self.block(k, f"node {name!r} (Linear) reads channels on an axis other than its last")
            self._member(name, "columns", np.broadcast_to(k, ins[0]).reshape(-1, ins[0][-1])[0])
            atoms = self.new(op.out_features)
            self._member(name, "rows", atoms)
            return self._along(atoms, nd, nd - 1), "sink"
        if kind is Conv2d:
            return self._conv(op, k, ins[0], name)
        if kind is Embedding:
            atoms = self.new(op.embedding_dim)
            self._member(name, "table", atoms)
            return self._along(atoms, nd, nd - 1), "new"
        if kind is GlobalAvgPool2d:
            self._free(k, (2, 3), name, "an average over channels")
            return k[:, :, 0, 0], "pass"
        if kind is Mean:
            axes = tuple(sorted(a % k.ndim for a in op.axes))
            self._free(k, axes, name, "a mean over these channels")
            for a in axes:
                k = k.take([0], axis=a)
            return (k if op.keepdims else k.reshape([s for a, s in enumerate(k.shape) if a not in axes])), "pass"
        if kind is MatMul:
            return self._matmul(keys, nd, name), "product"
        if kind in (Reshape, Transpose, Slice, Flatten):
            full = np.broadcast_to(k, ins[0])
            if kind is Reshape:
                k = full.reshape(op.shape)
            elif kind is Transpose:
                k = full.transpose(op.perm)
            elif kind is Slice:
                k = full[op._index(full)]
            else:
                k = full.reshape(1, -1)
            return _compress(np.ascontiguousarray(k)), "pass"
        return self._opaque(node, keys, nd, f"node {name!r} ({kind.__name__}) is not known to the dependency analysis")

    def _opaque(self, node, keys, nd, reason):
        """An op this module does not follow: nothing through it is removed."""
        for x in keys:
            self.block(x, reason)
        atoms = self.new(1)
        self.block(atoms, reason)
        return atoms.reshape((1,) * nd), "new"

    @staticmethod
    def _only(k, axes) -> bool:
        """Whether the keys vary along `axes` only."""
        return all(k.shape[a] == 1 for a in range(k.ndim) if a not in axes)

    def _free(self, k, axes, name, what) -> None:
        """Block the atoms that vary along `axes` (an op that mixes those positions)."""
        if any(a < k.ndim and k.shape[a] > 1 for a in axes):
            self.block(k, f"node {name!r} computes {what}")

    def _unify(self, keys, nd, name):
        """Broadcast the inputs' keys (NumPy's rules) and tie each position's atoms."""
        ks = [k.reshape((1,) * (nd - k.ndim) + k.shape) for k in keys]
        shape = tuple(max(k.shape[a] for k in ks) for a in range(nd))
        ks = [np.broadcast_to(k, shape) for k in ks]
        for k in ks[1:]:
            self.union(ks[0], k, f"node {name!r} combines these channels with a value that has none")
        return np.ascontiguousarray(ks[0])

    def _concat(self, axis, keys, ins, nd, name):
        channel = [k.shape[axis] > 1 or s[axis] == 1 for k, s in zip(keys, ins)]
        if all(channel):  # along the channels: the output's ranges are the inputs'
            shape = [max(k.shape[a] for k in keys) for a in range(nd)]
            parts = []
            for k, s in zip(keys, ins):
                shape[axis] = s[axis]
                parts.append(np.broadcast_to(k, tuple(shape)))
            return _compress(np.concatenate(parts, axis=axis))
        if not any(k.shape[axis] > 1 for k in keys):  # along positions (tokens): one channel each
            return self._unify(keys, nd, name)
        reason = f"node {name!r} (Concat) joins channels with positions that are not channels"
        for k in keys:
            self.block(k, reason)
        atoms = self.new(1)
        self.block(atoms, reason)
        return atoms.reshape((1,) * nd)

    def _constant(self, op, k, shape, name):
        """``x + value`` / ``x * value``: the value's entries along the channel axis are a member."""
        value = op.array
        nd = len(shape)
        lead = nd - value.ndim
        vshape = (1,) * lead + value.shape
        shift = type(op) is Shift
        axes = [a for a in range(nd) if k.shape[a] > 1]
        for a in axes:
            if vshape[a] == 1:  # one value for every channel: a Shift turns a zero channel into it
                if shift and np.any(value != 0):
                    self.block(k, f"node {name!r} (Shift) adds one value to all these channels")
            elif self._only(k, (a,)):
                index = [0] * nd
                index[a] = slice(None)
                self._member(name, "value", np.broadcast_to(k, shape)[tuple(index)], axis=a - lead)
            else:
                self.block(k, f"node {name!r} ({type(op).__name__}) has a value over several channel axes")
        return k, "taint" if shift and not axes and np.any(value != 0) else "pass"

    def _conv(self, op, k, shape, name):
        if not self._only(k, (1,)):
            self.block(k, f"node {name!r} (Conv2d) mixes channels with spatial positions")
        cin = shape[1]
        taps = op.kernel_size[0] * op.kernel_size[1]
        inputs = np.broadcast_to(k, (1, cin, 1, 1))[0, :, 0, 0] if self._only(k, (1,)) else np.full(cin, -1)
        inputs = np.asarray(inputs, np.int64)
        g = op.groups
        if op.depthwise:  # output channel o follows input channel o // multiplier
            atoms = np.repeat(inputs, op.out_channels // cin)
            self._member(name, "depthwise", atoms)
            return self._along(atoms, 4, 1), "pass"
        a, b = cin // g, op.out_channels // g
        per = inputs.reshape(g, a)
        for j in range(1, g):  # grouped: the same in-group position of every group goes together
            self.union(per[0], per[j])
        self._member(name, "columns", np.repeat(per[0], taps))
        atoms = self.new(op.out_channels)
        rows = atoms.reshape(g, b)
        for j in range(1, g):
            self.union(rows[0], rows[j])
        self._member(name, "rows", atoms)
        return self._along(atoms, 4, 1), "sink"

    def _matmul(self, keys, nd, name):
        """A product of two activations: everything at one position of a batch axis along which keys
        vary (an attention head) is one class; otherwise the two inputs' channels are blocked."""
        ka, kb = (k.reshape((1,) * (nd - k.ndim) + k.shape) for k in keys)
        shape = tuple(max(ka.shape[a], kb.shape[a]) for a in range(nd - 2))
        if all(s == 1 for s in shape):
            reason = f"node {name!r} (MatMul) mixes the channels of two activations"
            self.block(ka, reason)
            self.block(kb, reason)
            atoms = self.new(1)
            self.block(atoms, reason)
            return atoms.reshape((1,) * nd)
        fa = np.broadcast_to(ka, shape + ka.shape[-2:])
        fb = np.broadcast_to(kb, shape + kb.shape[-2:])
        heads = np.empty(shape, np.int64)
        for pos in np.ndindex(*shape):
            atoms = np.concatenate([fa[pos].ravel(), fb[pos].ravel()])
            atoms = atoms[atoms >= 0]
            heads[pos] = atoms[0] if atoms.size else -1
            self.union(atoms[:1], atoms[1:])
            self.heads.update(int(x) for x in atoms)
        return heads.reshape(shape + (1, 1))

    # -- after the walk -----------------------------------------------------------------------------
    def _finish(self) -> None:
        self._root = np.array([self.find(a) for a in range(len(self.parent))], dtype=np.int64)
        self.blocked: dict[int, str] = {}
        for a, reason in self._blocks.items():
            self.blocked.setdefault(self.find(a), reason)
        self._zero_pass()
        self._check_slabs()
        self.head_roots = {self.find(a) for a in self.heads}
        self.input_roots = {self.find(a): n for a, n in self.input_atoms.items()}

    def _zero_pass(self) -> None:
        """Classes that would carry a non-zero value after their sources are zeroed (`taint`), into a
        reader that multiplies it by a weight or into an output: blocked."""
        tainted: dict[str, set] = {n: set() for n in self.keys}
        for rule, inputs, out in self._rules:
            sets = [tainted[r] for r in inputs]
            present = set(self.roots(np.unique(self.keys[out])).tolist()) - {-1}
            if rule == "pass":
                tainted[out] = set().union(*sets) & present
            elif rule == "taint":
                tainted[out] = present
            elif rule == "product":  # zero when any factor is zero
                ins = [set(self.roots(np.unique(self.keys[r])).tolist()) for r in inputs]
                tainted[out] = {r for r in present if all(r in t or r not in s for t, s in zip(sets, ins))}
            else:  # "sink": a weighted layer reads its input; "new": fresh atoms
                if rule == "sink":
                    for r in sets[0]:
                        self.blocked.setdefault(r, f"node {out!r} reads these channels after an op that maps 0 "
                                                   f"to a non-zero value")
                tainted[out] = set()
        for o in self.graph.outputs:
            for r in tainted[o]:
                self.blocked.setdefault(r, "reaches an output")

    def _check_slabs(self) -> None:
        """A class spread over several channel axes of a value (an attention head's [H, dh]) must be
        whole slices of it, or its removal could not be written as smaller axes."""
        for name, k in self.keys.items():
            if sum(s > 1 for s in k.shape) < 2:
                continue
            r = self.roots(k)
            for root in np.unique(r):
                if root < 0 or root in self.blocked:
                    continue
                mask = r == root
                slabs = np.zeros_like(mask)
                for a in range(mask.ndim):
                    if mask.shape[a] == 1:
                        continue
                    other = tuple(b for b in range(mask.ndim) if b != a)
                    whole = mask.all(axis=other, keepdims=True)
                    slabs |= np.broadcast_to(whole, mask.shape)
                if not np.array_equal(slabs, mask):
                    self.blocked[int(root)] = f"its channels are not whole slices of value {name!r}"

    # -- groups -------------------------------------------------------------------------------------
    def groups(self) -> list[Group]:
        """The classes that live in the same members, as groups, in graph order."""
        mroots = [self.roots(m.atoms) for m in self.members]
        where: list[dict] = []  # per member: {root: its indices}, one sort each (not a scan per class)
        footprint: dict[int, list] = {}
        for i, r in enumerate(mroots):
            order = np.argsort(r, kind="stable")
            keys, starts = np.unique(r[order], return_index=True)
            parts = dict(zip(keys.tolist(), np.split(order, starts[1:])))
            parts.pop(-1, None)
            where.append(parts)
            for root in parts:
                footprint.setdefault(int(root), []).append(i)
        by_key: dict[tuple, list[int]] = {}
        for root, ms in footprint.items():
            by_key.setdefault(tuple(ms), []).append(root)
        out = []
        for key, roots in by_key.items():
            first = self.members[key[0]]
            roots = sorted(roots, key=lambda r: int(where[key[0]][r][0]))
            members = [(self.members[i].node, self.members[i].kind, [where[i][root] for root in roots]) for i in key]
            sources = [self.members[i] for i in key if self.members[i].kind in ("rows", "table")]
            src = sources[0] if sources else first
            op = _node_op(self.graph, src.node)
            inputs = [self.input_roots[r] for r in roots if r in self.input_roots]
            if inputs:
                kind, src = "inputs", Member(inputs[0], "input", np.zeros(0, np.int64))
            elif any(r in self.head_roots for r in roots):
                kind = "heads"
            elif isinstance(op, Conv2d):
                kind = "filters"
            elif isinstance(op, Embedding):
                kind = "dims"
            else:
                kind = "neurons"
            blocked = [self.blocked.get(r) if sources else self.blocked.get(r, "no layer produces these channels")
                       for r in roots]
            out.append(Group(src.node, kind, roots, members, blocked))
        names = {}
        for g in out:  # unique names: a node that heads two groups (a grouped convolution) numbers them
            n = names.get(g.name, 0)
            names[g.name] = n + 1
            if n:
                g.name = f"{g.name}#{n}"
        position = {n.name: i for i, n in enumerate(self.graph.nodes)}
        return sorted(out, key=lambda g: (position.get(g.name.split("#")[0], -1), g.name))


def _node_op(graph, name):
    return next(n.op for n in graph.nodes if n.name == name)


def _as_graph(model) -> Graph:
    if isinstance(model, Graph):
        return model
    if isinstance(model, Sequential):
        if model.input_shape is None:
            raise ConfigError("dependency groups of a Sequential need its input_shape (model.input_shape = ...)")
        return Graph.from_sequential(model)  # the same layers
    raise ConfigError(f"dependency groups: expected a Graph or a Sequential, found {type(model).__name__}")


def analyze(model) -> DependencyAnalysis:
    """The dependency analysis of `model` (a Graph, or a Sequential seen as one)."""
    return DependencyAnalysis(_as_graph(model))


def dependency_groups(model) -> list[Group]:
    """The channel groups of `model`: what must be removed together (see the module docstring).

    >>> import sparsenet as sn
    >>> groups = dependency_groups(sn.build_model("resnet", seed=0))
    >>> [(g.name, g.size, g.prunable) for g in groups][:3]
    [('x', 1, False), ('stem', 16, True), ('s1b1_conv1', 16, True)]
    """
    return analyze(model).groups()
