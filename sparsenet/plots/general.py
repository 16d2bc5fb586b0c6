"""General figures the notebooks use: curves, latency, accuracy history, the roofline."""

from __future__ import annotations


import numpy as np

from ..errors import ConfigError
from ._base import _colour, _figure, _short


def plot_curves(x, series: dict, *, xlabel: str, ylabel: str, title: str = "", hline=None, hline_label="",
                logx: bool = False, logy: bool = False, markers: str = "o-"):
    """A generic line plot: {label: y values} against `x`, an optional horizontal reference line."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    if hline is not None:
        ax.axhline(hline, color="black", ls="--", lw=1.2, label=hline_label or None)
    for i, (label, ys) in enumerate(series.items()):
        ax.plot(x, ys, markers, color=_colour(i), label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def plot_roofline(points: dict, *, peak_gflops: float, bandwidth_gbs, title: str = "Roofline of this CPU"):
    """The roofline model: attainable GFLOP/s = min(peak, bandwidth x arithmetic intensity), with
    measured kernels placed on it. `points`: {label: [(flops per byte, measured GFLOP/s), ...]};
    `bandwidth_gbs`: one bandwidth in GB/s, or {label: GB/s} for several roofs (e.g. cache and RAM)."""
    roofs = bandwidth_gbs if isinstance(bandwidth_gbs, dict) else {"memory": bandwidth_gbs}
    if not roofs or min(roofs.values()) <= 0 or peak_gflops <= 0:
        raise ConfigError("plot_roofline: expected a positive peak and positive bandwidths")
    fig = _figure(8, 5)
    ax = fig.subplots()
    ridges = [peak_gflops / bw for bw in roofs.values()]
    all_ai = [p[0] for pts in points.values() for p in pts] + ridges
    ai = np.geomspace(min(all_ai) / 4, max(all_ai) * 4, 200)
    for j, (label, bw) in enumerate(roofs.items()):
        ax.plot(ai, np.minimum(peak_gflops, bw * ai), "k", ls=["-", "--", ":"][j % 3], lw=2,
                label=f"roof: {label} ({bw:.0f} GB/s)")
        ax.axvline(peak_gflops / bw, color="grey", ls=":", lw=1)
    ax.axhline(peak_gflops, color="black", lw=0.5)
    ax.text(ai[0], peak_gflops * 1.08, f"peak {peak_gflops:.0f} GFLOP/s", fontsize=7)
    for i, (label, pts) in enumerate(points.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=_colour(i), label=label, ms=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (useful FLOPs per byte moved)")
    ax.set_ylabel("GFLOP/s (useful)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_latency_vs_sparsity(timings: dict, *, title: str = "Measured kernel time vs sparsity"):
    """Kernel (or layer) times against sparsity: `timings` = {"sparsities": [...], "series": {label:
    [seconds or µs per sparsity]}, "unit": "µs", "dense": time of the dense product (a horizontal
    line; or a series named "dense")}. Where a sparse curve crosses the dense line is the break-even."""
    xs = timings["sparsities"]
    unit = timings.get("unit", "µs")
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    if timings.get("dense") is not None:
        ax.axhline(timings["dense"], color="black", ls="--", lw=1.5, label="dense")
    for i, (label, ys) in enumerate(timings["series"].items()):
        ax.plot(xs, ys, "o-", color=_colour(i), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("sparsity")
    ax.set_ylabel(f"time per call ({unit}, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def plot_accuracy_history(histories: dict, *, title: str = "Accuracy along the run"):
    """Accuracy at each recorded stage of several runs: {label: history list} where entries carry
    "stage" and "val_accuracy" (as `prune(..., val_data=...)` and `lottery_ticket` record them).
    The x axis is the stage's position; tick labels name the first run's stages."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    longest = []
    for i, (label, history) in enumerate(histories.items()):
        pts = [(j, e["val_accuracy"]) for j, e in enumerate(history) if e.get("val_accuracy") is not None]
        if len(history) > len(longest):
            longest = history
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=_colour(i), label=label)
    ax.set_xticks(range(len(longest)))
    ax.set_xticklabels([_short(str(e.get("stage", j)), 22) for j, e in enumerate(longest)], rotation=25,
                       ha="right", fontsize=7)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
