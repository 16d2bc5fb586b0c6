"""Binding a plan to buffers for one batch size: each step's kernel chosen (serial or parallel,
BLAS or Numba, with the thread-pool rules below) and its arguments bound once, as a `_Program` of
calls (`Plan._bind`; `_tape` may turn the program into one compiled call)."""

from __future__ import annotations

import os

import numba
import numpy as np

from .. import kernels
from ..formats.dense import Dense, _blas_rows_product
from ..formats.dense import _blas_product as _BLAS_PRODUCT
from ..kernels import conv, epilogue, layout
from ..kernels._blas import QUIET_MIN_WORK, parallel_if_quiet, quiet_blas
from ..nn import module as _module
from ._lower import Value

__all__ = ["bind", "PLAN_SERIAL_WORK", "PLAN_SPLIT_WORK", "split_rows", "work_per_sample"]

# A plan whose products and convolutions come to fewer multiply-adds than this (for the batch it is
# bound to) runs every kernel serial, and so as one tape (`_tape`): single kernels cross over lower
# (`kernels.PARALLEL_MIN_WORK`), but a plan of small parallel kernels pays a launch and OpenMP's
# wake-ups per kernel and cannot run as one compiled call. Measured through `predict` (2 threads,
# 2026-12-02, medians): the zoo LeNet-300-100 at batch 64, 90 % CSR 37-46 us all serial against
# 79-129 us with parallel kernels, 80 % in 4x4 blocks 41 us against 52-55 us, the dense model at
# batch 1 7 us against 18 us. Tunable with SPARSENET_PLAN_SERIAL_WORK.
PLAN_SERIAL_WORK = int(os.environ.get("SPARSENET_PLAN_SERIAL_WORK", 1 << 20))


