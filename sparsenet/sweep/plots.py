"""Plots of a sweep's summary (matplotlib, optional: without it no plot is drawn).

``accuracy.png``: test accuracy vs reached sparsity, one line per series (a series is one value of
every grid axis except sparsity and seed), a band of +- one standard deviation across seeds, and the
dense baseline's accuracy dashed. ``speedup.png``: measured speedup (dense latency / compiled latency:
the median of per-round ratios from the serial timing phase) vs sparsity, one panel per timed batch size.
"""

from __future__ import annotations

import os

__all__ = ["write_plots", "series_of"]


def series_of(summary, axes) -> dict:
    """{label: [summary rows sorted by mean reached sparsity]}; the label names the `axes` values
    (grid axes other than sparsity and seed; 'all' when there are none)."""
    out = {}
    for row in summary:
        label = ", ".join(f"{row.get(a)}" for a in axes) or "all"
        out.setdefault(label, []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: (r.get("sparsity_mean") is None, r.get("sparsity_mean") or 0.0))
    return out


def _xy(rows, metric):
    pts = [(r["sparsity_mean"], r.get(f"{metric}_mean"), r.get(f"{metric}_std") or 0.0) for r in rows
           if r.get("sparsity_mean") is not None and r.get(f"{metric}_mean") is not None]
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def _band(ax, x, y, s, label):
    import numpy as np

    (line,) = ax.plot(x, y, marker="o", label=label)
    y, s = np.asarray(y), np.asarray(s)
    ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2, linewidth=0)


def write_plots(summary, out_dir, *, axes=("method",), title="") -> dict:
    """Draw the plots into `out_dir`; returns {name: path} ({} without matplotlib or data)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    if not summary:
        return {}
    axes = [a for a in axes if a not in ("sparsity", "seed")]
    series = series_of(summary, axes)
    files = {}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows in series.items():
        x, y, s = _xy(rows, "accuracy")
        if x:
            _band(ax, x, y, s, label)
    dense = [r["dense_accuracy_mean"] for r in summary if r.get("dense_accuracy_mean") is not None]
    if dense and len({round(d, 9) for d in dense}) == 1:
        ax.axhline(dense[0], color="grey", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("sparsity (reached, fraction of pruned weights)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(f"{title}: accuracy vs sparsity" if title else "accuracy vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files["accuracy.png"] = os.path.join(out_dir, "accuracy.png")
    fig.savefig(files["accuracy.png"], dpi=120)
    plt.close(fig)

    timed = sorted({int(k[len("measured_speedup_b"):-len("_mean")]) for r in summary for k in r
                    if k.startswith("measured_speedup_b") and k.endswith("_mean") and r[k] is not None})
    if timed:
        fig, panels = plt.subplots(1, len(timed), figsize=(5 * len(timed), 4), squeeze=False)
        for ax, b in zip(panels[0], timed):
            for label, rows in series.items():
                x, y, s = _xy(rows, f"measured_speedup_b{b}")
                if x:
                    _band(ax, x, y, s, label)
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
            ax.set_xlabel("sparsity (reached)")
            ax.set_ylabel("measured speedup (dense / compiled)")
            ax.set_title(f"batch {b}")
            ax.grid(alpha=0.3)
        panels[0][0].legend(fontsize=8)
        fig.suptitle(f"{title}: measured speedup vs sparsity" if title else "measured speedup vs sparsity")
        fig.tight_layout()
        files["speedup.png"] = os.path.join(out_dir, "speedup.png")
        fig.savefig(files["speedup.png"], dpi=120)
        plt.close(fig)
    return files
