"""Progress bars (tqdm) that start no thread: `progress(...)` is ``tqdm.auto.tqdm(...)`` without
tqdm's monitor thread.

tqdm starts a monitor thread with its first bar, disabled bars included, and keeps it for the life
of the process (it only adjusts ``miniters`` of bars that stall). sparsenet stops OpenBLAS's
spinning threads before a parallel kernel only in a process of one Python thread
(`sparsenet.kernels._blas.quiet_blas`: with several, another thread might be inside BLAS). With the
monitor alive, every parallel kernel that followed a BLAS call shared the cores with spinning BLAS
threads: after any `fit` (the demo's 2:4 model at batch 64 measured 0.78x its dense model), and
during one (an epoch of the MLP 1024-4096-4096-10 at 90 % with a dense last layer: every CSR
kernel about 2x slower, 39 ms per batch). Stopping the monitor when the bar closed fixed the first
case only; bars without a monitor fix both."""

from __future__ import annotations

__all__ = ["progress"]

_BAR = []


def progress(iterable=None, **kwargs):
    """A tqdm bar over `iterable` (tqdm's keyword arguments), usable as a context manager."""
    if not _BAR:
        from tqdm.auto import tqdm

        class Bar(tqdm):
            monitor_interval = 0  # no monitor thread (tqdm's documented switch)

        _BAR.append(Bar)
    return _BAR[0](iterable, **kwargs)
