"""Run the benchmark suite and write results/<name>.json, results/<name>.md and plots.

    python benchmarks/run.py --quick          # minutes: 4096x4096, a few sparsities, batch 1 and 64
    python benchmarks/run.py --full           # the whole kernel sweep (long)
    python benchmarks/run.py --models         # the model sweep (zoo, MLP 1024-4096-4096-10, peers)

Run it on a quiet machine: it checks /proc/pressure/cpu before each part and records it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import cpu_pressure, machine_info, numba_layer, wait_for_quiet, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

QUICK = dict(shapes=[(4096, 4096)], sparsities=[0.0, 0.5, 0.9, 0.95], batches=[1, 64], thread_counts=[2],
             blocksizes=((4, 4), (8, 1), (16, 1)))
FULL = dict(shapes=[(1024, 1024), (4096, 1024), (4096, 4096)], sparsities=[0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
            batches=[1, 8, 64, 256], thread_counts=[1, 2], blocksizes=((4, 4), (8, 1), (16, 1), (1, 8)))


def _summary_kernels(records, roof) -> list[str]:
    lines = []
    configs = sorted({(tuple(r["shape"]), r["batch"], r["threads"]) for r in records})
    for shape, batch, t in configs:
        rows = [r for r in records if tuple(r["shape"]) == shape and r["batch"] == batch and r["threads"] == t]
        impls = []
        for r in rows:
            if r["impl"] not in impls and r["impl"] != "numpy-dense":
                impls.append(r["impl"])
        lines.append(f"\n### {shape[0]}x{shape[1]}, batch {batch}, {t} thread(s): speedup over numpy dense "
                     f"(median, cold weights)\n")
        lines.append("| sparsity | numpy dense (us) | " + " | ".join(impls) + " |")
        lines.append("|---|---|" + "---|" * len(impls))
        bw = roof.get(str(t), {}).get("GBs")
        peak = roof.get(str(t), {}).get("GFLOPs")
        for s in sorted({r["sparsity"] for r in rows}):
            by = {r["impl"]: r for r in rows if r["sparsity"] == s}
            cells = []
            for impl in impls:
                r = by.get(impl)
                if r is None:
                    cells.append("")
                    continue
                cell = f"{r['speedup_vs_numpy']:.2f}x"
                if batch == 1 and bw:
                    cell += f" ({r['bytes_moved'] / r['median'] / 1e9 / bw:.0%} BW)"
                elif batch >= 64 and peak:
                    cell += f" ({r['flops'] / r['median'] / 1e9 / peak:.0%} peak)"
                cells.append(cell)
            lines.append(f"| {s:.0%} | {by['numpy-dense']['median'] * 1e6:.0f} | " + " | ".join(cells) + " |")
    return lines


def _plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shape = max({tuple(r["shape"]) for r in records})
    t = max(r["threads"] for r in records)
    batches = sorted({r["batch"] for r in records})
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, b in zip(axes[0], batches):
        rows = [r for r in records if tuple(r["shape"]) == shape and r["threads"] == t and r["batch"] == b]
        for impl in sorted({r["impl"] for r in rows} - {"numpy-dense"}):
            pts = sorted((r["sparsity"], r["speedup_vs_numpy"]) for r in rows if r["impl"] == impl)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{shape[0]}x{shape[1]}, batch {b}, {t} threads")
        ax.set_xlabel("sparsity")
        ax.set_ylabel("speedup over numpy dense")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    p.add_argument("--models", action="store_true", help="run the model sweep too")
    p.add_argument("--hot", action="store_true", help="time with weights hot in cache (default: cold)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--name", default=None, help="results file name (default: quick/full + date)")
    args = p.parse_args(argv)
    import kernels
    import roofline

    name = args.name or f"{'full' if args.full else 'quick'}-{time.strftime('%Y%m%d-%H%M')}"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = {"command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "pressure_before": wait_for_quiet()}
    print("roofline ...", flush=True)
    out["roofline"] = roofline.roofline()
    print(out["roofline"], flush=True)
    config = FULL if args.full else QUICK
    out["kernel_config"] = {k: [list(v) if isinstance(v, tuple) else v for v in vals] for k, vals in config.items()}
    out["kernels"] = list(kernels.sweep(hot=args.hot, peers=not args.no_peers, **config))
    out["numba_threading_layer"] = numba_layer()
    if args.models:
        import models
        out["models"] = models.sweep(quick=not args.full)
    out["pressure_after"] = cpu_pressure()
    base = os.path.join(HERE, "results", name)
    write_json(base + ".json", out)
    lines = [f"# Benchmark {name}", "", f"Command: `{out['command']}`", "",
             f"Machine: {out['machine'].get('cpu')}, {out['machine'].get('cores')} cores, flags "
             f"{' '.join(out['machine'].get('flags', []))}; numpy {out['machine']['numpy']}, numba "
             f"{out['machine']['numba']} (threading layer {out['numba_threading_layer']}), torch "
             f"{out['machine'].get('torch')}; CPU pressure before/after {out['pressure_before']} / "
             f"{out['pressure_after']} %.", "", "## Roofline", ""]
    for t, r in out["roofline"].items():
        lines.append(f"- {t} thread(s): read bandwidth {r['GBs']:.1f} GB/s (numba {r['numba_read_GBs']:.1f}, "
                     f"sgemv {r['sgemv_GBs']:.1f}); SGEMM {r['GFLOPs']:.0f} GFLOP/s")
    lines += ["", "## Kernels", "", "Cells: speedup over numpy dense in the same run (median of the per-round ratios, "
              "all implementations timed in alternating rounds); "
              "batch 1 adds the fraction of the bandwidth roofline reached, batch >= 64 the fraction of SGEMM peak."]
    lines += _summary_kernels(out["kernels"], out["roofline"])
    if args.models:
        import models
        lines += ["", "## Models", ""] + models.summary(out["models"])
    plot = _plot(out["kernels"], base + "-kernels.png")
    if plot:
        lines += ["", f"![speedup vs sparsity]({os.path.basename(plot)})"]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {base}.json, {base}.md")


if __name__ == "__main__":
    main()
