"""Progress bars (tqdm) that leave no thread behind: `progress(...)` is ``tqdm.auto.tqdm(...)``
whose ``close`` also stops tqdm's monitor thread once no other bar is open.

tqdm starts a monitor thread with its first bar, disabled bars included, and keeps it for the life
of the process. sparsenet stops OpenBLAS's spinning threads before a parallel kernel only in a
process of one Python thread (`sparsenet.kernels._blas.quiet_blas`: with several, another thread
might be inside BLAS): after any `fit`, even a quiet one, every later parallel kernel that followed
a BLAS call ran serial or shared the cores with spinning BLAS threads (the demo's 2:4 model at batch
64 measured 0.78x its dense model)."""

from __future__ import annotations

import threading

__all__ = ["progress"]

_BAR = []


def progress(iterable=None, **kwargs):
    """A tqdm bar over `iterable` (tqdm's keyword arguments), usable as a context manager; closing
    it (at the end of the iteration, or explicitly) stops tqdm's monitor thread if no bar is open."""
    if not _BAR:
        from tqdm.auto import tqdm

        class Bar(tqdm):
            def close(self):
                super().close()
                _stop_monitor()

        _BAR.append(Bar)
    return _BAR[0](iterable, **kwargs)


def _stop_monitor() -> None:
    from tqdm._monitor import TMonitor

    for t in threading.enumerate():
        if not isinstance(t, TMonitor) or t is threading.current_thread():
            continue
        cls = t.tqdm_cls
        with cls.get_lock():
            if cls._instances or getattr(cls, "monitor", None) is not t:
                continue
            cls.monitor = None
        t.exit()  # joins: outside the lock, which the monitor takes
