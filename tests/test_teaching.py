"""The teaching layer: plots, the self-contained HTML report, and the demo's report (quick run).

Plots need matplotlib (the `plot` extra): those tests skip without it.
"""

from __future__ import annotations

import copy
import json
import re
import sys

import numpy as np
import pytest

import sparsenet as sn
from sparsenet import plots
from sparsenet.errors import SparsenetError
from sparsenet.html_report import render_report, write_report
from sparsenet.summary import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(sparsity, acc, *, model="lenet300", formats=("csr", "csr", "dense")):
    layers = [{"name": n, "kind": "Linear", "sparsity": sparsity, "format": f, "shape_before": [4, 4],
               "shape_after": [4, 4]} for n, f in zip(("1", "3", "5"), formats)]
    return {"model": model, "accuracy": acc, "macro_precision": acc, "macro_recall": acc, "macro_f1": acc,
            "sparsity": sparsity, "params": 100, "params_before": 1000, "bytes": 800, "bytes_before": 4000,
            "flops_speedup": 1 / (1 - sparsity), "measured_speedup": {"batch1": 0.8, "batch64": 1.7},
            "formats": {l["name"]: l["format"] for l in layers}, "layers": layers,
            "bytes_breakdown": {"values": 400, "indices": 200, "pointers": 100, "scales": 0, "other": 100},
            "bytes_by_format": {"dense": 4000, "csr": 800, "bsr4x4": 600}}


@pytest.fixture
def figures():
    """A small demo-shaped result: every section the report and the plots read."""
    rng = np.random.default_rng(0)
    gradual = _row(0.9, 0.96) | {
        "schedule": "gradual", "steps_per_epoch": 10, "total_steps": 40,
        "history": [{"stage": f"step {s}", "target": t, "sparsity": t} for s, t in ((5, 0.3), (10, 0.6), (15, 0.9))]
        + [{"stage": "final", "sparsity": 0.9, "val_accuracy": 0.96}],
        "accuracy_over_training": {"step": [5, 10, 15], "accuracy": [0.97, 0.95, 0.94]}}
    masks = {"unstructured": rng.random((12, 20)) > 0.9, "blocks": np.kron(rng.random((3, 5)) > 0.5, np.ones((4, 4)))}
    return {
        "dense": {"lenet300": {"accuracy": 0.975, "macro_f1": 0.974, "train_seconds": 1.0}},
        "dense_bytes_breakdown": {"lenet300": {"values": 4000, "indices": 0, "pointers": 0, "scales": 0, "other": 40}},
        "pruned": {"unstructured 90%": _row(0.9, 0.95), "gradual 90%": gradual,
                   "blocks 4x4 80%": _row(0.8, 0.93, formats=("dense", "dense", "dense"))},
        "sweep": {"unstructured": {"sparsities": [0.5, 0.9], "accuracy": [0.9, 0.3]},
                  "2:4": {"sparsities": [0.5], "accuracy": [0.95]}},
        "patterns": {"layer": "3", "masks": {k: plots.mask_to_rows(v) for k, v in masks.items()}},
        "histograms": plots.weight_histogram_data({"dense": rng.standard_normal(200),
                                                   "pruned": rng.standard_normal(200) * (rng.random(200) > 0.8)}),
        "sensitivity": {"baseline_accuracy": 0.97, "method": "magnitude", "granularity": "unstructured",
                        "sparsities": [0.0, 0.5, 0.9], "batch_size": 64, "formats": ["dense", "csr"],
                        "layers": {"1": {"kind": "Linear", "shape": [300, 64], "params": 19200,
                                         "accuracy": [0.97, 0.96, 0.8], "reached": [0.0, 0.5, 0.9],
                                         "latency_us": {"dense": [40, 40, 40], "csr": [90, 50, 20]}}}},
        "notes": ["a <note> & more"],
        "machine": {"cpu_count": 2},
    }


# -- data helpers (no matplotlib) ------------------------------------------------------------------
def test_weight_histogram_data_counts_every_weight_once():
    w = np.array([0.0, 0.0, -1.0, 0.5, 1.0, 0.25])
    d = plots.weight_histogram_data({"a": w, "b": np.ones(3)}, bins=4)
    assert len(d["edges"]) == 5 and d["edges"][0] == -1.0 and d["edges"][-1] == 1.0
    assert sum(d["counts"]["a"]) + d["zeros"]["a"] == d["size"]["a"] == 6
    assert d["zeros"] == {"a": 2, "b": 0}
    d = plots.weight_histogram_data({"g": np.array([0.2, 0.4, 1.0])}, bins=2, symmetric=False)
    assert d["edges"][0] == pytest.approx(0.2) and sum(d["counts"]["g"]) == 3
    json.dumps(d)  # JSON-ready


def test_mask_rows_round_trip():
    m = np.random.default_rng(1).random((5, 7)) > 0.5
    rows = plots.mask_to_rows(m)
    assert rows[0] == "".join("1" if v else "0" for v in m[0])
    np.testing.assert_array_equal(plots.rows_to_mask(rows), m)
    with pytest.raises(SparsenetError, match="2-D"):
        plots.mask_to_rows(np.ones(3, bool))


