"""Optimisers. Updates are in place on ``Parameter.data``: for a sparse weight that array holds only
the stored entries, so pruned weights stay pruned and the state (momentum, Adam moments) has one
entry per stored value; a Parameter's optional mask is re-applied after every step. Each update is
one fused pass over the values (`sparsenet.kernels.optim`).

A parameter whose contents were replaced since the last step (a layer's weight assigned, e.g. Dense
-> CSR: ``Parameter.version`` changed) has its state reset: momentum buffers and Adam moments start
from zero and Adam's step count from 0, as for a new parameter. Its old moments cannot be carried
over: they describe other values, often in another layout ([out, in] for Dense, [nnz] for CSR).
The exception is a replacement that says which old entry each new one continues
(``Parameter.replace(data, carry=...)``, what dynamic sparse training does when a pattern
changes): the state of continued entries moves with them, new entries start from zero, and the
step count goes on.

`max_grad_norm` clips the gradients before each step: when their global L2 norm (over every
parameter's stored values) exceeds it, all are scaled by ``max_grad_norm / norm``."""

from __future__ import annotations

import math

import numpy as np

from . import kernels
from ._checks import check_positive
from .errors import ConfigError, DataError
from .kernels._blas import quiet_before
from .nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "PARALLEL_MIN_VALUES"]

# Values from which an update runs on every thread. Below, it runs serial: in a training step the
# update follows BLAS calls whose threads still spin, and a parallel update then waits for the
# cores (LeNet-300-100: the step took 306 us in `fit`, 77 us alone), while stopping BLAS's threads
# costs the next BLAS call 0.15-0.6 ms to start them again. Above, a parallel update is ~2x faster
# (memory-bound: 16M values 9.4 ms against 17.4 ms serial) and worth the restart.
PARALLEL_MIN_VALUES = 1 << 20


def _flat(a: np.ndarray) -> np.ndarray:
    """`a` as a 1-D view if it is C-contiguous (the state always is: `_zeros`), else a C-ordered copy
    (a parameter made from a Fortran-ordered array: its values are written back, `_write_back`)."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ravel(a)


def _zeros(p: Parameter) -> np.ndarray:
    """State for `p`: zeros of its shape and dtype, C-ordered whatever the order of `p.data`."""
    return np.zeros(p.data.shape, p.data.dtype)


class Optimizer:
    def __init__(self, params, lr: float, max_grad_norm: float | None = None):
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ConfigError(f"{type(self).__name__}: expected at least one parameter, found none")
        self.lr = check_positive(lr, "lr", type(self).__name__)
        self.max_grad_norm = None if max_grad_norm is None else check_positive(
            max_grad_norm, "max_grad_norm", type(self).__name__)
        self.state: list[dict] = [{} for _ in self.params]
        self._versions = [p.version for p in self.params]  # contents the state was built for

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def grad_norm(self) -> float:
        """The global L2 norm of the gradients (masked entries excluded)."""
        total = 0.0
        for p in self.params:
            g = _flat(p.grad if p.mask is None else p.grad * p.mask).astype(np.float64, copy=False)
            total += float(np.dot(g, g))  # in float64: a float32 sum of squares overflows first
        return math.sqrt(total)

    def step(self) -> None:
        for i, (p, st) in enumerate(zip(self.params, self.state)):
            if p.version != self._versions[i]:  # replaced (new weight or format): carry or start afresh
                self._carry(p, st, self._versions[i])
                self._versions[i] = p.version
            if p.mask is not None:
                p.grad *= p.mask
        scale = 1.0
        if self.max_grad_norm is not None:
            norm = self.grad_norm()
            if not math.isfinite(norm):
                raise DataError(f"{type(self).__name__}: expected finite gradients to clip, found a norm of {norm}")
            if norm > self.max_grad_norm:
                scale = self.max_grad_norm / norm
        for p, st in zip(self.params, self.state):
            if scale != 1.0:
                p.grad *= scale
            self._update(p, st)
            p.apply_mask()

    @staticmethod
    def _carry(p: Parameter, st: dict, version: int) -> None:
        """State for `p`'s new contents: moved along `p.carry` when the replacement gave one and the
        state is of the contents it replaced (`version`: one replacement ago; entry by entry, new
        entries zero), else dropped."""
        if p.carry is None or version != p.version - 1 or not st:
            st.clear()
            return
        src = p.carry[1]
        kept = src >= 0
        for key, value in list(st.items()):
            if isinstance(value, np.ndarray):
                moved = np.zeros(p.data.shape, dtype=value.dtype)
                moved[kept] = value[src[kept]]
                st[key] = moved

    @staticmethod
    def _kernel(name: str, p: Parameter):
        """The parallel or serial build of an update kernel, by the values' count (`PARALLEL_MIN_VALUES`).
        Before a parallel one, OpenBLAS's spinning threads are stopped (`kernels._blas`)."""
        if p.data.size < PARALLEL_MIN_VALUES:
            return getattr(kernels, name + "_serial")
        kern = getattr(kernels, name)
        quiet_before(kern)
        return kern

    @staticmethod
    def _write_back(p: Parameter, flat: np.ndarray) -> None:
        if not np.shares_memory(flat, p.data):  # only for a non-contiguous array (never made here)
            p.data[...] = flat.reshape(p.data.shape)

    def _update(self, p: Parameter, st: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, max_grad_norm: float | None = None):
        super().__init__(params, lr, max_grad_norm)
        if nesterov and not momentum > 0:
            raise ConfigError(f"SGD: Nesterov momentum needs momentum > 0, found {momentum}")
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)

    def _update(self, p, st):
        first = "momentum" not in st
        if self.momentum and first:
            st["momentum"] = _zeros(p)
        buf = st.get("momentum", p.grad)  # unused without momentum
        flat, f = _flat(p.data), p.data.dtype.type  # scalars in the values' dtype, as NumPy rounds
        kernels.launch(self._kernel("dense_sgd_update", p), flat, _flat(p.grad), _flat(buf), f(self.lr),
                       f(self.momentum), f(self.weight_decay), self.nesterov, first)
        self._write_back(p, flat)


class Adam(Optimizer):
    """Adam (Kingma & Ba). `weight_decay` adds an L2 term to the gradient (coupled), as torch.optim.Adam."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float | None = None):
        super().__init__(params, lr, max_grad_norm)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, p, st):
        if not st:
            st["t"], st["m"], st["v"] = 0, _zeros(p), _zeros(p)
        st["t"] += 1
        t = st["t"]
        flat, f = _flat(p.data), p.data.dtype.type  # scalars in the values' dtype, as NumPy rounds
        kernels.launch(self._kernel("dense_adam_update", p), flat, _flat(p.grad), _flat(st["m"]), _flat(st["v"]),
                       f(self.lr), f(self.b1), f(1 - self.b1), f(self.b2), f(1 - self.b2), f(self.eps),
                       f(1 - self.b1 ** t), f(1 - self.b2 ** t), f(self.weight_decay),
                       f(self.lr * self.weight_decay), self.decoupled)
        self._write_back(p, flat)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, max_grad_norm: float | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, max_grad_norm)
