"""Granularities: which weights are pruned together.

A granularity maps a [out, fan_in] weight to groups: ``group_ids(shape)`` gives each entry's group,
and a group's score is the mean of its entries' scores (so Magnitude(p=1) ranks blocks or rows by
their L1 norm per weight). N:M is different: it keeps the best N of every M consecutive inputs, locally.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConfigError

__all__ = ["Granularity", "Unstructured", "Block", "NM", "Units", "TableRows", "make_granularity"]


class Granularity:
    name = "base"
    structured = False  # True when whole units (rows) are removed
    local = False       # True when selection is fixed per group (N:M), with no threshold

    def group_ids(self, shape) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Unstructured(Granularity):
    """Individual weights."""

    name = "unstructured"

    def group_ids(self, shape):
        return np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)


class Block(Granularity):
    """R x C blocks on the grid that BSR with blocksize (R, C) uses, so block-pruned layers store as BSR.
    Edge blocks of shapes that are not multiples of the block are smaller groups."""

    def __init__(self, r: int, c: int):
        if r < 1 or c < 1:
            raise ConfigError(f"block granularity: expected positive block shape, found {r}x{c}")
        self.r, self.c = int(r), int(c)
        self.name = f"block{self.r}x{self.c}"

    def group_ids(self, shape):
        m, k = shape
        nbc = -(-k // self.c)
        return (np.arange(m)[:, None] // self.r) * nbc + (np.arange(k)[None, :] // self.c)


class Units(Granularity):
    """Whole output units: a Linear layer's neurons or a Conv2d layer's filters (rows of the weight).
    Structured: pruned units are physically removed (`compiled`). On a Graph, units are the channels
    of dependency groups (`sparsenet.prune.groups`) of the kinds in `kinds`: "filters" and "neurons"
    (the default), "heads" (attention heads: granularity "head"), "dims" (embedding dimensions:
    granularity "dim")."""

    name = "units"
    structured = True

    def __init__(self, kinds=("filters", "neurons"), name: str = "units"):
        self.kinds, self.name = tuple(kinds), name

    def group_ids(self, shape):
        return np.repeat(np.arange(shape[0], dtype=np.int64)[:, None], shape[1], axis=1)


class TableRows(Granularity):
    """Whole rows of embedding tables: a vocabulary's tokens, a recommender's users or items. A
    pruned row is zeroed and pinned (its lookups return zeros; indices stay valid, so the table keeps
    its shape) and `compiled` stores the table so that it holds only its kept rows' values (CSR with
    "auto" or "csr"). Applies to `Embedding` layers only (`only`)."""

    name = "embedding-row"

    @property
    def only(self):
        from ..nn import Embedding

        return (Embedding,)

    def group_ids(self, shape):
        return np.repeat(np.arange(shape[0], dtype=np.int64)[:, None], shape[1], axis=1)


class NM(Granularity):
    """N:M semi-structured sparsity: in every run of M consecutive inputs of a row, N are kept
    (2:4, 4:8...). A last partial run of length L keeps min(N, L)."""

    local = True

    def __init__(self, n: int, m: int):
        if not 0 < n <= m:
            raise ConfigError(f"N:M granularity: expected 0 < N <= M, found {n}:{m}")
        self.n, self.m = int(n), int(m)
        self.name = f"{self.n}:{self.m}"

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def select(self, scores: np.ndarray, forced_out: np.ndarray | None = None) -> np.ndarray:
        """Mask keeping the N best of each M-run; ties go to the lower column. `forced_out` entries
        (already pruned) are never kept."""
        rows, k = scores.shape
        runs = -(-k // self.m)
        s = np.full((rows, runs * self.m), -np.inf)
        s[:, :k] = scores
        if forced_out is not None:
            s[:, :k][forced_out] = -np.inf
        s = s.reshape(rows, runs, self.m)
        order = np.argsort(-s, axis=2, kind="stable")  # best first, lower index first on ties
        keep = np.zeros_like(s, dtype=bool)
        np.put_along_axis(keep, order[:, :, : self.n], True, axis=2)
        keep &= s > -np.inf  # neither padding nor already-pruned entries are kept
        return keep.reshape(rows, runs * self.m)[:, :k]  # (explicit: -1 fails on zero rows)


_ALIASES = {"unstructured": Unstructured, "neuron": Units, "neurons": Units, "filter": Units,
            "filters": Units, "units": Units, "structured": Units, "channel": Units, "channels": Units,
            "head": lambda: Units(("heads",), "head"), "heads": lambda: Units(("heads",), "head"),
            "dim": lambda: Units(("dims",), "dim"), "dims": lambda: Units(("dims",), "dim"),
            "embedding-dim": lambda: Units(("dims",), "dim"), "embedding-row": TableRows, "row": TableRows,
            "rows": TableRows}


def make_granularity(spec) -> Granularity:
    """From a name: 'unstructured', 'neuron'/'filter'/'structured', 'head', 'dim' (embedding
    dimensions), 'embedding-row' (table rows), 'block4x4' (any RxC), '2:4' (any N:M)."""
    if isinstance(spec, Granularity):
        return spec
    spec = str(spec).lower()
    if spec in _ALIASES:
        return _ALIASES[spec]()
    m = re.fullmatch(r"block(\d+)x(\d+)", spec)
    if m:
        return Block(int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(\d+):(\d+)", spec)
    if m:
        return NM(int(m.group(1)), int(m.group(2)))
    raise ConfigError(f"unknown granularity {spec!r}: expected 'unstructured', 'neuron', 'filter', 'head', "
                      f"'dim', 'embedding-row', 'blockRxC' (e.g. block4x4) or 'N:M' (e.g. 2:4)")
