"""Weight formats: Dense, CSR and BSR, with conversions between them."""

from .base import WeightFormat
from .bsr import BSR
from .convert import as_format, from_scipy
from .csr import CSR
from .dense import Dense

__all__ = ["WeightFormat", "Dense", "CSR", "BSR", "as_format", "from_scipy"]
