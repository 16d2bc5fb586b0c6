"""What the commands share: exit codes, output (text, or one JSON object with ``--json``) and
argument types.

Two kinds of argument checks, two exit codes: an argparse type (`positive_int`) rejects a value
before the command starts (usage error, exit 2, with the usage line); a value parser
(`batch_sizes`, `sparsity_targets`) runs inside the command and raises `ConfigError` (bad input,
exit 1, one line), as the library's own checks do.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager

from ..errors import ConfigError

__all__ = ["OK", "BAD_INPUT", "USAGE", "INTERRUPTED", "emit", "add_json_flag", "positive_int", "batch_sizes",
           "thread_count",
           "sparsity_targets"]

OK = 0            # success
BAD_INPUT = 1     # a SparsenetError or OSError: one line on stderr (the traceback with --debug)
USAGE = 2         # argparse's own exit code for a usage error
INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


def emit(args, payload: dict, text: str) -> None:
    """Print `payload` as one JSON object if the command was given ``--json``, else `text`."""
    print(json.dumps(payload) if getattr(args, "json", False) else text)


def add_json_flag(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The ``--json`` flag that `emit` reads."""
    parser.add_argument("--json", action="store_true", help=help)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (anything else is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value}")
    return value


def batch_sizes(text: str, flag: str = "--batch") -> list[int]:
    """'1,64' -> [1, 64]; raises ConfigError unless every entry is an integer >= 1."""
    try:
        batches = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, found {text!r}") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"{flag}: expected positive batch sizes, found {text!r}")
    return batches


def sparsity_targets(text: str, flag: str = "--sparsity") -> float | dict:
    """'0.9' -> 0.9; '1=0.8,3=0.9' -> {"1": 0.8, "3": 0.9} (per-layer targets). The range of each
    fraction is checked by `prune`, which names the layer."""
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{flag}: expected a fraction or NAME=FRACTION,..., found {text!r}") from None
    targets = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            targets[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{flag}: expected NAME=FRACTION, found {part!r}") from None
    return targets


@contextmanager
def thread_count(n):
    """Kernels and BLAS on `n` threads (``--threads``; None: as they are) for the command, then back
    to what they were: a command run in-process (``sparsenet.cli.main``) leaves the counts unchanged."""
    if n is None:
        yield
        return
    import warnings

    from ..runtime import set_num_threads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no threadpoolctl: BLAS keeps its count here
        previous = set_num_threads(n)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            set_num_threads(previous["numba"], blas=previous["blas"])
