"""The latency phase: after every point's accuracy is in, measure dense vs compiled latency one point
at a time, in the driver process, with no sweep task running.

Timing inside the tasks would be polluted by the other tasks sharing the cores; here the cluster is
closed (or, with a remote scheduler, the driver's machine runs no sweep task) and each measurement
has the machine to itself. The figures are those of the driver's machine, with its thread settings,
and are stored apart from the points (``timings/<key>.json``) because they are not deterministic:
re-running a sweep does not re-time points already timed.
"""

from __future__ import annotations

import os
import socket
import time

from ..timing import SETTLE_SECONDS, compare
from .task import _dataset

__all__ = ["measure_point", "timing_phase"]


def measure_point(dense, compiled, x, *, batch_sizes=(1, 64), repeats: int = 5, min_time: float = 5e-3,
                  timer=time.perf_counter, sleep=time.sleep) -> dict:
    """{batch size: {"batch", "dense_s", "compiled_s", "speedup", "speedup_range"}}: seconds of one
    forward pass of the first `batch size` rows of `x` (fewer if `x` is shorter), dense and compiled
    timed side by side in `repeats` alternating rounds (`sparsenet.timing.compare`) so that a burst
    of load hits both alike: medians over the rounds, and the median (min, max) of the per-round
    ratios dense / compiled."""
    from ..nn.module import no_grad

    dense.eval()
    compiled.eval()
    out = {}
    with no_grad():
        for b in batch_sizes:
            xb = x[:b]
            # the pause this phase has always made (SETTLE_SECONDS), now before every sample: BLAS
            # threads spinning after the other model's calls would slow this one
            c = compare({"dense": lambda: dense.forward(xb), "compiled": lambda: compiled.forward(xb)},
                        baseline="dense", rounds=repeats, min_time=min_time, settle=SETTLE_SECONDS,
                        timer=timer, sleep=sleep)
            ratios = c["compiled"].speedups
            out[int(b)] = {"batch": int(len(xb)), "dense_s": c["dense"].median, "compiled_s": c["compiled"].median,
                           "speedup": c["compiled"].speedup, "speedup_range": [min(ratios), max(ratios)]}
    return out


def timing_phase(store, records, timing: dict, *, progress: bool = True, echo=None) -> int:
    """Time every record (a finished point) that has no timing yet; returns how many were timed.

    Each result is written as soon as it is measured, so an interrupted phase resumes where it stopped.
    """
    import numba

    from .._progress import progress as progress_bar

    from .task import model_from_bytes

    todo = [r for r in records if store.timing(r["key"]) is None and os.path.exists(store.model_path(r["key"]))
            and os.path.exists(store.model_path(r["dense_key"]))]
    if not todo:
        return 0
    if echo:
        echo(f"timing {len(todo)} point(s) serially in the driver (batch sizes {timing['batch_sizes']})")
    todo.sort(key=lambda r: r["dense_key"])  # points of one baseline together: one dense model in memory
    dense_cache = {}
    for rec in progress_bar(todo, disable=not progress, desc="timing", unit="point"):
        p = rec["point"]
        if rec["dense_key"] not in dense_cache:
            dense_cache.clear()
            with open(store.model_path(rec["dense_key"]), "rb") as f:
                dense_cache[rec["dense_key"]] = model_from_bytes(f.read())
        with open(store.model_path(rec["key"]), "rb") as f:
            compiled = model_from_bytes(f.read())
        x = _dataset(p["dataset"], p["split_seed"], p["test_fraction"]).x_test
        batches = measure_point(dense_cache[rec["dense_key"]], compiled, x, batch_sizes=timing["batch_sizes"],
                                repeats=timing["repeats"], min_time=timing["min_time"])
        store.write_timing({"key": rec["key"], "batches": batches, "threads": int(numba.get_num_threads()),
                            "host": socket.gethostname(), "measured_at": time.time()})
    return len(todo)
