"""Selection: scores and a target -> masks, with an exact count and deterministic tie-breaking.

A group's score is the mean of its entries' scores, so that groups of different sizes (the edge
blocks of a shape that is not a multiple of the block) compete fairly. Targets are fractions of a
layer's weights to prune. The number of weights pruned in a layer (or in
all layers, for the global scope) is round(sparsity * weights) exactly for unstructured pruning; for
blocks and units, whole groups are pruned, so the count is the nearest reachable one. Ties are
broken by position: among equal scores the earlier layer, then the lower group index, goes first.
At least one group of every layer is kept (a layer pruned away entirely would disconnect the model).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .granularity import Granularity

__all__ = ["select_masks", "NORMALIZATIONS"]

NORMALIZATIONS = ("none", "mean", "l2")


def _groups(scores, granularity, prior):
    """(ids, group scores, group sizes, groups already pruned) for one layer."""
    ids = granularity.group_ids(scores.shape)
    n = int(ids.max()) + 1 if ids.size else 0
    sizes = np.bincount(ids.ravel(), minlength=n)
    # mean score per weight: groups of different sizes (edge blocks) compete fairly
    gs = np.bincount(ids.ravel(), weights=scores.ravel(), minlength=n) / np.maximum(sizes, 1)
    dead = np.zeros(n, dtype=bool)
    if prior is not None:
        dead = np.bincount(ids.ravel(), weights=(~prior).ravel(), minlength=n) >= sizes
    return ids, gs, sizes, dead


def _normalize(gs, sizes, dead, how):
    live = gs[~dead]
    if how == "none" or live.size == 0:
        return gs
    if how == "mean":
        d = np.abs(live).mean()
    elif how == "l2":
        d = np.sqrt(np.sum(live ** 2))
    else:
        raise ConfigError(f"unknown normalisation {how!r}: expected one of {NORMALIZATIONS}")
    return gs / d if d > 0 else gs


def _prune_order(entries):
    """entries: list of (group scores, dead flags). Returns (layer, group) pairs in pruning order:
    already-pruned groups first, then by score, then layer order, then group index."""
    layer = np.concatenate([np.full(len(gs), i) for i, (gs, _) in enumerate(entries)]) if entries else np.array([])
    group = np.concatenate([np.arange(len(gs)) for gs, _ in entries]) if entries else np.array([])
    score = np.concatenate([gs for gs, _ in entries]) if entries else np.array([])
    dead = np.concatenate([d for _, d in entries]) if entries else np.array([], dtype=bool)
    order = np.lexsort((group, layer, score, ~dead))  # last key is primary
    return layer[order].astype(int), group[order].astype(int)


def _take(sizes_in_order, target):
    """How many groups (a prefix) to prune so that their total size is nearest to `target`."""
    if target <= 0 or len(sizes_in_order) == 0:
        return 0  # (halves round down: the nearer count wins, the smaller one on a tie)
    cum = np.cumsum(sizes_in_order)
    k = int(np.searchsorted(cum, target, side="right"))  # cum[k-1] <= target < cum[k]
    if k < len(cum) and cum[k] - target < target - (cum[k - 1] if k else 0):
        k += 1
    return k


def select_masks(scores: dict, granularity: Granularity, sparsity, *, scope: str = "layer",
                 normalize: str = "none", prior: dict | None = None) -> dict:
    """Masks (True = keep) for every layer in `scores`.

    sparsity: one fraction for every layer, or {layer name: fraction} (scope 'layer' only).
    scope: 'layer' (each layer reaches its own target) or 'global' (one threshold across layers on
    normalised group scores). prior: current masks; entries already pruned stay pruned.
    """
    prior = prior or {}
    if scope not in ("layer", "global"):
        raise ConfigError(f"unknown scope {scope!r}: expected 'layer' or 'global'")
    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {normalize!r}: expected one of {NORMALIZATIONS}")
    if granularity.local:  # N:M: fixed pattern per group, no threshold
        return {n: granularity.select(s, None if prior.get(n) is None else ~prior[n]) for n, s in scores.items()}
    targets = sparsity if isinstance(sparsity, dict) else {n: sparsity for n in scores}
    if scope == "global" and isinstance(sparsity, dict):
        raise ConfigError("global scope takes one sparsity for all layers, not per-layer targets")
    for n, t in targets.items():
        if n not in scores:
            raise ConfigError(f"sparsity target for layer {n!r}, which is not being pruned")
        if not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"sparsity for layer {n}: expected a fraction in [0, 1], found {t}")
    names = [n for n in scores if n in targets]
    info = {n: _groups(np.asarray(scores[n], dtype=np.float64), granularity, prior.get(n)) for n in names}
    if any((~np.isfinite(i[1][~i[3]])).any() for i in info.values()):
        raise DataError("importance scores contain NaN or inf")
    masks = {}
    if scope == "layer":
        for n in names:
            ids, gs, sizes, dead = info[n]
            lay, grp = _prune_order([(gs, dead)])
            k = max(_take(sizes[grp], float(targets[n]) * ids.size), int(dead.sum()))  # pruned stay pruned
            k = min(k, max(len(gs) - 1, 0))
            keep = np.ones(len(gs), dtype=bool)
            keep[grp[:k]] = False
            masks[n] = keep[ids]
        return masks
    entries = [(_normalize(info[n][1], info[n][2], info[n][3], normalize), info[n][3]) for n in names]
    lay, grp = _prune_order(entries)
    sizes = np.array([info[names[l]][2][g] for l, g in zip(lay, grp)])
    total = sum(info[n][0].size for n in names)
    k = max(_take(sizes, float(sparsity) * total), sum(int(info[n][3].sum()) for n in names))
    keeps = [np.ones(len(info[n][1]), dtype=bool) for n in names]
    for l, g in zip(lay[:k], grp[:k]):
        keeps[l][g] = False
    for i, n in enumerate(names):
        if not keeps[i].any() and len(keeps[i]):  # never prune a layer away: keep its best group
            live = np.where(info[n][3], -np.inf, info[n][1])
            keeps[i][int(np.argmax(live))] = True
        masks[n] = keeps[i][info[n][0]]
    return masks
