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
import re

import numpy as np

from .errors import SparsenetError

__all__ = [
    "available", "save_png", "save_all",
    "weight_histogram_data", "mask_to_rows", "rows_to_mask", "bytes_breakdown_data",
    "plot_accuracy_vs_sparsity", "plot_speedup_vs_sparsity", "plot_layer_sparsity",
    "plot_weight_histograms", "plot_sparsity_patterns", "plot_sensitivity", "plot_gradual_schedule",
    "plot_bytes_breakdown", "plot_latency_vs_sparsity", "plot_accuracy_history", "plot_curves", "plot_roofline",
]

_INSTALL = "plots need matplotlib: pip install 'sparsenet[plot]' (or pip install matplotlib)"
# Colour-blind-safe palette (Okabe & Ito), so that methods keep their colour from plot to plot.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
BYTE_PARTS = ("values", "indices", "pointers", "scales", "other")


def available() -> bool:
    """True when matplotlib can be imported (the figures can be drawn)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    """A new Figure with constrained layout, or SparsenetError naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SparsenetError(_INSTALL) from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(fig, path) -> str:
    """Write `fig` as a PNG to `path` atomically (`sparsenet.io.atomic.atomic_writer`); return the path."""
    from .io.atomic import atomic_writer

    path = os.fspath(path)
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return path


def _rows(figures) -> dict:
    """{method: row} from a whole demo result (its "pruned" part) or from the rows themselves."""
    if not isinstance(figures, dict):
        raise SparsenetError(f"plots: expected a dict of figures, found {type(figures).__name__}")
    rows = figures.get("pruned", figures)
    if not isinstance(rows, dict) or not all(isinstance(r, dict) for r in rows.values()):
        raise SparsenetError("plots: expected {method: row dict} or a demo result with a 'pruned' entry")
    return rows


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# -- data helpers (NumPy only) ---------------------------------------------------------------------
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
        raise SparsenetError(f"weight_histogram_data: expected bins >= 1, found {bins}")
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
        raise SparsenetError(f"mask_to_rows: expected a 2-D mask, found shape {m.shape}")
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
    from .nn._weighted import WeightedLayer
    from .summary import summarize

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


