"""Inference runtime: load a validated model file, predict with checked input, choose thread counts
(the ``sparsenet predict`` command is `sparsenet.cli.predict`).

`predict` runs under `no_grad`, so layers store nothing and several threads may share one model in
evaluation mode (as `load` returns it). Thread counts: Numba's kernels use `numba.set_num_threads`
(at most ``NUMBA_NUM_THREADS``, fixed at start-up; the setting is per calling thread, as in Numba:
a new thread starts with the full pool); dense products use BLAS, limited process-wide through
threadpoolctl when it is installed.

>>> import numpy as np, sparsenet as sn
>>> model = sn.build_model("mlp", seed=0)
>>> predict(model, np.zeros((1, 8, 8), dtype=np.float32)).shape   # one sample: no batch axis
(10,)
>>> predict(model, np.zeros((4, 1, 8, 8))).shape
(4, 10)
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .errors import DataError, DTypeError, ShapeError
from .io import load_model
from .train import run_batches

__all__ = ["load", "predict", "set_num_threads", "get_num_threads"]

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
def load(path):
    """A model file loaded with every check of `sparsenet.load_model` (in evaluation mode)."""
    return load_model(path)


def _model_dtype(model) -> np.dtype:
    return np.dtype(next((l.dtype for _, l in model.named_modules() if hasattr(l, "dtype")), np.float32))


def _check_input(model, x) -> tuple[np.ndarray, bool]:
    """(x as [N, *input_shape] in the model's dtype, whether a single sample was given)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"predict: expected a real numeric input, found dtype {x.dtype}")
    shape = getattr(model, "input_shape", None)
    single = False
    if shape is not None:
        shape = tuple(shape)
        if x.shape == shape:
            x, single = x[None], True
        elif x.shape[1:] != shape:
            raise ShapeError(f"predict: expected input of shape [N, {', '.join(map(str, shape))}] or one sample "
                             f"{list(shape)}, found {list(x.shape)}")
    elif x.ndim < 2:
        raise ShapeError(f"predict: expected [batch, features...] (the model declares no input shape), "
                         f"found shape {list(x.shape)}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"predict: expected finite values, found {bad} NaN/inf entries")
    dtype = _model_dtype(model)
    with np.errstate(over="ignore"):
        cast = np.ascontiguousarray(x, dtype=dtype)
    if x.dtype.kind == "f" and not np.all(np.isfinite(cast)):
        raise DataError(f"predict: values overflow the model's dtype {dtype} "
                        f"(largest magnitude {np.max(np.abs(x.astype(np.float64)))})")
    return cast, single


def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """Outputs of `model` for `x`, in batches of `batch_size`, without storing anything on the layers.

    x: [N, *model.input_shape], or one sample [*model.input_shape] (then the result has no batch
    axis either); any real numeric dtype, converted to the model's dtype. NaN/inf or values that
    overflow that dtype raise DataError, a wrong shape ShapeError (naming expected and found), a
    complex/object/string dtype DTypeError. Thread-safe for a model in evaluation mode, whatever
    Numba's threading layer (under "workqueue", which is not thread-safe, `kernels.launch`
    serialises kernel launches); a model in training mode is switched to evaluation for the call and back (that
    switch is not thread-safe).

    >>> import numpy as np, sparsenet as sn
    >>> predict(sn.build_model("mlp", seed=0), np.ones((2, 1, 8, 8))).dtype
    dtype('float32')
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"predict: expected a batch_size >= 1, found {batch_size!r}")
    x, single = _check_input(model, x)
    out = run_batches(model, x, int(batch_size))
    return out[0] if single else out


# -- threads ---------------------------------------------------------------------------------------
def _blas_threads():
    """The BLAS thread count (the largest over loaded BLAS libraries), or None if unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


def get_num_threads() -> dict:
    """{"numba": threads of the sparse kernels (this thread), "blas": BLAS threads or None if unknown}."""
    import numba

    return {"numba": numba.get_num_threads(), "blas": _blas_threads()}


def set_num_threads(n: int, *, blas: int | None = None) -> dict:
    """Use `n` threads for the Numba kernels and `blas` (default `n`) for BLAS; returns the previous
    values as `get_num_threads` does, so that ``set_num_threads(p["numba"], blas=p["blas"])`` restores them.

    Numba cannot exceed the pool size fixed at start-up (``NUMBA_NUM_THREADS``, default: the CPU
    count); larger values are clamped to it. Without threadpoolctl the BLAS count cannot change in
    this process: it is exported as OPENBLAS/OMP/MKL/BLIS_NUM_THREADS for child processes, with a warning.

    >>> previous = set_num_threads(1)
    >>> get_num_threads()["numba"]
    1
    >>> _ = set_num_threads(previous["numba"], blas=previous["blas"])
    """
    import numba

    for name, value in (("n", n), ("blas", blas)):
        if (value is not None or name == "n") and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                                   or value < 1):
            raise DataError(f"set_num_threads: expected {name} >= 1, found {value!r}")
    previous = get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    blas = int(n if blas is None else blas)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        for var in _BLAS_ENV:
            os.environ[var] = str(blas)
        warnings.warn("threadpoolctl is not installed: the BLAS thread count applies to child processes only "
                      "(set through OPENBLAS_NUM_THREADS and friends)", RuntimeWarning, stacklevel=2)
    else:
        threadpool_limits(limits=blas, user_api="blas")  # stays in force: the object is not used as a context
    return previous
