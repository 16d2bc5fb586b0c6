"""The `sparsenet` command line: one module per command, each with ``register(subparsers)`` (its
parser, with ``set_defaults(func=...)``) and a run function that imports the heavy parts of the
library only when it runs, so that ``sparsenet --help`` stays fast. `_common` holds the exit codes,
the ``--json`` output and the argument types.

Exit codes: 0 success, 1 bad input (one-line error; traceback with --debug), 2 usage error,
130 interrupted (Ctrl-C; one line).

Adding a command: a module here with `register`, and its name in `_COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import SparsenetError
from . import bench, convert, datasets, demo, info, onnx, predict, prune, quantize, sweep, train
from ._common import BAD_INPUT, INTERRUPTED

__all__ = ["main", "build_parser"]

# in the order of `sparsenet --help` (onnx registers import-onnx and export-onnx)
_COMMANDS = (demo, train, prune, quantize, onnx, predict, bench, sweep, info, convert, datasets)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsenet", description="Train, prune and run sparse neural networks.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return p


def main(argv=None) -> int:
    """Run ``sparsenet ARGV`` (default: ``sys.argv[1:]``) and return its exit code; a usage error
    exits 2 from argparse."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
    except BrokenPipeError:  # the reader of our output went away (``sparsenet info m | head``): not an error
        try:
            sys.stdout = open(os.devnull, "w")  # Python would otherwise report the failed flush at exit
        except OSError:
            pass
        return 0
    except (SparsenetError, OSError) as e:
        if args.debug:
            raise
        print(f"sparsenet {args.command}: error: {e}", file=sys.stderr)
        return BAD_INPUT
    # Interrupted. Printed after the except clause has released the traceback, so that the frames it
    # held are gone and a progress bar (tqdm, leave=False) has cleared its line before this one.
    print(f"sparsenet {args.command}: interrupted", file=sys.stderr)
    return INTERRUPTED
