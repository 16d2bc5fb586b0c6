"""What the model-file readers share: strict JSON hooks and the name of a layer's arrays."""

from __future__ import annotations

import math
import re

from ..errors import ModelFileError

__all__ = ["MAX_JSON_INT", "LAYER_ARRAY", "finite_float", "no_constant", "check_ints"]

MAX_JSON_INT = (1 << 63) - 1
# ``layers.<i>.<array>``: a layer index without leading zeros, then a dotted name ("weight.indices")
LAYER_ARRAY = re.compile(r"layers\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def check_ints(value, where: str) -> None:
    """Every integer in a JSON value fits in 64 bits (iteratively: no recursion on deep nesting)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_JSON_INT:
            raise ModelFileError(f"{where}: integer {v} does not fit in 64 bits")
