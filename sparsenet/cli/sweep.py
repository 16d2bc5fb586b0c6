"""`sparsenet sweep CONFIG`: run a pruning study (a grid of train-prune-evaluate runs), resumably.

Exit codes: 0 every point finished, 1 bad input or at least one point failed (the others are stored),
130 interrupted (finished points are kept; re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import sys

from ._common import BAD_INPUT, INTERRUPTED, OK, add_json_flag, emit

__all__ = ["register", "run"]

_EPILOG = """examples:
  sparsenet sweep study.toml                                  # Dask LocalCluster (or processes without Dask)
  sparsenet sweep study.toml --backend processes --workers 2  # a plain local process pool
  sparsenet sweep study.toml --scheduler tcp://10.0.0.1:8786  # an existing Dask cluster
  sparsenet sweep study.toml --out runs/study --json          # re-run: finished points are skipped
a small study to start from: python -c "import sparsenet.sweep as s; print(s.example_path('digits-small'))"
"""


def register(subparsers) -> None:
    s = subparsers.add_parser("sweep", help="run a pruning study (a grid of train-prune-evaluate runs) on Dask or "
                                            "local processes, resumably",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    s.add_argument("config", help="study file: .toml, .json or .yaml")
    s.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    s.add_argument("--workers", type=int, help="worker processes of the LocalCluster or the process pool "
                                               "(default: one per core)")
    s.add_argument("--backend", default="auto", choices=["auto", "dask", "processes"],
                   help="auto: Dask when installed, else processes (default: %(default)s)")
    s.add_argument("--out", help="results directory (default: sweep-<name>); re-running skips finished points")
    s.add_argument("--retries", type=int, default=1, help="extra attempts of a task whose worker failed "
                                                          "(default: %(default)s)")
    s.add_argument("--no-timing", action="store_true", help="skip the serial latency phase")
    s.add_argument("--no-plots", action="store_true", help="do not draw plots")
    add_json_flag(s, "print the outcome as one JSON object")
    s.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    s.set_defaults(func=run)


def _text(res) -> str:
    lines = [f"sweep {res.name!r}: {res.points} points: {res.computed} computed, {res.skipped} already done, "
             f"{res.failed} failed; {res.timed} timed; {res.seconds:.1f} s"]
    if res.summary:
        metrics = [("accuracy", "acc"), ("f1", "F1"), ("sparsity", "sparsity"), ("bytes_ratio", "bytes"),
                   ("flops_speedup", "FLOPs x"), ("measured_speedup_b1", "b1 x"), ("measured_speedup_b64", "b64 x")]
        metrics = [(m, h) for m, h in metrics if any(r.get(f"{m}_mean") is not None for r in res.summary)]
        head = f"{'method':<12}{'granularity':<14}{'schedule':<10}{'target':>7}{'n':>3}"
        lines.append(head + "".join(f"{h:>17}" for _, h in metrics))
        for r in res.summary:
            line = (f"{str(r.get('method')):<12}{str(r.get('granularity')):<14}{str(r.get('schedule')):<10}"
                    f"{r.get('sparsity', 0):>7.2f}{r['n']:>3}")
            for m, _ in metrics:
                mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
                cell = "-" if mean is None else f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
                line += f"{cell:>17}"
            lines.append(line)
        if res.timed or any(r.get("measured_speedup_b1_mean") is not None for r in res.summary):
            lines.append("measured speedups: timed after the grid, one point at a time, in the driver (never inside "
                         "tasks); figures of the machine that ran the timing phase")
    for f in res.failures[:5]:
        lines.append(f"failed {f['key'][:12]} ({f['point'].get('method')}, sparsity {f['point'].get('sparsity')}) "
                     f"after {f['attempts']} attempt(s): {f['error']}")
    if len(res.failures) > 5:
        lines.append(f"... and {len(res.failures) - 5} more failures in {res.out_dir}/failures/")
    lines.append("files: " + ", ".join(sorted(res.files)) + f" in {res.out_dir}")
    return "\n".join(lines)


def run(args) -> int:
    from ..sweep.runner import run_sweep

    quiet = args.quiet or args.json
    echo = None if quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        res = run_sweep(args.config, out_dir=args.out, backend=args.backend, scheduler=args.scheduler,
                        workers=args.workers, retries=args.retries, timing=not args.no_timing,
                        progress=not quiet, plots=not args.no_plots, echo=echo)
    except KeyboardInterrupt:  # a message of its own: the study can be resumed (and --json gets an object)
        msg = "interrupted: finished points are stored; run the same command again to resume"
        if args.json:
            print(json.dumps({"interrupted": True, "message": msg}))
        else:
            print(f"sparsenet sweep: {msg}", file=sys.stderr)
        return INTERRUPTED
    emit(args, res.to_dict(), _text(res))
    return BAD_INPUT if res.failed else OK
