"""Importance criteria: one small object per criterion, `criterion(model, layers, data) -> scores`.

Scores are float64 arrays of each layer's logical weight shape [out, fan_in]; higher means keep.
Granularities aggregate them (sum over a block, a row, ...), so every criterion works with every
granularity. Data-driven criteria take ``data = (x, y)`` calibration arrays and run forward/backward
passes in eval mode (BatchNorm uses running statistics, no dropout); the model's weights and
gradients are left as they were. Movement is the exception: it scores what training did, so it
needs observed training steps, not calibration data (see `Movement`).
"""

from __future__ import annotations

import copy
import zlib

import numpy as np

from ..errors import ConfigError, DataError
from ..losses import SoftmaxCrossEntropy
from ..nn import BatchNorm1d, BatchNorm2d, model_dtype
from .masks import get_layer, unit_followers

__all__ = [
    "Importance", "Magnitude", "RandomScore", "Taylor", "SNIP", "SynFlow", "Movement", "OBD",
    "BNScale", "ActivationAware", "CRITERIA", "make_importance",
]


class Importance:
    """Base class. Subclasses implement `__call__(model, layers, data) -> {name: scores}`."""

    name = "base"
    needs_data = False
    structured_only = False

    def __call__(self, model, layers, data=None) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _require(self, data):
        if data is None:
            raise ConfigError(f"importance {self.name!r} needs calibration data (x, y); pass data=(x, y)")
        x, y = data
        if len(x) == 0:
            raise DataError(f"importance {self.name!r}: calibration data is empty")
        return np.asarray(x), np.asarray(y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _dense_grad(layer) -> np.ndarray:
    """d loss / d W as a dense [out, fan_in] array (zero outside a sparse layer's stored entries)."""
    g = layer.weight_param.grad
    return g if g.shape == tuple(layer.weight.shape) else layer.weight.with_data(g).to_dense()


def _gradients(model, layers, data, batch_size, fn):
    """Run forward/backward over calibration batches; call fn(name, w_dense, g_dense) after each."""
    x, y = data
    was_training = model.training
    saved = [p.grad.copy() for p in model.parameters()]
    loss = SoftmaxCrossEntropy()
    model.eval()
    try:
        dense_w = {n: l.weight.to_dense().astype(np.float64) for n, l in layers.items()}
        for start in range(0, len(x), batch_size):
            model.zero_grad()
            out = model.forward(x[start:start + batch_size])
            loss(out, y[start:start + batch_size])
            model.backward_params(loss.backward())
            for n, l in layers.items():
                fn(n, dense_w[n], _dense_grad(l).astype(np.float64))
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad[...] = g
        model.train(was_training)


class Magnitude(Importance):
    """|w| (p=1) or w**2 (p=2): summed over a group this is the group's L1 norm or squared L2 norm."""

    name = "magnitude"

    def __init__(self, p: int = 1):
        if p not in (1, 2):
            raise ConfigError(f"Magnitude: expected p = 1 or 2, found {p}")
        self.p = p

    def __call__(self, model, layers, data=None):
        return {n: np.abs(l.weight.to_dense().astype(np.float64)) ** self.p for n, l in layers.items()}

    def __repr__(self) -> str:
        return f"Magnitude(p={self.p})"


class RandomScore(Importance):
    """Uniform random scores: the honest baseline. Seeded per layer (seed, layer name)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def __call__(self, model, layers, data=None):
        return {n: np.random.default_rng([self.seed, _layer_key(n)]).random(l.weight.shape) for n, l in layers.items()}


class Taylor(Importance):
    """First-order Taylor importance |w * dL/dw| accumulated over calibration batches (Molchanov et al.)."""

    name = "taylor"
    needs_data = True

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size

    def __call__(self, model, layers, data=None):
        data = self._require(data)
        acc = {n: np.zeros(l.weight.shape) for n, l in layers.items()}

        def add(n, w, g):
            acc[n] += np.abs(w * g)

        _gradients(model, layers, data, self.batch_size, add)
        return acc


class SNIP(Importance):
    """Connection sensitivity |w * dL/dw| with the gradient summed over the batches first (Lee et al.
    2019); meant for pruning at initialisation, before training."""

    name = "snip"
    needs_data = True

    def __init__(self, batch_size: int = 128):
        self.batch_size = batch_size

    def __call__(self, model, layers, data=None):
        data = self._require(data)
        grads = {n: np.zeros(l.weight.shape) for n, l in layers.items()}
        weights = {}

        def add(n, w, g):
            grads[n] += g
            weights[n] = w

        _gradients(model, layers, data, self.batch_size, add)
        return {n: np.abs(weights[n] * grads[n]) for n in layers}


# Without observed steps, movement used to score the gradient at one point (calibration batches): one-shot
# on the zoo CNN at 50 % sparsity that gave accuracy 0.19 (review of wave 1), i.e. chance. Now refused.
_NO_MOVEMENT = (
    "{where}: movement importance needs observed training steps, and {why}. Its scores are -w * dL/dw "
    "summed over fine-tuning steps (Sanh et al. 2020). Use schedule='gradual' with train_data and "
    "finetune_epochs >= 1 (the steps are observed while it trains), or observe steps before pruning: "
    "m = Movement().observe_layers(prunable_layers(model)); fit(model, x, y, after_backward=m.observe); "
    "prune(model, method=m, ...)")


class Movement(Importance):
    """Movement scores -w * dL/dw (Sanh et al. 2020), summed over observed training steps: positive
    when gradient descent moves a weight away from zero.

    Scores come only from training: `observe_layers(layers)` starts (and resets) the sums, `observe`
    adds one step (``fit(..., after_backward=movement.observe)``; prune's gradual schedule does this),
    and calling the criterion reads the sums. Called before any observed step (a one-shot or iterative
    prune of a model, or a sensitivity scan, with ``method="movement"``) it raises ConfigError: there
    is no movement to score, and scoring the gradient at one point instead gives chance-level masks.
    """

    name = "movement"
    needs_data = False  # needs training steps, not calibration data: see `require_observed`

    def __init__(self):
        self.scores: dict[str, np.ndarray] = {}
        self.steps = 0
        self._layers = None

    def observe_layers(self, layers) -> "Movement":
        """Start accumulating scores for `layers` during training (reset)."""
        self._layers = layers
        self.scores = {n: np.zeros(l.weight.shape) for n, l in layers.items()}
        self.steps = 0
        return self

    def observe(self, model) -> None:
        """`fit(..., after_backward=movement.observe)` hook: accumulate -w * g for this step."""
        for n, l in self._layers.items():
            self.scores[n] -= l.weight.to_dense().astype(np.float64) * _dense_grad(l)
        self.steps += 1

    def require_observed(self, layers, where: str = "movement",
                         why: str = "no training step was observed for these layers") -> None:
        """Raise ConfigError unless training steps were observed for every layer in `layers`."""
        missing = [n for n in layers if n not in self.scores]
        if self.steps and missing:
            why = f"no training step was observed for layers {missing}"
        if not self.steps or missing:
            raise ConfigError(_NO_MOVEMENT.format(where=where, why=why))

    def __call__(self, model, layers, data=None):
        self.require_observed(layers)
        return {n: self.scores[n].copy() for n in layers}


class OBD(Importance):
    """Optimal Brain Damage saliency 0.5 * H_ii * w**2 with the diagonal Hessian estimated by the
    empirical Fisher: the mean of squared gradients over micro-batches of `micro_batch` samples."""

    name = "obd"
    needs_data = True

    def __init__(self, micro_batch: int = 8, max_samples: int = 512):
        self.micro_batch, self.max_samples = micro_batch, max_samples

    def __call__(self, model, layers, data=None):
        x, y = self._require(data)
        x, y = x[: self.max_samples], y[: self.max_samples]
        fisher = {n: np.zeros(l.weight.shape) for n, l in layers.items()}
        weights = {}

        def add(n, w, g):
            fisher[n] += g * g
            weights[n] = w

        _gradients(model, layers, (x, y), self.micro_batch, add)
        nb = -(-len(x) // self.micro_batch)
        return {n: 0.5 * (fisher[n] / nb) * weights[n] ** 2 for n in layers}


def _layer_key(name: str) -> int:
    """A layer name as an integer for seeding: a Sequential's index as it is (the bits of earlier
    releases), a Graph's node name by its CRC-32 (stable across runs and machines)."""
    return int(name) if name.isascii() and name.isdigit() else zlib.crc32(name.encode())


class SynFlow(Importance):
    """Iterative-synaptic-flow scores |w * dR/dw| with R = sum of the output of the network whose
    weights are replaced by |w| on an all-ones input (Tanaka et al. 2020). Data-free; BatchNorm in
    eval mode, dropout off. Use with several pruning rounds (schedule='iterative') as in the paper."""

    name = "synflow"

    def __call__(self, model, layers, data=None):
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise ConfigError("synflow needs model.input_shape to build its all-ones input")
        probe = copy.deepcopy(model).eval()
        for p in probe.parameters():
            np.abs(p.data, out=p.data)
        for _, layer in probe.named_modules():
            if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
                layer.running_mean[:] = 0
                np.abs(layer.running_var, out=layer.running_var)
        out = probe.forward(np.ones((1, *shape), dtype=model_dtype(probe)))
        probe.zero_grad()
        probe.backward(np.ones_like(out))
        scores = {}
        for n in layers:
            pl = get_layer(probe, n)
            scores[n] = np.abs(pl.weight.to_dense().astype(np.float64) * _dense_grad(pl))
        return scores


class BNScale(Importance):
    """Network slimming (Liu et al. 2017): a unit's importance is |gamma| of the BatchNorm that follows
    it. Structured granularity only; train with `slimming_penalty` to push gammas towards zero."""

    name = "slimming"
    structured_only = True

    def __call__(self, model, layers, data=None):
        scores = {}
        for n, l in layers.items():
            bn = next((f for f in unit_followers(model, n) if isinstance(f, (BatchNorm1d, BatchNorm2d))
                       and f.num_features == l.weight.shape[0]), None)
            if bn is None:
                raise ConfigError(f"slimming: layer {n} ({type(l).__name__}) has no BatchNorm after it; "
                                  f"exclude it or use another criterion")
            gamma = np.abs(bn.weight.data.astype(np.float64))
            scores[n] = np.repeat((gamma / l.weight.shape[1])[:, None], l.weight.shape[1], axis=1)
        return scores

    def group_scores(self, model, group) -> np.ndarray:
        """A dependency group's channels (`sparsenet.prune.groups`) scored by the mean |gamma| of the
        group's BatchNorms."""
        bns = [(get_layer(model, node), index) for node, kind, index in group.members if kind == "bn"]
        if not bns:
            raise ConfigError(f"slimming: group {group.name!r} ({group.kind} of {group.nodes[:6]}) has no BatchNorm; "
                              f"exclude its layer or use another criterion")
        return np.mean([[np.abs(bn.weight.data[i].astype(np.float64)).mean() for i in index] for bn, index in bns],
                       axis=0)


def slimming_penalty(strength: float):
    """An `after_backward` hook adding the L1 subgradient strength * sign(gamma) to every BatchNorm
    scale's gradient (network slimming's sparsity-inducing training)."""

    def hook(model):
        for _, m in model.named_modules():
            if isinstance(m, (BatchNorm1d, BatchNorm2d)):
                m.weight.grad += strength * np.sign(m.weight.data)

    return hook


class ActivationAware(Importance):
    """|w_ij| * ||x_j||_2 with the input-feature norms measured on calibration batches (Wanda,
    Sun et al. 2023): one-shot pruning without retraining. For Conv2d, x_j is row j of im2col."""

    name = "wanda"
    needs_data = True

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size

    def __call__(self, model, layers, data=None):
        x, _ = self._require(data)
        sq = {n: np.zeros(l.weight.shape[1]) for n, l in layers.items()}
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(x), self.batch_size):
                model.forward(x[start:start + self.batch_size])  # each layer keeps its input for backward
                for n, layer in layers.items():
                    feats = layer._xt if hasattr(layer, "_xt") else layer._cols  # [fan_in, samples]
                    sq[n] += np.einsum("ij,ij->i", feats, feats, dtype=np.float64)
        finally:
            model.train(was_training)
        return {n: np.abs(l.weight.to_dense().astype(np.float64)) * np.sqrt(sq[n])[None, :]
                for n, l in layers.items()}