def bind(plan, batch: int, serial: bool = False) -> "_Program":
    """`plan`'s steps as bound calls on buffers for `batch` columns (see the module docstring);
    `serial`: every kernel serial (one part of a batch split between threads, `Plan.predict`)."""
    arrays = [np.empty(size * batch, dtype) for dtype, size in plan.slots]

    def view(v: Value) -> np.ndarray:
        base = arrays[plan._slot_of[id(v.root)]][:v.features * batch]
        return base.reshape(v.full_shape(batch))

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
    weighted = [s for s in plan.steps if s.kind in ("product", "rows_product", "conv2d", "depthwise2d")]
    blas_anywhere = any(_rows_in_blas(s) or s.params["weight"].product(_columns(s, batch))[0] is _BLAS_PRODUCT
                        for s in weighted if s.kind != "depthwise2d" and not s.params.get("direct"))
    all_serial = sum(s.params["weight"].nnz * _columns(s, batch) for s in weighted) < PLAN_SERIAL_WORK

    def choose(raw, work):
        """The kernel that runs for `raw` (a product's kernel, or a parallel or serial twin) doing
        `work` multiply-adds, after the rules above; under the workqueue layer a kernel that may
        launch threads is locked (`kernels.launch`)."""
        if serial:
            return kernels._jit.SERIAL_OF.get(raw, raw)
        kern = pool_rules(raw, work)
        if _may_run_parallel(raw, kern) and kernels._jit._needs_lock():
            kern = _locked(kern)
        return kern

    def pool_rules(kern, work):
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

    for step in plan.steps:
        src, dst = step.reads, step.writes
        if step.kind in ("ingest_fm", "ingest_bm"):
            fn = layout.ingest_fm if step.kind == "ingest_fm" else layout.ingest_bm
            if dst.dtype.kind in "iu":  # integer indices: copied (Plan._check cast them), nothing to check
                fn = _ingest_indices
            out = view(dst)
            ingests.append((fn, src[0].index, out if out.ndim == 2 else out.reshape(batch, -1)))
        elif step.kind == "product":
            p = step.params
            raw, weights = p["weight"].product(batch)
            kern = choose(raw, p["weight"].nnz * batch)
            calls.append((kern, (*weights, view(src[0]), view(dst), p["bias"], p["act"], p["alpha"])))
        elif step.kind == "rows_product":
            p = step.params
            x, y = view(src[0]), view(dst)
            m, k = p["weight"].shape
            n = x.size // k  # rows: the batch times the rows of a sample
            if _rows_in_blas(step):
                calls.append((_blas_rows_product, (p["weight"].data, x.reshape(n, k), y.reshape(n, m), p["bias"],
                                                   p["act"], p["alpha"])))
                after_blas[0] = "plan"
            else:
                xt, yt = np.empty((k, n), x.dtype), np.empty((m, n), y.dtype)  # feature-major, bound once
                raw, weights = p["weight"].product(n)
                kern = choose(raw, p["weight"].nnz * n)
                calls.append((layout.transpose, (x.reshape(n, k), xt)))
                calls.append((kern, (*weights, xt, yt, p["bias"], p["act"], p["alpha"])))
                calls.append((layout.transpose, (yt, y.reshape(n, m))))
        elif step.kind == "layernorm":
            m = step.params["module"]
            d = m.normalized_shape[0]
            calls.append((kernels.dense_layernorm, (view(src[0]).reshape(-1, d), m.weight.data, m.bias.data, m.eps,
                                                    view(dst).reshape(-1, d))))
        elif step.kind == "bound":
            calls.append(step.params["module"].bound_call([view(v) for v in src], view(dst)))
            after_blas[0] = "plan"  # the call may be NumPy's matmul (attention), which calls BLAS
        elif step.kind == "conv2d":
            p = step.params
            x, y = view(src[0]), view(dst)
            m, oh, ow = dst.shape
            n = _columns(step, batch)
            if p["direct"]:  # the direct kernel (Dense float32), a BatchNorm after it folded in
                c, h, wd = src[0].shape
                pad = p["padding"]
                xpad = np.empty(batch * c * (h + 2 * pad) * (wd + 2 * pad) if pad else 0, dst.dtype)
                scratch = np.empty(conv.conv2d_scratch_shape(p["weight"].shape[1], numba.get_num_threads()), dst.dtype)
                bn, none = p["bn"], p["bias"][:0]
                stats = ((none, none, none, none, 0.0) if bn is None else  # (read at every call)
                         (bn.running_mean, bn.running_var, bn.weight.data, bn.bias.data, bn.eps))
                scale, shift = (none, none) if bn is None else (np.empty(m, dst.dtype), np.empty(m, dst.dtype))
                res = _NO_RESIDUAL if p["residual"] is None else view(p["residual"])
                kern = choose(conv.dense_conv2d, p["weight"].nnz * n)
                calls.append((kern, (p["weight"].data, x, xpad, y, p["bias"], *stats, scale, shift, res, p["act"],
                                     p["alpha"], *p["kernel"], p["stride"], p["stride"], pad, p["dilation"], scratch)))
                continue
            cols = np.empty((p["weight"].shape[1], n), dst.dtype)  # the unfolded input, bound once
            geometry = (*p["kernel"], p["stride"], p["stride"], p["padding"], p["dilation"])
            big = cols.size >= kernels.PARALLEL_MIN_WORK
            if layout.same_fits(x.shape, *geometry) and x.flags.c_contiguous:
                unfold, args = layout.im2col_same if big else layout.im2col_same_serial, (x, cols, *p["kernel"],
                                                                                           p["padding"], p["dilation"])
            else:
                unfold, args = layout.im2col if big else layout.im2col_serial, (x, cols, *geometry)
            unfold = choose(unfold, cols.size)  # decided before the product: the order they run
            raw, weights = p["weight"].product(n)
            kern = choose(raw, p["weight"].nnz * n)
            calls.append((unfold, args))
            # batch 1: [out, oh*ow] is already batch-major; else [out, B, oh*ow] -> [B, out, oh*ow]
            prod = y.reshape(m, n) if batch == 1 else np.empty((m, n), dst.dtype)
            calls.append((kern, (*weights, cols, prod, p["bias"], p["act"], p["alpha"])))
            if batch != 1:
                calls.append((layout.swap_leading, (prod.reshape(m, batch, oh * ow), y.reshape(batch, m, oh * ow))))
        elif step.kind == "depthwise2d":
            p = step.params
            kh, kw = p["kernel"]
            work = dst.features * batch * kh * kw
            kern = choose(kernels.depthwise_kernel(src[0].shape[0], dst.shape[0], work), work)
            fmt = p["weight"]  # Dense: its own array, so that training in place is seen; int8: frozen (Builder.conv2d)
            w = fmt.data if isinstance(fmt, Dense) else np.ascontiguousarray(fmt.to_dense())
            bias, bn = p["bias"], p["bn"]
            if bn is not None:  # the BatchNorm after it: the taps scaled, the bias shifted, at every call
                scale, bias, taps = np.empty(w.shape[0], w.dtype), np.empty(w.shape[0], w.dtype), np.empty_like(w)
                calls.append((kernels.dense_batchnorm_fold, (bn.running_mean, bn.running_var, bn.weight.data,
                                                             bn.bias.data, bn.eps, p["bias"], scale, bias, w, taps)))
                w = taps
            calls.append((kern, (view(src[0]), w, view(dst), bias, p["act"], p["alpha"], kh, kw,
                                 p["stride"], p["stride"], p["padding"], p["dilation"])))
        elif step.kind == "add":
            p = step.params
            a, b, y = (view(v).reshape(1, -1) for v in (src[0], src[1], dst))
            calls.append((kernels.dense_add, (a, b, y, epilogue.no_bias(dst.dtype), p["act"], p["alpha"])))
        elif step.kind == "global_avgpool":
            x = view(src[0])
            calls.append((kernels.dense_global_avgpool, (x.reshape(batch, x.shape[1], -1), view(dst))))
        elif step.kind == "activation":
            p = step.params
            big = dst.features * batch >= kernels.PARALLEL_MIN_WORK
            raw = kernels.dense_epilogue if big else kernels.dense_epilogue_serial
            kern = choose(raw, dst.features * batch)
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
                                                    m.bias.data, m.eps, y3, step.params["act"], step.params["alpha"])))
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
    for j, o in enumerate(plan.outputs):
        if o.layout == "fm":
            finals.append((layout.transpose, view(o), j))
        else:
            finals.append((_copy_rows, view(o).reshape(batch, -1), j))
    return _Program(ingests, calls, finals, plan._generic)


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


