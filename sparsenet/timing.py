"""Measuring time honestly: warm-up, calibrated inner loops, medians over repeats."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

__all__ = ["median_time", "settle", "SETTLE_SECONDS"]


# OpenBLAS threads spin for up to ~0.1 s after a call; a parallel sparse kernel started meanwhile
# shares the cores with them (LeNet-300-100 at 90 %, batch 64: 0.60x dense when timed right after
# the dense model, 1.15x after a pause). Comparisons pause this long before each timing.
SETTLE_SECONDS = 0.15


def settle(seconds: float = SETTLE_SECONDS) -> None:
    """Pause so that thread pools still spinning after the previous call (BLAS) go idle."""
    time.sleep(seconds)


def median_time(fn: Callable[[], object], repeats: int = 5, min_time: float = 2e-3) -> float:
    """Median seconds of one call of `fn`.

    One warm-up call (it also triggers JIT compilation), a calibration that sets how many calls make
    one sample last at least `min_time`, then `repeats` samples; the median resists a noisy machine.
    """
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time or n >= 1 << 20:
            break
        n = min(1 << 20, max(2 * n, int(n * 1.2 * min_time / max(elapsed, 1e-9))))
    samples = []
    for _ in range(max(int(repeats), 1)):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return float(np.median(samples))
