"""The pruning figures of the demo and the report."""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConfigError, ShapeError
from ._base import BYTE_PARTS, _colour, _figure, _rows, _short
from .data import rows_to_mask, weight_histogram_data


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
        raise ConfigError("plot_sparsity_patterns: expected at least one mask")
    if any(m.ndim != 2 for m in masks.values()):
        raise ShapeError("plot_sparsity_patterns: expected 2-D masks [out, in]")
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
