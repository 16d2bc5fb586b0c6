"""Compiled plans against onnxruntime, through the public API, with no pause between candidates.

What issue 11 asks, measured as a user's loop runs: every candidate is called back to back, in
rotating order (`sparsenet.timing.compare` with settle=0), so that threads left spinning by one
candidate (OpenBLAS, onnxruntime) hit the next one as they would in an application.

1. The zoo LeNet-300-100 pruned to 90 % (global magnitude), compiled with "auto" formats, saved and
   loaded: ``sparsenet.load(path).predict(x)`` against the dense model the same way and against
   onnxruntime running the exported dense model, at batch 1 and 64. Beside it, the time of the
   plan's kernels alone (its bound calls, without the Python around them): the difference is the
   plan's per-call overhead.
2. The zoo CNN with half its filters removed against the dense CNN and onnxruntime (dense), the same
   way, at batch 1 and 64.
3. A 4096 x 4096 layer at 90 % in CSR against numpy's dense product, alternating with no pause, at
   batch 1 and 64 (``w @ x`` then ``csr @ x``, what a user's own comparison does).
4. Two thread pools on two cores: the dense LeNet (its batch-64 plan calls BLAS) timed right after
   the pruned one (parallel Numba kernels), and the other way round, against each alone: Numba's
   OpenMP workers spin for milliseconds after a parallel kernel, OpenBLAS's after a threaded call.

    python benchmarks/plan.py [--threads 2] [--rounds 9] [--json results/plan.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from _harness import machine_info, numba_layer, threads, write_json
from models import _onnxruntime

import sparsenet as sn
from sparsenet.formats import CSR
from sparsenet.plan import plan_for
from sparsenet.prune import compiled, prune
from sparsenet.timing import SETTLE_SECONDS, compare


def _saved_and_loaded(dense, pruned, batch, n_threads, tmp):
    """(dense, pruned compiled with "auto" for `batch`) saved and loaded as a user would, an input
    batch, and onnxruntime running the exported dense model (the model sweep's peer, same options)."""
    sn.save_model(dense, os.path.join(tmp, "dense.safetensors"))
    sn.save_model(compiled(pruned, "auto", batch_size=batch), os.path.join(tmp, "pruned.safetensors"))
    d = sn.load(os.path.join(tmp, "dense.safetensors"))
    p = sn.load(os.path.join(tmp, "pruned.safetensors"))
    x = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
    ort_run = _onnxruntime(dense, x, n_threads, tmp)
    if isinstance(ort_run, dict):
        raise SystemExit(f"benchmarks/plan.py needs onnxruntime: {ort_run['skipped']}")
    np.testing.assert_allclose(d.predict(x), ort_run()[0], rtol=1e-4, atol=1e-4)
    return d, p, x, ort_run


def lenet(n_threads, rounds, tmp):
    dense = sn.build_model("lenet300", seed=0)
    pruned = sn.build_model("lenet300", seed=0)
    prune(pruned, method="magnitude", sparsity=0.9, scope="global")
    rows = []
    for batch in (1, 64):
        d, p, x, ort_run = _saved_and_loaded(dense, pruned, batch, n_threads, tmp)
        kern = plan_for(p, x).kernels_only(x)
        cands = {"onnxruntime dense": ort_run, "sparsenet dense": lambda: d.predict(x),
                 "sparsenet 90% auto": lambda: p.predict(x), "plan kernels only": kern}
        for settle in (0.0, SETTLE_SECONDS):
            c = compare(cands, baseline="onnxruntime dense", rounds=rounds, min_time=2e-3, settle=settle)
            row = {"batch": batch, "settle": settle, "formats": [getattr(m, "weight").spec for m in p.layers
                                                                   if hasattr(m, "weight")],
                   "plan": plan_for(p, x).describe(), **{k: t.to_dict() for k, t in c.timings.items()}}
            row["overhead_us"] = (c["sparsenet 90% auto"].median - c["plan kernels only"].median) * 1e6
            row["vs_sparsenet_dense"] = float(np.median(np.array(c["sparsenet dense"].samples) /
                                                        np.array(c["sparsenet 90% auto"].samples)))
            rows.append(row)
            t = c.timings
            print(f"LeNet-300-100 batch {batch:2d} {'no pause' if not settle else 'pause   '}: "
                  f"onnxruntime dense {t['onnxruntime dense'].median * 1e6:7.1f} us, sparsenet dense "
                  f"{t['sparsenet dense'].median * 1e6:7.1f} us, 90% auto {t['sparsenet 90% auto'].median * 1e6:6.1f} us "
                  f"({t['sparsenet 90% auto'].speedup:.2f}x onnxruntime, {row['vs_sparsenet_dense']:.2f}x sparsenet "
                  f"dense), kernels {t['plan kernels only'].median * 1e6:5.1f} us, overhead {row['overhead_us']:.1f} us")
    return rows


def cnn(n_threads, rounds, tmp):
    """The zoo CNN with half its filters removed (magnitude, structured; `compiled` removes them and
    picks formats) against the dense CNN and onnxruntime running the dense one, through
    ``load(path).predict``, no pause."""
    dense = sn.build_model("cnn", seed=0)
    pruned = sn.build_model("cnn", seed=0)
    prune(pruned, method="magnitude", granularity="filter", sparsity=0.5)
    rows = []
    for batch in (1, 64):
        d, p, x, ort_run = _saved_and_loaded(dense, pruned, batch, n_threads, tmp)
        c = compare({"onnxruntime dense": ort_run, "sparsenet dense": lambda: d.predict(x),
                     "sparsenet filters 50%": lambda: p.predict(x)}, baseline="onnxruntime dense",
                    rounds=rounds, min_time=2e-3, settle=0.0)
        t = c.timings
        row = {"batch": batch, "plan": plan_for(p, x).describe(), **{k: v.to_dict() for k, v in t.items()},
               "vs_sparsenet_dense": float(np.median(np.array(t["sparsenet dense"].samples) /
                                                     np.array(t["sparsenet filters 50%"].samples)))}
        rows.append(row)
        print(f"CNN batch {batch:2d} no pause: onnxruntime dense {t['onnxruntime dense'].median * 1e6:7.1f} us, "
              f"sparsenet dense {t['sparsenet dense'].median * 1e6:7.1f} us ({t['sparsenet dense'].speedup:.2f}x), "
              f"filters 50% {t['sparsenet filters 50%'].median * 1e6:7.1f} us ({t['sparsenet filters 50%'].speedup:.2f}x "
              f"onnxruntime, {row['vs_sparsenet_dense']:.2f}x sparsenet dense)")
    return rows


def layer_after_blas(rounds):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4096, 4096)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    c = CSR.from_dense(w)
    rows = []
    for batch in (1, 64):
        x = rng.standard_normal((4096, batch)).astype(np.float32)
        np.testing.assert_allclose(c @ x, w @ x, rtol=1e-3, atol=1e-3)
        cmp = compare({"numpy dense": lambda: w @ x, "csr": lambda: c @ x}, baseline="numpy dense",
                      rounds=rounds, min_time=2e-2, settle=0.0)
        rows.append({"batch": batch, **{k: t.to_dict() for k, t in cmp.timings.items()}})
        print(f"4096x4096 90% batch {batch:2d}, no pause: numpy dense {cmp['numpy dense'].median * 1e3:.2f} ms, "
              f"csr {cmp['csr'].median * 1e3:.2f} ms: {cmp['csr'].speedup:.2f}x "
              f"(rounds {min(cmp['csr'].speedups):.2f}-{max(cmp['csr'].speedups):.2f})")
    return rows


