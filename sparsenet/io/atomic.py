"""Atomic writes: a temporary file in the target's directory, flushed to disk, renamed over the
target. A failed or interrupted write leaves any previous file intact and no temporary behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

__all__ = ["atomic_writer"]


@contextmanager
def atomic_writer(path, mode: str = "wb"):
    """``with atomic_writer(path) as f: f.write(...)``: `path` appears only once the block succeeds.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with atomic_writer(p, "w") as f:
    ...     _ = f.write("hello")
    >>> open(p).read()
    'hello'
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".sparsenet-", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