# -- plots -----------------------------------------------------------------------------------------
def plot_accuracy_vs_sparsity(figures, *, title: str = "Accuracy vs sparsity"):
    """Test accuracy of every method at the sparsity it reached (after fine-tuning), the dense
    baseline(s) as horizontal lines, and, if `figures` has a "sweep" ({label: {"sparsities",
    "accuracy"}}), curves of one-shot pruning without fine-tuning."""
    rows = _rows(figures)
    fig = _figure(8, 5)
    ax = fig.subplots()
    dense = figures.get("dense", {}) if "pruned" in figures else {}
    for i, (arch, d) in enumerate(sorted(dense.items())):
        ax.axhline(d["accuracy"], color="grey", ls=":" if i else "--", lw=1, label=f"dense {arch}")
    for i, (label, curve) in enumerate((figures.get("sweep") or {}).items()):
        ax.plot(curve["sparsities"], curve["accuracy"], ".-", color=_colour(i), alpha=0.45, lw=1.5, ms=8,
                label=f"{label} (one-shot, no fine-tuning)")
    for i, (name, r) in enumerate(rows.items()):
        ax.plot([r["sparsity"]], [r["accuracy"]], "o" if r.get("model") != "cnn" else "D", ms=9,
                color=_colour(i), markeredgecolor="black", label=_short(name, 40))
    ax.set_xlabel("sparsity (fraction of pruned weights)")
    ax.set_ylabel("test accuracy")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def plot_speedup_vs_sparsity(figures, *, title: str = "Theoretical vs measured speedup"):
    """Per method: the FLOPs speedup (what counting multiply-adds promises) and the measured speedup
    at batch 1 and 64 (what this CPU delivered), against sparsity. The vertical gap is the lesson."""
    rows = _rows(figures)
    fig = _figure(8, 5)
    ax = fig.subplots()
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.text(0.01, 1.0, " as fast as dense", va="bottom", fontsize=7, color="grey",
            transform=ax.get_yaxis_transform())
    for i, (name, r) in enumerate(rows.items()):
        s, c = r["sparsity"], _colour(i)
        theo = r.get("flops_speedup")
        meas = r.get("measured_speedup") or {}
        values = [v for v in [theo, *meas.values()] if v]
        if values:
            ax.plot([s, s], [min(values), max(values)], color=c, lw=1, alpha=0.5)
        if theo:
            ax.plot([s], [theo], "o", mfc="none", mec=c, ms=10, mew=2)
        if meas.get("batch1"):
            ax.plot([s], [meas["batch1"]], "^", color=c, ms=8)
        if meas.get("batch64"):
            ax.plot([s], [meas["batch64"]], "s", color=c, ms=8)
        ax.plot([], [], "-", color=c, lw=6, label=_short(name, 40))
    ax.plot([], [], "o", mfc="none", mec="black", label="theoretical (FLOPs)")
    ax.plot([], [], "^", color="black", label="measured, batch 1")
    ax.plot([], [], "s", color="black", label="measured, batch 64")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("speedup over the dense model (log scale)")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_layer_sparsity(figures, *, title: str = "Sparsity of each layer"):
    """Grouped bars: per method, the sparsity of each weighted layer (rows' "layers" from
    `pruning_report`), labelled with the format each layer was compiled to."""
    rows = {n: r for n, r in _rows(figures).items() if r.get("layers")}
    fig = _figure(9, 4.5)
    ax = fig.subplots()
    if not rows:
        ax.text(0.5, 0.5, "no per-layer figures", ha="center", transform=ax.transAxes)
        return fig
    n = len(rows)
    width = 0.8 / n
    slots = {}
    for r in rows.values():  # one slot per (model, layer), in order of appearance
        for layer in r["layers"]:
            slots.setdefault((r.get("model", ""), layer["name"], layer.get("kind", "")), len(slots))
    for i, (name, r) in enumerate(rows.items()):
        for layer in r["layers"]:
            x = slots[(r.get("model", ""), layer["name"], layer.get("kind", ""))] + (i - (n - 1) / 2) * width
            first = layer is r["layers"][0]
            ax.bar(x, layer["sparsity"], width, color=_colour(i), label=_short(name, 40) if first else None)
            ax.text(x, layer["sparsity"] + 0.01, layer.get("format", ""), rotation=90, ha="center", va="bottom",
                    fontsize=6)
    ax.set_xticks(range(len(slots)))
    ax.set_xticklabels([f"{m}\nlayer {l} ({k})" if m else f"layer {l}" for m, l, k in slots], fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("sparsity (vs the original shape)")
    ax.set_title(title + " (text: the storage format chosen)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return fig


def plot_weight_histograms(hist: dict, *, title: str = "Weights before and after pruning"):
    """Overlaid histograms from `weight_histogram_data` (or {label: array}); exact zeros are listed
    in the legend instead of drawn."""
    if "edges" not in hist:
        hist = weight_histogram_data(hist)
    edges = np.asarray(hist["edges"])
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for i, (label, counts) in enumerate(hist["counts"].items()):
        zeros, size = hist.get("zeros", {}).get(label, 0), hist.get("size", {}).get(label, 0)
        extra = f" ({zeros} of {size} exactly 0, not drawn)" if zeros else ""
        ax.stairs(counts, edges, fill=i == 0, alpha=0.35 if i == 0 else 1.0, color=_colour(i), lw=1.5,
                  label=f"{label}{extra}")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_sparsity_patterns(patterns: dict, *, zoom=(24, 48), title: str = "Which weights survive"):
    """For each {label: mask} (bool [out, in], or `mask_to_rows` strings): the whole layer (black =
    kept) and, beside it, its top-left corner magnified (`zoom` = rows, cols) so that blocks and N:M
    runs are visible. Tall layers (more outputs than inputs) are drawn transposed, to fit the page."""
    masks = {k: rows_to_mask(v) for k, v in patterns.items()}
    if not masks:
        raise SparsenetError("plot_sparsity_patterns: expected at least one mask")
    if any(m.ndim != 2 for m in masks.values()):
        raise SparsenetError("plot_sparsity_patterns: expected 2-D masks [out, in]")
    transpose = all(m.shape[0] > m.shape[1] for m in masks.values())
    n = len(masks)
    shape = next(iter(masks.values())).shape[::-1] if transpose else next(iter(masks.values())).shape
    aspect = shape[0] / max(shape[1], 1)
    fig = _figure(11, max(1.2, min(2.6, 8 * aspect)) * n + 0.6)
    axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 1]})
    for (label, m), (ax_full, ax_zoom) in zip(masks.items(), axes):
        density = m.mean() if m.size else 0.0
        shown = m.T if transpose else m
        ax_full.imshow(shown, cmap="Greys", interpolation="nearest", aspect="auto", vmin=0, vmax=1)
        ax_full.set_title(f"{label}: {m.shape[0]}x{m.shape[1]}, {1 - density:.1%} pruned", fontsize=8, loc="left")
        zr, zc = min(zoom[0], shown.shape[0]), min(zoom[1], shown.shape[1])
        ax_zoom.imshow(shown[:zr, :zc], cmap="Greys", interpolation="nearest", aspect="auto", vmin=0, vmax=1)
        ax_zoom.set_title(f"top-left {zr}x{zc}", fontsize=8)
        for ax in (ax_full, ax_zoom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes_text = "rows = inputs, columns = output units (transposed)" if transpose else \
        "rows = output units, columns = inputs"
    fig.suptitle(f"{title} (black = kept; {axes_text})", fontsize=10)
    return fig


def plot_sensitivity(scan: dict, *, title: str = "Layer sensitivity"):
    """Accuracy vs sparsity of each layer pruned alone (a `sensitivity_scan` result); with timings,
    a second panel shows each layer's fastest format's latency."""
    layers = scan.get("layers") or {}
    timed = any(e.get("latency_us") for e in layers.values())
    fig = _figure(11 if timed else 7, 4.5)
    axes = fig.subplots(1, 2 if timed else 1, squeeze=False)[0]
    ax = axes[0]
    if "baseline_accuracy" in scan:
        ax.axhline(scan["baseline_accuracy"], color="grey", ls="--", lw=1, label="unpruned")
    for i, (name, e) in enumerate(layers.items()):
        xs = e.get("reached") or scan["sparsities"]
        label = f"layer {name} {e.get('kind', '')} {'x'.join(map(str, e.get('shape', [])))}".strip()
        ax.plot(xs, e["accuracy"], "o-", color=_colour(i), label=label)
    ax.set_xlabel("sparsity of that layer alone")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} ({scan.get('method', '?')}, {scan.get('granularity', '?')})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    if timed:
        ax = axes[1]
        for i, (name, e) in enumerate(layers.items()):
            xs = e.get("reached") or scan["sparsities"]
            for j, (spec, us) in enumerate(e["latency_us"].items()):
                ax.plot(xs, us, ["-", "--", ":", "-."][j % 4], color=_colour(i),
                        label=f"layer {name} {spec}")
        ax.set_yscale("log")
        ax.set_xlabel("sparsity of that layer")
        ax.set_ylabel(f"forward latency, µs (batch {scan.get('batch_size', '?')})")
        ax.set_title("latency of the layer in each format", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, ncol=2)
    return fig


