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
from .runtime import predict as _predict

__all__ = ["History", "fit", "evaluate", "check_features", "check_labels", "check_targets"]


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


def check_features(x, what: str = "x", min_ndim: int = 2) -> np.ndarray:
    """Validate model input: a real numeric array with a batch axis and only finite values
    (`min_ndim` 1 for one index per sample)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DTypeError(f"{what}: expected a real numeric array, found dtype {x.dtype}")
    if x.ndim < min_ndim:
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


def check_targets(y, n: int, what: str = "y") -> np.ndarray:
    """Regression targets: a float array of N samples, finite."""
    y = np.asarray(y)
    if y.ndim < 1 or len(y) != n:
        raise ShapeError(f"{what}: expected {n} targets (one per sample), found shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{what}: expected finite targets, found {int(np.count_nonzero(~np.isfinite(y)))} NaN/inf")
    return y


predict = deprecated_alias(_predict, "sparsenet.train.predict", "sparsenet.predict")


def _inputs(model, x, where: str):
    """(x as given, or {name: array} checked for a graph of several inputs, the sample count)."""
    if not isinstance(x, dict):
        x = check_features(x, f"{where}: x")
        return x, len(x)
    names = list(getattr(model, "input_shapes", None) or [])
    if not names:
        raise ConfigError(f"{where}: expected an array of samples ({{input name: array}} is for a graph's "
                          f"inputs), found a dict with keys {list(x)}")
    if sorted(x) != sorted(names):
        raise ConfigError(f"{where}: expected the graph's inputs {names}, found {list(x)}")
    xs = {k: check_features(x[k], f"{where}: x[{k!r}]", min_ndim=1) for k in names}
    sizes = {len(v) for v in xs.values()}
    if len(sizes) != 1:
        raise ShapeError(f"{where}: expected inputs of one sample count, found {[len(v) for v in xs.values()]}")
    return xs, sizes.pop()


def _labels_or_targets(y, n: int, loss):
    """(y checked, the loss, whether y holds class labels): with a loss of real-valued targets (its
    class says ``targets = True``: `MSELoss`, `RatingInteractionLoss`), y are regression targets;
    otherwise integer class labels (softmax cross-entropy by default)."""
    if getattr(loss, "targets", False):
        return check_targets(y, n), loss, False
    return check_labels(y, n), loss or SoftmaxCrossEntropy(), True


def evaluate(model: Module, x, y, batch_size: int = 256, loss=None) -> dict:
    """Loss and accuracy of `model` on (x, y): x [N, *model.input_shape] (or ``{input name: array}``
    for a graph of several inputs) is checked as `predict` checks it (a batch axis is required); y
    holds N integer labels or, with ``loss=MSELoss()``, N regression targets of the output's shape
    (then there is no accuracy)."""
    batch_size = check_int(batch_size, "batch_size", "evaluate")
    _one_output(model, "evaluate")
    if isinstance(x, dict):
        x, _ = _inputs(model, x, "evaluate")
        out = _predict(model, x, batch_size)
    else:
        out = plan_for(model, x).predict(x, batch_size, where="evaluate", allow_single=False)
    y, loss, labels = _labels_or_targets(y, len(out), loss)
    if not labels:
        return {"loss": loss(out, y.reshape(out.shape) if y.size == out.size else y)}
    return {"loss": loss(out, y), "accuracy": float(np.mean(out.argmax(axis=1) == y)) if len(y) else 0.0}


def _one_output(model, where: str) -> None:
    outputs = getattr(model, "outputs", None)
    if outputs is not None and len(outputs) != 1:
        raise ConfigError(f"{where}: expected a model of one output, found a graph with outputs {list(outputs)} "
                          f"(call its forward)")


def fit(model: Module, x, y, *, epochs: int = 10, batch_size: int = 64, optimizer: Optimizer | None = None,
        lr: float = 1e-3, loss=None, seed: int = 0, x_val=None, y_val=None, quiet: bool = False,
        after_backward: Callable[[Module], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, lr_schedule: str = "constant",
        augment: Callable | None = None, drop_last: bool = False) -> History:
    """Train `model` with minibatches; returns a `History`.

    x: [N, *input_shape], or ``{input name: array}`` for a graph of several inputs (integer indices
    of an Embedding stay integers). y: N integer class labels (loss: softmax cross-entropy unless
    `loss` is given; accuracy is recorded) or, with ``loss=MSELoss()``, N regression targets of the
    output's shape (``[N]`` for an ``[N, 1]`` output; no accuracy).

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

    _one_output(model, "fit")
    epochs = check_int(epochs, "epochs", "fit", low=0)
    batch_size = check_int(batch_size, "batch_size", "fit")
    seed = check_seed(seed, "fit")
    x, n = _inputs(model, x, "fit")
    y, loss, labels = _labels_or_targets(y, n, loss)
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"fit: expected lr_schedule 'constant' or 'cosine', found {lr_schedule!r}")
    if augment is not None and isinstance(x, dict):
        raise ConfigError("fit: augment takes one input array; this graph has several inputs")
    optimizer = optimizer or Adam(model.parameters(), lr=lr)
    steps_per_epoch = n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)
    base_lr, total_steps = optimizer.lr, epochs * steps_per_epoch
    rng = np.random.default_rng(seed)
    augment_rng = np.random.default_rng([seed, 1])  # its own stream: shuffling is the same with or without
    history = History()
    step = 0
    bar = progress(range(epochs), disable=quiet, desc="train", unit="epoch", leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(n)
        total_loss, correct = 0.0, 0
        for start in range(0, steps_per_epoch * batch_size, batch_size):
            idx = order[start:start + batch_size]
            yb = y[idx]
            optimizer.zero_grad()
            if isinstance(x, dict):
                out = model.forward(**{k: v[idx] for k, v in x.items()})
            else:
                xb = x[idx] if augment is None else augment(x[idx], augment_rng)
                out = model.forward(xb)
            if not labels and yb.size == out.size:
                yb = yb.reshape(out.shape)  # [N] ratings for an [N, 1] output
            total_loss += loss(out, yb) * len(idx)
            if labels:
                correct += int(np.sum(np.argmax(out, axis=1) == yb))
            model.backward_params(loss.backward())  # the input's own gradient is never needed
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
        logs = {"loss": history.loss[-1]}
        if labels:
            history.accuracy.append(correct / seen)
            logs["accuracy"] = history.accuracy[-1]
        if x_val is not None:
            val = evaluate(model, x_val, y_val, loss=loss)
            history.val_loss.append(val["loss"])
            logs["val_loss"] = val["loss"]
            if labels:
                history.val_accuracy.append(val["accuracy"])
                logs["val_accuracy"] = val["accuracy"]
        history.seconds.append(time.perf_counter() - t0)
        bar.set_postfix({k: round(v, 4) for k, v in logs.items()})
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    optimizer.lr = base_lr
    model.eval()
    return history
