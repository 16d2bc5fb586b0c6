"""Dynamic sparse training against training dense then pruning: LeNet-300-100 on the digits at 90 %
sparsity, the same total number of epochs for every method, over several seeds.

- "prune + fine-tune": dense training for half of the epochs, global magnitude pruning to 90 %
  (`prune(..., scope="global")`), fine-tuning for the other half;
- "rigl" and "set": `sparse_train(..., method=...)` from scratch at 90 % (ERK densities, ΔT = 50
  steps, drop fraction 0.3 decaying along a cosine to 0 at 3/4 of training), CSR throughout;
- "dense": dense training for all the epochs (the ceiling).

Adam, lr 1e-3, batch 32, each seed's own initialisation shared by all methods. Issue 15's targets:
RigL within 1 point of prune + fine-tune, SET within 2 (means over the seeds). The test split holds
449 images: one image is 0.22 points.

    python benchmarks/dst_accuracy.py [--seeds 0,1,2] [--epochs 40] [--delta-t 50] [--json results/dst.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _harness import machine_info, write_json

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.prune import prune, sparse_train

SPARSITY = 0.9


def run(seed, epochs, delta_t, ds):
    acc = {}
    model = sn.build_model("lenet300", seed=seed)
    sn.fit(model, ds.x_train, ds.y_train, epochs=epochs // 2, batch_size=32, seed=seed, quiet=True)
    prune(model, sparsity=SPARSITY, scope="global", train_data=(ds.x_train, ds.y_train),
          finetune_epochs=epochs - epochs // 2, batch_size=32, seed=seed)
    acc["prune + fine-tune"] = sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"]
    for method in ("rigl", "set"):
        model = sn.build_model("lenet300", seed=seed)
        sparse_train(model, ds.x_train, ds.y_train, method=method, sparsity=SPARSITY, epochs=epochs, batch_size=32,
                     delta_t=delta_t, seed=seed)
        stored = sum(layer.weight.nnz for layer in sn.prune.prunable_layers(model).values())
        total = sum(int(np.prod(layer.weight_shape)) for layer in sn.prune.prunable_layers(model).values())
        assert abs(stored / total - (1 - SPARSITY)) < 0.01, (stored, total)
        acc[method] = sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"]
    model = sn.build_model("lenet300", seed=seed)
    sn.fit(model, ds.x_train, ds.y_train, epochs=epochs, batch_size=32, seed=seed, quiet=True)
    acc["dense"] = sn.evaluate(model, ds.x_test, ds.y_test)["accuracy"]
    return acc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--delta-t", type=int, default=50)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    ds = load_dataset("digits")
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = {}
    t0 = time.perf_counter()
    for seed in seeds:
        per_seed[seed] = run(seed, args.epochs, args.delta_t, ds)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in per_seed[seed].items()), flush=True)
    methods = list(per_seed[seeds[0]])
    stats = {m: {"mean": float(np.mean([per_seed[s][m] for s in seeds])),
                 "std": float(np.std([per_seed[s][m] for s in seeds], ddof=1)) if len(seeds) > 1 else 0.0}
             for m in methods}
    base = stats["prune + fine-tune"]["mean"]
    print(f"\nLeNet-300-100, digits ({len(ds.y_test)} test images), {SPARSITY:.0%} sparse, {args.epochs} epochs, "
          f"{len(seeds)} seeds, {time.perf_counter() - t0:.0f} s")
    for m in methods:
        diff = (stats[m]["mean"] - base) * 100
        print(f"  {m:<18} {stats[m]['mean'] * 100:6.2f} ± {stats[m]['std'] * 100:4.2f}   vs prune + fine-tune {diff:+.2f}")
    targets = {"rigl": -1.0, "set": -2.0}
    met = {m: (stats[m]["mean"] - base) * 100 >= bound for m, bound in targets.items()}
    print("  targets: " + ", ".join(f"{m} within {-b:g} point(s): {'met' if met[m] else 'NOT met'}"
                                    for m, b in targets.items()))
    if args.json:
        write_json(args.json, {"benchmark": "dst_accuracy", "machine": machine_info(), "epochs": args.epochs,
                               "delta_t": args.delta_t, "sparsity": SPARSITY, "seeds": seeds,
                               "accuracy": {str(s): v for s, v in per_seed.items()}, "stats": stats, "met": met})


if __name__ == "__main__":
    main()
