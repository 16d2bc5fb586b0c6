"""Pruning studies at scale: a grid of train -> prune -> fine-tune -> evaluate runs on Dask (or a local
process pool), resumable, with a serial latency phase, tidy tables and plots.

A study is a small TOML/JSON/YAML file (see `sparsenet.sweep.config` and ``examples/``)::

    sparsenet sweep study.toml                    # LocalCluster sized to the machine (Dask installed)
    sparsenet sweep study.toml --backend processes  # without Dask: a plain process pool, same sweep

or from Python::

    >>> from sparsenet.sweep import example_path, load_config
    >>> cfg = load_config(example_path("digits-small"))
    >>> len(cfg.points())
    8
    >>> res = run_sweep(cfg, out_dir="runs/small")        # doctest: +SKIP
    >>> res.summary[0]["accuracy_mean"]                   # doctest: +SKIP

How a sweep runs. Every point (one combination of the grid) is an independent task: the driver
submits the dense baselines, then each point as soon as its baseline is stored, and writes each
result to the results directory the moment it arrives (``points/<key>.json``, atomically; the key is
the SHA-256 of the point's full configuration). Re-running the same command skips finished points;
killing the sweep loses only the points in flight; a task that raises is recorded in ``failures/``
with its traceback (and retried first when the error may be transient, e.g. a lost worker). Latency
is never measured inside tasks: after the grid, the driver times each finished point alone (dense vs
compiled, batch 1 and 64), so speedups are not polluted by neighbouring tasks. The tables
(``results.csv``, ``summary.csv`` with mean and std across seeds) and plots (``accuracy.png``,
``speedup.png``) are rewritten at the end of every run.

Worked example: the same sweep on several machines. Requirements: the same Python and sparsenet
version on every machine (``pip install 'sparsenet[dist]'``; the driver refuses workers of another
version), and the dataset readable on every worker and on the driver, which times the points (the embedded
``digits`` always is; an ``.npz`` path must exist on each machine). Workers only return results: only the driver writes, so the results
directory only needs to be on the driver's disk. On host A (10.0.0.1) start a scheduler::

    dask scheduler --port 8786

on each worker host B, C, ... start single-threaded workers, one per core (each task uses one
thread; ``--nworkers -1`` means as many processes as cores)::

    dask worker tcp://10.0.0.1:8786 --nworkers -1 --nthreads 1

then, from any machine that reaches A (a laptop, or A itself)::

    sparsenet sweep study.toml --scheduler tcp://10.0.0.1:8786 --out runs/study

The driver sends each point to the cluster, stores results locally as they arrive, and then times
the finished points on its own machine: run it where latency should be measured, with no worker on
that machine (or pass ``--no-timing``, and time later with ``sparsenet sweep study.toml --out
runs/study --backend processes``: finished points are skipped, only the timing phase runs). If the
driver dies, run the same command again; if workers die, Dask moves their tasks elsewhere and the
driver retries what is lost. Network: the driver talks only to the scheduler (results come through
it); the scheduler and the workers must reach each other, so behind a firewall fix the workers'
ports (``--worker-port 9000:9100 --nanny-port 9100:9200``) and open them and 8786. From outside the
cluster's network, tunnel the scheduler: ``ssh -N -L 8786:localhost:8786 A`` and use
``--scheduler tcp://localhost:8786``.
"""

import os as _os

from .config import (METRICS, POINT_FIELDS, POINT_SCHEMA, SweepConfig, dense_key, expand_grid, load_config,
                     parse_config, point_key)
from .runner import SweepResult, run_sweep
from .store import ResultStore
from .table import point_rows, summarize_rows, write_tables
from .task import run_point, train_dense
from .timing import measure_point

__all__ = [
    "run_sweep", "SweepResult",
    "SweepConfig", "load_config", "parse_config", "expand_grid", "point_key", "dense_key",
    "POINT_FIELDS", "POINT_SCHEMA", "METRICS",
    "run_point", "train_dense", "measure_point",
    "ResultStore", "point_rows", "summarize_rows", "write_tables",
    "example_path",
]


def example_path(name: str) -> str:
    """Path of a bundled example study: 'digits-small' (8 quick points) or 'digits-study' (a real grid)."""
    from ..errors import ConfigError

    path = _os.path.join(_os.path.dirname(__file__), "examples", f"{name}.toml")
    if not _os.path.exists(path):
        names = sorted(n[:-5] for n in _os.listdir(_os.path.dirname(path)) if n.endswith(".toml"))
        raise ConfigError(f"unknown example study {name!r}: expected one of {names}")
    return path
