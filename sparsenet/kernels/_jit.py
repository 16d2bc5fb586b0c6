"""How kernels are compiled: one Python function, a serial and a parallel dispatcher.

Numba's on-disk cache names its files after the function's qualified name, and the parallel flag
is not part of the cache key: two dispatchers built from the same function would overwrite each
other's cache. `serial_and_parallel` therefore compiles two renamed copies of the function.
"""

import os
import threading
import types

import numba

__all__ = ["serial_and_parallel", "launch", "PARALLEL_MIN_WORK", "OPTIONS", "VECTOR_OPTIONS", "PARALLEL"]

# Below this many multiply-adds (nnz * batch) the serial kernel is used: thread start-up and
# synchronisation cost more than they save on small layers. Measured with
# benchmarks/parallel_threshold.py (2 threads, omp layer, 90 % CSR): at batch 1 the crossover lies
# near 15 000-25 000, at batch 8 and 64 below 4 000-14 000 (a parallel call costs 3-5 us); from
# ~100 000 the parallel kernel is 1.6-3x ahead. 2**14 sits between: the worst loss measured either
# side is a few microseconds. (The earlier default, 2**20, left a 4096 x 1024 layer at 90 % serial at
# batch 1: 133 us instead of 74 us.) A compiled plan whose kernels are small altogether runs them all
# serial (`sparsenet.plan.PLAN_SERIAL_WORK`). Tunable with SPARSENET_PARALLEL_MIN_WORK.
PARALLEL_MIN_WORK = int(os.environ.get("SPARSENET_PARALLEL_MIN_WORK", 1 << 14))

# Options of every kernel (kernels only ever see validated inputs).
OPTIONS = dict(cache=True, fastmath=True, boundscheck=False, nogil=True)
# ... and of kernels that divide inside a loop LLVM should vectorise: Python's error model checks
# every float division for zero (to raise ZeroDivisionError), which keeps the loop scalar (GELU's
# erfc, 3.7 -> 0.5 ns per value); NumPy's gives inf or nan as NumPy does.
VECTOR_OPTIONS = dict(OPTIONS, error_model="numpy")


def _renamed(fn, suffix):
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    copy.__module__ = fn.__module__
    return copy


def serial_and_parallel(fn, **options):
    """Return (serial, parallel) Numba dispatchers compiled from `fn` (which uses numba.prange), with
    `OPTIONS` updated by `options`."""
    options = dict(OPTIONS, **options)
    serial = numba.njit(**options)(_renamed(fn, "_serial"))
    parallel = numba.njit(parallel=True, **options)(_renamed(fn, "_parallel"))
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
