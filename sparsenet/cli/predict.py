"""`sparsenet predict`: run a model file on a .npy array and save the outputs as .npy."""

from __future__ import annotations

import time

from ._common import add_json_flag, emit, positive_int

__all__ = ["register", "run"]

_NPY_MAGIC = b"\x93NUMPY"  # numpy.lib.format.MAGIC_PREFIX, without importing numpy for --help


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="run a model file on a .npy array and save the outputs",
                              epilog="example: sparsenet predict lenet90.safetensors --input x.npy --output y.npy --json")
    p.add_argument("model", help="model file")
    p.add_argument("--input", required=True, help=".npy array: [N, *input_shape] or one sample")
    p.add_argument("--output", required=True, help=".npy file to write (atomically)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="default: %(default)s")
    p.add_argument("--threads", type=positive_int, default=None, help="threads for kernels and BLAS")
    add_json_flag(p, "print shapes, seconds and the output path as JSON")
    p.set_defaults(func=run)


def _not_npy(head: bytes) -> str:
    """What a file that does not start with the .npy magic looks like, for the error message."""
    if head.startswith(b"PK"):
        return "an .npz archive; expected a .npy file holding one array"
    if head.startswith(b"\x80"):
        return "a Python pickle"
    return "no .npy header at its start" if head else "an empty file"


def _read_input(path: str):
    """The array stored in the .npy file `path`, never unpickling anything. OSError (missing or
    unreadable file) is left to the caller; anything else that is not a numeric .npy array raises
    DataError naming the file."""
    import numpy as np

    from ..errors import DataError

    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
        # without this check numpy takes any other file for a pickle and says it "contains pickled data"
        if head != _NPY_MAGIC:
            raise DataError(f"--input {path!r}: cannot be read: not a .npy array ({_not_npy(head)})")
        f.seek(0)
        try:
            return np.lib.format.read_array(f, allow_pickle=False)
        except Exception as e:  # truncated data, a bad header, an array of Python objects...
            raise DataError(f"--input {path!r}: cannot be read as a .npy array ({type(e).__name__}: {e})") from None


def _save_atomic(path: str, arr) -> None:
    """Write `arr` as .npy to exactly `path` (no suffix added) via a temporary file and a rename."""
    import numpy as np

    from ..io.atomic import atomic_writer

    with atomic_writer(path) as f:
        np.save(f, arr, allow_pickle=False)


def run(args) -> int:
    """``sparsenet predict MODEL --input X.npy --output Y.npy [--batch-size N] [--threads N] [--json]``."""
    import warnings

    from ..runtime import load, predict, set_num_threads

    if args.threads is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no threadpoolctl: BLAS keeps its count here
            set_num_threads(args.threads)
    model = load(args.model)
    x = _read_input(args.input)
    t0 = time.perf_counter()
    y = predict(model, x, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    _save_atomic(args.output, y)
    payload = {"input_shape": list(x.shape), "output_shape": list(y.shape), "seconds": round(seconds, 6),
               "output": args.output}
    emit(args, payload, f"predicted {list(x.shape)} -> {list(y.shape)} in {seconds:.3f} s; saved to {args.output}")
    return 0
