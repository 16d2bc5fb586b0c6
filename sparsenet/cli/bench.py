"""`sparsenet bench`: a model file against its dense equivalent, timed in one run."""

from __future__ import annotations

import argparse
import time

from ._common import add_json_flag, batch_sizes, emit, thread_count

__all__ = ["register", "run"]


def register(subparsers) -> None:
    b = subparsers.add_parser("bench", help="time a model against its dense equivalent in one run",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples: sparsenet bench lenet90.safetensors --batch 1,64 --json\n"
                                     "  sparsenet bench resnet-half.safetensors --baseline resnet.safetensors")
    b.add_argument("model", help="model file")
    b.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    b.add_argument("--repeats", type=int, default=7)
    b.add_argument("--threads", type=int, default=None, help="numba and BLAS threads")
    b.add_argument("--baseline", default=None,
                   help="model file to compare against instead of the dense equivalent (a structurally pruned "
                        "model against its original)")
    add_json_flag(b)
    b.set_defaults(func=run)


def run(args) -> int:
    from ..bench import bench_model
    from ..io import load_model

    batches = batch_sizes(args.batch, "--batch")
    model = load_model(args.model)
    baseline = None if args.baseline is None else load_model(args.baseline)
    t0 = time.perf_counter()
    with thread_count(args.threads or None):
        result = bench_model(model, batches, repeats=args.repeats, baseline=baseline)
    result.update(model=args.model, seconds=round(time.perf_counter() - t0, 3))
    if args.baseline is not None:
        result["baseline"] = args.baseline
    other = "dense ms" if baseline is None else "base ms"
    lines = [f"{'batch':>6}{'model ms':>12}{other:>12}{'speedup':>9}"]
    lines += [f"{r['batch']:>6}{r['model_ms']:>12.4f}{r['dense_ms']:>12.4f}{r['speedup']:>8.2f}x" for r in result["batches"]]
    lines.append(f"(medians in one run; CPU pressure {result['cpu_pressure_before']} -> {result['cpu_pressure_after']} %)")
    emit(args, result, "\n".join(lines))
    return 0
