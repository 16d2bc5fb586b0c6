"""`run_sweep`: expand a study, run the points not yet in the results store as independent tasks, write
each result the moment it arrives, then time the finished points serially and write the tables.

The driver loop is the same for every backend: dense baselines first (one per model, dataset, split,
training settings and seed; stored and shared by the points that need them), each point submitted as
soon as its baseline exists, results taken in completion order. A task that raises is retried when
the error may be transient (`retries` times) and recorded in ``failures/`` otherwise (a SparsenetError
is bad input and is not retried); a lost worker (killed process, broken pool) is retried likewise. A
sweep interrupted at any instant loses only the tasks in flight; re-running it skips every finished
point (failed points are tried again).
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass, field

from ..errors import ConfigError
from . import task as _task
from .backends import check_backend, make_backend
from .config import SweepConfig, dense_key, load_config, point_key
from .plots import write_plots
from .store import ResultStore
from .table import write_tables
from .timing import timing_phase

__all__ = ["run_sweep", "SweepResult"]

# The functions the workers run (module attributes, so that a test can swap one for a misbehaving one).
_DENSE_TASK = _task.train_dense
_POINT_TASK = _task.run_point


@dataclass
class SweepResult:
    """What a sweep left in its results directory: tidy rows, summary rows, failures and counts."""

    name: str
    out_dir: str
    points: int
    computed: int
    skipped: int
    failed: int
    timed: int
    backend: str | None
    rows: list = field(default_factory=list, repr=False)
    summary: list = field(default_factory=list, repr=False)
    failures: list = field(default_factory=list, repr=False)
    files: dict = field(default_factory=dict, repr=False)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "out_dir": self.out_dir, "points": self.points, "computed": self.computed,
                "skipped": self.skipped, "failed": self.failed, "timed": self.timed, "backend": self.backend,
                "seconds": round(self.seconds, 3), "files": self.files,
                "failures": [{"key": f["key"], "error": f["error"], "attempts": f["attempts"]}
                             for f in self.failures]}


def _lost_worker(e: BaseException) -> dict:
    return {"ok": False, "error": f"worker lost: {type(e).__name__}: {e}", "type": type(e).__name__,
            "traceback": "".join(traceback.format_exception(e)), "retryable": True, "lost_worker": True}


class _Driver:
    """The submit / wait / store loop of one sweep run."""

    def __init__(self, backend, store, todo, *, retries, run_id, bar):
        self.backend, self.store, self.retries, self.run_id, self.bar = backend, store, retries, run_id, bar
        self.groups = {}  # dense key -> [(key, point)] waiting for that baseline
        for key, point in todo:
            self.groups.setdefault(dense_key(point), []).append((key, point))
        self.pending = {}  # future -> (kind, key, point, attempt)
        self.dense_files = {}  # dense key -> the baseline's model file (bytes), sent with each of its points
        self.computed = self.failed = 0

    def _submit_point(self, key, point, attempt):
        dkey = dense_key(point)
        if dkey not in self.dense_files:
            with open(self.store.model_path(dkey), "rb") as f:
                self.dense_files[dkey] = f.read()
        fut = self.backend.submit(_POINT_TASK, point, self.dense_files[dkey])
        self.pending[fut] = ("point", key, point, attempt)

    def _submit_dense(self, dkey, attempt):
        point = self.groups[dkey][0][1]
        fut = self.backend.submit(_DENSE_TASK, point)
        self.pending[fut] = ("dense", dkey, point, attempt)

    def start(self):
        for dkey, group in self.groups.items():
            if self.store.dense(dkey) is not None:
                for key, point in group:
                    self._submit_point(key, point, 1)
            else:
                self._submit_dense(dkey, 1)

    def _fail(self, key, point, out, attempt, prefix=""):
        self.store.write_failure({"key": key, "point": point, "error": prefix + out["error"],
                                  "type": out.get("type"), "traceback": out.get("traceback"), "attempts": attempt,
                                  "retryable": out.get("retryable"), "host": out.get("host"),
                                  "run": self.run_id, "failed_at": time.time()})
        self.failed += 1
        self.bar.update(1)
        self.bar.set_postfix(failed=self.failed)

    def _resubmit(self, kind, key, point, attempt):
        if kind == "dense":
            self._submit_dense(key, attempt)
        else:
            self._submit_point(key, point, attempt)

    def _handle(self, fut):
        kind, key, point, attempt = self.pending.pop(fut)
        try:
            out = self.backend.result(fut)
        except Exception as e:  # the worker itself was lost (killed process, broken pool, cancellation)
            if not getattr(e, "charged", True):  # only queued in a pool that broke: not this task's fault
                self.store.log("requeue", key, error=str(e))
                self._resubmit(kind, key, point, attempt)
                return
            out = _lost_worker(e)
        if out["ok"]:
            value = out["value"]
            model_file = value.pop("model_file")
            value["run"] = self.run_id
            if kind == "dense":
                self.store.write_dense(value, model_file)
                for k, p in self.groups[key]:
                    self._submit_point(k, p, 1)
            else:
                self.store.write_model(key, model_file)  # the model first: the record says it is complete
                self.store.write_point(value)
                self.computed += 1
                self.bar.update(1)
            return
        if out.get("retryable") and attempt <= self.retries:
            self.store.log("retry", key, error=out["error"], attempt=attempt)
            self._resubmit(kind, key, point, attempt + 1)
            return
        if kind == "dense":
            for k, p in self.groups[key]:
                self._fail(k, p, out, attempt, prefix="dense baseline failed: ")
        else:
            self._fail(key, point, out, attempt)

    def run(self):
        self.start()
        while self.pending:
            for fut in self.backend.wait_first(self.pending):
                self._handle(fut)


def run_sweep(config, *, out_dir=None, backend: str = "auto", scheduler: str | None = None,
              workers: int | None = None, retries: int = 1, timing: bool = True, progress: bool = True,
              plots: bool = True, echo=None) -> SweepResult:
    """Run a pruning study; return a `SweepResult` (its tables are also written to `out_dir`).

    config: a study file path, a dict, or a `SweepConfig`. out_dir: the results directory (default
    ``sweep-<name>`` in the working directory); re-running with the same directory skips finished points.
    backend: 'auto' (Dask if installed, else processes), 'dask' or 'processes'. scheduler: a Dask
    scheduler address (``tcp://host:8786``): run on that cluster; without it Dask starts a LocalCluster.
    workers: processes of the LocalCluster / pool (default: one per core). retries: extra attempts of a
    task that failed transiently or lost its worker. timing: run the serial latency phase afterwards.
    echo: a function receiving progress messages (default: silent).

    >>> from sparsenet.sweep import example_path
    >>> res = run_sweep(example_path("digits-small"), out_dir=tmp, backend="processes")  # doctest: +SKIP
    >>> res.computed, res.failed                                                          # doctest: +SKIP
    (8, 0)
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, SweepConfig) else load_config(config)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries: expected an integer >= 0, found {retries!r}")
    check_backend(backend, scheduler=scheduler, workers=workers)
    say = echo or (lambda msg: None)
    points = cfg.points()
    keys = [point_key(p) for p in points]
    store = ResultStore(out_dir or f"sweep-{cfg.name}")
    store.lock()
    run_id = uuid.uuid4().hex[:12]
    be = None
    try:
        store.write_sweep({**cfg.to_dict(), "keys": keys, "run": run_id})
        todo = [(k, p) for k, p in zip(keys, points) if not store.has_point(k)]
        skipped = len(points) - len(todo)
        say(f"sweep {cfg.name!r}: {len(points)} points, {skipped} already done, results in {store.root}")
        computed = 0
        if todo:
            from .._progress import progress

            be = make_backend(backend, scheduler=scheduler, workers=workers)
            say(f"running {len(todo)} point(s) on {be.describe()}")
            with progress(total=len(points), initial=skipped, disable=not progress, desc=f"sweep {cfg.name}",
                      unit="point") as bar:
                driver = _Driver(be, store, todo, retries=retries, run_id=run_id, bar=bar)
                try:
                    driver.run()
                finally:
                    computed = driver.computed
                    be.close(cancel=True)
        records = [r for r in (store.point(k) for k in keys) if r is not None]
        timed = timing_phase(store, records, cfg.timing, progress=progress, echo=say) if timing else 0
        failures = [f for f in (store.failure(k) for k in keys) if f is not None]
        tables = write_tables(store, keys, metrics=cfg.metrics, failures=failures)
        files = dict(tables["files"])
        if plots:
            axes = [a for a in cfg.grid if len(cfg.grid[a]) > 1 and a not in ("sparsity", "seed")] or ["method"]
            files.update(write_plots(tables["summary"], store.root, axes=axes, title=cfg.name))
        return SweepResult(name=cfg.name, out_dir=store.root, points=len(points), computed=computed,
                           skipped=skipped, failed=len(failures), timed=timed,
                           backend=be.name if be is not None else None, rows=tables["rows"],
                           summary=tables["summary"], failures=failures, files=files,
                           seconds=time.perf_counter() - t0)
    finally:
        store.unlock()