def test_bytes_breakdown_sums_to_true_bytes():
    model = sn.build_model("lenet300", seed=0)
    w = model.layers[1].weight.to_dense()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    model.layers[1].weight = sn.CSR.from_dense(w)
    model.layers[3].weight = sn.BSR.from_dense(model.layers[3].weight.to_dense(), blocksize=(4, 4))
    b = plots.bytes_breakdown_data(model)
    assert sum(b.values()) == summarize(model)["totals"]["total_bytes"]
    csr, bsr = model.layers[1].weight, model.layers[3].weight
    assert b["indices"] == csr.indices.nbytes + bsr.indices.nbytes
    assert b["pointers"] == csr.indptr.nbytes + bsr.indptr.nbytes
    assert b["scales"] == 0 and b["other"] == sum(l.bias.data.nbytes for l in model.layers if hasattr(l, "bias"))


def test_bytes_breakdown_counts_int8_scales():
    quantize = pytest.importorskip("sparsenet.quantize")
    q = quantize.quantize_model(sn.build_model("lenet300", seed=0))
    b = plots.bytes_breakdown_data(q)
    assert b["scales"] == 4 * (300 + 100 + 10) and b["values"] == 64 * 300 + 300 * 100 + 100 * 10
    assert sum(b.values()) == summarize(q)["totals"]["total_bytes"]


def test_plots_without_matplotlib_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not plots.available()
    with pytest.raises(SparsenetError, match=r"pip install 'sparsenet\[plot\]'"):
        plots.plot_sparsity_patterns({"a": np.ones((2, 2), bool)})


# -- plots ------------------------------------------------------------------------------------------
PLOTS = [
    ("accuracy_vs_sparsity", lambda f: plots.plot_accuracy_vs_sparsity(f)),
    ("speedup_vs_sparsity", lambda f: plots.plot_speedup_vs_sparsity(f)),
    ("layer_sparsity", lambda f: plots.plot_layer_sparsity(f)),
    ("layer_sparsity_rows_only", lambda f: plots.plot_layer_sparsity(f["pruned"])),
    ("weight_histograms", lambda f: plots.plot_weight_histograms(f["histograms"])),
    ("weight_histograms_raw", lambda f: plots.plot_weight_histograms({"w": np.arange(-3.0, 4.0)})),
    ("sparsity_patterns", lambda f: plots.plot_sparsity_patterns(f["patterns"]["masks"])),
    ("sparsity_patterns_tall", lambda f: plots.plot_sparsity_patterns({"t": np.eye(30, 6, dtype=bool)})),
    ("sensitivity", lambda f: plots.plot_sensitivity(f["sensitivity"])),
    ("gradual_schedule", lambda f: plots.plot_gradual_schedule(f["pruned"]["gradual 90%"])),
    ("gradual_schedule_history_only", lambda f: plots.plot_gradual_schedule(f["pruned"]["gradual 90%"]["history"])),
    ("bytes_breakdown", lambda f: plots.plot_bytes_breakdown(f)),
    ("latency_vs_sparsity", lambda f: plots.plot_latency_vs_sparsity(
        {"sparsities": [0, 0.5, 0.9], "dense": 10.0, "series": {"csr": [30, 15, 4]}})),
    ("accuracy_history", lambda f: plots.plot_accuracy_history(
        {"a": [{"stage": "x", "val_accuracy": 0.5}, {"stage": "y", "val_accuracy": 0.9}], "b": [{"stage": "x"}]})),
    ("curves", lambda f: plots.plot_curves([1, 2, 4], {"s": [1, 2, 3]}, xlabel="x", ylabel="y", hline=1, logx=True)),
    ("roofline", lambda f: plots.plot_roofline({"k": [(0.3, 2.0), (8.0, 30.0)]}, peak_gflops=50.0,
                                               bandwidth_gbs={"cache": 40.0, "RAM": 10.0})),
]


