"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with rewinding.

Train; prune a fraction of the surviving weights by magnitude; rewind the survivors to their values
at initialisation (or at an early epoch, Frankle et al. 2020); retrain; repeat. The control
re-initialises the survivors randomly instead of rewinding: if the ticket is real, rewinding wins.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, SparsenetError
from ..train import evaluate, fit
from .api import PruneResult, _model_sparsity, prune_step
from .granularity import make_granularity
from .importance import Magnitude
from .masks import prunable_layers, require_chain
from .schedule import iterative_targets

__all__ = ["lottery_ticket", "reinitialize"]


def _snapshot(model) -> dict:
    return {n: p.data.copy() for n, p in model.named_parameters()} | {
        f"{i}.{k}": v.copy() for i, l in model.named_modules() for k, v in l.buffers().items()}


def _rewind(model, snap) -> None:
    """Reset every parameter (and buffer: BatchNorm statistics) to the snapshot, keeping masks."""
    for n, p in model.named_parameters():
        value = snap[n]
        if value.shape != p.data.shape:  # a dense snapshot of a weight now stored in the same shape only
            raise SparsenetError(f"lottery: parameter {n} changed shape {value.shape} -> {p.data.shape}")
        p.data[...] = value
        p.apply_mask()
    for i, l in model.named_modules():
        for k, v in l.buffers().items():
            v[...] = snap[f"{i}.{k}"]


def reinitialize(model, seed: int) -> None:
    """Fresh random weights (same distributions as construction) under the current masks."""
    rng = np.random.default_rng(seed)
    for _, layer in model.named_modules():
        layer.reset_parameters(rng)


def lottery_ticket(model, train_data, *, sparsity=0.9, rounds=3, epochs=10, rewind_epoch=0, control=False,
                   granularity="unstructured", scope="global", normalize="mean", exclude=(), val_data=None,
                   lr=1e-3, batch_size=32, seed=0, quiet=True) -> PruneResult:
    """Find a winning ticket in `model` (untrained, as built) in place.

    rounds of train -> prune to iterative_targets(sparsity, rounds) -> rewind; a final training run
    trains the last ticket. rewind_epoch=0 rewinds to initialisation, k > 0 to the weights after k
    epochs. control=True re-initialises randomly (seed + 1000) instead of rewinding.
    The history records accuracy on `val_data` after each training run.
    """
    x, y = train_data
    if any(l.weight.format_name != "dense" for l in prunable_layers(model, exclude).values()):
        raise ConfigError("lottery_ticket expects a dense (unpruned, uncompiled) model")
    if not 0 <= rewind_epoch < epochs:
        raise ConfigError(f"lottery: expected 0 <= rewind_epoch < epochs, found {rewind_epoch} and {epochs}")
    gran = make_granularity(granularity)
    if gran.structured:
        require_chain(model, "lottery_ticket")  # before any training
    history = []

    def train(n_epochs, round_seed):
        fit(model, x, y, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=round_seed, quiet=quiet)

    def record(stage):
        entry = {"stage": stage, "sparsity": _model_sparsity(model, exclude)}
        if val_data is not None:
            entry["val_accuracy"] = evaluate(model, *val_data)["accuracy"]
        history.append(entry)

    if rewind_epoch:
        train(rewind_epoch, seed)
    snap = _snapshot(model)
    train(epochs - rewind_epoch, seed + 1)
    record("dense trained")
    masks = {}
    for r, target in enumerate(iterative_targets(float(sparsity), rounds)):
        masks = prune_step(model, Magnitude(1), gran, target, scope=scope, normalize=normalize, exclude=exclude)
        if control:
            reinitialize(model, seed + 1000 + r)
        else:
            _rewind(model, snap)
        train(epochs - rewind_epoch, seed + 2 + r)
        record(f"round {r + 1}: {'re-initialised' if control else 'rewound'} and retrained")
    result = PruneResult(method="magnitude", granularity=gran.name, scope=scope, schedule="lottery",
                         target=float(sparsity), masks=masks, history=history)
    result.layers = {n: {"target": float(sparsity), "reached": 1.0 - float(m.mean())} for n, m in masks.items()}
    model.meta["pruning"] = result.to_dict() | {"rewind_epoch": rewind_epoch, "control": control}
    return result


