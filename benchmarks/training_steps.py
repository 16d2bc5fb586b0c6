"""Where a training step of a small model goes: the digits zoo models (batch 32, Adam), the phases
of `fit`'s step timed in the same loop as `fit` runs it (minibatch and zero_grad, forward, loss and
its gradient with the accuracy count, `backward_params`, the optimiser step), then 40 epochs of
`fit` itself.

    python benchmarks/training_steps.py [--models mlp,lenet300,cnn] [--epochs 5] [--json results/steps.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _harness import machine_info, write_json

import sparsenet as sn
from sparsenet.data import load_dataset
from sparsenet.losses import SoftmaxCrossEntropy

PHASES = ("batch + zero_grad", "forward", "loss", "backward", "step")


def phases(model, ds, epochs, batch=32):
    """Mean microseconds per step of each phase over `epochs` epochs."""
    opt = sn.Adam(model.parameters(), lr=1e-3)
    loss = SoftmaxCrossEntropy()
    totals = np.zeros(len(PHASES))
    rng = np.random.default_rng(0)
    n, steps = len(ds.x_train), 0
    model.train()
    t_all = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            t0 = time.perf_counter()
            idx = order[s:s + batch]
            xb, yb = ds.x_train[idx], ds.y_train[idx]
            opt.zero_grad()
            t1 = time.perf_counter()
            out = model.forward(xb)
            t2 = time.perf_counter()
            loss(out, yb)
            grad = loss.backward()
            int(np.sum(np.argmax(out, axis=1) == yb))
            t3 = time.perf_counter()
            model.backward_params(grad)
            t4 = time.perf_counter()
            opt.step()
            t5 = time.perf_counter()
            totals += [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]
            steps += 1
    return (time.perf_counter() - t_all) / steps * 1e6, dict(zip(PHASES, (totals / steps * 1e6).tolist()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mlp,lenet300,cnn")
    p.add_argument("--epochs", type=int, default=5, help="epochs of the phase timing")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    ds = load_dataset("digits")
    rows = {}
    for name in args.models.split(","):
        model = sn.build_model(name, seed=0)
        sn.fit(model, ds.x_train[:64], ds.y_train[:64], epochs=1, batch_size=32, quiet=True)  # compile, warm up
        per_step, parts = phases(model, ds, args.epochs)
        fit_s = sum(sn.fit(model, ds.x_train, ds.y_train, epochs=40, batch_size=32, quiet=True).seconds)
        rows[name] = {"us_per_step": per_step, "phases_us": parts, "fit_40_epochs_s": fit_s}
        print(f"{name}: {per_step:.0f} us per step (" + ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
              + f"); fit 40 epochs {fit_s:.2f} s", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "training_steps", "machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
