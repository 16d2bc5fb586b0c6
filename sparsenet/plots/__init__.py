"""Teaching figures: each function takes plain figures (the JSON-ready dicts that `run_demo`, `prune`,
`sensitivity_scan` and `lottery_ticket` produce) and returns a matplotlib ``Figure``.

matplotlib is optional (``pip install 'sparsenet[plot]'``) and imported only inside the functions.
Figures are built with the object-oriented API (``matplotlib.figure.Figure``, drawn by Agg when
saved), so nothing here touches pyplot's global state or the backend a notebook chose. A Figure
displays itself in a notebook; `save_png` writes it to a file.

The small ``*_data`` helpers turn models and masks into those plain figures; they need NumPy only.

>>> import numpy as np
>>> fig = plot_sparsity_patterns({"random": np.random.default_rng(0).random((8, 16)) > 0.5})
>>> len(fig.axes)
2
"""

from __future__ import annotations

import os


from ._base import _rows, available, save_png
from .data import bytes_breakdown_data, mask_to_rows, rows_to_mask, weight_histogram_data
from .general import plot_accuracy_history, plot_curves, plot_latency_vs_sparsity, plot_roofline
from .pruning import (plot_accuracy_vs_sparsity, plot_bytes_breakdown, plot_gradual_schedule, plot_layer_sparsity,
                      plot_sensitivity, plot_sparsity_patterns, plot_speedup_vs_sparsity, plot_weight_histograms)

__all__ = [
    "available", "save_png", "save_all",
    "weight_histogram_data", "mask_to_rows", "rows_to_mask", "bytes_breakdown_data",
    "plot_accuracy_vs_sparsity", "plot_speedup_vs_sparsity", "plot_layer_sparsity",
    "plot_weight_histograms", "plot_sparsity_patterns", "plot_sensitivity", "plot_gradual_schedule",
    "plot_bytes_breakdown", "plot_latency_vs_sparsity", "plot_accuracy_history", "plot_curves", "plot_roofline",
]


def _patterns(f):
    return plot_sparsity_patterns(f["patterns"]["masks"],
                                  title=f"Which weights of layer {f['patterns'].get('layer', '?')} survive")


def _histograms(f):
    layer = f["histograms"].get("layer", "?")
    return plot_weight_histograms(f["histograms"], title=f"Weights of layer {layer} before and after pruning")


def _gradual_row(f):
    return next((r for r in _rows(f).values() if r.get("schedule") == "gradual" and r.get("history")), None)


# name -> (has the figures the data?, draw); the report shows them in this order
_SAVE_ALL = {
    "accuracy_vs_sparsity": (lambda f: bool(_rows(f)), plot_accuracy_vs_sparsity),
    "speedup_vs_sparsity": (lambda f: bool(_rows(f)), plot_speedup_vs_sparsity),
    "layer_sparsity": (lambda f: bool(_rows(f)), plot_layer_sparsity),
    "bytes_breakdown": (lambda f: any("bytes_breakdown" in r for r in _rows(f).values()), plot_bytes_breakdown),
    "sparsity_patterns": (lambda f: bool((f.get("patterns") or {}).get("masks")), _patterns),
    "weight_histograms": (lambda f: bool(f.get("histograms")), _histograms),
    "sensitivity": (lambda f: bool(f.get("sensitivity")), lambda f: plot_sensitivity(f["sensitivity"])),
    "gradual_schedule": (lambda f: _gradual_row(f) is not None, lambda f: plot_gradual_schedule(_gradual_row(f))),
}


def save_all(figures: dict, out_dir) -> dict:
    """Draw every plot the demo result `figures` has data for and save them as PNGs in `out_dir`.
    Returns {name: path} in the report's order; plots without data are skipped."""
    os.makedirs(out_dir, exist_ok=True)
    out = {}
    for name, (has_data, draw) in _SAVE_ALL.items():
        if has_data(figures):
            out[name] = save_png(draw(figures), os.path.join(os.fspath(out_dir), f"{name}.png"))
    return out