def _rows_in_blas(step) -> bool:
    """Whether a rows_product step runs in BLAS on the rows as they are (a Dense weight: from 32
    tokens of 32 features up, BLAS beats the Numba kernel plus the two moves to feature-major and
    back: 3-5 us against 9 us at batch 1, 45-100 us against 350 us at batch 64, measured on the
    zoo transformer's projections). Sparse and int8 weights move the rows feature-major."""
    return step.kind == "rows_product" and type(step.params["weight"]) is Dense


_NO_RESIDUAL = np.zeros((0, 0, 0, 0), np.float32)  # a direct convolution without a residual connection

# A batch whose plan does at least this many multiply-adds is split between the threads (see
# `split_rows`). Tunable with SPARSENET_PLAN_SPLIT_WORK.
PLAN_SPLIT_WORK = int(os.environ.get("SPARSENET_PLAN_SPLIT_WORK", 1 << 23))


def work_per_sample(plan) -> int:
    """The multiply-adds of one sample through `plan`'s weighted steps (stored entries times columns)."""
    return sum(s.params["weight"].nnz * _columns(s, 1) for s in plan.steps
               if s.kind in ("product", "rows_product", "conv2d", "depthwise2d"))


def splittable(plan, rows: int) -> bool:
    """Whether parts of `rows` samples of a batch may run in threads of their own, each with serial
    kernels: nothing that calls BLAS (whose own threads would then run two calls at once) or runs
    a module's Python forward (generic steps switch training flags; bound ones may call matmul)."""
    for s in plan.steps:
        if s.kind in ("generic", "bound") or _rows_in_blas(s):
            return False
        if (s.kind in ("product", "conv2d") and not s.params.get("direct")
                and s.params["weight"].product(_columns(s, rows))[0] is _BLAS_PRODUCT):
            return False
    return True


def weight_entries(plan) -> int:
    """The stored weight entries of `plan`'s weighted steps."""
    return sum(s.params["weight"].nnz for s in plan.steps if s.kind in ("product", "rows_product", "conv2d",
                                                                         "depthwise2d"))


# ... and when each part uses every stored weight at least this many times (rows per part times the
# uses per sample): every part reads all the weights, so a plan bound by its weights' bytes is better
# served by parallel kernels that split them (the MLP 1024-4096-4096-10 at 90 %, CSR, batch 64: 7.4
# ms in two parts against 6.1 ms in parallel kernels; a convolution reuses each weight per pixel).
PLAN_SPLIT_REUSE = 256


def split_rows(plan, n: int, threads: int):
    """The row ranges [(i, j), ...] of a batch of `n` that `Plan.predict` runs in `threads` threads at
    once, each part through serial kernels (a parallel kernel per step stalls at every step's
    barrier whenever another runtime's or library's threads hold a core: the zoo ResNet at batch 64
    measured 1.45 ms alone, and a call of onnxruntime and one of ours in turn 7.4 ms; split, 1.4
    and 3.8 ms). None for one thread, a plan of less than `PLAN_SPLIT_WORK` multiply-adds or whose
    parts would reuse its weights less than `PLAN_SPLIT_REUSE` times, or one that is not
    `splittable`."""
    if threads < 2 or n < 2 or plan._work * n < PLAN_SPLIT_WORK:
        return None
    k = min(threads, n)
    rows = -(-n // k)
    if rows * plan._work < PLAN_SPLIT_REUSE * plan._entries:
        return None
    key = (rows, k)
    ok = plan._split_ok.get(key)
    if ok is None:
        ok = plan._split_ok[key] = splittable(plan, rows)
    return [(n * i // k, n * (i + 1) // k) for i in range(k)] if ok else None


def _columns(step, batch: int) -> int:
    """The columns of a product or convolution step's product: the batch, the rows of a sequence
    (batch * rows per sample), or batch * oh * ow."""
    if step.kind == "product":
        return batch
    if step.kind == "rows_product":
        return batch * step.reads[0].features // step.params["weight"].shape[1]
    return batch * step.writes.shape[1] * step.writes.shape[2]


def _may_run_parallel(raw, kern) -> bool:
    """Whether `kern`, chosen for the parallel-or-serial kernel `raw`, may launch threads (not when
    it is `raw`'s serial twin)."""
    return raw in kernels._jit.PARALLEL and kern is not kernels._jit.SERIAL_OF[raw]


def _locked(kern):
    def call(*args):
        return kernels.launch(kern, *args)
    return call


def _ingest_indices(x, out) -> int:
    """An integer input taken in: copied (ingests return the count of values that are not finite)."""
    np.copyto(out, x.reshape(out.shape))
    return 0


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
