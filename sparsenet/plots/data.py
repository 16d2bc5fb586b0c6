"""Small NumPy-only helpers that turn models and masks into the plain figures the plots draw."""

from __future__ import annotations


import numpy as np

from ..errors import ConfigError, ShapeError
from ._base import BYTE_PARTS


def weight_histogram_data(weights: dict, bins: int = 60, *, symmetric: bool = True) -> dict:
    """Histograms on shared bins of several weight arrays: {label: array} ->
    {"edges": [bins + 1], "counts": {label: [bins]}, "zeros": {label: exact zeros}, "size": {label: n}}.

    Exact zeros are counted apart (a pruned weight is exactly 0 and would dwarf the bin around 0),
    so the histogram shows the surviving weights and the zeros are reported as a number. The bins
    span [-max|w|, max|w|] (`symmetric`) or [min, max] of the non-zero values.

    >>> d = weight_histogram_data({"a": np.array([0.0, 1.0, -1.0])}, bins=2)
    >>> d["counts"]["a"], d["zeros"]["a"]
    ([1, 1], 1)
    """
    arrays = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in weights.items()}
    nonzero = [a[a != 0] for a in arrays.values()]
    if bins < 1:
        raise ConfigError(f"weight_histogram_data: expected bins >= 1, found {bins}")
    if symmetric:
        top = max([float(np.abs(a).max()) for a in nonzero if a.size] + [1e-12])
        lo, hi = -top, top
    else:
        lo = min((float(a.min()) for a in nonzero if a.size), default=0.0)
        hi = max([float(a.max()) for a in nonzero if a.size] + [lo + 1e-12])
    edges = np.linspace(lo, hi, int(bins) + 1)
    return {"edges": [float(e) for e in edges],
            "counts": {k: np.histogram(a[a != 0], bins=edges)[0].astype(int).tolist() for k, a in arrays.items()},
            "zeros": {k: int(np.count_nonzero(a == 0)) for k, a in arrays.items()},
            "size": {k: int(a.size) for k, a in arrays.items()}}


def mask_to_rows(mask) -> list[str]:
    """A boolean [rows, cols] mask as JSON-friendly strings of '0'/'1' (one per row)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ShapeError(f"mask_to_rows: expected a 2-D mask, found shape {m.shape}")
    return ["".join("1" if v else "0" for v in row) for row in m]


def rows_to_mask(rows) -> np.ndarray:
    """Inverse of `mask_to_rows` (a 2-D array passes through as bool)."""
    if isinstance(rows, np.ndarray):
        return rows.astype(bool)
    rows = list(rows)
    if rows and isinstance(rows[0], str):
        return np.array([[c == "1" for c in r] for r in rows], dtype=bool)
    return np.asarray(rows, dtype=bool)


def bytes_breakdown_data(model) -> dict:
    """True bytes of a model split by what they hold: {"values", "indices", "pointers", "scales", "other"}.

    values: the stored weight values (float32, or int8 when quantised); indices: column (block) indices
    of CSR/BSR; pointers: row (block-row) pointers; scales: per-row scales of int8 weights; other:
    biases and BatchNorm parameters and statistics. The sum equals `sparsenet.summary.summarize`'s
    total bytes.
    """
    from ..nn._weighted import WeightedLayer
    from ..summary import summarize

    out = dict.fromkeys(BYTE_PARTS, 0)
    weights = 0
    for layer in model.layers:
        if isinstance(layer, WeightedLayer):
            w = layer.weight
            out["values"] += int(w.data.nbytes)
            out["indices"] += int(w.indices.nbytes) if hasattr(w, "indices") else 0
            out["pointers"] += int(w.indptr.nbytes) if hasattr(w, "indptr") else 0
            out["scales"] += int(w.scales.nbytes) if hasattr(w, "scales") else 0
            weights += int(w.nbytes)
    out["other"] = int(summarize(model)["totals"]["total_bytes"]) - weights
    return out
