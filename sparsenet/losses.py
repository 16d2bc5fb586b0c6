"""Losses: ``forward(output, target) -> float`` then ``backward() -> d loss / d output``."""

from __future__ import annotations

import numpy as np

from .errors import DataError, ShapeError

__all__ = ["SoftmaxCrossEntropy", "MSELoss", "RatingInteractionLoss", "log_softmax"]


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

    targets = True  # `fit` passes real-valued targets (not class labels)

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


class RatingInteractionLoss:
    """The loss of a recommender with two outputs per (user, item) pair: column 0 a rating, column 1
    the logit that the user rates the item at all. Targets [N, 2]: (rating, observed), observed 1
    for a rated pair and 0 for a sampled unrated one (its rating column is ignored). The loss is
    the mean squared rating error over the observed pairs plus `interaction_weight` times the mean
    binary cross-entropy of the logits against `observed` (computed stably from the logits).

    >>> loss = RatingInteractionLoss()
    >>> round(loss(np.array([[4.0, 0.0], [0.0, 0.0]]), np.array([[3.0, 1.0], [0.0, 0.0]])), 4)
    1.6931
    """

    targets = True

    def __init__(self, interaction_weight: float = 1.0):
        self.interaction_weight = float(interaction_weight)

    def __call__(self, output, target) -> float:
        return self.forward(output, target)

    def forward(self, output, target) -> float:
        output, target = np.asarray(output), np.asarray(target)
        if output.ndim != 2 or output.shape[1] != 2 or target.shape != output.shape:
            raise ShapeError(f"RatingInteractionLoss: expected output and target [N, 2], found {output.shape} "
                             f"and {target.shape}")
        observed = target[:, 1]
        if observed.size and not np.all((observed == 0) | (observed == 1)):
            raise DataError("RatingInteractionLoss: target column 1 (observed) must hold 0 or 1")
        n, n_obs = max(len(target), 1), max(float(observed.sum()), 1.0)
        diff = (output[:, 0] - target[:, 0].astype(output.dtype)) * observed.astype(output.dtype)
        z = output[:, 1].astype(np.float64)
        bce = np.maximum(z, 0) - z * observed + np.log1p(np.exp(-np.abs(z)))
        self._grad = np.empty_like(output)
        self._grad[:, 0] = 2 * diff / n_obs
        self._grad[:, 1] = self.interaction_weight * (1 / (1 + np.exp(-z)) - observed) / n
        return float(np.sum(diff.astype(np.float64) ** 2) / n_obs + self.interaction_weight * bce.sum() / n)

    def backward(self) -> np.ndarray:
        return self._grad
