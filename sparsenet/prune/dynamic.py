"""Dynamic sparse training from scratch: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

A model's weighted layers start sparse (a random pattern at each layer's density) and stay in a
sparse format (CSR, or BSR with ``blocksize``) for the whole of training: forward and backward run
the sparse kernels, the optimiser's state has one entry per stored value. Every ``delta_t`` steps
until ``end_fraction`` of training, each layer drops the fraction ``f(t)`` of its stored weights
(or blocks) with the smallest magnitude and grows as many where none is stored after the drop: at
random (SET), or where the dense gradient of that step is largest (RigL: the full gradient is
computed on that step only). ``f(t) = drop_fraction / 2 * (1 + cos(pi * t / t_end))``, RigL's
cosine schedule; the number of stored entries never changes. Grown weights start at zero, with zero
optimiser state; weights that stay keep their values and their state
(``Parameter.replace(carry=...)``), and so does a place just dropped and chosen again (RigL's
default; it does not count as moved).

Per-layer densities (`layer_densities`) follow ``distribution``: 'uniform' (every layer at
``1 - sparsity``), 'er' (Erdős-Rényi: density proportional to ``(n_in + n_out) / (n_in * n_out)``)
or 'erk' (Erdős-Rényi-Kernel: the kernel's dimensions count too, ``sum(shape) / prod(shape)``);
layers that would exceed density 1 stay dense and the others share the budget, so that the
model's stored weights are ``(1 - sparsity)`` of its prunable ones (RigL's procedure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_fraction, check_int, check_seed
from ..errors import ConfigError
from ..formats import BSR, CSR
from ..nn.conv import Conv2d
from ..train import History, _inputs, _labels_or_targets, fit
from .masks import prunable_layers

__all__ = ["METHODS", "DISTRIBUTIONS", "layer_densities", "DynamicSparsity", "SparseTrainingResult",
           "sparse_train"]

METHODS = ("set", "rigl")
DISTRIBUTIONS = ("uniform", "er", "erk")


def _dims(layer) -> tuple[int, ...]:
    """The weight's own dimensions: (out, in) for Linear, (out, in, kh, kw) for Conv2d."""
    if isinstance(layer, Conv2d):
        return (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)
    return tuple(layer.weight_shape)


def layer_densities(layers: dict, sparsity: float, distribution: str = "erk") -> dict[str, float]:
    """The density of each layer (`layers`: name -> weighted layer) that gives the layers together
    ``1 - sparsity`` of their weights, by `distribution` ('uniform', 'er', 'erk'; see the module)."""
    check_fraction(sparsity, "sparsity", "layer_densities")
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"layer_densities: expected distribution in {DISTRIBUTIONS}, found {distribution!r}")
    sizes = {n: int(np.prod(layer.weight_shape)) for n, layer in layers.items()}
    if distribution == "uniform":
        return {n: 1.0 - sparsity for n in layers}
    raw = {}
    for n, layer in layers.items():
        dims = _dims(layer) if distribution == "erk" else _dims(layer)[:2]
        raw[n] = sum(dims) / math.prod(dims) if math.prod(dims) else 0.0
    dense: set[str] = set()
    while True:  # RigL's procedure: layers over density 1 become dense, the rest share what is left
        budget = sum((1.0 - sparsity) * sizes[n] for n in layers) - sum(sizes[n] for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in layers if n not in dense)
        eps = budget / divisor if divisor else 0.0
        over = [n for n in layers if n not in dense and raw[n] * eps > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else raw[n] * eps for n in layers}


def _check_blocksize(blocksize):
    if blocksize is None:
        return None
    try:
        r, c = (int(v) for v in blocksize)
    except (TypeError, ValueError):
        raise ConfigError(f"sparse training: expected a blocksize (R, C) of positive ints, found {blocksize!r}") from None
    if min(r, c) < 1:
        raise ConfigError(f"sparse training: expected a blocksize (R, C) of positive ints, found {blocksize!r}")
    return r, c


