"""Measuring time honestly: one primitive, `compare`, used by everything in sparsenet that times code.

`compare` warms each callable up, calibrates an inner loop per callable so that one sample lasts at
least `min_time`, then runs `rounds` rounds in which every candidate is timed once, the order
rotating from round to round (A B C, B C A, C A B, ...), so that a burst of load or a slow drift of
a shared machine hits all candidates alike and none always runs first or right after the same
neighbour. Each candidate gets the median of its per-round samples (seconds per call) and their
spread; against a `baseline` it also gets the median of the per-round ratios (baseline / candidate
in the same round), which resists drift better than a ratio of medians: with 3 rounds and a ratio
of medians a model identical to dense once measured 0.93x (benchmarks/BENCHMARKS.md).
`time_call` is `compare` for one callable.

The clock is a parameter (`timer`, `sleep`), so tests pass a fake one instead of patching anything.

>>> import math
>>> t = time_call(lambda: math.sqrt(2.0), rounds=3, min_time=1e-4)
>>> t.median > 0 and len(t.samples) == 3
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ._checks import check_int, check_nonnegative
from .errors import TimingError

__all__ = ["compare", "time_call", "Comparison", "Timing", "SETTLE_SECONDS"]


# OpenBLAS threads spin for up to ~0.1 s after a call; a parallel sparse kernel started meanwhile
# shares the cores with them (LeNet-300-100 at 90 %, batch 64: 0.60x dense when timed right after
# the dense model, 1.15x after a pause). Comparisons that involve BLAS pass this as `settle`.
SETTLE_SECONDS = 0.15

# Upper bound of the calibrated inner loop: a callable too fast for `min_time` even then (a no-op
# under a coarse clock) is sampled with this many calls rather than looping for ever.
_MAX_CALLS = 1 << 20
_CALIBRATION_TRIES = 3


@dataclass(frozen=True)
class Timing:
    """One candidate's figures from `compare`.

    samples: seconds per call, one per round, in round order. calls_per_sample: the calibrated inner
    loop. speedups: per round, the baseline's sample / this one's (None when `compare` had no
    baseline; 1.0 for the baseline itself).
    """

    samples: tuple[float, ...]
    calls_per_sample: int
    speedups: tuple[float, ...] | None = None

    @property
    def median(self) -> float:
        """Median seconds per call over the rounds."""
        return float(np.median(self.samples))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))

    @property
    def max(self) -> float:
        return float(np.max(self.samples))

    @property
    def iqr(self) -> tuple[float, float]:
        """(first, third) quartile of the samples: the spread over rounds."""
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)

    @property
    def speedup(self) -> float | None:
        """Median over rounds of baseline seconds / this candidate's seconds (> 1: faster than the
        baseline); None without a baseline."""
        return None if self.speedups is None else float(np.median(self.speedups))

    def to_dict(self) -> dict:
        """JSON-serialisable figures: median, min, max, q1, q3 (seconds per call), rounds,
        calls_per_sample, samples, and with a baseline speedup and round_speedups."""
        q1, q3 = self.iqr
        out = {"median": self.median, "min": self.min, "max": self.max, "q1": q1, "q3": q3,
               "rounds": len(self.samples), "calls_per_sample": self.calls_per_sample,
               "samples": list(self.samples)}
        if self.speedups is not None:
            out.update(speedup=self.speedup, round_speedups=list(self.speedups))
        return out


@dataclass(frozen=True)
class Comparison:
    """What `compare` measured: one `Timing` per candidate, in the order the candidates were given."""

    timings: dict[str, Timing]
    baseline: str | None = None

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]

    def medians(self) -> dict[str, float]:
        """{name: median seconds per call}."""
        return {k: t.median for k, t in self.timings.items()}

    def speedups(self) -> dict[str, float]:
        """{name: median of per-round baseline / candidate ratios}; needs a baseline."""
        if self.baseline is None:
            raise TimingError("Comparison.speedups: this comparison has no baseline; pass baseline= to compare")
        return {k: t.speedup for k, t in self.timings.items()}


# -- checks ---------------------------------------------------------------------------------------------
def _check_candidates(candidates, baseline) -> dict[str, Callable[[], object]]:
    if not isinstance(candidates, Mapping) or not candidates:
        raise TimingError(f"timing: expected a non-empty dict {{name: callable}} of candidates, found {candidates!r}")
    for name, fn in candidates.items():
        if not isinstance(name, str):
            raise TimingError(f"timing: expected candidate names as strings, found {name!r}")
        if not callable(fn):
            raise TimingError(f"timing: candidate {name!r} is not callable (found {type(fn).__name__}); "
                              f"expected a function of no arguments")
    if baseline is not None and baseline not in candidates:
        raise TimingError(f"timing: baseline {baseline!r} is not a candidate; expected one of {list(candidates)}")
    return dict(candidates)


# -- the primitive --------------------------------------------------------------------------------------
def _sample(fn, n: int, timer) -> float:
    """Seconds for `n` calls of `fn`, as `timer` counts them."""
    t0 = timer()
    for _ in range(n):
        fn()
    return timer() - t0


def _calibrate(fn, min_time: float, timer) -> int:
    """Calls per sample so that one sample lasts at least `min_time` (at most `_MAX_CALLS`). A try
    long enough is repeated and the fastest of `_CALIBRATION_TRIES` counts: one stalled try (4-7 ms
    for a 0.03 ms call on the 2-core VM, now and then, just after a pause) would otherwise fix the
    loop at a single call for every round, and each sample would be one stall-prone call."""
    n = 1
    while True:
        elapsed = _sample(fn, n, timer)
        if elapsed >= min_time:
            elapsed = min([elapsed] + [_sample(fn, n, timer) for _ in range(_CALIBRATION_TRIES - 1)])
        if elapsed >= min_time or n >= _MAX_CALLS:
            return n
        n = min(_MAX_CALLS, max(2 * n, math.ceil(n * 1.2 * min_time / max(elapsed, 1e-9))))


def _ratio(base: float, t: float) -> float:
    if t > 0:
        return base / t
    return math.inf if base > 0 else math.nan  # a sample of 0 s: the clock could not resolve it


def compare(candidates: Mapping[str, Callable[[], object]], *, baseline: str | None = None, rounds: int = 5,
            min_time: float = 2e-3, warmup: int = 1, settle: float = 0.0,
            timer: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], None] = time.sleep) -> Comparison:
    """Time each of `candidates` ({name: function of no arguments}) in alternating rounds.

    Each candidate is called `warmup` times (JIT compilation, caches), then its inner loop is
    calibrated: n calls per sample, n doubling (or scaled from the last try) until the fastest of
    three tries lasts at least `min_time` seconds. Then `rounds` rounds: in round r the candidates
    are timed once each, starting at the (r mod k)-th of the k names and wrapping around. With
    `settle` > 0, `sleep(settle)` runs before each candidate's warm-up and before every timed sample,
    so that thread pools still spinning after the previous candidate (OpenBLAS, ~0.1 s) do not slow
    this one; pass `SETTLE_SECONDS` when a candidate calls BLAS. After each such pause the
    candidate's loop runs once untimed before its sample: the pause is for the other candidates'
    pools, and this candidate's own threads, asleep after it, must not be woken inside the sample
    (measured on the 2-core VM: the first call after a 0.12 s pause took ~0.3 ms instead of 0.02 ms,
    and now and then the first two took 4-7 ms each). `timer` (seconds, monotonic) and `sleep` are
    the clock: tests pass a fake one.

    Returns a `Comparison`: per candidate the per-round samples (seconds per call), their median and
    spread, and with `baseline` (one of the names) the per-round ratios baseline / candidate and
    their median (`Timing.speedup`). Cost: about (warmup + 4 + rounds) * min_time + (rounds + 1) *
    settle seconds per candidate, and rounds * min_time more with `settle`. Bad arguments raise
    `TimingError`.

    >>> c = compare({"sum": lambda: sum(range(100)), "len": lambda: len("x")}, baseline="sum",
    ...             rounds=3, min_time=1e-4)
    >>> c["len"].speedup > 1 and len(c["sum"].samples) == 3
    True
    """
    fns = _check_candidates(candidates, baseline)
    rounds = check_int(rounds, "rounds", "timing", 1, error=TimingError)
    warmup = check_int(warmup, "warmup", "timing", 0, error=TimingError)
    min_time = check_nonnegative(min_time, "min_time (seconds)", "timing", error=TimingError)
    settle = check_nonnegative(settle, "settle (seconds)", "timing", error=TimingError)
    if not callable(timer) or not callable(sleep):
        raise TimingError(f"timing: expected callable timer and sleep, found {timer!r} and {sleep!r}")

    names = list(fns)
    calls = {}
    for name in names:
        fn = fns[name]
        if settle:
            sleep(settle)
        for _ in range(warmup):
            fn()
        calls[name] = _calibrate(fn, min_time, timer)

    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if settle:
                sleep(settle)
                _sample(fns[name], calls[name], timer)  # untimed: wakes this candidate's own threads
            samples[name].append(_sample(fns[name], calls[name], timer) / calls[name])

    timings = {}
    for name in names:
        speedups = None
        if baseline is not None:
            speedups = tuple(_ratio(b, t) for b, t in zip(samples[baseline], samples[name]))
        timings[name] = Timing(tuple(samples[name]), calls[name], speedups)
    return Comparison(timings, baseline)


def time_call(fn: Callable[[], object], *, rounds: int = 5, min_time: float = 2e-3, warmup: int = 1,
              settle: float = 0.0, timer: Callable[[], float] = time.perf_counter,
              sleep: Callable[[float], None] = time.sleep) -> Timing:
    """`compare` for one callable: its `Timing` (``.median`` seconds per call, ``.samples``, spread).

    >>> time_call(lambda: None, rounds=1, min_time=0.0).calls_per_sample
    1
    """
    return compare({"fn": fn}, rounds=rounds, min_time=min_time, warmup=warmup, settle=settle,
                   timer=timer, sleep=sleep)["fn"]

