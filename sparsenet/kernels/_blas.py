"""Stopping OpenBLAS's idle threads from spinning before a parallel kernel runs.

After a threaded call, OpenBLAS's worker threads spin (calling sched_yield) for about 2**28 cycles,
~0.1 s, before they sleep (its THREAD_TIMEOUT, read once when the library loads). A parallel Numba
kernel started meanwhile shares the cores with them: measured with `w @ x` then `csr @ x` in a
plain loop (4096 x 4096 at 90 %, batch 64, 2 threads), the CSR product took 7.0-7.5 ms instead of
3.2-3.4 ms, which is what a pause of 0.15 s, or this module, gives back. `quiet_blas` asks each
loaded OpenBLAS (pthreads build) to shut its thread pool down (``blas_thread_shutdown_``, what
OpenBLAS itself does before a fork); the next threaded BLAS call starts the pool again.

Starting the pool again costs the next threaded BLAS call 0.15-0.6 ms (measured: a 300 x 300
product 290 -> 435 us, 1000 x 1000 10.0 -> 10.6 ms), so compiled plans that call BLAS themselves
never do this (`sparsenet.plan`), and a single-threaded BLAS call does not start the pool.

The shutdown is not safe while another thread is inside a BLAS call, so it is done only when the
process runs a single Python thread; with several threads the spinning is left alone (the cost
is then speed, never correctness). An idle check costs well under a microsecond; set
``SPARSENET_QUIET_BLAS=0`` to turn it off.
"""

import ctypes
import os
import threading

from ._jit import PARALLEL

__all__ = ["quiet_blas", "QUIET_MIN_WORK", "quiet_before", "parallel_if_quiet"]

# Multiply-adds from which a compiled plan's parallel kernel that follows the plan's own BLAS step
# stops BLAS's pool first rather than run serial (restarting the pool costs 0.15-0.6 ms; a kernel of
# this size takes about a millisecond). Outside plans, every parallel kernel stops the pool: one
# that shares the cores with it stalls for milliseconds (4096 x 4096 at 90 %, batch 1, right after
# `w @ x`: 3.3-5.2 ms instead of 0.3 ms, measured).
QUIET_MIN_WORK = 1 << 22

_POOLS = None  # [(blas_server_avail as a ctypes int, blas_thread_shutdown_)]


def _find_pools() -> list:
    pools = []
    if os.environ.get("SPARSENET_QUIET_BLAS", "1") == "0":
        return pools
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return pools
    for info in threadpool_info():
        if info.get("internal_api") != "openblas" or info.get("threading_layer") != "pthreads":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
            pools.append((ctypes.c_int.in_dll(lib, "blas_server_avail"), lib.blas_thread_shutdown_))
        except (OSError, AttributeError, ValueError):  # another build: leave it alone
            continue
    return pools


def quiet_before(kernel) -> None:
    """`quiet_blas` if `kernel` is a parallel one."""
    if kernel in PARALLEL:
        quiet_blas()


PLAN_THREADS = "sparsenet-plan"  # the name prefix of the threads that run parts of a split batch (`Plan`)


def quiet_blas() -> bool:
    """Shut down the thread pools of OpenBLAS that are up, if this process runs one Python thread
    (besides the plan's own workers, which call no BLAS). Returns whether no pool is up afterwards
    (False: one is up and was left alone)."""
    global _POOLS
    if _POOLS is None:
        _POOLS = _find_pools()
    up = [(avail, shutdown) for avail, shutdown in _POOLS if avail.value]
    if not up:
        return True
    if threading.active_count() != 1 and any(not t.name.startswith(PLAN_THREADS) for t in threading.enumerate()
                                              if t is not threading.current_thread()):
        return False
    for _, shutdown in up:
        shutdown()
    return True


def parallel_if_quiet(parallel, serial):
    """A kernel that runs `parallel` when OpenBLAS's pools are down (stopped here if need be) and
    `serial` when one is up and cannot be stopped (several Python threads, e.g. a progress bar's
    monitor): a parallel kernel sharing the cores with spinning BLAS threads stalled for
    milliseconds (the demo's pruned LeNet at batch 64: 0.01x dense), a serial one did not."""
    def run(*args):
        return parallel(*args) if quiet_blas() else serial(*args)
    return run
