"""One self-contained HTML report of a demo run: tables of every figure, the plots embedded as
base64 ``data:`` URIs, short explanations, and the raw JSON. No external assets (no scripts, fonts,
style sheets or images fetched from anywhere), so a student can open the file offline or mail it.

Every piece of text that comes from the figures is HTML-escaped. The file is written atomically.

>>> import os, tempfile
>>> path = write_report({"dense": {}, "pruned": {}}, {}, os.path.join(tempfile.mkdtemp(), "r.html"))
>>> open(path).read().startswith("<!DOCTYPE html>")
True
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import time

import numpy as np

from .errors import ConfigError, SparsenetError
from .io.atomic import atomic_writer

__all__ = ["write_report", "render_report", "EXPLANATIONS"]

# What each plot shows and what to look for, keyed by the names `sparsenet.plots.save_all` uses.
EXPLANATIONS = {
    "accuracy_vs_sparsity": (
        "Accuracy vs sparsity",
        "Each marker is one pruning method after fine-tuning, at the sparsity it reached; the dashed line is "
        "the dense model. The faint curves prune the dense model in one shot to several sparsities without "
        "any fine-tuning: the distance between a curve and a marker is what fine-tuning bought back. "
        "Question: which granularity loses accuracy first as sparsity grows, and why would removing whole "
        "blocks or neurons hurt more than removing single weights?"),
    "speedup_vs_sparsity": (
        "Theoretical vs measured speedup",
        "Hollow circles: the speedup promised by counting multiply-adds (dense FLOPs / remaining FLOPs). "
        "Triangles and squares: the speedup measured on this machine at batch 1 and batch 64 (the two models "
        "timed in alternating rounds in the same run; the median over rounds of dense time / compiled time). "
        "The gap is the lesson: sparse kernels read indices, jump around in memory and vectorise less well, "
        "and at small batch the per-call overheads dominate. Question: which method comes closest to its "
        "promise, and is it the one with the most FLOPs removed?"),
    "layer_sparsity": (
        "Per-layer sparsity",
        "How much of each layer every method removed, and (the small text) which storage format the compiler "
        "chose for it after timing the candidates on this CPU. Global magnitude pruning decides per layer by "
        "itself; structured and N:M methods prune every layer alike. The last layer is often kept dense: it is "
        "small and its outputs are the classes."),
    "bytes_breakdown": (
        "Where the bytes go",
        "True bytes held in memory, split into the stored values, the column (or block) indices, the row "
        "pointers, int8 scales, and everything else (biases, BatchNorm). A sparse format pays for its indices: "
        "CSR with uint16 indices stores 6 bytes per kept float32 weight instead of 4, so it only saves memory "
        "below about 67% density; blocks share one index among many values."),
    "sparsity_patterns": (
        "Sparsity patterns",
        "The same layer pruned by each method (black = kept weight; rows are output units, columns inputs). "
        "Unstructured pruning leaves a salt-and-pepper pattern, blocks leave tiles, N:M keeps N of every M "
        "consecutive inputs in every row, structured pruning removes whole rows, which the compiler then cuts "
        "out of the matrix (and the matching columns of the next layer)."),
    "weight_histograms": (
        "Weight histograms before and after",
        "Distribution of the non-zero weights of one layer in the dense model and after unstructured magnitude "
        "pruning and fine-tuning. Magnitude pruning removes the middle of the distribution (the smallest "
        "weights); fine-tuning then moves the survivors. The exact zeros are counted in the legend, not drawn."),
    "sensitivity": (
        "Layer sensitivity",
        "Each layer pruned alone (one-shot magnitude, no fine-tuning) to increasing sparsity while the others "
        "stay dense. Layers whose curve stays flat can be pruned hard; a steep curve marks a sensitive layer "
        "(often the first or the last). sparsenet.prune.allocate turns such a scan into per-layer targets."),
    "gradual_schedule": (
        "Gradual pruning schedule",
        "Zhu & Gupta's cubic schedule: sparsity ramps from 0 to the target during the first three quarters of "
        "fine-tuning, fast at first and slowly at the end, and the network recovers between steps; the rest of "
        "training recovers accuracy. The accuracy curve was measured on the test split during training "
        "(for monitoring only: no decision used it)."),
}

_NOISE = 0.05  # measured speed ratios within 5% of 1 are called "as fast" (timing noise on a shared machine)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.7em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr.slower td.b1,tr.slower td.b64{color:#b00}
img{max-width:100%;border:1px solid #ddd}
.note{background:#f7f7f0;border-left:4px solid #cc9;padding:.5em 1em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.75em}
.small{font-size:.8em;color:#555}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return _e(value)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _img(path: str, alt: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(headers, rows, row_classes=None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{_e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _dense_table(dense: dict) -> str:
    rows = [[_td(_e(arch)), _td(_num(d.get("accuracy"), ".4f")), _td(_num(d.get("macro_f1"), ".4f")),
             _td(_num(d.get("params"), "d") if d.get("params") is not None else "–"),
             _td(_num(d.get("bytes"), "d") if d.get("bytes") is not None else "–"),
             _td(_num(d.get("train_seconds"), ".1f"))] for arch, d in dense.items()]
    return _table(["model", "accuracy", "macro F1", "parameters", "true bytes", "training s"], rows)


def _pruned_table(pruned: dict) -> str:
    headers = ["method", "model", "accuracy", "macro precision", "macro recall", "macro F1", "sparsity",
               "parameters", "true bytes", "bytes ratio", "FLOPs speedup", "measured ×, batch 1",
               "measured ×, batch 64", "formats"]
    rows, classes = [], []
    for name, r in pruned.items():
        sp = r.get("measured_speedup") or {}
        b, b0 = r.get("bytes"), r.get("bytes_before")
        ratio = f"{b / b0:.1%}" if b and b0 else "–"
        formats = ", ".join(f"{k}: {v}" for k, v in (r.get("formats") or {}).items())
        rows.append([_td(_e(name)), _td(_e(r.get("model", ""))), _td(_num(r.get("accuracy"), ".4f")),
                     _td(_num(r.get("macro_precision"), ".4f")), _td(_num(r.get("macro_recall"), ".4f")),
                     _td(_num(r.get("macro_f1"), ".4f")), _td(_num(r.get("sparsity"), ".3f")),
                     _td(f"{_num(r.get('params'), 'd')} / {_num(r.get('params_before'), 'd')}"),
                     _td(f"{_num(b, 'd')} / {_num(b0, 'd')}"), _td(ratio),
                     _td(_num(r.get("flops_speedup"), ".2f")), _td(_num(sp.get("batch1"), ".2f"), "b1"),
                     _td(_num(sp.get("batch64"), ".2f"), "b64"), _td(_e(formats))])
        classes.append("slower" if any(v is not None and v < 1 - _NOISE for v in sp.values()) else "")
    return _table(headers, rows, classes)


def _findings(figures: dict) -> list[str]:
    """Sentences chosen by the measured numbers of this run (never written in advance)."""
    pruned = figures.get("pruned") or {}
    dense = figures.get("dense") or {}
    out = []
    if not pruned:
        return out
    for batch in ("batch1", "batch64"):
        timed = {n: r["measured_speedup"][batch] for n, r in pruned.items()
                 if (r.get("measured_speedup") or {}).get(batch) is not None}
        if not timed:
            continue
        best = max(timed, key=timed.get)
        slower = [n for n, v in timed.items() if v < 1.0 - _NOISE]
        size = batch.replace("batch", "batch ")
        out.append(f"At {size}, the fastest method on this run was “{best}”: {timed[best]:.2f}× the dense "
                   f"model's speed, for a theoretical {pruned[best].get('flops_speedup', float('nan')):.2f}×.")
        if slower:
            out.append(f"At {size}, {len(slower)} of {len(timed)} methods ran more than {_NOISE:.0%} slower than "
                       f"dense: " + ", ".join(f"“{n}” ({timed[n]:.2f}×)" for n in slower) + ".")
        else:
            out.append(f"At {size}, no pruned model ran more than {_NOISE:.0%} slower than its dense original.")
    acc = {n: r.get("accuracy") for n, r in pruned.items() if r.get("accuracy") is not None}
    if acc:
        for n, a in acc.items():
            base = (dense.get(pruned[n].get("model")) or {}).get("accuracy")
            if base is None:
                continue
            diff = a - base
            if diff >= 0:
                out.append(f"“{n}” did not lose accuracy on this run ({a:.4f} vs dense {base:.4f}).")
            elif diff < -0.02:
                out.append(f"“{n}” lost {-100 * diff:.1f} points of accuracy on this run ({a:.4f} vs dense "
                           f"{base:.4f}).")
    explained = set()
    for n, r in pruned.items():
        by_format = r.get("bytes_by_format") or {}
        if by_format and r.get("bytes") and min(by_format.values()) < 0.8 * r["bytes"]:
            explained.add(n)
            spec = min(by_format, key=by_format.get)
            out.append(f"“{n}”: the compiler kept the formats that ran fastest here ({r['bytes']} bytes); stored "
                       f"as {spec} it would take {by_format[spec]} bytes. Speed and size can disagree.")
    grown = [n for n, r in pruned.items() if n not in explained and r.get("bytes") and r.get("bytes_before")
             and r["bytes"] >= r["bytes_before"]]
    for n in grown:
        out.append(f"“{n}” is not smaller in memory than the dense model: its format stores indices (or whole "
                   f"blocks) for what it keeps.")
    return out


def render_report(figures: dict, pngs: dict, *, title: str = "sparsenet: what pruning did") -> str:
    """The report as one HTML string (see `write_report`)."""
    if not isinstance(figures, dict):
        raise ConfigError(f"write_report: expected a dict of figures, found {type(figures).__name__}")
    pruned, dense = figures.get("pruned") or {}, figures.get("dense") or {}
    machine = figures.get("machine") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="small">Generated {_e(time.strftime("%Y-%m-%d %H:%M:%S"))} on {_e(platform.platform())}, '
        f"Python {_e(platform.python_version())}"
        + "".join(f", {_e(k)}: {_e(v)}" for k, v in machine.items()) + ".</p>",
        "<p>A dense network was trained on the embedded 8×8 digits (UCI, CC BY 4.0), then pruned in several "
        "ways, fine-tuned, and compiled so that every layer is really stored as a dense, CSR or block-sparse "
        "(BSR) matrix. Every number below was measured when this report was generated, on the machine named "
        "above: run the demo again and they will differ a little (timings more than accuracies).</p>",
    ]
    findings = _findings(figures)
    if findings:
        parts.append('<h2>What happened on this run</h2><div class="note"><ul>'
                     + "".join(f"<li>{_e(s)}</li>" for s in findings) + "</ul></div>")
    if dense:
        parts += ["<h2>Dense baselines</h2>", _dense_table(dense)]
    if pruned:
        parts += ["<h2>Pruned models</h2>",
                  '<p class="small">accuracy and macro precision / recall / F1 on the test split; sparsity over the '
                  "pruned layers' weights; parameters = non-zero parameters after / before; true bytes = every "
                  "array held (values + indices + pointers + biases) after / before; FLOPs speedup = dense "
                  "multiply-adds / remaining ones; measured × = dense time / pruned time on this machine "
                  "(red: more than 5% slower than dense).</p>",
                  _pruned_table(pruned)]
    for note in figures.get("notes") or []:
        parts.append(f'<p class="note">{_e(note)}</p>')
    for name, path in pngs.items():
        heading, text = EXPLANATIONS.get(name, (name.replace("_", " ").capitalize(), ""))
        parts.append(f"<h2>{_e(heading)}</h2>")
        if text:
            parts.append(f"<p>{_e(text)}</p>")
        parts.append(_img(path, heading))
    raw = json.dumps(figures, indent=1, default=_json_default)
    parts += ["<h2>Every figure (JSON)</h2>",
              f"<details><summary>show the raw figures ({len(raw)} characters)</summary><pre>{_e(raw)}</pre></details>",
              '<p class="small">Made by sparsenet. Re-run with <code>sparsenet demo</code>.</p>',
              "</body></html>"]
    return "\n".join(parts)


def write_report(figures: dict, pngs: dict, path, *, title: str = "sparsenet: what pruning did") -> str:
    """Write the self-contained HTML report of `figures` (a demo result) with the PNGs `pngs`
    ({plot name: file path}, embedded as base64 data URIs) to `path` atomically; return the path."""
    for name, p in pngs.items():
        if not os.path.isfile(p):
            raise SparsenetError(f"write_report: plot {name!r}: expected a PNG file at {p!r}, found none")
    text = render_report(figures, pngs, title=title)
    path = os.fspath(path)
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))
    return path
