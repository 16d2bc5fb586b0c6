"""`sparsenet demo`: train on the embedded digits, prune several ways, report accuracy, size and speed."""

from __future__ import annotations

__all__ = ["register", "run"]


def register(subparsers) -> None:
    d = subparsers.add_parser("demo", help="train on the embedded digits, prune several ways, report accuracy, "
                                           "size and measured speed",
                              epilog="example: sparsenet demo --quick --out demo-out")
    d.add_argument("--quick", action="store_true", help="small settings (CI)")
    d.add_argument("--out", default="sparsenet-demo", help="output directory (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    return 0
