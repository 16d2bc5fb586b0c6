"""Measurement helpers shared by the benchmarks: pinned threads, warm-up, adaptive repeats, medians,
cold (rotated copies) vs hot timing, machine information and load checks.

Nothing here is imported by the library: speed claims live in benchmarks/, never in unit tests.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np

COLD_BYTES = 192 << 20  # rotate weight copies totalling at least this much (L3 is 32 MiB)


def cpu_pressure() -> float | None:
    """'some avg10' of /proc/pressure/cpu: % of the last 10 s in which some task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_for_quiet(threshold: float = 5.0, timeout: float = 60.0) -> float | None:
    """Wait (up to `timeout` s) until the CPU pressure drops below `threshold` %; return it."""
    t0 = time.time()
    p = cpu_pressure()
    while p is not None and p > threshold and time.time() - t0 < timeout:
        time.sleep(2)
        p = cpu_pressure()
    return p


@contextmanager
def threads(n: int):
    """Pin Numba and BLAS thread counts to `n` inside the block."""
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)


SETTLE_SECONDS = 0.15


def settle() -> None:
    """Pause so that thread pools that spin after a call (OpenBLAS, torch, onnxruntime, OpenMP) go
    idle before the next implementation is timed: otherwise their spinning threads steal the cores
    from it (PERF-NOTES, pitfalls) and the comparison measures that contention, not the code."""
    time.sleep(SETTLE_SECONDS)


def measure(fn, *, min_sample: float = 2e-3, min_repeats: int = 7, max_repeats: int = 25,
            rel_spread: float = 0.05, budget: float = 3.0) -> dict:
    """Time `fn()` (one call = one operation): warm-up, then samples of n calls each lasting at least
    `min_sample`, repeated until the interquartile spread is below `rel_spread` of the median (or
    `max_repeats` / `budget` seconds). Returns seconds per call: median, min, max, samples, n."""
    settle()
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_sample or n >= 1 << 16:
            break
        n *= 2
    samples, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
        if len(samples) >= min_repeats:
            q1, med, q3 = np.percentile(samples, [25, 50, 75])
            if (q3 - q1) <= rel_spread * med or len(samples) >= max_repeats or time.perf_counter() - start > budget:
                break
    return {"median": float(np.median(samples)), "min": float(np.min(samples)), "max": float(np.max(samples)),
            "repeats": len(samples), "calls_per_sample": n}


def rotating(make_copy, nbytes_one: int):
    """A callable returning the next of enough independent copies to defeat the caches (cold)."""
    count = max(2, -(-COLD_BYTES // max(nbytes_one, 1)))
    copies = [make_copy() for _ in range(count)]
    state = {"i": 0}

    def next_copy():
        state["i"] = (state["i"] + 1) % count
        return copies[state["i"]]

    return next_copy, count


def machine_info() -> dict:
    """CPU model, flags of interest, cores, versions and the Numba threading layer."""
    import numba
    import scipy

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags"))
        info["flags"] = sorted(f for f in flags if f in {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "f16c"})
    except (OSError, StopIteration):
        pass
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        pass
    for name in ("torch", "onnxruntime"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=os.path.dirname(__file__)).stdout.strip() or None
    return info


def numba_layer() -> str:
    import numba
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not initialised"


def write_json(path: str, payload: dict) -> None:
    """Atomic JSON write."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)
