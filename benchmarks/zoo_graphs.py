"""The zoo's graphs (resnet, mobilenet, transformer, recommender), dense and unpruned, against
onnxruntime on the same weights.

Issue 12 asks that sparsenet not be a slow runtime for dense graphs: each image model is trained for
one epoch (so that BatchNorm holds real statistics; the transformer and recommender keep their
seeded initial weights, which time the same), saved and loaded, and timed through
``sparsenet.load(path).predict(x)`` against onnxruntime running its ``export_onnx`` file, called back
to back in rotating order with no pause (`sparsenet.timing.compare`, settle=0), at batch 1 and 64,
then each alone (its own loop of 50 ms samples after a 0.3 s pause: each runtime's threads spin
after its calls and slow whatever runs next, so the rotation measures the pair).
The plan of each is printed: what runs as a kernel and what as a generic step.

    python benchmarks/zoo_graphs.py [--threads 2] [--rounds 9] [--json results/zoo-graphs.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from _harness import machine_info, numba_layer, threads, write_json
from models import _onnxruntime

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.plan import plan_for
from sparsenet.timing import compare

MODELS = ("resnet", "mobilenet", "transformer", "recommender")
ALONE_SAMPLE = 0.05  # seconds per timed sample of each runtime alone


def measure(name, n_threads, rounds, tmp):
    ds = load_dataset("digits")
    model = sn.build_model(name, seed=0)
    if name in ("resnet", "mobilenet"):
        sn.fit(model, ds.x_train, ds.y_train, epochs=1, quiet=True)
    path = os.path.join(tmp, f"{name}.safetensors")
    sn.save_model(model, path)
    loaded = sn.load(path)
    rows = []
    rng = np.random.default_rng(0)
    for batch in (1, 64):
        if name == "transformer":
            x = rng.integers(0, 2000, (batch, 32))
        elif name == "recommender":
            x = {"user": rng.integers(0, 671, batch), "item": rng.integers(0, 9066, batch)}
        else:
            x = np.ascontiguousarray(ds.x_test[:batch], dtype=np.float32)
        ort_run = _onnxruntime(loaded, x, n_threads, tmp)
        if isinstance(ort_run, dict):
            raise SystemExit(f"benchmarks/zoo_graphs.py needs onnxruntime: {ort_run['skipped']}")
        np.testing.assert_allclose(loaded.predict(x), ort_run()[0], rtol=1e-4, atol=1e-4)
        c = compare({"onnxruntime": ort_run, "sparsenet": lambda: loaded.predict(x)}, baseline="onnxruntime",
                    rounds=rounds, min_time=2e-3, settle=0.0)
        t = c.timings
        # each alone: a plain loop of its own calls (after the other's threads have gone quiet), as
        # an application that uses one runtime sees it; samples of 50 ms, so that a sample is a loop
        # of calls rather than the first one or two after the pause (a 2 ms sample of a 1.4 ms call
        # timed the second call after 0.3 s idle: 2.5 ms for the zoo ResNet at batch 64)
        alone = {name: compare({name: fn}, rounds=rounds, min_time=ALONE_SAMPLE, settle=0.3).timings[name]
                 for name, fn in (("onnxruntime", ort_run), ("sparsenet", lambda: loaded.predict(x)))}
        plan = plan_for(loaded, None if isinstance(x, dict) else x)
        kinds = [s.kind for s in plan.steps]
        row = {"model": name, "batch": batch, **{k: v.to_dict() for k, v in t.items()},
               "alone": {k: v.to_dict() for k, v in alone.items()},
               "steps": {k: kinds.count(k) for k in sorted(set(kinds))}, "plan": plan.describe()}
        rows.append(row)
        print(f"{name:9s} batch {batch:2d}: onnxruntime {t['onnxruntime'].median * 1e6:8.1f} us, sparsenet "
              f"{t['sparsenet'].median * 1e6:8.1f} us ({t['sparsenet'].speedup:.2f}x onnxruntime); alone "
              f"{alone['onnxruntime'].median * 1e6:8.1f} and {alone['sparsenet'].median * 1e6:8.1f} us "
              f"({alone['onnxruntime'].median / alone['sparsenet'].median:.2f}x); steps {row['steps']}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json")
    args = ap.parse_args()
    with threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        out = {"machine": machine_info(), "numba_layer": numba_layer(), "threads": args.threads,
               "rows": [r for name in MODELS for r in measure(name, args.threads, args.rounds, tmp)]}
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
