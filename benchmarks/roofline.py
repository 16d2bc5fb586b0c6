"""This machine's limits: memory read bandwidth and dense peak FLOP/s, measured."""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from _harness import measure, threads


@numba.njit(parallel=True, fastmath=True, cache=True)
def _read_sum(a):
    """Sum of a large float32 array: reads every byte once."""
    n = a.shape[0]
    chunks = 64
    part = np.zeros(chunks, dtype=np.float32)
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        acc = np.float32(0)
        for i in range(c * step, min(n, (c + 1) * step)):
            acc += a[i]
        part[c] = acc
    return part.sum()


def bandwidth(n_threads: int, nbytes: int = 512 << 20) -> dict:
    """Read bandwidth (GB/s) of a Numba prange sum and of numpy's OpenBLAS sgemv, best of both."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    w = np.ones((8192, 8192), dtype=np.float32)  # 256 MiB
    x = np.ones(8192, dtype=np.float32)
    with threads(n_threads):
        timed = measure({"numba": lambda: _read_sum(a), "sgemv": lambda: w @ x}, rounds=5)
    t_numba, t_gemv = timed["numba"]["median"], timed["sgemv"]["median"]
    numba_gbs, gemv_gbs = a.nbytes / t_numba / 1e9, w.nbytes / t_gemv / 1e9
    return {"threads": n_threads, "numba_read_GBs": numba_gbs, "sgemv_GBs": gemv_gbs,
            "GBs": max(numba_gbs, gemv_gbs)}


def peak_flops(n_threads: int, n: int = 2048) -> dict:
    """Dense SGEMM GFLOP/s (OpenBLAS through numpy) as the compute peak."""
    a = np.ones((n, n), dtype=np.float32)
    b = np.ones((n, n), dtype=np.float32)
    with threads(n_threads):
        t = measure({"sgemm": lambda: a @ b}, rounds=5)["sgemm"]["median"]
    return {"threads": n_threads, "GFLOPs": 2 * n ** 3 / t / 1e9}


def roofline(thread_counts=(1, 2)) -> dict:
    return {str(t): {**bandwidth(t), **peak_flops(t)} for t in thread_counts}


if __name__ == "__main__":
    import json
    print(json.dumps(roofline(), indent=1))
