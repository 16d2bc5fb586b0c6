"""The demo: train a dense model on the embedded digits, prune it several ways, compile each to real
formats, and report what every method did to accuracy, size and (measured) speed."""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np

from .data import load_dataset
from .io import save_model
from .metrics import classification_report
from .prune import compile as compile_model
from .prune import prune
from .prune.report import pruning_report
from .timing import median_time
from .train import fit, predict
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


def _speed(model, x, repeats):
    """Median seconds of one forward pass over `x` in eval mode."""
    model.eval()
    return median_time(lambda: model.forward(x), repeats=repeats, min_time=5e-3)


def run_demo(out_dir: str, *, quick: bool = False, seed: int = 0, quiet: bool = True, echo=print) -> dict:
    """Run the demo, write `demo.json` and the model files to `out_dir`, return the figures."""
    os.makedirs(out_dir, exist_ok=True)
    recipes = {k: RECIPES[k] for k in QUICK} if quick else RECIPES
    epochs = {"lenet300": 15 if quick else 40, "cnn": 30}
    finetune = 10 if quick else 30
    repeats = 3 if quick else 7
    datasets = {"lenet300": load_dataset("digits", seed=seed), "cnn": load_dataset("digits", seed=seed)}
    dense_models, results = {}, {"dense": {}, "pruned": {}}
    for arch in sorted({a for a, _ in recipes.values()}):
        ds = datasets[arch]
        model = build_model(arch, seed=seed)
        t0 = time.perf_counter()
        fit(model, ds.x_train, ds.y_train, epochs=epochs[arch], batch_size=32, seed=seed, quiet=quiet)
        rep = classification_report(ds.y_test, predict(model, ds.x_test), num_classes=ds.num_classes)
        dense_models[arch] = model
        results["dense"][arch] = {"accuracy": rep["accuracy"], "macro_f1": rep["macro"]["f1"],
                                  "train_seconds": round(time.perf_counter() - t0, 2)}
        save_model(model, os.path.join(out_dir, f"{arch}-dense.npz"))
        echo(f"dense {arch}: test accuracy {rep['accuracy']:.4f}")
    header = (f"{'method':<38}{'acc':>7}{'F1':>7}{'sparsity':>9}{'params':>9}{'bytes':>9}"
              f"{'FLOPs x':>8}{'b1 x':>7}{'b64 x':>7}")
    echo(header)
    for name, (arch, kwargs) in recipes.items():
        ds = datasets[arch]
        model = copy.deepcopy(dense_models[arch])
        result = prune(model, train_data=(ds.x_train, ds.y_train), finetune_epochs=finetune, seed=seed,
                       quiet=quiet, **kwargs)
        compiled = compile_model(model, "auto", batch_size=64)
        rep = classification_report(ds.y_test, predict(compiled, ds.x_test), num_classes=ds.num_classes)
        report = pruning_report(dense_models[arch], compiled)
        speed = {}
        for batch in (1, 64):
            x = ds.x_test[:batch]
            speed[f"batch{batch}"] = _speed(dense_models[arch], x, repeats) / _speed(compiled, x, repeats)
        t = report["totals"]
        row = {"model": arch, "accuracy": rep["accuracy"], "macro_precision": rep["macro"]["precision"],
               "macro_recall": rep["macro"]["recall"], "macro_f1": rep["macro"]["f1"],
               "sparsity": result.sparsity, "params": t["params_after"], "params_before": t["params_before"],
               "bytes": t["bytes_after"], "bytes_before": t["bytes_before"], "flops_speedup": t["flops_speedup"],
               "measured_speedup": speed, "formats": {r["name"]: r["format"] for r in report["layers"]},
               "layers": report["layers"]}
        results["pruned"][name] = row
        save_model(compiled, os.path.join(out_dir, f"{arch}-{len(results['pruned'])}.npz"))
        echo(f"{name:<38}{rep['accuracy']:>7.4f}{rep['macro']['f1']:>7.4f}{result.sparsity:>9.3f}"
             f"{t['params_after']:>9}{t['bytes_after']:>9}{t['flops_speedup']:>8.2f}"
             f"{speed['batch1']:>7.2f}{speed['batch64']:>7.2f}")
    path = os.path.join(out_dir, "demo.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
    os.replace(tmp, path)
    echo(f"speedups are measured on this machine (median of {repeats} runs, dense / pruned, same run); "
         f"figures written to {path}")
    return results
