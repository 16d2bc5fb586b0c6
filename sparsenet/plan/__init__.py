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
  and keeps OpenBLAS's spinning threads from stalling its parallel kernels (see `Plan._bind`).

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

import numpy as np

from .. import kernels
from .._checks import check_int
from ..errors import ConfigError, DataError, DTypeError, ShapeError
from ..formats.dense import _blas_product as _BLAS_PRODUCT
from ..kernels import epilogue, layout
from ..kernels._blas import QUIET_MIN_WORK, parallel_if_quiet, quiet_blas
from ..nn import module as _module
from ..nn.graph import Graph
from ._lower import Builder, Value
from ._tape import tape_of

__all__ = ["Plan", "build_plan", "plan_for", "PLAN_SERIAL_WORK"]

# A plan whose products and convolutions come to fewer multiply-adds than this (for the batch it is
# bound to) runs every kernel serial, and so as one tape (`_tape`): single kernels cross over lower
# (`kernels.PARALLEL_MIN_WORK`), but a plan of small parallel kernels pays a launch and OpenMP's
# wake-ups per kernel and cannot run as one compiled call. Measured through `predict` (2 threads,
# 2026-12-02, medians): the zoo LeNet-300-100 at batch 64, 90 % CSR 37-46 us all serial against
# 79-129 us with parallel kernels, 80 % in 4x4 blocks 41 us against 52-55 us, the dense model at
# batch 1 7 us against 18 us. Tunable with SPARSENET_PLAN_SERIAL_WORK.
PLAN_SERIAL_WORK = int(os.environ.get("SPARSENET_PLAN_SERIAL_WORK", 1 << 20))

_PROGRAMS_PER_THREAD = 8  # batch sizes whose bound buffers a thread keeps (and input shapes per model)
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (generation, {shapes: Plan})


