"""Weight formats: Dense, CSR and BSR (float), their int8 versions QDense, QCSR and QBSR, and
conversions between them."""

from .base import WeightFormat
from .bsr import BSR
from .convert import as_format, from_scipy
from .csr import CSR
from .dense import Dense
from .quantized import QBSR, QCSR, QDense, quantize_weight

__all__ = ["WeightFormat", "Dense", "CSR", "BSR", "QDense", "QCSR", "QBSR", "quantize_weight", "as_format",
           "from_scipy"]
