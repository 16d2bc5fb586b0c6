"""sparsenet: a from-scratch neural-network engine (NumPy + Numba) in which pruning is real.

Layers store weights as Dense, CSR, BSR or N:M matrices; sparse weights run through Numba kernels.
"""

import sys

if sys.version_info < (3, 11):  # pip enforces requires-python; this catches source checkouts
    raise ImportError(f"sparsenet needs Python >= 3.11, found {sys.version.split()[0]}")

from . import formats, kernels, metrics, nn
from ._deprecation import deprecated_alias
from .errors import (ConfigError, DataError, DTypeError, FormatError, ModelFileError, ShapeError,
                     SparsenetError)
from .formats import BSR, CSR, NM, Dense, as_format
from .io import save_model
from .runtime import get_num_threads, load, predict, set_num_threads
from .losses import MSELoss, SoftmaxCrossEntropy
from .optim import SGD, Adam, AdamW
from .train import History, evaluate, fit
from .zoo import build_model

# Deprecated names (one release): each warns and calls its replacement.
load_model = deprecated_alias(load, "sparsenet.load_model", "sparsenet.load")

__version__ = "0.2.0.dev0"

__all__ = [
    "__version__",
    "formats", "kernels", "metrics", "nn",
    "SparsenetError", "ConfigError", "FormatError", "ShapeError", "DTypeError", "DataError", "ModelFileError",
    "Dense", "CSR", "BSR", "NM", "as_format",
    "SoftmaxCrossEntropy", "MSELoss",
    "SGD", "Adam", "AdamW",
    "History", "fit", "evaluate", "predict",
    "build_model", "save_model", "load", "set_num_threads", "get_num_threads",
]
