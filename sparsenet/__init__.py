"""sparsenet: a from-scratch neural-network engine (NumPy + Numba) in which pruning is real.

Layers store weights as Dense, CSR or BSR matrices; sparse weights run through Numba kernels.
"""

from . import formats, kernels, metrics, nn
from .errors import DataError, DTypeError, FormatError, ModelFileError, ShapeError, SparsenetError
from .formats import BSR, CSR, Dense, as_format
from .io import load_model, save_model
from .runtime import get_num_threads, load, set_num_threads
from .losses import MSELoss, SoftmaxCrossEntropy
from .optim import SGD, Adam, AdamW
from .train import History, evaluate, fit, predict
from .zoo import build_model

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "formats", "kernels", "metrics", "nn",
    "SparsenetError", "FormatError", "ShapeError", "DTypeError", "DataError", "ModelFileError",
    "Dense", "CSR", "BSR", "as_format",
    "SoftmaxCrossEntropy", "MSELoss",
    "SGD", "Adam", "AdamW",
    "History", "fit", "evaluate", "predict",
    "build_model", "save_model", "load_model", "load", "set_num_threads", "get_num_threads",
]
