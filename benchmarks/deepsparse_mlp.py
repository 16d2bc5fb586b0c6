"""The MLP 1024-4096-4096-10 (ReLU) at 90 % unstructured against DeepSparse 1.8, in one run.

Issue 11's targets: batch 64 faster than DeepSparse with 1 thread and with 2 (>= 1.3x with 2), and
batch 1 >= 5x onnxruntime running the dense model. The pruned model (magnitude 90 % per layer, formats
chosen by `compiled(..., "auto")` for the batch) runs through the public API (`predict`, its
compiled plan) in rotating rounds with onnxruntime on the dense model and with no pause
(`sparsenet.timing.compare`, settle=0); DeepSparse runs the exported pruned ONNX model in its own
process (`peers/deepsparse_runner.py`, its own venv: ``bash benchmarks/setup_deepsparse.sh``),
started between the in-process rounds, `--repeats` times per setting; figures are medians. Beside
them, sparsenet alone (its own calls back to back, no peer in between): onnxruntime's intra-op
threads spin after each call and share the cores with the next candidate.

    python benchmarks/deepsparse_mlp.py [--repeats 3] [--json results/deepsparse-mlp.json]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from _harness import machine_info, numba_layer, threads, write_json
from models import _deepsparse, _onnxruntime, big_mlp

from sparsenet.prune import compiled, prune
from sparsenet.timing import compare


def run(n_threads, batch, repeats, tmp):
    dense = big_mlp()
    pruned = big_mlp()
    prune(pruned, method="magnitude", sparsity=0.9, scope="layer")
    fast = compiled(pruned, "auto", batch_size=batch)
    x = np.random.default_rng(batch).standard_normal((batch, 1024)).astype(np.float32)
    ort = _onnxruntime(dense, x, n_threads, tmp)
    if isinstance(ort, dict):
        raise SystemExit(f"needs onnxruntime: {ort['skipped']}")
    np.testing.assert_allclose(fast.predict(x), pruned.predict(x), rtol=1e-3, atol=1e-3)
    ours, peer, ds, alone = [], [], [], []
    for _ in range(repeats):
        alone.append(compare({"sparsenet 90%": lambda: fast.predict(x)}, rounds=3, min_time=2e-2)["sparsenet 90%"].median)
        c = compare({"onnxruntime dense": ort, "sparsenet 90%": lambda: fast.predict(x)},
                    baseline="onnxruntime dense", rounds=5, min_time=2e-2, settle=0.0)
        ours.append(c["sparsenet 90%"].median)
        peer.append(c["onnxruntime dense"].median)
        d = _deepsparse(pruned, batch, n_threads, tmp)
        if "median" not in d:
            raise SystemExit(f"DeepSparse: {d.get('skipped', d)}")
        ds.append(d["median"])
    row = {"threads": n_threads, "batch": batch,
           "formats": [m.weight.spec for m in fast.layers if hasattr(m, "weight")],
           "sparsenet_ms": [t * 1e3 for t in ours], "onnxruntime_dense_ms": [t * 1e3 for t in peer],
           "deepsparse_ms": [t * 1e3 for t in ds], "sparsenet_alone_ms": [t * 1e3 for t in alone]}
    med = {k: float(np.median(row[k])) for k in ("sparsenet_ms", "onnxruntime_dense_ms", "deepsparse_ms",
                                                 "sparsenet_alone_ms")}
    row.update({f"{k}_median": v for k, v in med.items()},
               vs_deepsparse=med["deepsparse_ms"] / med["sparsenet_ms"],
               vs_onnxruntime_dense=med["onnxruntime_dense_ms"] / med["sparsenet_ms"])
    print(f"threads {n_threads} batch {batch:2d}: sparsenet {med['sparsenet_ms']:.3f} ms "
          f"({row['formats']}), DeepSparse {med['deepsparse_ms']:.3f} ms, onnxruntime dense "
          f"{med['onnxruntime_dense_ms']:.3f} ms: {row['vs_deepsparse']:.2f}x DeepSparse, "
          f"{row['vs_onnxruntime_dense']:.2f}x onnxruntime dense; sparsenet alone (no peer between calls) "
          f"{med['sparsenet_alone_ms']:.3f} ms")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (2, 1):
            with threads(n):
                for batch in (64, 1):
                    rows.append(run(n, batch, args.repeats, tmp))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "numba_layer": numba_layer(), "rows": rows})


if __name__ == "__main__":
    main()
