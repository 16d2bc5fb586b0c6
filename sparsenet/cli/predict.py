"""`sparsenet predict`: run a model file on .npy arrays and save the outputs as .npy (a graph of
several inputs or outputs: ``--input NAME=PATH`` and ``--output NAME=PATH``, once per name)."""

from __future__ import annotations

import time

from ._common import add_json_flag, emit, positive_int, thread_count

__all__ = ["register", "run"]

_NPY_MAGIC = b"\x93NUMPY"  # numpy.lib.format.MAGIC_PREFIX, without importing numpy for --help


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="run a model file on a .npy array and save the outputs",
                              epilog="example: sparsenet predict lenet90.safetensors --input x.npy --output y.npy --json")
    p.add_argument("model", help="model file")
    p.add_argument("--input", required=True, action="append",
                   help=".npy array: [N, *input_shape] or one sample; for a graph of several inputs, "
                        "NAME=PATH once per input")
    p.add_argument("--output", required=True, action="append",
                   help=".npy file to write (atomically); for a graph of several outputs, NAME=PATH once per output")
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


def _named(items: list, what: str) -> dict | None:
    """{name: path} from NAME=PATH items, or None for one plain path; anything else raises ConfigError."""
    from ..errors import ConfigError

    if len(items) == 1 and "=" not in items[0]:
        return None
    pairs = [item.split("=", 1) for item in items]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise ConfigError(f"--{what}: expected one path, or NAME=PATH for each, found {items}")
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--{what}: a name is given twice in {items}")
    return dict(pairs)


def run(args) -> int:
    """``sparsenet predict MODEL --input X.npy --output Y.npy [--batch-size N] [--threads N] [--json]``."""
    with thread_count(args.threads):
        return _run(args)


def _run(args) -> int:
    from ..errors import ConfigError
    from ..runtime import load, predict

    model = load(args.model)
    inputs, outputs = _named(args.input, "input"), _named(args.output, "output")
    x = _read_input(args.input[0]) if inputs is None else {k: _read_input(v) for k, v in inputs.items()}
    t0 = time.perf_counter()
    y = predict(model, x, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    ys = {None: y} if not isinstance(y, dict) else y
    if outputs is None:
        if isinstance(y, dict):
            raise ConfigError(f"--output: the model has outputs {list(y)}: give NAME=PATH for each")
        outputs = {None: args.output[0]}
    elif set(outputs) != set(ys):
        raise ConfigError(f"--output: expected NAME=PATH for the model's outputs {list(ys)}, found {list(outputs)}")
    for name, path in outputs.items():
        _save_atomic(path, ys[name])
    shape = (lambda a: list(a.shape))
    in_shape = shape(x) if not isinstance(x, dict) else {k: shape(v) for k, v in x.items()}
    out_shape = shape(y) if not isinstance(y, dict) else {k: shape(v) for k, v in y.items()}
    written = args.output[0] if None in outputs else dict(outputs)
    payload = {"input_shape": in_shape, "output_shape": out_shape, "seconds": round(seconds, 6), "output": written}
    emit(args, payload, f"predicted {in_shape} -> {out_shape} in {seconds:.3f} s; saved to {written}")
    return 0
