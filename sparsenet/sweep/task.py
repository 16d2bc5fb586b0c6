"""What a worker runs: `train_dense` (a point's dense baseline) and `run_point` (prune, fine-tune,
compile, evaluate). Plain module-level functions of plain data, importable on any worker that has
sparsenet installed; they write nothing to disk outside a temporary directory and return dicts.

No latency is measured here: a worker shares its cores with other tasks, so timings taken in a task
would say more about the neighbours than about the model. `sparsenet.sweep.timing` measures latency
afterwards, serially, in the driver.

Each task runs single-threaded (Numba and the BLAS limited to one thread for its duration): the
scheduler gives each core one task, and a point's numbers do not depend on how busy the machine is.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import socket
import tempfile
import time
import traceback

from ..errors import ConfigError, SparsenetError
from .config import POINT_FIELDS, dense_key, dense_spec, point_key

__all__ = ["run_point", "train_dense", "guarded", "worker_info"]

# Candidate storages of the 'smallest' format choice (the compiler's default block shapes).
_SMALLEST_CANDIDATES = ("dense", "csr", "bsr4x4", "bsr8x1", "bsr16x1", "bsr1x4")


@contextlib.contextmanager
def _single_threaded():
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the BLAS keeps its threads (dask workers set OMP_NUM_THREADS=1 anyway)
            yield
        else:
            with threadpool_limits(limits=1):
                yield
    finally:
        numba.set_num_threads(before)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, split_seed: int, test_fraction: float):
    from ..data import classification_dataset

    return classification_dataset(name, "sweep dataset", seed=split_seed, test_fraction=test_fraction)


def _load(point):
    return _dataset(point["dataset"], point["split_seed"], point["test_fraction"])


def _provenance(t0: float) -> dict:
    from .. import __version__

    return {"seconds": round(time.perf_counter() - t0, 3), "host": socket.gethostname(), "pid": os.getpid(),
            "sparsenet_version": __version__, "finished_at": time.time()}


def model_to_bytes(model) -> bytes:
    """A model as the bytes of its model file (what a task returns and the driver stores)."""
    from ..io import save_model

    with tempfile.TemporaryDirectory(prefix="sparsenet-sweep-") as d:
        path = os.path.join(d, "model.safetensors")
        save_model(model, path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data: bytes):
    from ..io import load_model

    with tempfile.TemporaryDirectory(prefix="sparsenet-sweep-") as d:
        path = os.path.join(d, "model.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        return load_model(path)


def _classification(model, ds) -> dict:
    from ..metrics import classification_report
    from ..runtime import predict

    rep = classification_report(ds.y_test, predict(model, ds.x_test), num_classes=ds.num_classes)
    return {"accuracy": rep["accuracy"], "precision": rep["macro"]["precision"],
            "recall": rep["macro"]["recall"], "f1": rep["macro"]["f1"]}


def _check_point(point) -> None:
    if not isinstance(point, dict):
        raise ConfigError(f"run_point: expected a point dict, found {type(point).__name__}")
    missing = [k for k in POINT_FIELDS if k not in point]
    if missing:
        raise ConfigError(f"run_point: the point lacks {missing}; build points with sparsenet.sweep.expand_grid")


def _train(point):
    from ..train import fit
    from ..zoo import build_model

    ds = _load(point)
    model = build_model(point["model"], seed=point["seed"], num_classes=ds.num_classes,
                        input_shape=ds.x_train.shape[1:])
    fit(model, ds.x_train, ds.y_train, epochs=point["train_epochs"], batch_size=point["train_batch_size"],
        lr=point["train_lr"], seed=point["seed"], quiet=True)
    return model


def train_dense(point: dict) -> dict:
    """Train a point's dense baseline. Returns {"key", "spec", "metrics", "info", "model_file"}:
    `model_file` is the model file's bytes (the driver stores it); metrics are on the test split.

    >>> from sparsenet.sweep import expand_grid, parse_config
    >>> p = expand_grid(parse_config({"model": "mlp", "train": {"epochs": 1}}))[0]
    >>> rec = train_dense(p)
    >>> sorted(rec["metrics"])
    ['accuracy', 'bytes', 'f1', 'params', 'precision', 'recall']
    """
    from ..summary import summarize

    _check_point(point)
    t0 = time.perf_counter()
    with _single_threaded():
        model = _train(point)
        metrics = _classification(model, _load(point))
        totals = summarize(model)["totals"]
        metrics.update(params=totals["nonzero_params"], bytes=totals["total_bytes"])
        data = model_to_bytes(model)
    return {"key": dense_key(point), "spec": dense_spec(point), "metrics": metrics, "info": _provenance(t0),
            "model_file": data}


def _smallest_formats(model) -> dict:
    """{layer name: spec} storing each weighted layer in the candidate of fewest bytes (ties: the
    earlier candidate, dense first). Deterministic: nothing is timed."""
    from .. import prune as _prune

    best = {}
    for spec in _SMALLEST_CANDIDATES:
        layers = _prune.compiled(model, spec).meta["compile"]["layers"]
        for name, rec in layers.items():
            if name not in best or rec["bytes"] < best[name][1]:
                best[name] = (spec, rec["bytes"])
    return {name: spec for name, (spec, _) in best.items()}


def run_point(point: dict, dense: bytes | None = None) -> dict:
    """Run one point: prune a copy of the dense baseline, fine-tune, compile, evaluate on the test split.

    point: a dict from `expand_grid`. dense: the dense baseline's model file bytes (from `train_dense`);
    None trains it here. Returns {"key", "dense_key", "point", "metrics", "layers", "pruning", "info",
    "model_file"}; metrics: accuracy and macro precision/recall/F1 of the compiled model, reached
    `sparsity` of the pruned layers, nonzero `params`, true `bytes` (and the dense model's), `bytes_ratio`,
    theoretical `flops_speedup`, `dense_accuracy` and `accuracy_drop`. Raises what the engine raises
    (e.g. SparsenetError for an unknown method). Same point and dense model -> the same metrics.
    """
    from .. import prune as _prune
    from ..prune import prune
    from ..prune.report import pruning_report

    _check_point(point)
    t0 = time.perf_counter()
    with _single_threaded():
        ds = _load(point)
        base = model_from_bytes(dense) if dense is not None else _train(point)
        dense_metrics = _classification(base, ds)
        model = copy.deepcopy(base)
        n_cal = point["calibration"]
        result = prune(model, method=point["method"], granularity=point["granularity"], scope=point["scope"],
                       normalize=point["normalize"], sparsity=point["sparsity"], schedule=point["schedule"],
                       rounds=point["rounds"], exclude=tuple(point["exclude"]),
                       data=(ds.x_train[:n_cal], ds.y_train[:n_cal]), train_data=(ds.x_train, ds.y_train),
                       finetune_epochs=point["finetune_epochs"], lr=point["finetune_lr"],
                       batch_size=point["finetune_batch_size"], seed=point["seed"], quiet=True)
        formats = _smallest_formats(model) if point["format"] == "smallest" else point["format"]
        compiled = _prune.compiled(model, formats)
        metrics = _classification(compiled, ds)
        report = pruning_report(base, compiled)
        t = report["totals"]
        metrics.update(
            sparsity=float(result.sparsity), params=int(t["params_after"]), params_dense=int(t["params_before"]),
            bytes=int(t["bytes_after"]), bytes_dense=int(t["bytes_before"]), bytes_ratio=float(t["bytes_ratio"]),
            flops_speedup=float(t["flops_speedup"]), dense_accuracy=dense_metrics["accuracy"],
            accuracy_drop=dense_metrics["accuracy"] - metrics["accuracy"])
        layers = [{k: r[k] for k in ("name", "kind", "shape_before", "shape_after", "sparsity", "format",
                                     "bytes_after")} for r in report["layers"]]
        data = model_to_bytes(compiled)
    pruning = {k: v for k, v in result.to_dict().items() if k in ("method", "granularity", "schedule", "sparsity")}
    return {"key": point_key(point), "dense_key": dense_key(point), "point": dict(point), "metrics": metrics,
            "layers": layers, "pruning": pruning, "info": _provenance(t0), "model_file": data}


def guarded(fn, *args) -> dict:
    """Run ``fn(*args)`` and return {"ok": True, "value": ...} or, if it raised, {"ok": False, "error",
    "type", "traceback", "retryable", "host", "pid"} with the traceback formatted where it happened.
    A SparsenetError (bad input: the same point fails the same way again) is not retryable."""
    try:
        return {"ok": True, "value": fn(*args)}
    except Exception as e:  # reported to the driver, which records it; KeyboardInterrupt passes
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "type": type(e).__name__,
                "traceback": traceback.format_exc(), "retryable": not isinstance(e, SparsenetError),
                "host": socket.gethostname(), "pid": os.getpid()}


def worker_info() -> dict:
    """The sparsenet and Python versions of the process running this (the driver checks its workers)."""
    import sys

    from .. import __version__

    return {"sparsenet": __version__, "python": sys.version.split()[0], "host": socket.gethostname()}