_STEP = re.compile(r"step (\d+)")


def plot_gradual_schedule(row, *, title: str = "Gradual pruning (Zhu & Gupta): sparsity and accuracy during training"):
    """The gradual schedule of a `prune(..., schedule="gradual")` run: target and reached sparsity at
    each pruning step, and accuracy over training where it was recorded.

    `row`: a `PruneResult.history` list, or a dict with "history" and optionally "total_steps",
    "steps_per_epoch" and "accuracy_over_training" ({"step": [...], "accuracy": [...]}).
    """
    row = {"history": list(row)} if isinstance(row, (list, tuple)) else dict(row)
    history = row.get("history") or []
    steps, target, reached, acc_steps, acc = [], [], [], [], []
    last = 0
    for e in history:
        m = _STEP.fullmatch(str(e.get("stage", "")))
        step = int(m.group(1)) if m else None
        if step is None:  # "final" and the like: the end of training
            step = int(row.get("total_steps") or last)
        else:
            steps.append(step)
            target.append(e.get("target", e.get("sparsity")))
            reached.append(e.get("sparsity"))
        last = max(last, step)
        if e.get("val_accuracy") is not None:
            acc_steps.append(step)
            acc.append(e["val_accuracy"])
    extra = row.get("accuracy_over_training") or {}
    if extra.get("step"):
        pairs = sorted(set(zip(extra["step"], extra["accuracy"])) | set(zip(acc_steps, acc)))
        acc_steps, acc = [p[0] for p in pairs], [p[1] for p in pairs]
    per_epoch = row.get("steps_per_epoch")
    scale = (1.0 / per_epoch) if per_epoch else 1.0
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    end = max([last, *steps, int(row.get("total_steps") or 0)])
    if steps and end > steps[-1]:  # the target holds until the end of training
        steps_line, target_line = steps + [end], target + [target[-1]]
    else:
        steps_line, target_line = steps, target
    ax.step([s * scale for s in steps_line], target_line, where="post", color=_colour(0),
            label="target sparsity (cubic)")
    ax.plot([s * scale for s in steps], reached, ".", color=_colour(0), ms=5, label="reached sparsity")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch of fine-tuning" if per_epoch else "training step")
    ax.set_ylabel("sparsity", color=_colour(0))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if acc:
        ax2 = ax.twinx()
        ax2.plot([s * scale for s in acc_steps], acc, "o-", color=_colour(1), ms=3, label="test accuracy")
        ax2.set_ylim(max(0.0, min(acc) - 0.1), 1.0)
        ax2.set_ylabel("accuracy", color=_colour(1))
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7, loc="center right")
    ax.set_title(title, fontsize=10)
    return fig


