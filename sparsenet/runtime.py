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

from ._checks import check_int
from .errors import ConfigError
from .io import load_model
from .plan import plan_for

__all__ = ["load", "predict", "set_num_threads", "get_num_threads"]

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def load(path, *, mmap: bool = True):
    """The model saved at `path` (by `sparsenet.save_model`, or a .npz of sparsenet 0.1), every check
    of the file done, in evaluation mode. The one public loader (``sparsenet.load_model`` is its
    deprecated alias).

    With `mmap` (the default) the weights are views of the memory-mapped file, not copies (pages are
    copied on write, so training the model leaves the file unchanged). Replace a model file that a
    running program has loaded by a rename, as `save_model` does, never by writing into it
    (``cp new.safetensors old.safetensors``): a mapped file truncated under a model ends the process.
    ``mmap=False`` reads the whole file into memory instead.

    >>> model = load("lenet90.safetensors")  # doctest: +SKIP
    """
    return load_model(path, mmap=mmap)


def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """Outputs of `model` for `x`, in batches of `batch_size`, through the model's compiled plan
    (`sparsenet.plan`: built at the first call and after any change to the model, cached on it);
    nothing is stored on the layers.

    The one predict: ``sparsenet.predict(model, x)`` and ``model.predict(x)`` are this function.
    x: [N, *model.input_shape], or one sample [*model.input_shape] (then the result has no batch
    axis either; a model without `input_shape` needs the batch axis); any real numeric dtype,
    converted to the model's dtype (`sparsenet.nn.model_dtype`). NaN/inf or values that overflow
    that dtype raise DataError, a wrong shape ShapeError (naming expected and found), a
    complex/object/string dtype DTypeError, a batch_size that is not an integer >= 1 ConfigError.
    Thread-safe for a model in evaluation mode, whatever Numba's threading layer (under
    "workqueue", which is not thread-safe, `kernels.launch` serialises kernel launches); a model in
    training mode is switched to evaluation for the call and back (that switch is not thread-safe).

    A `Graph` of several inputs takes ``{input name: array}`` (every input, batch axis included,
    one batch size); one of several outputs gives ``{output name: array}``.

    >>> import numpy as np, sparsenet as sn
    >>> predict(sn.build_model("mlp", seed=0), np.ones((2, 1, 8, 8))).dtype
    dtype('float32')
    """
    batch_size = check_int(batch_size, "batch_size", "predict")
    inputs, outputs = getattr(model, "input_shapes", None), getattr(model, "outputs", None)
    if not isinstance(x, dict) and (inputs is None or len(inputs) == 1) and (outputs is None or len(outputs) == 1):
        return plan_for(model, x).predict(x, batch_size)
    return _predict_graph(model, x, batch_size)


def _predict_graph(model, x, batch_size: int):
    """`predict` for a graph of several inputs (x: {name: array}) or several outputs."""
    shapes = getattr(model, "input_shapes", None)
    if isinstance(x, dict) and shapes and len(x) == len(shapes) and all(k in x for k in shapes):
        # every input given by name (a per-request call): no lists to build
        outs = plan_for(model).run(*[x[k] for k in shapes], batch_size=batch_size, names=tuple(shapes))
        return outs[0] if len(outs) == 1 else dict(zip(model.outputs, outs))
    names = list(shapes or [])
    if not names:
        raise ConfigError(f"predict: a dict of inputs is for a Graph (named inputs); this {type(model).__name__} "
                          f"takes one array")
    if not isinstance(x, dict):
        if len(names) != 1:
            raise ConfigError(f"predict: the graph has inputs {names}: give a dict {{name: array}} of all of them")
        x = {names[0]: x}
    missing, unknown = [n for n in names if n not in x], [k for k in x if k not in names]
    if missing or unknown:
        raise ConfigError(f"predict: expected the graph's inputs {names}, found {list(x)}"
                          + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
    outs = plan_for(model).run(*[x[n] for n in names], batch_size=batch_size, names=names)
    return outs[0] if len(outs) == 1 else dict(zip(model.outputs, outs))


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

    check_int(n, "n", "set_num_threads")
    if blas is not None:
        check_int(blas, "blas", "set_num_threads")
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
