"""Measurement helpers shared by the benchmarks: pinned threads, `measure` (sparsenet's one timing
primitive, `sparsenet.timing.compare`, with the benchmarks' settings), cold (rotated copies) vs hot
timing, machine information and load checks.

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

from sparsenet.timing import SETTLE_SECONDS, compare

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


ROUNDS = 7  # alternating rounds per comparison
MIN_SAMPLE = 2e-3  # seconds per sample, at least


def measure(candidates: dict, *, baseline: str | None = None, rounds: int = ROUNDS,
            min_sample: float = MIN_SAMPLE) -> dict[str, dict]:
    """Time `candidates` ({name: function of no arguments, one call = one operation}) side by side
    with `sparsenet.timing.compare`: warm-up, a calibrated loop (samples of at least `min_sample`
    seconds), `rounds` rounds in rotating order. Before every sample the harness pauses
    `SETTLE_SECONDS` (0.15 s, as it always has before each implementation): thread pools that spin
    after a call (OpenBLAS, torch, onnxruntime, OpenMP) would otherwise steal the cores from the
    next candidate (PERF-NOTES, pitfalls) and the comparison would measure that contention, not the
    code. Returns {name: `Timing.to_dict()`}: seconds per call (median, min, max, q1, q3 over
    rounds), and with `baseline` "speedup", the median of the per-round ratios baseline / candidate."""
    c = compare(candidates, baseline=baseline, rounds=rounds, min_time=min_sample, settle=SETTLE_SECONDS)
    return {name: t.to_dict() for name, t in c.timings.items()}


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


def torch_mlp(model):
    """PyTorch's twin of a sparsenet MLP (Linear, ReLU, Flatten layers), with the same weights, or a
    string saying why there is none (torch missing, another layer)."""
    try:
        import torch
    except ImportError:
        return "torch not installed"
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Linear":
            lin = torch.nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.weight.to_dense()))
                lin.bias.copy_(torch.from_numpy(layer.bias.data))
            layers.append(lin)
        elif kind in ("ReLU", "Flatten"):
            layers.append(getattr(torch.nn, kind)())
        else:
            return f"torch peer supports MLPs only (found {kind})"
    return torch.nn.Sequential(*layers)