def pools(rounds, batch=64, calls=200):
    """Medians (us) of one model's predict timed right after the other's, and of each alone."""
    import time

    dense = sn.build_model("lenet300", seed=0)
    pruned = sn.build_model("lenet300", seed=0)
    prune(pruned, method="magnitude", sparsity=0.9, scope="global")
    pruned = compiled(pruned, "auto", batch_size=batch)
    x = np.random.default_rng(0).standard_normal((batch, 1, 8, 8)).astype(np.float32)

    def after(first, second):
        ts = []
        for _ in range(calls):
            first.predict(x)
            t0 = time.perf_counter()
            second.predict(x)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts) * 1e6)

    def alone(model):
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            model.predict(x)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts) * 1e6)

    res = {k: [] for k in ("dense alone", "dense after pruned", "pruned alone", "pruned after dense")}
    for _ in range(max(1, rounds // 3)):
        res["dense alone"].append(alone(dense))
        res["dense after pruned"].append(after(pruned, dense))
        res["pruned alone"].append(alone(pruned))
        res["pruned after dense"].append(after(dense, pruned))
    row = {"batch": batch, **{k: float(np.median(v)) for k, v in res.items()}}
    print(f"LeNet-300-100 batch {batch}, medians (us): " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()
                                                                   if k != "batch"))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json")
    args = ap.parse_args()
    with threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        out = {"machine": machine_info(), "numba_layer": numba_layer(), "threads": args.threads,
               "lenet": lenet(args.threads, args.rounds, tmp), "cnn": cnn(args.threads, args.rounds, tmp),
               "layer_after_blas": layer_after_blas(args.rounds),
               "pools": pools(args.rounds)}
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