def _grid(layer, blocksize) -> tuple[int, int]:
    m, k = layer.weight_shape
    if blocksize is None:
        return m, k
    return -(-m // blocksize[0]), -(-k // blocksize[1])


def _unit_scores(weight) -> np.ndarray:
    """|w| per stored unit (entry, or block: the sum of its |w|)."""
    a = np.abs(weight.data.astype(np.float64))
    return a if a.ndim == 1 else a.reshape(a.shape[0], -1).sum(axis=1)


def _positions(weight) -> np.ndarray:
    """The flat grid position (row * columns + column) of each stored unit, in storage order."""
    rows = np.repeat(np.arange(weight.indptr.shape[0] - 1, dtype=np.int64), np.diff(weight.indptr.astype(np.int64)))
    cols = weight._grid()[1]
    return rows * cols + weight.indices.astype(np.int64)


def _build(layer, positions: np.ndarray, values: np.ndarray, blocksize):
    """A CSR (or BSR) weight of the layer's shape with units at sorted flat grid `positions`."""
    gm, gk = _grid(layer, blocksize)
    rows, cols = np.divmod(positions, gk)
    indptr = np.zeros(gm + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=gm), out=indptr[1:])
    if blocksize is None:
        return CSR(values, cols, indptr, layer.weight_shape, check=False)
    return BSR(values, cols, indptr, layer.weight_shape, check=False)


def _edge_zeros(layer, fmt):
    """BSR edge blocks hold zeros beyond the shape: enforce it after values were moved or made."""
    if isinstance(fmt, BSR):
        (m, k), (r, c) = layer.weight_shape, fmt.blocksize
        gm, gk = _grid(layer, fmt.blocksize)
        rows = np.repeat(np.arange(gm), np.diff(fmt.indptr.astype(np.int64)))
        if m % r:
            fmt.data[rows == gm - 1, m % r:, :] = 0
        if k % c:
            fmt.data[fmt.indices.astype(np.int64) == gk - 1, :, k % c:] = 0
    return fmt


def _grow_scores(layer, blocksize) -> np.ndarray:
    """|dense gradient| per grid cell (summed over a block), flat."""
    g = np.abs(layer.dense_grad.astype(np.float64))
    if blocksize is None:
        return g.reshape(-1)
    (m, k), (r, c) = g.shape, blocksize
    gm, gk = _grid(layer, blocksize)
    padded = np.zeros((gm * r, gk * c))
    padded[:m, :k] = g
    return padded.reshape(gm, r, gk, c).sum(axis=(1, 3)).reshape(-1)


