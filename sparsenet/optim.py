"""Optimisers. Updates are in place on ``Parameter.data``: for a sparse weight that array holds only
the stored entries, so pruned weights stay pruned; a Parameter's optional mask is re-applied after
every step.

A parameter whose contents were replaced since the last step (a layer's weight assigned, e.g. Dense
-> CSR: ``Parameter.version`` changed) has its state reset: momentum buffers and Adam moments start
from zero and Adam's step count from 0, as for a new parameter. Its old moments cannot be carried
over: they describe other values, often in another layout ([out, in] for Dense, [nnz] for CSR)."""

from __future__ import annotations

import numpy as np

from ._checks import check_positive
from .errors import ConfigError
from .nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    def __init__(self, params, lr: float):
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ConfigError(f"{type(self).__name__}: expected at least one parameter, found none")
        self.lr = check_positive(lr, "lr", type(self).__name__)
        self.state: list[dict] = [{} for _ in self.params]
        self._versions = [p.version for p in self.params]  # contents the state was built for

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        for i, (p, st) in enumerate(zip(self.params, self.state)):
            if p.version != self._versions[i]:  # replaced (new weight or format): start its state afresh
                st.clear()
                self._versions[i] = p.version
            if p.mask is not None:
                p.grad *= p.mask
            self._update(p, st)
            p.apply_mask()

    def _update(self, p: Parameter, st: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr)
        if nesterov and not momentum > 0:
            raise ConfigError(f"SGD: Nesterov momentum needs momentum > 0, found {momentum}")
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)

    def _update(self, p, st):
        g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        if self.momentum:
            buf = st.get("momentum")
            if buf is None:
                buf = st["momentum"] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= (self.lr * g).astype(p.data.dtype, copy=False)


class Adam(Optimizer):
    """Adam (Kingma & Ba). `weight_decay` adds an L2 term to the gradient (coupled), as torch.optim.Adam."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, p, st):
        g = p.grad
        if self.weight_decay and not self.decoupled:
            g = g + self.weight_decay * p.data
        if not st:
            st["t"], st["m"], st["v"] = 0, np.zeros_like(p.data), np.zeros_like(p.data)
        st["t"] += 1
        m, v, t = st["m"], st["v"], st["t"]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * g * g
        step = self.lr * (m / (1 - self.b1 ** t)) / (np.sqrt(v / (1 - self.b2 ** t)) + self.eps)
        if self.weight_decay and self.decoupled:
            p.data -= (self.lr * self.weight_decay * p.data).astype(p.data.dtype, copy=False)
        p.data -= step.astype(p.data.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