class Plan:
    """The compiled inference plan of one model for one input shape (see the module docstring).

    input_shapes: one sample's shape per input; dtype: the dtype inputs are cast to."""

    def __init__(self, model, input_shapes, dtype):
        self.dtype = np.dtype(dtype)
        self.input_shapes = [tuple(int(s) for s in shape) for shape in input_shapes]
        b = Builder(self.dtype)
        ins = [b.input(i, shape) for i, shape in enumerate(self.input_shapes)]
        outs = model.lower(b, ins)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        outs = [b.as_bm(o) if o.layout == "in" else o for o in outs]  # an input returned as it is
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
    def _bind(self, batch: int) -> "_Program":
        arrays = [np.empty(size * batch, dtype) for dtype, size in self.slots]

        def view(v: Value) -> np.ndarray:
            base = arrays[self._slot_of[id(v.root)]][:v.features * batch]
            return base.reshape((v.features, batch) if v.layout == "fm" else (batch, *v.shape))

        ingests, calls = [], []
        # OpenBLAS's threads spin for ~0.1 s after a threaded call, and a parallel Numba kernel that
        # runs meanwhile stalls: the dense LeNet-300-100 at batch 64 (two BLAS products, then a
        # parallel 100 x 10 product) took 6.8 ms per call instead of 67 us. After a BLAS step or a
        # generic layer of this plan, a parallel kernel therefore runs serial, unless it is large
        # (>= QUIET_MIN_WORK multiply-adds): then the pool is stopped first (`quiet_blas`; starting
        # it again costs the next threaded BLAS call 0.15-0.6 ms, measured), at most once per call.
        # The caller's own BLAS work before the call is unknown: the first parallel kernel stops the
        # pool (4096 x 4096 at 90 %, batch 64, right after `w @ x`: 7.0 -> 3.2 ms).
        # The other way round, Numba's OpenMP workers spin for 10-30 ms after a parallel kernel and a
        # threaded BLAS call meanwhile waits for a time slice: in a plan that calls BLAS anywhere, the
        # parallel kernels below QUIET_MIN_WORK run serial (the zoo CNN at batch 64 unfolds its input
        # before each BLAS product).
        after_blas = ["caller"]
        weighted = [s for s in self.steps if s.kind in ("product", "conv2d")]
        blas_anywhere = any(s.params["weight"].product(_columns(s, batch))[0] is _BLAS_PRODUCT for s in weighted)
        all_serial = sum(s.params["weight"].nnz * _columns(s, batch) for s in weighted) < PLAN_SERIAL_WORK

        def before_parallel(kern, work):
            if all_serial and kern in kernels._jit.PARALLEL:
                return kernels._jit.SERIAL_OF[kern]
            if kern is _BLAS_PRODUCT:
                after_blas[0] = "plan"
            elif blas_anywhere and kern in kernels._jit.PARALLEL and work < QUIET_MIN_WORK:
                return kernels._jit.SERIAL_OF[kern]
            elif after_blas[0] and kern in kernels._jit.PARALLEL:
                if work < QUIET_MIN_WORK:
                    if after_blas[0] == "plan":
                        return kernels._jit.SERIAL_OF[kern]
                    # after the caller's BLAS: parallel if the pool is (or can be made) quiet, else serial
                    return parallel_if_quiet(kern, kernels._jit.SERIAL_OF[kern])
                calls.append((quiet_blas, ()))
                after_blas[0] = None
            return kern

        for step in self.steps:
            src, dst = step.reads, step.writes
            if step.kind in ("ingest_fm", "ingest_bm"):
                fn = layout.ingest_fm if step.kind == "ingest_fm" else layout.ingest_bm
                out = view(dst)
                ingests.append((fn, src[0].index, out if out.ndim == 2 else out.reshape(batch, -1)))
            elif step.kind == "product":
                p = step.params
                raw, weights = p["weight"].product(batch)
                kern = before_parallel(raw, p["weight"].nnz * batch)
                if _may_run_parallel(raw, kern) and kernels._jit._needs_lock():  # workqueue layer
                    kern = _locked(kern)
                calls.append((kern, (*weights, view(src[0]), view(dst), p["bias"], p["act"], p["alpha"])))
            elif step.kind == "conv2d":
                p = step.params
                x, y = view(src[0]), view(dst)
                m, oh, ow = dst.shape
                n = _columns(step, batch)
                cols = np.empty((p["weight"].shape[1], n), dst.dtype)  # the unfolded input, bound once
                unfold = before_parallel(layout.im2col if cols.size >= kernels.PARALLEL_MIN_WORK else
                                         layout.im2col_serial, cols.size)  # (decided in the order they run)
                if _may_run_parallel(layout.im2col, unfold) and kernels._jit._needs_lock():
                    unfold = _locked(unfold)
                raw, weights = p["weight"].product(n)
                kern = before_parallel(raw, p["weight"].nnz * n)
                if _may_run_parallel(raw, kern) and kernels._jit._needs_lock():
                    kern = _locked(kern)
                calls.append((unfold, (x, cols, *p["kernel"], p["stride"], p["stride"], p["padding"])))
                # batch 1: [out, oh*ow] is already batch-major; else [out, B, oh*ow] -> [B, out, oh*ow]
                prod = y.reshape(m, n) if batch == 1 else np.empty((m, n), dst.dtype)
                calls.append((kern, (*weights, cols, prod, p["bias"], p["act"], p["alpha"])))
                if batch != 1:
                    calls.append((layout.swap_leading, (prod.reshape(m, batch, oh * ow), y.reshape(batch, m, oh * ow))))
            elif step.kind == "activation":
                p = step.params
                big = dst.features * batch >= kernels.PARALLEL_MIN_WORK
                raw = kernels.dense_epilogue if big else kernels.dense_epilogue_serial
                kern = before_parallel(raw, dst.features * batch)
                if _may_run_parallel(raw, kern) and kernels._jit._needs_lock():
                    kern = _locked(kern)
                flat = view(dst).reshape(-1, batch) if dst.layout == "fm" else view(dst).reshape(batch, -1)
                args = (flat, epilogue.no_bias(dst.dtype), p["act"], p["alpha"])  # elementwise: any layout
                if dst.root is not src[0].root:
                    calls.append((np.copyto, (view(dst), view(src[0]))))
                calls.append((kern, args))
            elif step.kind == "batchnorm":
                m = step.params["module"]
                x3, y3 = (view(v).reshape(1, v.features, batch) if v.layout == "fm" else
                          view(v).reshape(batch, v.shape[0], -1) for v in (src[0], dst))
                calls.append((kernels.dense_batchnorm, (x3, m.running_mean, m.running_var, m.weight.data,
                                                        m.bias.data, m.eps, y3)))
            elif step.kind == "maxpool2d":
                p = step.params
                calls.append((kernels.dense_maxpool2d, (view(src[0]), view(dst), *p["kernel"], *p["stride"],
                                                        p["padding"])))
            elif step.kind == "fm_to_bm":
                calls.append((layout.transpose, (view(src[0]), view(dst).reshape(batch, -1))))
            elif step.kind == "bm_to_fm":
                calls.append((layout.transpose, (view(src[0]).reshape(batch, -1), view(dst))))
            else:  # generic
                p = step.params
                calls.append((_run_generic, (p["module"], p["modules"], [view(v) for v in src], view(dst))))
                after_blas[0] = "plan"  # a layer's own forward may call BLAS
        finals = []
        for j, o in enumerate(self.outputs):
            if o.layout == "fm":
                finals.append((layout.transpose, view(o), j))
            else:
                finals.append((_copy_rows, view(o).reshape(batch, -1), j))
        return _Program(ingests, calls, finals, self._generic)

    def _program(self, batch: int) -> "_Program":
        programs = getattr(self._local, "programs", None)
        if programs is None:
            programs = self._local.programs = {}
        prog = programs.get(batch)
        if prog is None:
            if len(programs) >= _PROGRAMS_PER_THREAD:
                programs.clear()
            prog = programs[batch] = tape_of(self._bind(batch), self.dtype)
        return prog

    # -- running --------------------------------------------------------------------------------------
    def predict(self, x, batch_size: int = 256, *, where: str = "predict", allow_single: bool = True):
        """Outputs for `x` ([N, *input_shape], or one sample when `allow_single`), in batches of
        `batch_size`; checks and errors as `sparsenet.predict`. One input and one output only."""
        if not self._one:
            raise ConfigError(f"{where}: expected a plan of one input and one output, found "
                              f"{len(self.input_shapes)} and {len(self.outputs)} (use Plan.run)")
        x, single = self._check(x, self.input_shapes[0], where, allow_single)
        n = x.shape[0]
        out = np.empty((n, *self.output_shapes[0]), dtype=self._out_dtype)
        if not n:
            return out[0] if single else out
        x2, out2 = x.reshape(n, -1), out.reshape(n, -1)
        if n <= batch_size:  # one batch (a user's per-request call): no slicing
            if self._program(n).run1(x2, out2):
                self._raise_not_finite(x, where)
        else:
            for i in range(0, n, batch_size):
                j = min(n, i + batch_size)
                if self._program(j - i).run1(x2[i:j], out2[i:j]):
                    self._raise_not_finite(x, where)
        return out[0] if single else out

    def run(self, *xs, batch_size: int = 256):
        """Outputs (a tuple, in the model's output order) for one batch-major array per input."""
        batch_size = check_int(batch_size, "batch_size", "Plan.run")
        if len(xs) != len(self.input_shapes):
            raise ConfigError(f"Plan.run: expected {len(self.input_shapes)} inputs, found {len(xs)}")
        checked = [self._check(x, shape, f"Plan.run input {i}", False)[0]
                   for i, (x, shape) in enumerate(zip(xs, self.input_shapes))]
        n = checked[0].shape[0]
        if any(x.shape[0] != n for x in checked):
            raise ShapeError(f"Plan.run: expected inputs of one batch size, found {[x.shape[0] for x in checked]}")
        outs = [np.empty((n, *o.shape), dtype=o.dtype) for o in self.outputs]
        flat_x = [x.reshape(n, -1) for x in checked]
        flat_out = [o.reshape(n, -1) for o in outs]
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            bad = self._program(j - i).run([x[i:j] for x in flat_x], [o[i:j] for o in flat_out])
            if bad is not None:
                self._raise_not_finite(checked[bad], f"Plan.run input {bad}")
        return tuple(outs)

    def kernels_only(self, *xs):
        """A function of no arguments running this plan's kernels on `xs` (one batch per input,
        checked here once), writing into outputs it owns: the bound calls of `predict` without the
        Python around them (input checks, batching, the returned array). What `compiled(...,
        "auto")` times, and what benchmarks subtract from `predict` to measure the per-call overhead."""
        checked = [self._check(x, shape, "Plan.kernels_only", False)[0] for x, shape in zip(xs, self.input_shapes)]
        n = checked[0].shape[0]
        flat = [x.reshape(n, -1) for x in checked]
        outs = [np.empty((n, o.features), dtype=o.dtype) for o in self.outputs]
        prog = self._program(n)
        return lambda: prog.run(flat, outs)

    def _check(self, x, shape, where, allow_single):
        """(x as a C-contiguous float array of [N, *shape], whether one sample was given)."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{where}: expected a real numeric input, found dtype {x.dtype}")
        single = False
        if x.shape[1:] != shape:
            if allow_single and x.shape == shape:
                x, single = x[None], True
            else:
                one = f" or one sample {list(shape)}" if allow_single else ""
                raise ShapeError(f"{where}: expected input of shape [N, {', '.join(map(str, shape))}]{one}, "
                                 f"found {list(x.shape)}")
        if x.dtype.kind != "f":
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


class _Program:
    """A plan bound to buffers for one batch size in one thread: the calls, ready to run."""

    __slots__ = ("ingests", "calls", "finals", "generic")

    def __init__(self, ingests, calls, finals, generic):
        self.ingests, self.calls, self.finals, self.generic = ingests, calls, finals, generic

    def run1(self, x, out) -> int:
        """One input [B, F] and one output [B, M]; returns the count of non-finite inputs (0: done)."""
        for fn, _, view in self.ingests:
            bad = fn(x, view)
            if bad:
                return bad
        self._calls()
        fn, view, _ = self.finals[0]
        fn(view, out)
        return 0

    def run(self, xs, outs):
        """Several inputs and outputs; returns None, or the index of an input that is not finite."""
        for fn, i, view in self.ingests:
            if fn(xs[i], view):
                return i
        self._calls()
        for fn, view, j in self.finals:
            fn(view, outs[j])
        return None

    def _calls(self) -> None:
        if not self.generic:
            for fn, args in self.calls:
                fn(*args)
            return
        local = _module._local
        previous = getattr(local, "grad", True)
        local.grad = False  # generic steps keep nothing for backward (as under no_grad)
        try:
            for fn, args in self.calls:
                fn(*args)
        finally:
            local.grad = previous


def _columns(step, batch: int) -> int:
    """The columns of a product or convolution step's product: the batch, or batch * oh * ow."""
    return batch if step.kind == "product" else batch * step.writes.shape[1] * step.writes.shape[2]


def _may_run_parallel(raw, kern) -> bool:
    """Whether `kern`, chosen for the parallel-or-serial kernel `raw`, may launch threads (not when
    it is `raw`'s serial twin)."""
    return raw in kernels._jit.PARALLEL and kern is not kernels._jit.SERIAL_OF[raw]


def _locked(kern):
    def call(*args):
        return kernels.launch(kern, *args)
    return call


def _copy_rows(src, dst):
    np.copyto(dst, src)


def _run_generic(module, modules, xs, out):
    """`module.forward(*xs)` in evaluation mode, into `out`; modules that were training are
    switched back after (flags set directly, without counting as a change of the model)."""
    training = [m for m in modules if m.training]
    for m in training:
        m.__dict__["training"] = False
    try:
        np.copyto(out, module.forward(*xs))
    finally:
        for m in training:
            m.__dict__["training"] = True


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
