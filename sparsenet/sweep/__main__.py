"""``python -m sparsenet.sweep CONFIG ...``: the `sparsenet sweep` command on its own (same options,
same exit codes)."""

from __future__ import annotations

import argparse
import sys

from ..errors import SparsenetError
from .cli import add_sweep_parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # shows tracebacks, as `sparsenet --debug sweep ...`
    argv = [a for a in argv if a != "--debug"]
    parser = argparse.ArgumentParser(prog="sparsenet", description="Run a pruning study.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    args = parser.parse_args(["sweep", *argv])
    try:
        return args.func(args)
    except (SparsenetError, OSError) as e:
        if debug:
            raise
        print(f"sparsenet sweep: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
