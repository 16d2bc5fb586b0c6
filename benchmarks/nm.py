"""N:M weights on this CPU (issue 14): a 4096 x 4096 float32 weight pruned 2:4 (and 4:8, 1:4), stored
`NM`, against NumPy's dense product of the same pruned matrix, in the same run with no pause between
them (`sparsenet.timing.compare`, settle=0), at batch 1 and 64.

Three views: "hot" (`w @ x` against `nm @ x` on one weight each, as a user's own loop compares
them), "cold" (each call on the next of enough copies to pass 192 MiB, so neither reads its weight
from the caches: 64 MiB dense copies, 34 MiB 2:4 ones), and "model" (a one-Linear model saved in
each format and run through ``sparsenet.load(path).predict(x)``, bias and plan included). Each
figure is the median of the per-round ratios dense / N:M; `--runs` repeats every comparison for the
spread.

    python benchmarks/nm.py [--threads 2] [--rounds 7] [--runs 3] [--json results/nm.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from _harness import machine_info, rotating, threads, write_json

import sparsenet as sn
from sparsenet.formats import NM
from sparsenet.nn import Linear, Sequential
from sparsenet.timing import compare

SIZE = 4096


def ratios(fns, rounds, runs):
    out = []
    for _ in range(runs):
        c = compare(fns, baseline="dense", rounds=rounds, min_time=5e-3, settle=0.0)
        out.append({"speedup": c.timings["nm"].speedup, "dense_us": c.timings["dense"].median * 1e6,
                    "nm_us": c.timings["nm"].median * 1e6})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shapes", default="2:4,4:8,1:4")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
    rows = []
    with threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            n, m = (int(v) for v in shape.split(":"))
            nm = NM.from_dense(w0, n, m)
            dense = nm.to_dense()
            row = {"shape": shape, "bytes_ratio": nm.nbytes / dense.nbytes, "views": {}}
            paths = {}
            for name, weight in (("dense", sn.Dense(dense)), ("nm", nm)):
                model = Sequential(Linear(SIZE, SIZE, weight=weight, seed=0))
                model.input_shape = (SIZE,)
                paths[name] = os.path.join(tmp, f"{name}.safetensors")
                sn.save_model(model, paths[name])
            models = {name: sn.load(path) for name, path in paths.items()}
            for batch in (1, 64):
                x = np.ascontiguousarray(rng.standard_normal((SIZE, batch)).astype(np.float32))
                xb = np.ascontiguousarray(x.T)  # batch-major, as predict takes it
                next_dense, _ = rotating(lambda: dense.copy(), dense.nbytes)
                next_nm, _ = rotating(lambda: NM(nm.data.copy(), nm.codes.copy(), nm.shape, n, m, check=False),
                                      nm.nbytes)
                views = {
                    "hot": {"dense": lambda: dense @ x, "nm": lambda: nm @ x},
                    "cold": {"dense": lambda: next_dense() @ x, "nm": lambda: next_nm() @ x},
                    "model": {"dense": lambda: models["dense"].predict(xb), "nm": lambda: models["nm"].predict(xb)},
                }
                np.testing.assert_allclose(nm @ x, dense @ x, rtol=1e-3, atol=1e-3)
                for view, fns in views.items():
                    res = ratios(fns, args.rounds, args.runs)
                    row["views"][f"{view} batch {batch}"] = res
                    s = [r["speedup"] for r in res]
                    print(f"{shape} {view:5s} batch {batch:2d}: dense {np.median([r['dense_us'] for r in res]):9.1f} us, "
                          f"nm {np.median([r['nm_us'] for r in res]):9.1f} us: {np.median(s):.2f}x "
                          f"(runs {min(s):.2f}-{max(s):.2f}); bytes {row['bytes_ratio']:.3f} of dense")
            rows.append(row)
    if args.json:
        write_json(args.json, {"machine": machine_info(), "threads": args.threads, "rounds": args.rounds,
                               "runs": args.runs, "rows": rows})


if __name__ == "__main__":
    main()
