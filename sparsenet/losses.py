"""Losses: ``forward(output, target) -> float`` then ``backward() -> d loss / d output``."""

from __future__ import annotations

import numpy as np

from .errors import DataError, ShapeError

__all__ = ["SoftmaxCrossEntropy", "MSELoss", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Stable log-softmax along the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class SoftmaxCrossEntropy:
    """Mean cross-entropy of integer labels under softmax(logits), computed stably from logits.

    >>> loss = SoftmaxCrossEntropy()
    >>> round(loss(np.zeros((2, 4), np.float32), np.array([0, 3])), 4)
    1.3863
    """

    def __call__(self, logits, target) -> float:
        return self.forward(logits, target)

    def forward(self, logits, target) -> float:
        logits = np.asarray(logits)
        target = np.asarray(target)
        if logits.ndim != 2:
            raise ShapeError(f"SoftmaxCrossEntropy: expected logits [batch, classes], found shape {logits.shape}")
        if target.shape != (logits.shape[0],):
            raise ShapeError(f"SoftmaxCrossEntropy: expected {logits.shape[0]} integer labels, found shape {target.shape}")
        if target.dtype.kind not in "iu":
            raise DataError(f"SoftmaxCrossEntropy: expected integer labels, found dtype {target.dtype}")
        if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
            raise DataError(f"SoftmaxCrossEntropy: expected labels in [0, {logits.shape[1]}), "
                            f"found {int(target.min())}..{int(target.max())}")
        logp = log_softmax(logits)
        n = max(len(target), 1)
        self._p = np.exp(logp)
        self._target = target
        return float(-logp[np.arange(len(target)), target].sum() / n)

    def backward(self) -> np.ndarray:
        g = self._p.copy()
        g[np.arange(len(self._target)), self._target] -= 1
        return g / max(len(self._target), 1)


class MSELoss:
    """Mean squared error over all elements."""

    def __call__(self, output, target) -> float:
        return self.forward(output, target)

    def forward(self, output, target) -> float:
        output, target = np.asarray(output), np.asarray(target)
        if output.shape != target.shape:
            raise ShapeError(f"MSELoss: output shape {output.shape} differs from target shape {target.shape}")
        self._diff = output - target.astype(output.dtype, copy=False)
        return float(np.mean(self._diff ** 2)) if self._diff.size else 0.0

    def backward(self) -> np.ndarray:
        return 2 * self._diff / max(self._diff.size, 1)
