"""The exception hierarchy: every error sparsenet raises on bad input is a `SparsenetError`.

Messages name the object (layer, array, file, argument) and say what was expected and what was found.
The same mistake raises the same class wherever it is made::

    SparsenetError                 base class; raised bare only for what fits no class below (a
    |                              missing optional package, a results directory in use...)
    +-- ConfigError(ValueError)    an argument or setting that is out of range, of the wrong type, an
    |                              unknown name, or that does not fit another one: batch_size, seed,
    |                              sparsity, lr, repeats, method, schedule, scope, granularity, format
    |                              spec, a study file's settings
    |   +-- TimingError            a timing request that cannot run: no candidates, rounds < 1,
    |                              negative seconds, an unknown baseline (`sparsenet.timing`)
    +-- DataError(ValueError)      input data that is unusable: NaN/inf values, bad labels, an
    |                              unreadable dataset file
    +-- ShapeError(ValueError)     an array's shape does not fit where it is used
    +-- DTypeError(TypeError)      an array's dtype is not one sparsenet accepts here
    +-- FormatError(ValueError)    a sparse structure violates its format's invariants
    +-- ModelFileError(ValueError) a model file is malformed, truncated, of an unknown version
    +-- OnnxImportError(ValueError) an ONNX graph sparsenet cannot represent, or whose initializers
                                   and attributes are invalid (in `sparsenet.onnx`; names the node)

Each subclass is also the built-in exception it refines, so ``except ValueError`` keeps working.
"""

__all__ = [
    "SparsenetError",
    "ConfigError",
    "FormatError",
    "ShapeError",
    "DTypeError",
    "DataError",
    "ModelFileError",
    "TimingError",
]


class SparsenetError(Exception):
    """Base class of every error sparsenet raises for bad input."""


class ConfigError(SparsenetError, ValueError):
    """An argument or setting is out of range, of the wrong type, unknown, or inconsistent with another."""


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


class TimingError(ConfigError):
    """A timing request is unusable (no candidates, rounds < 1, negative seconds, an unknown baseline)."""