def _smallest(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` smallest scores, ties to the lower index (deterministic)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((np.arange(scores.size), scores))[:n]


@dataclass
class SparseTrainingResult:
    """What `sparse_train` did: the training `history`, each layer's `densities`, the layers left
    `dense`, and per update the step, the drop fraction and the units moved per layer (`updates`)."""

    method: str
    sparsity: float
    distribution: str
    densities: dict
    history: History
    updates: list = field(default_factory=list)
    dense: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "sparsity": self.sparsity, "distribution": self.distribution,
                "densities": dict(self.densities), "dense": list(self.dense), "updates": list(self.updates)}


class DynamicSparsity:
    """Drives SET or RigL through `fit`'s hooks (``on_step=self.on_step``): see the module.

    Construction makes each chosen layer sparse at its density (a random pattern from `seed`; the
    values are the layer's own at those places) and stores it CSR (or BSR with `blocksize`); with
    RigL it also asks for the dense gradient of the first update step if that is step 1. A layer
    whose density comes out at 1 (ERK gives small layers more than they hold) stays as it is, and so
    do grouped and depthwise convolutions (small, and without a sparse backward here: RigL's
    MobileNets keep them dense too); `dense` names them, and `sparsity` counts the other layers."""

    def __init__(self, model, *, method: str = "rigl", sparsity: float = 0.9, distribution: str = "erk",
                 total_steps: int, delta_t: int = 100, drop_fraction: float = 0.3, end_fraction: float = 0.75,
                 blocksize=None, exclude=(), seed: int = 0):
        if method not in METHODS:
            raise ConfigError(f"sparse training: expected method in {METHODS}, found {method!r}")
        self.method = method
        self.sparsity = check_fraction(sparsity, "sparsity", "sparse training")
        self.delta_t = check_int(delta_t, "delta_t", "sparse training")
        self.total_steps = check_int(total_steps, "total_steps", "sparse training", low=0)
        self.drop_fraction = check_fraction(drop_fraction, "drop_fraction", "sparse training")
        self.end_step = int(check_fraction(end_fraction, "end_fraction", "sparse training") * self.total_steps)
        self.blocksize = _check_blocksize(blocksize)
        self.rng = np.random.default_rng(check_seed(seed, "sparse training"))
        layers = prunable_layers(model, exclude)
        grouped = [n for n, layer in layers.items() if isinstance(layer, Conv2d) and layer.groups != 1]
        candidates = {n: layer for n, layer in layers.items() if n not in grouped}
        if not candidates:
            raise ConfigError("sparse training: the model has no weighted layer to make sparse"
                              + (f" (grouped or depthwise convolutions {grouped} stay dense)" if grouped else ""))
        self.densities = layer_densities(candidates, self.sparsity, distribution)
        self.distribution = distribution
        self.updates: list[dict] = []
        self.layers = {n: layer for n, layer in candidates.items() if self._sparsify(layer, self.densities[n])}
        self.dense = [n for n in layers if n not in self.layers]
        self.densities.update({n: 1.0 for n in grouped})
        if self.method == "rigl" and self._updates_at(1):
            self._want(True)

    def _sparsify(self, layer, density: float) -> bool:
        """Store `layer` sparse at `density` (True), or leave it as it is when that keeps every entry."""
        gm, gk = _grid(layer, self.blocksize)
        cells = gm * gk
        n = min(cells, max(int(round(density * cells)), 1 if cells else 0))
        if n == cells:
            return False
        positions = np.sort(self.rng.choice(cells, size=n, replace=False))
        w = layer.weight.to_dense()
        if self.blocksize is None:
            values = w.reshape(-1)[positions]
        else:
            r, c = self.blocksize
            padded = np.zeros((gm * r, gk * c), w.dtype)
            padded[:w.shape[0], :w.shape[1]] = w
            values = padded.reshape(gm, r, gk, c).transpose(0, 2, 1, 3).reshape(gm * gk, r, c)[positions]
        layer.weight = _edge_zeros(layer, _build(layer, positions, np.ascontiguousarray(values), self.blocksize))
        return True

    def fraction(self, step: int) -> float:
        """The drop fraction at `step` (RigL's cosine decay to 0 at the end step)."""
        if not self.end_step:
            return 0.0
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * min(step, self.end_step) / self.end_step))

    def _updates_at(self, step: int) -> bool:
        return step > 0 and step % self.delta_t == 0 and step <= self.end_step

    def _want(self, on: bool) -> None:
        for layer in self.layers.values():
            layer.want_dense_grad(on)

    def on_step(self, step: int) -> None:
        """After optimiser step `step` (1-based): update the patterns when it is an update step; RigL
        switches the dense gradient on for the backward of the next update step only."""
        if self._updates_at(step):
            self.update(step)
        if self.method == "rigl":
            self._want(self._updates_at(step + 1))

    def update(self, step: int) -> dict:
        """Drop and grow in every layer now; returns (and records) the units moved per layer."""
        f = self.fraction(step)
        moved = {}
        for name, layer in self.layers.items():
            moved[name] = self._update_layer(name, layer, f)
        entry = {"step": int(step), "fraction": f, "moved": moved}
        self.updates.append(entry)
        return entry

    def _update_layer(self, name: str, layer, f: float) -> int:
        weight = layer.weight
        positions = _positions(weight)
        nnz = positions.size
        cells = int(np.prod(_grid(layer, self.blocksize)))
        n = min(int(round(f * nnz)), nnz)
        if n <= 0 or nnz == cells:  # nothing to move, or nowhere to move it
            return 0
        dropped = _smallest(_unit_scores(weight), n)
        keep = np.ones(nnz, dtype=bool)
        keep[dropped] = False
        kept_pos = positions[keep]
        active = np.zeros(cells, dtype=bool)
        active[kept_pos] = True
        if self.method == "rigl":
            if layer.dense_grad is None:
                raise ConfigError(f"sparse training: layer {name} has no dense gradient at an update step "
                                  f"(call on_step after every optimiser step)")
            scores = _grow_scores(layer, self.blocksize)
            scores[active] = -1.0  # never regrow what is stored
            grown = _smallest(-scores, n)  # the largest |gradient|, ties to the lower position
        else:
            free = np.flatnonzero(~active)
            grown = np.sort(self.rng.choice(free, size=n, replace=False))
        again = np.minimum(np.searchsorted(positions, grown), nnz - 1)
        again = np.where(positions[again] == grown, again, -1)  # just dropped and chosen again: kept as it was
        new_pos = np.concatenate([kept_pos, grown])
        src = np.concatenate([np.flatnonzero(keep), again])
        order = np.argsort(new_pos, kind="stable")
        new_pos, src = new_pos[order], src[order]
        values = np.zeros((new_pos.size, *weight.data.shape[1:]), weight.data.dtype)
        values[src >= 0] = weight.data[src[src >= 0]]
        layer.set_weight(_edge_zeros(layer, _build(layer, new_pos, values, self.blocksize)), carry=src)
        return int(np.count_nonzero(again < 0))


def sparse_train(model, x, y, *, method: str = "rigl", sparsity: float = 0.9, distribution: str = "erk",
                 epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, delta_t: int = 100,
                 drop_fraction: float = 0.3, end_fraction: float = 0.75, blocksize=None, exclude=(),
                 seed: int = 0, x_val=None, y_val=None, optimizer=None, lr_schedule: str = "constant",
                 quiet: bool = True, drop_last: bool = False, augment=None) -> SparseTrainingResult:
    """Train `model` from scratch with SET or RigL at a fixed `sparsity` (see the module): its weighted
    layers (minus `exclude`) are made sparse first and stay CSR (BSR with `blocksize`) throughout.
    `delta_t`: steps between pattern updates; `drop_fraction`: the fraction moved at the first
    update, decaying along a cosine to 0 at `end_fraction` of training. The other arguments are
    `fit`'s. Returns a `SparseTrainingResult`; ``model.meta["pruning"]`` records it.

    >>> from sparsenet.nn import Sequential, Linear, ReLU
    >>> m = Sequential(Linear(8, 16), ReLU(), Linear(16, 2))
    >>> x = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    >>> r = sparse_train(m, x, (x[:, 0] > 0).astype(int), sparsity=0.5, epochs=4, batch_size=8, delta_t=2)
    >>> type(m.layers[0].weight).__name__, m.layers[0].weight.nnz, r.densities["0"], len(r.updates)
    ('CSR', 48, 0.375, 6)
    >>> r.dense, type(m.layers[2].weight).__name__  # ERK gives the small last layer all it holds
    (['2'], 'Dense')
    """
    epochs = check_int(epochs, "epochs", "sparse_train", low=0)
    batch_size = check_int(batch_size, "batch_size", "sparse_train")
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"sparse_train: expected lr_schedule 'constant' or 'cosine', found {lr_schedule!r}")
    x, n = _inputs(model, x, "sparse_train")  # the data is checked before the model is touched
    _labels_or_targets(y, n, None)
    steps_per_epoch = n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)
    dst = DynamicSparsity(model, method=method, sparsity=sparsity, distribution=distribution,
                          total_steps=epochs * steps_per_epoch, delta_t=delta_t, drop_fraction=drop_fraction,
                          end_fraction=end_fraction, blocksize=blocksize, exclude=exclude, seed=seed)
    try:
        history = fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, optimizer=optimizer,
                      x_val=x_val, y_val=y_val, quiet=quiet, on_step=dst.on_step, lr_schedule=lr_schedule,
                      drop_last=drop_last, augment=augment)
    finally:
        dst._want(False)
    result = SparseTrainingResult(method, float(sparsity), distribution, dst.densities, history, dst.updates,
                                  dst.dense)
    model.meta["pruning"] = {"schedule": "dynamic", **result.to_dict()}
    return result
