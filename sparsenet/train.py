"""Training and evaluation loops: Python outside (epochs, batches, progress), kernels inside."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._checks import check_int, check_seed
from ._deprecation import deprecated_alias
from .errors import ConfigError, DataError, DTypeError, ShapeError
from .losses import SoftmaxCrossEntropy
from .nn.module import Module
from .optim import Adam, Optimizer
from .plan import plan_for
from .runtime import check_one_in_one_out
from .runtime import predict as _predict

__all__ = ["History", "fit", "evaluate", "check_features", "check_labels"]


@dataclass
class History:
    """Per-epoch figures of a `fit` run (lists indexed by epoch)."""

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}


def check_features(x, what: str = "x") -> np.ndarray:
    """Validate model input: a real numeric array with a batch axis and only finite values."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DTypeError(f"{what}: expected a real numeric array, found dtype {x.dtype}")
    if x.ndim < 2:
        raise ShapeError(f"{what}: expected [batch, features...], found shape {x.shape}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"{what}: expected finite values, found {bad} NaN/inf entries")
    return x


def check_labels(y, n: int, what: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise DataError(f"{what}: expected integer class labels, found dtype {y.dtype}")
    if y.shape != (n,):
        raise ShapeError(f"{what}: expected {n} labels (one per sample), found shape {y.shape}")
    if n and y.min() < 0:
        raise DataError(f"{what}: expected non-negative labels, found {int(y.min())}")
    return y.astype(np.int64, copy=False)


predict = deprecated_alias(_predict, "sparsenet.train.predict", "sparsenet.predict")


def evaluate(model: Module, x, y, batch_size: int = 256, loss=None) -> dict:
    """Loss and accuracy of `model` on (x, y): x [N, *model.input_shape] is checked as `predict`
    checks it (a batch axis is required), y holds N integer labels."""
    batch_size = check_int(batch_size, "batch_size", "evaluate")
    check_one_in_one_out(model, "evaluate")
    logits = plan_for(model, x).predict(x, batch_size, where="evaluate", allow_single=False)
    y = check_labels(y, len(logits))
    loss = loss or SoftmaxCrossEntropy()
    return {"loss": loss(logits, y), "accuracy": float(np.mean(logits.argmax(axis=1) == y)) if len(y) else 0.0}


def fit(model: Module, x, y, *, epochs: int = 10, batch_size: int = 64, optimizer: Optimizer | None = None,
        lr: float = 1e-3, loss=None, seed: int = 0, x_val=None, y_val=None, quiet: bool = False,
        after_backward: Callable[[Module], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, lr_schedule: str = "constant",
        augment: Callable | None = None, drop_last: bool = False) -> History:
    """Train `model` with minibatches; returns a `History`.

    `lr_schedule`: "constant" keeps the optimiser's learning rate; "cosine" lowers it at every step
    from its value at the start to 0 along half a cosine (Loshchilov & Hutter 2017, without restarts),
    and restores it at the end. `augment(batch, rng)` transforms each training minibatch (e.g.
    `sparsenet.data.random_shift(1)`), with a generator seeded from `seed` apart from the shuffling.
    `drop_last` skips each epoch's last, smaller minibatch (its samples are shuffled into the next
    epoch's): a BatchNorm's running statistics otherwise take a step from a batch of a few samples
    at every epoch's end (1348 digits in batches of 64 leave 4).

    Shuffling uses ``np.random.default_rng(seed)``: the same seed, model and data give the same bits.
    Hooks: `after_backward(model)` runs after each backward (e.g. a penalty's gradient),
    `on_step(step)` after each optimiser step (e.g. a pruning schedule), `on_epoch_end(epoch, logs)`.

    >>> from sparsenet.nn import Sequential, Linear
    >>> m = Sequential(Linear(2, 2))
    >>> h = fit(m, np.eye(2, dtype=np.float32), np.array([0, 1]), epochs=2, quiet=True)
    >>> len(h.loss)
    2
    """
    from ._progress import progress

    check_one_in_one_out(model, "fit")
    epochs = check_int(epochs, "epochs", "fit", low=0)
    batch_size = check_int(batch_size, "batch_size", "fit")
    seed = check_seed(seed, "fit")
    x = check_features(x)
    y = check_labels(y, len(x))
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"fit: expected lr_schedule 'constant' or 'cosine', found {lr_schedule!r}")
    loss = loss or SoftmaxCrossEntropy()
    optimizer = optimizer or Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(x) // batch_size if drop_last and len(x) >= batch_size else -(-len(x) // batch_size)
    base_lr, total_steps = optimizer.lr, epochs * steps_per_epoch
    rng = np.random.default_rng(seed)
    augment_rng = np.random.default_rng([seed, 1])  # its own stream: shuffling is the same with or without
    history = History()
    n, step = len(x), 0
    bar = progress(range(epochs), disable=quiet, desc="train", unit="epoch", leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(n)
        total_loss, correct = 0.0, 0
        for start in range(0, steps_per_epoch * batch_size, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, augment_rng)
            optimizer.zero_grad()
            out = model.forward(xb)
            total_loss += loss(out, yb) * len(idx)
            correct += int(np.sum(np.argmax(out, axis=1) == yb))
            model.backward(loss.backward())
            if after_backward is not None:
                after_backward(model)
            if lr_schedule == "cosine":
                optimizer.lr = base_lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step)
        seen = max(min(n, steps_per_epoch * batch_size), 1)
        history.loss.append(total_loss / seen)
        history.accuracy.append(correct / seen)
        logs = {"loss": history.loss[-1], "accuracy": history.accuracy[-1]}
        if x_val is not None:
            val = evaluate(model, x_val, y_val, loss=loss)
            history.val_loss.append(val["loss"])
            history.val_accuracy.append(val["accuracy"])
            logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        history.seconds.append(time.perf_counter() - t0)
        bar.set_postfix({k: round(v, 4) for k, v in logs.items()})
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    optimizer.lr = base_lr
    model.eval()
    return history