@pytest.mark.parametrize("name,draw", PLOTS, ids=[p[0] for p in PLOTS])
def test_every_plot_returns_a_figure(figures, name, draw, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = draw(figures)
    assert isinstance(fig, Figure) and fig.axes
    path = plots.save_png(fig, tmp_path / f"{name}.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_plots_do_not_touch_pyplot(figures):
    pytest.importorskip("matplotlib")
    plots.plot_accuracy_vs_sparsity(figures)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()  # no figure left open in pyplot's global state


def test_save_all_draws_what_the_figures_support(figures, tmp_path):
    pytest.importorskip("matplotlib")
    pngs = plots.save_all(figures, tmp_path)
    assert set(pngs) == {"accuracy_vs_sparsity", "speedup_vs_sparsity", "layer_sparsity", "bytes_breakdown",
                         "sparsity_patterns", "weight_histograms", "sensitivity", "gradual_schedule"}
    assert all(open(p, "rb").read(8) == PNG_MAGIC for p in pngs.values())
    minimal = {"dense": {}, "pruned": {"m": _row(0.5, 0.9)}}
    assert set(plots.save_all(minimal, tmp_path / "min")) == {"accuracy_vs_sparsity", "speedup_vs_sparsity",
                                                                "layer_sparsity", "bytes_breakdown"}


def test_plot_inputs_are_checked():
    pytest.importorskip("matplotlib")
    with pytest.raises(SparsenetError, match="expected"):
        plots.plot_speedup_vs_sparsity([1, 2])
    with pytest.raises(SparsenetError, match="at least one mask"):
        plots.plot_sparsity_patterns({})
    with pytest.raises(SparsenetError, match="positive"):
        plots.plot_roofline({}, peak_gflops=1.0, bandwidth_gbs=0.0)


# -- HTML report ------------------------------------------------------------------------------------
def test_report_is_self_contained_and_escapes_text(figures, tmp_path):
    pytest.importorskip("matplotlib")
    evil = '<script>alert("x")</script>'
    figures["pruned"][evil] = _row(0.5, 0.9)
    pngs = plots.save_all(figures, tmp_path)
    path = write_report(figures, pngs, tmp_path / "report.html")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert evil not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "a &lt;note&gt; &amp; more" in text
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    for name in ("unstructured 90%", "0.9500", "report"):  # the tables hold the figures
        assert name in text


def test_report_sentences_follow_the_figures(figures):
    text = render_report(figures, {})
    assert "slower than dense" in text  # every row's batch-1 speedup is 0.8
    assert "stored as bsr4x4 it would take 600 bytes" in text  # the block row kept dense formats
    figures["pruned"] = {"fast": _row(0.9, 0.99) | {"measured_speedup": {"batch1": 2.0, "batch64": 3.0}}}
    text = render_report(figures, {})
    assert "no pruned model ran more than 5% slower" in text and "did not lose accuracy" in text


def test_report_rejects_missing_pngs_and_bad_figures(tmp_path):
    with pytest.raises(SparsenetError, match="expected a PNG file"):
        write_report({"dense": {}, "pruned": {}}, {"x": str(tmp_path / "missing.png")}, tmp_path / "r.html")
    with pytest.raises(SparsenetError, match="dict of figures"):
        render_report([1], {})


# -- demo -------------------------------------------------------------------------------------------
def test_demo_outputs_without_matplotlib_write_json_and_a_note(figures, tmp_path, monkeypatch):
    from sparsenet import demo

    monkeypatch.setattr(plots, "available", lambda: False)
    lines = []
    demo._write_outputs(figures, str(tmp_path), 3, lines.append)
    assert json.loads((tmp_path / "demo.json").read_text())["pruned"].keys() == figures["pruned"].keys()
    assert not (tmp_path / "report.html").exists()
    assert "pip install 'sparsenet[plot]'" in lines[-1]


def test_demo_int8_row_measures_the_quantized_model():
    quantize = pytest.importorskip("sparsenet.quantize")
    from sparsenet import demo
    from sparsenet.data import load_dataset
    from sparsenet.prune import compiled, prune

    ds = load_dataset("digits")
    dense = sn.build_model("lenet300", seed=0)
    pruned = copy.deepcopy(dense)
    prune(pruned, sparsity=0.9, scope="global")
    q = quantize.quantize_model(compiled(pruned, "csr"))
    row = demo._row("lenet300", dense, q, ds, 1, 0.9)
    assert set(row["formats"].values()) == {"qcsr"}
    assert row["bytes"] < row["bytes_before"] / 8 and row["bytes_breakdown"]["scales"] > 0
    assert set(row["measured_speedup"]) == {"batch1", "batch64"}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    pytest.importorskip("matplotlib")
    from sparsenet.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    lines = []
    figures = run_demo(str(out), quick=True, quiet=True, echo=lines.append)
    return out, figures, lines


def test_demo_quick_writes_a_self_contained_report(quick_demo):
    out, figures, lines = quick_demo
    report = out / "report.html"
    assert report.exists() and str(report.resolve()) in lines[-1]
    text = report.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and not re.search(r"""(src|href)\s*=\s*["']?https?:""", text, re.I)
    for name in ("accuracy_vs_sparsity", "speedup_vs_sparsity", "layer_sparsity", "bytes_breakdown",
                 "sparsity_patterns", "weight_histograms", "sensitivity"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    for name in figures["pruned"]:
        assert name in text


def test_demo_quick_figures_feed_every_plot(quick_demo):
    out, figures, _ = quick_demo
    saved = json.loads((out / "demo.json").read_text())
    assert {"dense", "pruned", "sweep", "patterns", "sensitivity", "histograms", "machine"} <= set(saved)
    for row in saved["pruned"].values():
        assert sum(row["bytes_breakdown"].values()) == row["bytes"]
        assert row["history"] and "val_accuracy" in row["history"][-1]
        assert 0 < row["macro_precision"] <= 1 and 0 < row["macro_recall"] <= 1
    masks = {k: plots.rows_to_mask(v) for k, v in saved["patterns"]["masks"].items()}
    assert all(m.shape == (100, 300) for m in masks.values())
    neurons = next(m for k, m in masks.items() if k.startswith("neurons"))
    assert (~neurons.any(axis=1)).sum() >= 40  # half the units of layer 3 are gone: whole empty rows