class Frequency(Importance):
    """How often each row of an Embedding table is looked up in the calibration inputs (rare tokens,
    cold users and items score low): with granularity 'embedding-row' it prunes the rows that the
    data uses least. ``data`` is (x, y) or (x,), x an array or ``{input name: array}`` (y is not
    used). Rows looked up equally often (never, say) are ordered by their norm: every element of a
    row scores count + ||w_row|| / (2 max ||w_row||) (L2 norms), below the next count. Scores
    Embedding layers only; use
    ``normalize="none"`` with scope 'global' (counts compare across tables as they are)."""

    name = "frequency"
    needs_data = True

    def __init__(self, batch_size: int = 4096):
        from .._checks import check_int

        self.batch_size = check_int(batch_size, "batch_size", "Frequency")

    def __call__(self, model, layers, data=None):
        from ..nn import Embedding
        from ..nn.module import enable_grad

        others = [n for n, l in layers.items() if not isinstance(l, Embedding)]
        if others:
            raise ConfigError(f"importance 'frequency' scores Embedding rows; {', '.join(others)} are not "
                              f"Embedding layers (use granularity 'embedding-row', or exclude them)")
        if data is None:
            raise ConfigError("importance 'frequency' counts lookups in calibration data: pass data=(x, y)")
        x = data[0] if isinstance(data, (tuple, list)) else data
        n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        if n == 0:
            raise DataError("importance 'frequency': calibration data is empty")
        counts = {name: np.zeros(l.num_embeddings) for name, l in layers.items()}
        was_training = model.training
        model.eval()
        try:
            with enable_grad():  # each table keeps the rows it looked up (also inside no_grad)
                for start in range(0, n, self.batch_size):
                    for layer in layers.values():
                        layer._rows = None  # a table this batch does not reach counts nothing
                    if isinstance(x, dict):
                        model.forward(**{k: np.asarray(v)[start:start + self.batch_size] for k, v in x.items()})
                    else:
                        model.forward(np.asarray(x)[start:start + self.batch_size])
                    for name, layer in layers.items():
                        if layer._rows is not None:
                            counts[name] += np.bincount(layer._rows, minlength=layer.num_embeddings)
        finally:
            model.train(was_training)
        scores = {}
        for name, layer in layers.items():
            w = np.abs(layer.weight.to_dense().astype(np.float64))
            norm = np.linalg.norm(w, axis=1)
            tie = norm / (2 * norm.max()) if norm.size and norm.max() > 0 else np.zeros_like(norm)
            scores[name] = np.repeat((counts[name] + tie)[:, None], w.shape[1], axis=1)
        return scores


CRITERIA = {
    "magnitude": lambda seed: Magnitude(1),
    "l1": lambda seed: Magnitude(1),
    "l2": lambda seed: Magnitude(2),
    "random": lambda seed: RandomScore(seed),
    "taylor": lambda seed: Taylor(),
    "snip": lambda seed: SNIP(),
    "synflow": lambda seed: SynFlow(),
    "movement": lambda seed: Movement(),
    "obd": lambda seed: OBD(),
    "slimming": lambda seed: BNScale(),
    "wanda": lambda seed: ActivationAware(),
    "frequency": lambda seed: Frequency(),
}


def make_importance(method, seed: int = 0) -> Importance:
    """An Importance from a name in CRITERIA (or an Importance instance, returned as is)."""
    if isinstance(method, Importance):
        return method
    if method not in CRITERIA:
        raise ConfigError(f"unknown pruning method {method!r}: expected one of {', '.join(sorted(CRITERIA))}")
    return CRITERIA[method](seed)
