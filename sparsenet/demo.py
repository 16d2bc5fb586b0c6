"""The demo: train a dense model on the embedded digits, prune it several ways, compile each to real
formats, and report what every method did to accuracy, size and (measured) speed.

Writes to the output directory: ``demo.json`` (every figure), the model files, and, when matplotlib
is installed (``pip install 'sparsenet[plot]'``), PNG plots and one self-contained ``report.html``.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time

import numpy as np

from . import prune as _prune
from .data import load_dataset
from .io import save_model
from .io.atomic import atomic_writer
from .metrics import classification_report
from .prune import Importance, make_importance
from .prune import prune
from .prune.report import pruning_report
from .runtime import predict
from .summary import summarize
from .timing import compare
from .train import evaluate, fit
from .zoo import build_model

__all__ = ["run_demo", "RECIPES"]

# name -> (model, prune keyword arguments); fine-tuning epochs are set by the run
RECIPES = {
    "unstructured 90% (global magnitude)": ("lenet300", dict(method="magnitude", scope="global", sparsity=0.9)),
    "gradual 90% (Zhu & Gupta)": ("lenet300", dict(method="magnitude", scope="global", sparsity=0.9,
                                                   schedule="gradual")),
    "neurons 50% (structured)": ("lenet300", dict(method="magnitude", granularity="neuron", sparsity=0.5)),
    "blocks 4x4 80%": ("lenet300", dict(method="magnitude", granularity="block4x4", sparsity=0.8)),
    "2:4 (N:M)": ("lenet300", dict(method="magnitude", granularity="2:4")),
    "filters 50% (CNN, structured)": ("cnn", dict(method="magnitude", granularity="filter", sparsity=0.5,
                                                  exclude=("last",))),
}
QUICK = ("unstructured 90% (global magnitude)", "neurons 50% (structured)")
INT8_BASE = "unstructured 90% (global magnitude)"  # the recipe whose compiled model is quantised
# One-shot sweeps without fine-tuning (label -> granularity, scope, sparsities, the pattern's sparsity).
SWEEPS = {
    "unstructured (global)": ("unstructured", "global", (0.5, 0.7, 0.8, 0.9, 0.95), 0.9),
    "blocks 4x4": ("block4x4", "layer", (0.5, 0.7, 0.8, 0.9, 0.95), 0.8),
    "2:4 (N:M)": ("2:4", "layer", (0.5,), 0.5),
    "neurons": ("neuron", "layer", (0.25, 0.5, 0.7, 0.8, 0.9), 0.5),
}
PATTERN_LAYER, HISTOGRAM_LAYER = "3", "1"  # of lenet300: 100x300 (a wide picture) and 300x64 (most weights)


class _Monitored(Importance):
    """Wraps a criterion and measures accuracy on held-out data each time a schedule calls it, i.e.
    just before each pruning step: the accuracy-over-training curve of a gradual run."""

    def __init__(self, inner: Importance, val_data):
        self.inner, self.val_data, self.accuracy = inner, val_data, []
        self.name, self.needs_data, self.structured_only = inner.name, inner.needs_data, inner.structured_only

    def __call__(self, model, layers, data=None):
        self.accuracy.append(float(evaluate(model, *self.val_data)["accuracy"]))
        return self.inner(model, layers, data)


def _speedups(dense, compiled, x_test, repeats: int, pruned=None) -> dict:
    """{"batch1", "batch64"}: the speedup of the compiled model's `predict` over the dense one's
    (each through its compiled plan), the median of per-round ratios from `repeats` alternating
    rounds (`timing.compare`) so that a burst of load on a shared machine hits both alike, back to
    back with no pause, as a user's loop runs. `compiled` is the model compiled for batch 64; with
    `pruned`, batch 1 times `pruned` compiled with formats chosen by measurement for batch 1."""
    dense.eval()
    compiled.eval()
    per_batch = {1: _prune.compiled(pruned, "auto", batch_size=1) if pruned is not None else compiled,
                 64: compiled}
    out = {}
    for batch, model in per_batch.items():
        model.eval()
        x = x_test[:batch]
        # as a user's loop runs: each model's `predict` (its compiled plan), back to back, no pause
        c = compare({"dense": lambda: dense.predict(x), "compiled": lambda m=model: m.predict(x)},
                    baseline="dense", rounds=repeats, min_time=5e-3)
        out[f"batch{batch}"] = c["compiled"].speedup
    return out


def _bytes_by_format(model, granularity: str) -> dict:
    """Total true bytes of the pruned `model` stored in each fixed format (no timing)."""
    specs = ["dense", "csr"] + ([f"bsr{granularity[5:]}"] if granularity.startswith("block") else ["bsr4x4"])
    return {s: int(summarize(_prune.compiled(model, s))["totals"]["total_bytes"]) for s in specs}


def _row(arch, dense, compiled, ds, repeats, sparsity, pruned=None) -> dict:
    """Everything measured about one compiled model against its dense original (`pruned`: the model
    before compilation, compiled again for the batch-1 timing)."""
    from .plots import bytes_breakdown_data

    rep = classification_report(ds.y_test, predict(compiled, ds.x_test), num_classes=ds.num_classes)
    report = pruning_report(dense, compiled)
    t = report["totals"]
    return {"model": arch, "accuracy": rep["accuracy"], "macro_precision": rep["macro"]["precision"],
            "macro_recall": rep["macro"]["recall"], "macro_f1": rep["macro"]["f1"],
            "sparsity": sparsity,
            "params": t["params_after"], "params_before": t["params_before"],
            "bytes": t["bytes_after"], "bytes_before": t["bytes_before"], "flops_speedup": t["flops_speedup"],
            "measured_speedup": _speedups(dense, compiled, ds.x_test, repeats, pruned),
            "formats": {r["name"]: r["format"] for r in report["layers"]},
            "bytes_breakdown": bytes_breakdown_data(compiled), "layers": report["layers"]}


def _sweeps(dense, ds, seed) -> tuple[dict, dict, dict]:
    """One-shot pruning of copies of `dense` (no fine-tuning): accuracy curves, the pruned layer's
    pattern per granularity, and the weights of the unstructured 90% copy."""
    curves, patterns, oneshot_weights = {}, {}, None
    for label, (gran, scope, levels, shown) in SWEEPS.items():
        accs = []
        for s in levels:
            model = copy.deepcopy(dense)
            result = prune(model, method="magnitude", granularity=gran, scope=scope, sparsity=s, seed=seed)
            accs.append(float(evaluate(model, ds.x_test, ds.y_test)["accuracy"]))
            if s == shown:
                mask = result.masks[PATTERN_LAYER].copy()
                if gran in ("neuron", "structured"):  # inputs from removed units are dead too
                    mask &= result.masks[HISTOGRAM_LAYER].any(axis=1)[None, :]
                patterns[f"{label} {result.sparsity:.0%}"] = mask
                if gran == "unstructured":
                    oneshot_weights = model.layers[int(HISTOGRAM_LAYER)].weight.to_dense()
        curves[label] = {"sparsities": list(levels), "accuracy": accs}
    return curves, patterns, oneshot_weights


def _echo_row(echo, name, row) -> None:
    s = row["measured_speedup"]
    echo(f"{name:<38}{row['accuracy']:>7.4f}{row['macro_f1']:>7.4f}{row['sparsity']:>9.3f}"
         f"{row['params']:>9}{row['bytes']:>9}{row['flops_speedup']:>8.2f}{s['batch1']:>7.2f}{s['batch64']:>7.2f}")


def run_demo(out_dir: str, *, quick: bool = False, seed: int = 0, quiet: bool = True, echo=print) -> dict:
    """Run the demo, write `demo.json`, the model files and (with matplotlib) the PNG plots and
    `report.html` to `out_dir`; return the figures."""
    import numba

    from . import plots
    from .prune import sensitivity_scan

    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    recipes = {k: RECIPES[k] for k in QUICK} if quick else RECIPES
    epochs = {"lenet300": 15 if quick else 40, "cnn": 30}
    finetune = 10 if quick else 30
    repeats = 3 if quick else 7
    datasets = {"lenet300": load_dataset("digits", seed=seed), "cnn": load_dataset("digits", seed=seed)}
    dense_models = {}
    results = {"dense": {}, "pruned": {}, "dense_bytes_breakdown": {}, "notes": []}
    for arch in sorted({a for a, _ in recipes.values()}):
        ds = datasets[arch]
        model = build_model(arch, seed=seed)
        t0 = time.perf_counter()
        fit(model, ds.x_train, ds.y_train, epochs=epochs[arch], batch_size=32, seed=seed, quiet=quiet)
        rep = classification_report(ds.y_test, predict(model, ds.x_test), num_classes=ds.num_classes)
        dense_models[arch] = model
        totals = summarize(model)["totals"]
        results["dense"][arch] = {"accuracy": rep["accuracy"], "macro_f1": rep["macro"]["f1"],
                                  "train_seconds": round(time.perf_counter() - t0, 2),
                                  "macro_precision": rep["macro"]["precision"], "macro_recall": rep["macro"]["recall"],
                                  "params": totals["params"], "bytes": totals["total_bytes"], "epochs": epochs[arch]}
        results["dense_bytes_breakdown"][arch] = plots.bytes_breakdown_data(model)
        save_model(model, os.path.join(out_dir, f"{arch}-dense.safetensors"))
        echo(f"dense {arch}: test accuracy {rep['accuracy']:.4f}")

    # teaching figures on the dense MLP: one-shot sweeps, patterns, per-layer sensitivity
    ds, dense = datasets["lenet300"], dense_models["lenet300"]
    curves, patterns, oneshot_weights = _sweeps(dense, ds, seed)
    results["sweep"] = curves
    results["patterns"] = {"layer": PATTERN_LAYER, "shape": list(dense.layers[int(PATTERN_LAYER)].weight.shape),
                           "note": "one-shot magnitude pruning of the dense model, before fine-tuning",
                           "masks": {k: plots.mask_to_rows(m) for k, m in patterns.items()}}
    results["sensitivity"] = sensitivity_scan(
        dense, (ds.x_test, ds.y_test), sparsities=(0.0, 0.5, 0.8, 0.9, 0.95) if quick else
        (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98), time_layers=False, quiet=quiet)

    header = (f"{'method':<38}{'acc':>7}{'F1':>7}{'sparsity':>9}{'params':>9}{'bytes':>9}"
              f"{'FLOPs x':>8}{'b1 x':>7}{'b64 x':>7}")
    echo(header)
    compiled_models = {}
    for name, (arch, kwargs) in recipes.items():
        ds = datasets[arch]
        model = copy.deepcopy(dense_models[arch])
        monitor = None
        if kwargs.get("schedule") == "gradual":
            monitor = _Monitored(make_importance(kwargs["method"], seed), (ds.x_test, ds.y_test))
            kwargs = dict(kwargs, method=monitor)
        result = prune(model, train_data=(ds.x_train, ds.y_train), val_data=(ds.x_test, ds.y_test),
                       finetune_epochs=finetune, seed=seed, quiet=quiet, **kwargs)
        compiled = _prune.compiled(model, "auto", batch_size=64)
        compiled_models[name] = compiled
        row = _row(arch, dense_models[arch], compiled, ds, repeats, result.sparsity, pruned=model)
        row.update(method=result.method, granularity=result.granularity,
                   schedule=result.schedule, history=result.history,
                   bytes_by_format=_bytes_by_format(model, result.granularity))
        if monitor is not None:
            steps_per_epoch = -(-len(ds.x_train) // 32)
            steps = [int(e["stage"].split()[1]) for e in result.history if e["stage"].startswith("step ")]
            row.update(steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * finetune,
                       accuracy_over_training={"step": steps, "accuracy": monitor.accuracy[:len(steps)],
                                               "note": "test accuracy just before each pruning step"})
        results["pruned"][name] = row
        save_model(compiled, os.path.join(out_dir, f"{arch}-{len(results['pruned'])}.safetensors"))
        _echo_row(echo, name, row)

    if not quick and INT8_BASE in compiled_models:
        try:
            from .quantize import quantize_model
        except ImportError:
            results["notes"].append("int8 row skipped: sparsenet.quantize is not available in this version")
        else:
            arch = RECIPES[INT8_BASE][0]
            quantized = quantize_model(compiled_models[INT8_BASE])
            base = results["pruned"][INT8_BASE]
            row = _row(arch, dense_models[arch], quantized, datasets[arch], repeats, base["sparsity"])
            row.update(method=base["method"], granularity=base["granularity"],
                       schedule=base["schedule"], quantization=quantized.meta["quantization"]["scheme"])
            name = f"{INT8_BASE.split(' (')[0]} + int8"
            results["pruned"][name] = row
            save_model(quantized, os.path.join(out_dir, f"{arch}-{len(results['pruned'])}-int8.safetensors"))
            _echo_row(echo, name, row)
    elif quick:
        results["notes"].append("--quick: two methods only (no gradual, block, N:M, CNN or int8 rows); "
                                "run without --quick for all of them")

    unstructured = compiled_models.get("unstructured 90% (global magnitude)")
    if unstructured is not None:
        weights = {"dense": dense.layers[int(HISTOGRAM_LAYER)].weight.to_dense()}
        if oneshot_weights is not None:
            weights["pruned 90%, before fine-tuning"] = oneshot_weights
        weights["pruned 90%, fine-tuned"] = unstructured.layers[int(HISTOGRAM_LAYER)].weight.to_dense()
        results["histograms"] = plots.weight_histogram_data(weights) | {"layer": HISTOGRAM_LAYER}

    results["machine"] = {"cpu_count": os.cpu_count(), "numba_threads": int(numba.get_num_threads()),
                          "numpy": np.__version__, "numba": numba.__version__, "python": platform.python_version()}
    results["settings"] = {"quick": quick, "seed": seed, "epochs": epochs, "finetune_epochs": finetune,
                           "timing_repeats": repeats}
    results["seconds"] = round(time.perf_counter() - start, 1)
    _write_outputs(results, out_dir, repeats, echo)
    return results


def _write_outputs(results: dict, out_dir: str, repeats: int, echo) -> None:
    """demo.json always; the PNG plots and report.html when matplotlib is installed."""
    from . import plots

    path = os.path.join(out_dir, "demo.json")
    with atomic_writer(path, "w") as f:
        json.dump(results, f, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
    echo(f"speedups are measured on this machine (median of the ratios dense / pruned over {repeats} alternating "
         f"rounds, formats chosen by measurement for each batch); figures written to {path}")
    if plots.available():
        from .html_report import write_report

        pngs = plots.save_all(results, out_dir)
        report = write_report(results, pngs, os.path.join(out_dir, "report.html"))
        echo(f"report: {os.path.abspath(report)} (open it in a browser; {len(pngs)} plots also saved as PNG)")
    else:
        echo("no plots or HTML report: matplotlib is not installed (pip install 'sparsenet[plot]')")
