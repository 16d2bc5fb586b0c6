"""`sparsenet predict`: run a model file on a .npy array and save the outputs as .npy."""

from __future__ import annotations

import time

from ._common import add_json_flag, emit, positive_int

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="run a model file on a .npy array and save the outputs",
                              epilog="example: sparsenet predict lenet90.npz --input x.npy --output y.npy --json")
    p.add_argument("model", help="model file")
    p.add_argument("--input", required=True, help=".npy array: [N, *input_shape] or one sample")
    p.add_argument("--output", required=True, help=".npy file to write (atomically)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="default: %(default)s")
    p.add_argument("--threads", type=positive_int, default=None, help="threads for kernels and BLAS")
    add_json_flag(p, "print shapes, seconds and the output path as JSON")
    p.set_defaults(func=run)


def _read_input(path: str):
    import numpy as np

    from ..errors import DataError

    try:
        arr = np.load(path, allow_pickle=False)
    except OSError:
        raise
    except Exception as e:  # not a .npy, pickled objects, truncated data...
        raise DataError(f"--input {path!r}: cannot be read as a .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DataError(f"--input {path!r}: expected a .npy file holding one array, found an .npz archive")
    return arr


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
