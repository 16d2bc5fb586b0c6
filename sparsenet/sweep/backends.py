"""Where the tasks run: Dask (a `LocalCluster` sized to the machine, or any scheduler by address) or a
plain local process pool. Both offer the same five operations to the runner, so a sweep takes the
same code path on either: `submit(fn, *args)`, `share(obj)`, `wait_first(futures)`, `result(future)`
and `close(cancel)`.

A task is always ``task.guarded(fn, *args)``: errors raised by a task come back as data (with the
traceback formatted on the worker); `result` raises only when the worker itself was lost (a killed
process, a broken pool, a cancelled future), which the runner retries.
"""

from __future__ import annotations

import logging
import os
import uuid

from ..errors import SparsenetError
from .task import guarded, worker_info

__all__ = ["make_backend", "DaskBackend", "ProcessBackend", "default_workers", "dask_available"]


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


class DaskBackend:
    """Tasks on Dask: ``Client(scheduler)`` when an address is given, else a `LocalCluster` of `workers`
    single-threaded worker processes. Checks that every connected worker runs this sparsenet version."""

    name = "dask"

    def __init__(self, scheduler=None, workers=None, *, connect_timeout: float = 30.0):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SparsenetError("the dask backend needs Dask: pip install 'sparsenet[dist]' "
                                 "(or use backend 'processes')") from None
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as e:
                raise SparsenetError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
            try:
                self.client.wait_for_workers(1, timeout=connect_timeout)
            except TimeoutError:
                self.client.close()
                raise SparsenetError(f"the Dask scheduler at {scheduler!r} has no worker after "
                                     f"{connect_timeout:.0f} s; start some with: dask worker {scheduler} "
                                     f"--nthreads 1") from None
        else:
            n = workers or default_workers()
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.address = self.client.scheduler.address
        self._check_workers()

    def _check_workers(self) -> None:
        from .. import __version__

        infos = self.client.run(worker_info)
        bad = {addr: i["sparsenet"] for addr, i in infos.items() if i["sparsenet"] != __version__}
        if bad:
            self.close()
            raise SparsenetError(f"Dask workers run another sparsenet version than this driver ({__version__}): "
                                 f"{bad}; install the same version on every worker")

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def submit(self, fn, *args):
        return self.client.submit(guarded, fn, *args, pure=False, key=f"sweep-{fn.__name__}-{uuid.uuid4().hex}")

    def share(self, obj):
        """Send `obj` to the cluster once; tasks receive it by reference."""
        return self.client.scatter(obj, hash=False)

    def wait_first(self, futures):
        from distributed import wait

        return wait(list(futures), return_when="FIRST_COMPLETED").done

    def result(self, future):
        return future.result()

    def close(self, cancel: bool = False) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def describe(self) -> str:
        where = "a LocalCluster" if self.cluster is not None else f"the scheduler {self.address}"
        return f"dask on {where} ({self.workers} workers)"


class ProcessBackend:
    """Tasks in a `concurrent.futures.ProcessPoolExecutor` of `workers` spawned processes. A worker that
    dies breaks the pool: the pool is replaced and the tasks it held are handed back to the runner."""

    name = "processes"

    def __init__(self, workers=None):
        self.workers = workers or default_workers()
        self._generation = 0
        self._futures = {}
        self._pool = self._new_pool()

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the driver may hold Numba's and tqdm's threads, which fork does not copy safely
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn, *args):
        fut = self._pool.submit(guarded, fn, *args)
        self._futures[fut] = self._generation
        return fut

    def share(self, obj):
        return obj

    def wait_first(self, futures):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(list(futures), return_when=FIRST_COMPLETED).done

    def result(self, future):
        from concurrent.futures.process import BrokenProcessPool

        generation = self._futures.pop(future, None)
        try:
            return future.result()
        except BrokenProcessPool:
            if generation == self._generation:  # the first of its pool's futures to report: replace the pool
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._generation += 1
                self._pool = self._new_pool()
            raise

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=True)

    def describe(self) -> str:
        return f"a local process pool ({self.workers} workers)"


def make_backend(backend: str = "auto", *, scheduler=None, workers=None):
    """'dask' (needs Dask), 'processes', or 'auto': Dask when installed or when a scheduler is given,
    else the process pool."""
    if backend not in ("auto", "dask", "processes"):
        raise SparsenetError(f"backend: expected 'auto', 'dask' or 'processes', found {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SparsenetError(f"workers: expected a positive integer, found {workers!r}")
    if scheduler and backend == "processes":
        raise SparsenetError("--scheduler needs the dask backend (a scheduler address means a Dask cluster)")
    if backend == "dask" or scheduler or (backend == "auto" and dask_available()):
        return DaskBackend(scheduler, workers)
    return ProcessBackend(workers)
