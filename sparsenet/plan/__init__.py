"""Compiled inference plans: a model lowered once to a list of bound kernel calls.

``plan = build_plan(model)`` walks the model (a `Sequential`, a `Graph`, any module), lets each
module lower itself (`Module.lower`, in the module's own file; see `_lower`), fuses each bias and
activation into the product before it, assigns the activations to reusable buffers by liveness,
and checks the shapes on a zero sample. Running it (`Plan.predict`, which `sparsenet.predict`,
``model.predict``, `evaluate`, ``sparsenet predict``, ``bench`` and the demo use) then:

- checks the input once at the boundary (shape and dtype in Python, finiteness in the kernel that
  takes the input in, one pass);
- calls each step's kernel, chosen for the batch size and bound to its buffers once per batch size
  and calling thread (no lookups, no allocation except the returned output);
- runs small dense layers with a Numba kernel rather than BLAS (`sparsenet.formats.Dense.product`),
  and keeps OpenBLAS's spinning threads from stalling its parallel kernels (see `sparsenet.plan._bind`);
- splits a large batch of a plan that reuses its weights (a CNN at batch 64) between the threads,
  each part through serial kernels on its thread's own buffers, the same bits (`_bind.split_rows`).

Plans are cached per model and rebuilt after any change to it (a replaced weight, layer or
attribute: `sparsenet.nn.module.generation`); in-place changes to weight values are seen without a
rebuild, since plans hold the model's own arrays. A plan is thread-safe: each calling thread gets
its own buffers. Generic steps (layers without a lowering of their own) run their module's forward
in evaluation mode, switching a module that is training for the call (not thread-safe, as in
`sparsenet.predict`).

>>> import numpy as np, sparsenet as sn
>>> model = sn.build_model("lenet300", seed=0)
>>> plan = build_plan(model)
>>> plan.predict(np.zeros((2, 1, 8, 8))).shape
(2, 10)
>>> print(plan.describe().splitlines()[2])
  1. product         layer 1 (Linear): dense + ReLU   [64] -> [300]
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .._checks import check_int
from ..errors import ConfigError, DataError, DTypeError, ShapeError
from ..kernels._blas import PLAN_THREADS
from ..nn import module as _module
from ..nn.graph import Graph
from . import _bind
from ._bind import PLAN_SERIAL_WORK, PLAN_SPLIT_WORK, _Program, bind, split_rows, weight_entries, work_per_sample
from ._lower import Builder
from ._tape import tape_of

__all__ = ["Plan", "build_plan", "plan_for", "PLAN_SERIAL_WORK", "PLAN_SPLIT_WORK"]

_PROGRAMS_PER_THREAD = 8  # batch sizes whose bound buffers a thread keeps (and input shapes per model)
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (generation, {shapes: Plan})


class Plan:
    """The compiled inference plan of one model for one input shape (see the module docstring).

    input_shapes: one sample's shape per input; dtype: the dtype float inputs are cast to (a Graph's
    integer inputs, `Graph.input_dtypes`, keep theirs)."""

    def __init__(self, model, input_shapes, dtype):
        self.dtype = np.dtype(dtype)
        self.input_shapes = [tuple(int(s) for s in shape) for shape in input_shapes]
        declared = getattr(model, "input_dtypes", None) or {}
        names = list(getattr(model, "input_shapes", None) or [None] * len(self.input_shapes))
        self.input_dtypes = [np.dtype(declared.get(k, self.dtype)) for k in names]
        b = Builder(self.dtype)
        ins = [b.input(i, shape, dt) for i, (shape, dt) in enumerate(zip(self.input_shapes, self.input_dtypes))]
        outs = model.lower(b, ins)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        outs = [b.as_bm(o) if o.layout in ("in", "native") else o for o in outs]  # an input as it is; native: refused
        # inputs are taken in first (they read only the user's arrays), then the steps in order
        self.steps = ([s for s in b.steps if s.kind.startswith("ingest")] +
                      [s for s in b.steps if not s.kind.startswith("ingest")])
        self.outputs = outs
        self.output_shapes = [o.shape for o in outs]
        self._assign_buffers()
        self._generic = any(s.kind == "generic" for s in self.steps)
        self._one = len(self.input_shapes) == 1 and len(self.outputs) == 1
        self._out_dtype = self.outputs[0].dtype if self.outputs else self.dtype
        self._local = threading.local()
        self._work, self._entries = work_per_sample(self), weight_entries(self)
        self._split_ok: dict = {}  # (rows per part, parts) -> whether a batch may be split so
        self._labels: dict = {}  # input names (or None) -> the inputs' labels in errors

    # -- buffers --------------------------------------------------------------------------------------
    def _assign_buffers(self) -> None:
        """Give every value that owns storage a buffer ("slot"), reusing a slot once the last step
        that reads its value has run (outputs live to the end)."""
        end = len(self.steps)
        last = {}
        for i, step in enumerate(self.steps):
            for v in step.reads:
                last[id(v.root)] = i
        for o in self.outputs:
            last[id(o.root)] = end
        self.slots: list[list] = []  # [dtype, largest sample size]
        self._slot_of: dict[int, int] = {}
        free: list[int] = []
        dying: dict[int, list[int]] = {}
        for i, step in enumerate(self.steps):
            w = step.writes
            if w.root is w:
                pick = next((s for s in free if self.slots[s][0] == w.dtype), None)
                if pick is None:
                    pick = len(self.slots)
                    self.slots.append([w.dtype, 0])
                else:
                    free.remove(pick)
                self.slots[pick][1] = max(self.slots[pick][1], w.features)
                self._slot_of[id(w)] = pick
                dying.setdefault(last.get(id(w), i), []).append(pick)
            free.extend(dying.pop(i, []))

    # -- binding --------------------------------------------------------------------------------------
    def _bind(self, batch: int, serial: bool = False) -> "_Program":
        return bind(self, batch, serial)

    def _program(self, batch: int, serial: bool = False) -> "_Program":
        programs = getattr(self._local, "programs", None)
        if programs is None:
            programs = self._local.programs = {}
        prog = programs.get((batch, serial))
        if prog is None:
            if len(programs) >= _PROGRAMS_PER_THREAD:
                programs.clear()
            prog = programs[(batch, serial)] = tape_of(self._bind(batch, serial), self.dtype)
        return prog

    def _run1(self, x2, out2) -> int:
        """One batch of one input through the program for its size: in parts, one per thread, when
        `split_rows` says so (each thread's part in serial kernels, on that thread's own buffers).
        Returns the count of non-finite inputs (0: done)."""
        n = x2.shape[0]
        if self._work * n < _bind.PLAN_SPLIT_WORK:  # a small batch (the per-request path): no more checks
            return self._program(n).run1(x2, out2)
        parts = split_rows(self, n, numba.get_num_threads())
        if parts is None:
            return self._program(n).run1(x2, out2)
        futures = [_pool(len(parts) - 1).submit(self._part, x2, out2, i, j) for i, j in parts[1:]]
        bad = self._part(x2, out2, *parts[0])
        for f in futures:
            bad += f.result()
        return bad

    def _part(self, x2, out2, i, j) -> int:
        return self._program(j - i, serial=True).run1(x2[i:j], out2[i:j])

    # -- running --------------------------------------------------------------------------------------
    def predict(self, x, batch_size: int = 256, *, where: str = "predict", allow_single: bool = True):
        """Outputs for `x` ([N, *input_shape], or one sample when `allow_single`), in batches of
        `batch_size`; checks and errors as `sparsenet.predict`. One input and one output only."""
        if not self._one:
            raise ConfigError(f"{where}: expected a plan of one input and one output, found "
                              f"{len(self.input_shapes)} and {len(self.outputs)} (use Plan.run)")
        x, single = self._check(x, 0, where, allow_single)
        n = x.shape[0]
        out = np.empty((n, *self.output_shapes[0]), dtype=self._out_dtype)
        if not n:
            return out[0] if single else out
        x2, out2 = x.reshape(n, -1), out.reshape(n, -1)
        if n <= batch_size:  # one batch (a user's per-request call): no slicing
            if self._run1(x2, out2):
                self._raise_not_finite(x, where)
        else:
            for i in range(0, n, batch_size):
                j = min(n, i + batch_size)
                if self._run1(x2[i:j], out2[i:j]):
                    self._raise_not_finite(x, where)
        return out[0] if single else out

    def run(self, *xs, batch_size: int = 256, names=None):
        """Outputs (a tuple, in the model's output order) for one batch-major array per input;
        `names` (one per input) label the inputs in errors (``predict input 'ids'``)."""
        if type(batch_size) is not int or batch_size < 1:
            batch_size = check_int(batch_size, "batch_size", "Plan.run")
        if len(xs) != len(self.input_shapes):
            raise ConfigError(f"Plan.run: expected {len(self.input_shapes)} inputs, found {len(xs)}")
        key = tuple(names) if names else None
        labels = self._labels.get(key)  # (formatted once per set of names: this runs at every call)
        if labels is None:
            labels = self._labels[key] = ([f"predict input {k!r}" for k in names] if names else
                                          [f"Plan.run input {i}" for i in range(len(xs))])
        checked = [self._check(x, i, labels[i], False)[0] for i, x in enumerate(xs)]
        n = checked[0].shape[0]
        for x in checked:
            if x.shape[0] != n:
                raise ShapeError(f"{'predict' if names else 'Plan.run'}: expected inputs of one batch size, found "
                                 f"{[x.shape[0] for x in checked]}")
        outs = [np.empty((n, *o.shape), dtype=o.dtype) for o in self.outputs]
        flat_x = [x.reshape(n, -1) for x in checked]
        flat_out = [o.reshape(n, -1) for o in outs]
        if 0 < n <= batch_size:  # one batch (a user's per-request call): no slicing
            bad = self._program(n).run(flat_x, flat_out)
            if bad is not None:
                self._raise_not_finite(checked[bad], labels[bad])
            return tuple(outs)
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            bad = self._program(j - i).run([x[i:j] for x in flat_x], [o[i:j] for o in flat_out])
            if bad is not None:
                self._raise_not_finite(checked[bad], labels[bad])
        return tuple(outs)

    def kernels_only(self, *xs):
        """A function of no arguments running this plan's kernels on `xs` (one batch per input,
        checked here once), writing into outputs it owns: the bound calls of `predict` without the
        Python around them (input checks, batching, the returned array), in this thread (a batch
        that `predict` splits between threads runs here as one program). What `compiled(...,
        "auto")` times, and what benchmarks subtract from `predict` to measure the per-call overhead."""
        checked = [self._check(x, i, "Plan.kernels_only", False)[0] for i, x in enumerate(xs)]
        n = checked[0].shape[0]
        flat = [x.reshape(n, -1) for x in checked]
        outs = [np.empty((n, o.features), dtype=o.dtype) for o in self.outputs]
        prog = self._program(n)
        return lambda: prog.run(flat, outs)

    def _check(self, x, index, where, allow_single):
        """(input `index` as a C-contiguous array of [N, *shape] in the plan's dtype, or in its own
        integer dtype, whether one sample was given)."""
        shape, want = self.input_shapes[index], self.input_dtypes[index]
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{where}: expected a real numeric input, found dtype {x.dtype}")
        if want.kind in "iu":
            if x.dtype.kind not in "iu":
                raise DTypeError(f"{where}: expected integer indices ({want}), found dtype {x.dtype}")
            if x.dtype != want and not np.can_cast(x.dtype, want) and x.size:
                low, high, info = int(x.min()), int(x.max()), np.iinfo(want)
                if low < info.min or high > info.max:
                    raise DataError(f"{where}: values {low}..{high} do not fit the input's dtype {want}")
        single = False
        if x.shape[1:] != shape:
            if allow_single and x.shape == shape:
                x, single = x[None], True
            else:
                one = f" or one sample {list(shape)}" if allow_single else ""
                raise ShapeError(f"{where}: expected input of shape [N, {', '.join(map(str, shape))}]{one}, "
                                 f"found {list(x.shape)}")
        if want.kind in "iu":
            if x.dtype != want:
                x = x.astype(want)
        elif x.dtype.kind != "f":
            x = x.astype(self.dtype)
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return x, single

    def _raise_not_finite(self, x, where):
        if not np.all(np.isfinite(x)):
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise DataError(f"{where}: expected finite values, found {bad} NaN/inf entries")
        raise DataError(f"{where}: values overflow the model's dtype {self.dtype} "
                        f"(largest magnitude {np.max(np.abs(x.astype(np.float64)))})")

    def describe(self) -> str:
        """The steps, one per line: kind, what, and one sample's shapes."""
        lines = [f"Plan ({len(self.steps)} steps, {len(self.slots)} buffers, dtype {self.dtype})"]
        for i, s in enumerate(self.steps):
            shapes = f"{list(s.reads[0].shape)} -> {list(s.writes.shape)}" if s.reads else ""
            lines.append(f"  {i}. {s.kind:15s} {s.what}   {shapes}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()


_POOL: list = []  # [executor, its worker count, the process it was made in]: the threads that run
# the other parts of a split batch
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least `workers` threads. A forked child makes its own (its copy of
    the parent's pool has no threads behind it: a task given to it would never run)."""
    with _POOL_LOCK:
        if not _POOL or _POOL[1] < workers or _POOL[2] != os.getpid():
            if _POOL and _POOL[2] == os.getpid():
                _POOL[0].shutdown(wait=False)
            _POOL[:] = [ThreadPoolExecutor(max_workers=workers, thread_name_prefix=PLAN_THREADS), workers,
                        os.getpid()]
        return _POOL[0]


def _declared_shapes(model):
    """One sample's shape per input as the model declares them, or None if it does not."""
    shapes = getattr(model, "input_shapes", None)
    if isinstance(shapes, dict) and all(s is not None for s in shapes.values()):
        return list(shapes.values())
    shape = getattr(model, "input_shape", None)
    return [tuple(shape)] if shape is not None else None


def _sample_shapes(model, x) -> list[tuple]:
    shapes = _declared_shapes(model)
    if shapes is not None:
        return shapes
    if x is None:
        raise ConfigError(f"{type(model).__name__} declares no input shape: give input_shape")
    x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"predict: expected [batch, features...] (the model declares no input shape), "
                         f"found shape {list(x.shape)}")
    return [tuple(x.shape[1:])]


def build_plan(model, input_shape=None) -> Plan:
    """The compiled inference plan of `model` (its weights are the model's own arrays, not copies).
    `input_shape` (one sample's shape) is needed only when the model declares none.

    >>> import sparsenet as sn
    >>> build_plan(sn.build_model("mlp", seed=0)).output_shapes
    [(10,)]
    """
    shapes = [tuple(input_shape)] if input_shape is not None else _sample_shapes(model, None)
    return Plan(model, shapes, _module.model_dtype(model))


def plan_for(model, x=None) -> Plan:
    """The cached plan of `model` (for inputs like `x` when the model declares no input shape),
    rebuilt when the model changed since it was built. The cache is keyed by the model object and
    holds it weakly (a copy of a model, `copy.deepcopy`, builds its own)."""
    cache = _PLANS.get(model)  # [generation, {input shapes: plan}, the plan of the declared shapes]
    if cache is not None and cache[0] == _module._GENERATION[0] and cache[2] is not None:
        plan = cache[2]  # the model declares its input shapes: x is not needed (predict's per-call path)
        # (a Graph's input_shapes dict can be changed in place without moving the generation)
        if not isinstance(model, Graph) or plan.input_shapes == list(model.input_shapes.values()):
            return plan
    if cache is not None and cache[0] != _module._GENERATION[0]:
        cache = None
    declared = _declared_shapes(model)
    shapes = declared if declared is not None else _sample_shapes(model, x)
    key = tuple(shapes)
    plan = cache[1].get(key) if cache else None
    if plan is None:
        plan = Plan(model, shapes, _module.model_dtype(model))
        if cache is None or cache[0] != _module.generation():  # building may not change it, but check
            cache = [_module.generation(), {}, None]
        if len(cache[1]) >= _PROGRAMS_PER_THREAD:
            cache[1].clear()
        cache[1][key] = plan
        _PLANS[model] = cache
    if declared is not None:
        cache[2] = plan
    return plan
