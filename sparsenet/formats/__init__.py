"""Weight formats: Dense, CSR, BSR and N:M (float), the int8 versions QDense, QCSR, QBSR and QNM, and
conversions between them."""

from .base import WeightFormat
from .bsr import BSR
from .convert import as_format, from_scipy
from .csr import CSR
from .dense import Dense
from .nm import NM
from .quantized import QBSR, QCSR, QNM, QDense, quantize_weight

__all__ = ["WeightFormat", "Dense", "CSR", "BSR", "NM", "QDense", "QCSR", "QBSR", "QNM", "quantize_weight", "as_format",
           "from_scipy"]
