"""Deprecated names: each keeps working for one release, warns, and names its replacement.

Every deprecated name warns with `DeprecationWarning` (the category for API users, who are Python
programmers: pytest, IPython and ``python -W`` show it), attributed to the caller's line. The package
itself never calls a deprecated name (tests run with ``error::DeprecationWarning:sparsenet``).
"""

from __future__ import annotations

import functools
import warnings

__all__ = ["REMOVED_IN", "warn_deprecated", "deprecated_alias"]

REMOVED_IN = "0.3"


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that `old` is deprecated in favour of `new` (both fully qualified names)."""
    warnings.warn(f"{old} is deprecated and will be removed in sparsenet {REMOVED_IN}; use {new} instead",
                  DeprecationWarning, stacklevel=stacklevel)


def deprecated_alias(func, old: str, new: str):
    """A function calling `func` after warning that `old` is deprecated in favour of `new`."""

    @functools.wraps(func)
    def alias(*args, **kwargs):
        warn_deprecated(old, new)
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old.rsplit(".", 1)[-1]
    alias.__doc__ = f"Deprecated: use `{new}` (removed in sparsenet {REMOVED_IN}).\n\n{func.__doc__ or ''}"
    return alias
