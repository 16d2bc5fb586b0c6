"""What structured pruning buys: zoo graphs with half of their channels removed (their dependency
groups, `sparsenet.prune.groups`) against their dense originals, both loaded from files.

Issue 14's targets: the `resnet` with 50 % of its filters removed, and the `transformer` with half of
its heads and of its FFN neurons removed, >= 1.6x their dense originals (`sparsenet bench --batch 64`
compares the same pair). Each model is built and seeded as the zoo builds it (the ResNet and MobileNet
trained one epoch, so that their BatchNorms hold real statistics), pruned by magnitude with
`prune(..., granularity=...)`, compiled (`compiled(model, "auto")`: the dead channels removed, each
layer's format chosen by measurement), saved, loaded, and timed through
``sparsenet.load(path).predict(x)`` against the original, loaded the same way, in alternating rounds
with no pause (`sparsenet.timing.compare`, settle=0), at batch 1 and 64; `--runs` repeats the whole
comparison for the spread.

    python benchmarks/structured.py [--threads 2] [--rounds 9] [--runs 3] [--json results/structured.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from _harness import machine_info, threads, write_json

import sparsenet as sn
from sparsenet.bench import sample_inputs
from sparsenet.data import load_dataset
from sparsenet.prune import compiled, prune
from sparsenet.summary import summarize
from sparsenet.timing import compare

CASES = {"resnet": [("filter", 0.5)], "mobilenet": [("filter", 0.5)],
         "transformer": [("head", 0.5), ("neuron", 0.5)]}


def build(name, tmp):
    ds = load_dataset("digits")
    model = sn.build_model(name, seed=0)
    if name in ("resnet", "mobilenet"):
        sn.fit(model, ds.x_train, ds.y_train, epochs=1, quiet=True)
    original = os.path.join(tmp, f"{name}.safetensors")
    sn.save_model(model, original)
    for granularity, sparsity in CASES[name]:
        prune(model, granularity=granularity, sparsity=sparsity)
    small = compiled(model, "auto")
    pruned = os.path.join(tmp, f"{name}-pruned.safetensors")
    sn.save_model(small, pruned)
    return original, pruned, small


def measure(name, rounds, runs, tmp):
    original, pruned, small = build(name, tmp)
    base, model = sn.load(original), sn.load(pruned)
    rows = []
    for batch in (1, 64):
        x = sample_inputs(base, batch, np.random.default_rng(0))
        ratios, times = [], []
        for _ in range(runs):
            c = compare({"original": lambda: base.predict(x), "pruned": lambda: model.predict(x)},
                        baseline="original", rounds=rounds, min_time=2e-3, settle=0.0)
            ratios.append(c.timings["pruned"].speedup)
            times.append((c.timings["original"].median, c.timings["pruned"].median))
        row = {"model": name, "batch": batch, "pruning": CASES[name], "speedups": ratios,
               "original_us": [t[0] * 1e6 for t in times], "pruned_us": [t[1] * 1e6 for t in times],
               "removed": small.meta["compile"]["removed_units"],
               "bytes": {"original": summarize(base)["totals"]["total_bytes"],
                         "pruned": summarize(model)["totals"]["total_bytes"]}}
        rows.append(row)
        print(f"{name:11s} batch {batch:2d}: original {np.median(row['original_us']):8.1f} us, pruned "
              f"{np.median(row['pruned_us']):8.1f} us: {np.median(ratios):.2f}x (runs {min(ratios):.2f}-"
              f"{max(ratios):.2f}); bytes {row['bytes']['pruned'] / row['bytes']['original']:.2f} of the original")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--models", default=",".join(CASES))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    with threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        rows = [r for name in args.models.split(",") for r in measure(name, args.rounds, args.runs, tmp)]
    if args.json:
        write_json(args.json, {"machine": machine_info(), "threads": args.threads, "rounds": args.rounds,
                               "runs": args.runs, "rows": rows})


if __name__ == "__main__":
    main()
