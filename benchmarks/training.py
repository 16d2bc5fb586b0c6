"""What sparse training buys: the epoch time of an MLP 1024-4096-4096-10 (ReLU, Adam, batch 64)
against its sparsity, for sparsenet dense, sparsenet sparse (CSR) and PyTorch's dense CPU training,
on the same data with the same threads.

Each model is trained through its public API, as a user's loop trains it: sparsenet's with
``sparsenet.fit(model, x, y, epochs=1, batch_size=64, optimizer=adam)`` (one Adam, lr 1e-3, per
model for the whole run; the epoch time is ``History.seconds``), PyTorch's with the usual ``zero_grad / forward / CrossEntropyLoss / backward /
Adam.step`` loop over the same shuffled minibatches. The sparse models are pruned by magnitude
(`prune`, layer scope, the last 4096 x 10 layer excluded) and stored CSR (`compiled(model, "csr")`)
before the first timed epoch, and a second series is block-pruned and stored BSR (`--bsr 4x4`);
every epoch goes on training the same models, and the script checks that their weights are still
CSR (BSR) at the end. Epochs alternate between all implementations in each
round with no pause; each figure is the median over `--rounds`, and the speedups are the medians of
the per-round ratios. Issue 15's targets: at 90 % >= 3x sparsenet dense and >= 2x PyTorch dense;
at 98 % >= 6x sparsenet dense.

    python benchmarks/training.py [--threads 2] [--rounds 5] [--samples 1024] [--json results/training.json]
        [--plot results/training.png] [--sparsities 0.5,0.7,0.8,0.9,0.95,0.98]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _harness import machine_info, threads, torch_mlp, write_json

import sparsenet as sn
from sparsenet.formats import BSR, CSR
from sparsenet.nn import Linear, ReLU, Sequential
from sparsenet.prune import compiled, prune

SIZES = (1024, 4096, 4096, 10)


def mlp(seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(Linear(a, b, seed=seed + i))
        if i < len(SIZES) - 2:
            layers.append(ReLU())
    model = Sequential(*layers)
    model.input_shape = (SIZES[0],)
    return model


def torch_twin(model):
    """PyTorch's twin of `model` (the same initial weights), and its Adam."""
    import torch

    net = torch_mlp(model)
    if isinstance(net, str):
        raise SystemExit(net)
    return net, torch.optim.Adam(net.parameters(), lr=1e-3)


def torch_epoch(net, opt, x, y, batch, rng):
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.from_numpy(rng.permutation(len(x)))
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        idx = order[start:start + batch]
        opt.zero_grad()
        loss = loss_fn(net(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def sparse_model(sparsity, blocks=None):
    """The MLP pruned by magnitude to `sparsity` in its two large layers, stored CSR, or block-pruned
    and stored BSR with `blocks` ("4x4")."""
    model = mlp()
    prune(model, sparsity=sparsity, exclude=["last"], granularity=f"block{blocks}" if blocks else "unstructured")
    return compiled(model, f"bsr{blocks}" if blocks else "csr")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--sparsities", default="0.5,0.7,0.8,0.9,0.95,0.98")
    p.add_argument("--bsr", default="4x4", help="block shape of a BSR series too ('none': CSR only)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], args.samples)
    batch = 64
    with threads(args.threads):
        if not args.no_torch:
            import torch

            torch.set_num_threads(args.threads)
        models = {"sparsenet dense": mlp()}
        models.update({f"sparse {s:g}": sparse_model(s) for s in sparsities})
        blocks = None if args.bsr == "none" else args.bsr
        if blocks:
            models.update({f"bsr{blocks} {s:g}": sparse_model(s, blocks) for s in sparsities})
        net = None if args.no_torch else torch_twin(models["sparsenet dense"])
        # one Adam per model for the whole run, as a training loop keeps it (PyTorch's too)
        optimizers = {name: sn.Adam(model.parameters(), lr=1e-3) for name, model in models.items()}
        for name, model in models.items():  # compile the kernels, fault the pages in: not timed
            sn.fit(model, x[:2 * batch], y[:2 * batch], epochs=1, batch_size=batch, quiet=True,
                   optimizer=optimizers[name])
        if net is not None:
            torch_epoch(*net, x[:2 * batch], y[:2 * batch], batch, rng)
        times = {name: [] for name in models}
        if net is not None:
            times["pytorch dense"] = []
        for r in range(args.rounds):
            for name, model in models.items():
                h = sn.fit(model, x, y, epochs=1, batch_size=batch, seed=r, quiet=True, optimizer=optimizers[name])
                times[name].append(h.seconds[0])
            if net is not None:
                times["pytorch dense"].append(torch_epoch(*net, x, y, batch, np.random.default_rng(r)))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in times.items()), flush=True)
        still_sparse = {name: all(isinstance(layer.weight, CSR if name.startswith("sparse ") else BSR)
                                  for layer in model.layers[:-1] if isinstance(layer, Linear))
                        for name, model in models.items() if name != "sparsenet dense"}
    dense = np.array(times["sparsenet dense"])
    rows = []
    for series in ["sparse"] + ([f"bsr{blocks}"] if blocks else []):
        for s in sparsities:
            name = f"{series} {s:g}"
            t = np.array(times[name])
            row = {"format": "csr" if series == "sparse" else series, "sparsity": s, "epoch_ms": float(np.median(t) * 1e3),
                   "spread_ms": [float(t.min() * 1e3), float(t.max() * 1e3)],
                   "vs_sparsenet_dense": float(np.median(dense / t)), "still_sparse": still_sparse[name]}
            if net is not None:
                row["vs_pytorch_dense"] = float(np.median(np.array(times["pytorch dense"]) / t))
            rows.append(row)
    summary = {name: float(np.median(v) * 1e3) for name, v in times.items() if name in ("sparsenet dense", "pytorch dense")}
    print(f"\nepoch of {args.samples} samples, batch {batch}, {args.threads} threads; dense epochs (ms): "
          + ", ".join(f"{k} {v:.0f}" for k, v in summary.items()))
    print(f"{'format':>8} {'sparsity':>9} {'epoch ms':>9} {'x sparsenet dense':>18} {'x pytorch dense':>16} "
          f"{'still sparse':>13}")
    for row in rows:
        vs_torch = f"{row['vs_pytorch_dense']:.2f}" if "vs_pytorch_dense" in row else "-"
        print(f"{row['format']:>8} {row['sparsity']:>9.2f} {row['epoch_ms']:>9.0f} {row['vs_sparsenet_dense']:>18.2f} "
              f"{vs_torch:>16} {str(row['still_sparse']):>13}")
    payload = {"benchmark": "training", "machine": machine_info(), "threads": args.threads, "rounds": args.rounds,
               "samples": args.samples, "batch": batch, "dense_epoch_ms": summary, "rows": rows,
               "epoch_seconds": {k: list(map(float, v)) for k, v in times.items()}}
    if args.json:
        write_json(args.json, payload)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for fmt in dict.fromkeys(r["format"] for r in rows):
            mine = [r for r in rows if r["format"] == fmt]
            ax.plot([r["sparsity"] * 100 for r in mine], [r["epoch_ms"] for r in mine], "o-", label=f"sparsenet {fmt}")
        for (name, ms), style in zip(summary.items(), ("--", ":")):
            ax.axhline(ms, linestyle=style, color="grey" if style == "--" else "black", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("sparsity of the two large layers (%)")
        ax.set_ylabel(f"epoch time (ms, {args.samples} samples)")
        ax.set_title(f"MLP 1024-4096-4096-10, Adam, batch {batch}, {args.threads} threads")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
