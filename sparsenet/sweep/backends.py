"""Where the tasks run: Dask (a `LocalCluster` sized to the machine, or any scheduler by address) or a
plain local process pool. Both offer the same four operations to the runner, so a sweep takes the
same code path on either: `submit(fn, *args)`, `wait_first(futures)`, `result(future)` and
`close(cancel)`.

Arguments travel with each task (a point carries its dense baseline's model file, tens to hundreds
of kB for the zoo's models) rather than being scattered once: Dask can then re-run a task anywhere
after losing a worker, where scattered data would be lost with the worker holding it.

A task is always ``task.guarded(fn, *args)``: errors raised by a task come back as data (with the
traceback formatted on the worker); `result` raises only when the worker itself was lost (a killed
process, a broken pool, a cancelled future), which the runner retries.
"""

from __future__ import annotations

import logging
import os
import uuid

from ..errors import ConfigError, SparsenetError
from .task import guarded, worker_info

__all__ = ["make_backend", "check_backend", "DaskBackend", "ProcessBackend", "WorkerLost", "default_workers", "dask_available"]


class WorkerLost(Exception):
    """A task's worker died. `charged`: whether the task may have caused it (it had started), so that
    the attempt counts; tasks that were only queued in a broken pool are resubmitted free."""

    def __init__(self, message: str, charged: bool = True):
        super().__init__(message)
        self.charged = charged


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401  (only whether it imports)
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

    def wait_first(self, futures):
        from distributed import wait
        from distributed.client import FuturesCancelledError

        futures = list(futures)
        try:
            return wait(futures, return_when="FIRST_COMPLETED").done
        except FuturesCancelledError:  # `result` reports each cancelled future as lost
            return {f for f in futures if f.status != "pending"}

    def result(self, future):
        try:
            return future.result()
        except Exception as e:  # KilledWorker (Dask already moved the bystanders), lost data, cancellation
            raise WorkerLost(f"{type(e).__name__}: {e}") from e

    def close(self, cancel: bool = False) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def describe(self) -> str:
        where = "a LocalCluster" if self.cluster is not None else f"the scheduler {self.address}"
        return f"dask on {where} ({self.workers} workers)"


_STARTED = None  # in a pool worker: the queue on which it announces each task it starts


def _init_worker(queue) -> None:
    """Pool worker set-up. Workers ignore SIGINT: Ctrl-C in a terminal reaches the whole process
    group, and only the driver should act on it (stop, keep finished points, exit 130); a worker
    dying of it first would look like a lost worker to be retried."""
    global _STARTED
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STARTED = queue


def _tracked(token: str, fn, *args):
    if _STARTED is not None:
        _STARTED.put(token)  # a SimpleQueue writes at once: the token is out before the task can crash
    return guarded(fn, *args)


class ProcessBackend:
    """Tasks in a `concurrent.futures.ProcessPoolExecutor` of `workers` spawned processes.

    A worker that dies breaks the whole pool: the pool is replaced, and every task it held is handed
    back to the runner as `WorkerLost`, charged an attempt only if it had started (workers announce
    each task they start), or if none had (the pool itself is failing)."""

    name = "processes"

    def __init__(self, workers=None):
        import multiprocessing

        self.workers = workers or default_workers()
        # spawn, not fork: the driver may hold Numba's and tqdm's threads, which fork does not copy safely
        self._ctx = multiprocessing.get_context("spawn")
        self._generation = 0
        self._meta = {}  # future -> (pool generation, token)
        self._started = set()
        self._any_started = {}  # broken generation -> whether any of its tasks had started
        self._pool = self._new_pool()

    def _new_pool(self):
        from concurrent.futures import ProcessPoolExecutor

        self._queue = self._ctx.SimpleQueue()
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(self._queue,))

    def _drain(self) -> None:
        while not self._queue.empty():
            self._started.add(self._queue.get())

    def submit(self, fn, *args):
        token = uuid.uuid4().hex
        fut = self._pool.submit(_tracked, token, fn, *args)
        self._meta[fut] = (self._generation, token)
        return fut

    def wait_first(self, futures):
        from concurrent.futures import FIRST_COMPLETED, wait

        while True:
            self._drain()  # keeps the announcement pipe from filling up
            done = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED).done
            if done:
                return done

    def result(self, future):
        from concurrent.futures.process import BrokenProcessPool

        generation, token = self._meta.pop(future, (None, None))
        try:
            return future.result()
        except BrokenProcessPool as e:
            if generation == self._generation:  # the first of its pool's futures to report: replace the pool
                self._drain()
                tokens = {t for g, t in (*self._meta.values(), (generation, token)) if g == generation}
                self._any_started[generation] = bool(tokens & self._started)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._generation += 1
                self._pool = self._new_pool()
            charged = token in self._started or not self._any_started.get(generation, False)
            raise WorkerLost(f"a worker process died ({e})", charged=charged) from e

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=True)

    def describe(self) -> str:
        return f"a local process pool ({self.workers} workers)"


def check_backend(backend: str = "auto", *, scheduler=None, workers=None) -> None:
    """Refuse settings that cannot work, before anything runs."""
    if backend not in ("auto", "dask", "processes"):
        raise ConfigError(f"backend: expected 'auto', 'dask' or 'processes', found {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: expected a positive integer, found {workers!r}")
    if scheduler and backend == "processes":
        raise ConfigError("--scheduler needs the dask backend (a scheduler address means a Dask cluster)")
    if scheduler and workers is not None:
        raise ConfigError("--workers sizes a LocalCluster or the process pool; with --scheduler the "
                          "cluster's own workers run the tasks: drop one of them")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ConfigError(f"scheduler: expected an address such as 'tcp://host:8786', found {scheduler!r}")


def make_backend(backend: str = "auto", *, scheduler=None, workers=None):
    """'dask' (needs Dask), 'processes', or 'auto': Dask when installed or when a scheduler is given,
    else the process pool."""
    check_backend(backend, scheduler=scheduler, workers=workers)
    if backend == "dask" or scheduler or (backend == "auto" and dask_available()):
        return DaskBackend(scheduler, workers)
    return ProcessBackend(workers)
