"""How kernels are compiled: one Python function, a serial and a parallel dispatcher.

Numba's on-disk cache names its files after the function's qualified name, and the parallel flag
is not part of the cache key: two dispatchers built from the same function would overwrite each
other's cache. `serial_and_parallel` therefore compiles two renamed copies of the function.
"""

import os
import threading
import types

import numba

__all__ = ["serial_and_parallel", "launch", "PARALLEL_MIN_WORK", "OPTIONS", "PARALLEL"]

# Below this many multiply-adds (nnz * batch) the serial kernel is used: thread start-up and
# synchronisation cost more than they save on small layers, a plan of serial kernels runs as one
# compiled call (`sparsenet.plan._tape`), and OpenMP's workers, which spin after a parallel kernel,
# stay asleep (a threaded BLAS call that follows would share a core with them). Measured through
# `predict` (2 threads, 2026-12-02): the pruned LeNet-300-100 (90 %) at batch 64 took 37-49 us with
# 2**18 against 52-106 us with 2**14, and the dense LeNet right after it 76-103 us against up to 7.7
# ms; the MLP 1024-4096-4096-10 at 90 %, whose layers stay above the threshold, ran as fast. Isolated
# kernels (benchmarks/parallel_threshold.py, omp layer) cross over near 15 000-25 000 at batch 1 and
# below 4 000-14 000 at batch 8 and 64 (a parallel call costs 3-5 us): 2**18 gives up a few
# microseconds on single layers of that size. Tunable with SPARSENET_PARALLEL_MIN_WORK.
PARALLEL_MIN_WORK = int(os.environ.get("SPARSENET_PARALLEL_MIN_WORK", 1 << 18))

# Options of every kernel (kernels only ever see validated inputs).
OPTIONS = dict(cache=True, fastmath=True, boundscheck=False, nogil=True)


def _renamed(fn, suffix):
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    copy.__module__ = fn.__module__
    return copy


def serial_and_parallel(fn):
    """Return (serial, parallel) Numba dispatchers compiled from `fn` (which uses numba.prange)."""
    serial = numba.njit(**OPTIONS)(_renamed(fn, "_serial"))
    parallel = numba.njit(parallel=True, **OPTIONS)(_renamed(fn, "_parallel"))
    PARALLEL.add(parallel)
    SERIAL_OF[parallel] = serial
    return serial, parallel


# The parallel dispatchers (before one runs, OpenBLAS's spinning threads are stopped: `_blas`) and
# the serial twin of each.
PARALLEL: set = set()
SERIAL_OF: dict = {}


_LOCK = threading.Lock()
_LAYER = []


def _needs_lock() -> bool:
    """True under Numba's workqueue threading layer, which aborts when two threads launch parallel
    kernels at once (or before any parallel kernel has run and the layer is not known yet)."""
    if not _LAYER:
        try:
            _LAYER.append(numba.threading_layer())
        except ValueError:
            return True
    return _LAYER[0] == "workqueue"


def launch(kernel, *args):
    """Call `kernel(*args)`; under the workqueue threading layer, one launch at a time."""
    if _needs_lock():
        with _LOCK:
            return kernel(*args)
    return kernel(*args)