def plot_bytes_breakdown(figures, *, title: str = "Where the bytes go (bars: the formats 'auto' chose for speed)"):
    """Stacked bars of true bytes (values / indices / pointers / scales / other) per model: the dense
    baseline(s) ("dense_bytes_breakdown" in a demo result) and every row with a "bytes_breakdown"."""
    bars = {}
    if "pruned" in figures:
        for arch, b in (figures.get("dense_bytes_breakdown") or {}).items():
            bars[f"dense {arch}"] = b
    for name, r in _rows(figures).items():
        if isinstance(r.get("bytes_breakdown"), dict):
            bars[name] = r["bytes_breakdown"]
        elif all(p in r for p in ("values",)):
            bars[name] = r
    fig = _figure(9, 0.5 + 0.45 * max(len(bars), 2))
    ax = fig.subplots()
    labels = list(bars)
    left = np.zeros(len(labels))
    for j, part in enumerate(BYTE_PARTS):
        vals = np.array([float(bars[k].get(part, 0)) / 1024 for k in labels])
        if not vals.any():
            continue
        ax.barh(range(len(labels)), vals, left=left, color=_colour(j), label=part)
        left += vals
    for i, total in enumerate(left):
        ax.text(total, i, f" {total:.1f} KiB", va="center", fontsize=7)
    rows, marked = _rows(figures), False
    for i, k in enumerate(labels):
        by_format = (rows.get(k) or {}).get("bytes_by_format") or {}
        if by_format and min(by_format.values()) / 1024 < 0.95 * left[i]:
            spec = min(by_format, key=by_format.get)
            ax.plot([by_format[spec] / 1024], [i], "kd", ms=6, label=None if marked else "total in its smallest format")
            ax.text(by_format[spec] / 1024, i + 0.38, f"{spec}: {by_format[spec] / 1024:.1f}", fontsize=6, ha="center")
            marked = True
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([_short(k, 40) for k in labels], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("KiB (true bytes held in memory)")
    ax.set_xlim(0, max(left.max() if len(left) else 1, 1) * 1.2)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    return fig


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
        raise SparsenetError("plot_roofline: expected a positive peak and positive bandwidths")
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


# -- everything a demo result supports -------------------------------------------------------------
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
