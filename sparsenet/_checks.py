"""Argument checks shared by every entry point, so that the same mistake raises the same
`ConfigError` with the same wording wherever it is made (``fit``, ``predict``, ``compiled``...).

`where` names the function (or setting) the argument belongs to: ``predict: expected an integer
batch_size >= 1, found 0``.
"""

from __future__ import annotations

import numbers

from .errors import ConfigError

__all__ = ["check_int", "check_seed", "check_fraction", "check_positive", "check_nonnegative"]


def check_int(value, what: str, where: str, low: int = 1, *, error: type = ConfigError) -> int:
    """`value` as an int if it is an integer (not a bool) >= `low`, else `error` (a ConfigError)."""
    if type(value) is int and value >= low:  # the common case, first (predict's per-call path)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise error(f"{where}: expected an integer {what} >= {low}, found {value!r}")
    return int(value)


def check_seed(value, where: str) -> int:
    """A seed for ``np.random.default_rng``: an integer >= 0."""
    return check_int(value, "seed", where, low=0)


def check_fraction(value, what: str, where: str) -> float:
    """`value` as a float in [0, 1] (a real number, not a bool), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}: expected {what} as a fraction in [0, 1], found {value!r}")
    return float(value)


def check_positive(value, what: str, where: str) -> float:
    """`value` as a float > 0 (finite), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < float("inf"):
        raise ConfigError(f"{where}: expected {what} > 0, found {value!r}")
    return float(value)


def check_nonnegative(value, what: str, where: str, *, error: type = ConfigError) -> float:
    """`value` as a float >= 0 (finite), else `error` (a ConfigError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < float("inf"):
        raise error(f"{where}: expected {what} >= 0, found {value!r}")
    return float(value)
