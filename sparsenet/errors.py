"""The exception hierarchy: every error sparsenet raises on bad input is a `SparsenetError`.

Messages name the object (layer, array, file) and say what was expected and what was found.
"""

__all__ = [
    "SparsenetError",
    "FormatError",
    "ShapeError",
    "DTypeError",
    "DataError",
    "ModelFileError",
    "TimingError",
]


class SparsenetError(Exception):
    """Base class of every error sparsenet raises for bad input."""


class FormatError(SparsenetError, ValueError):
    """A sparse structure violates its format's invariants (indptr, indices, block shape...)."""


class ShapeError(SparsenetError, ValueError):
    """An array's shape does not fit where it is used."""


class DTypeError(SparsenetError, TypeError):
    """An array's dtype is not one sparsenet accepts here."""


class DataError(SparsenetError, ValueError):
    """Input data is unusable (NaN or inf, wrong labels, unreadable dataset file)."""


class ModelFileError(SparsenetError, ValueError):
    """A model file is malformed, truncated, of an unknown version, or inconsistent."""


class TimingError(SparsenetError, ValueError):
    """A timing request is unusable (no candidates, rounds < 1, negative seconds, an unknown baseline)."""
