"""An op's spec: its settings as JSON values and its arrays by name.

Every op writes its own (``op.spec()``) and reads it back (``Op.from_spec(spec, arrays, where)``);
model files store specs without knowing any op (`sparsenet.io.layers`). A spec read back comes from
a file, so it is treated as hostile: the helpers here check every field's type, every array's dtype
and shape, and sparse weights with their full O(nnz) check, and raise `ModelFileError` naming
`where` (a kernel never sees unvalidated data from a file).
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, ShapeError
from ..formats import BSR, CSR, NM, Dense, WeightFormat
from ..formats.quantized import QBSR, QCSR, QNM, QDense, QuantizedFormat

__all__ = ["field", "number", "int_list", "array", "float_vector", "encode_weight", "decode_weight"]


def field(spec, key, typ, where):
    """``spec[key]``, which must be of type `typ` (a type or a tuple; a bool is not an int)."""
    if not isinstance(spec, dict) or key not in spec:
        raise ModelFileError(f"{where}: missing field {key!r}")
    value = spec[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise ModelFileError(f"{where}: field {key!r} should be {expected}, found {type(value).__name__}")
    return value


def number(spec, key, where) -> float:
    """``spec[key]`` as a float (JSON writes 1.0 as 1)."""
    return float(field(spec, key, (int, float), where))


def int_list(spec, key, length, where) -> list:
    value = field(spec, key, list, where)
    if len(value) != length or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ModelFileError(f"{where}: field {key!r} should be {length} non-negative integers, found {value!r}")
    return value


def array(arrays, key, where) -> np.ndarray:
    if key not in arrays:
        raise ModelFileError(f"{where}: missing array {key!r}")
    return arrays[key]


def float_vector(arrays, key, n, where) -> np.ndarray:
    """Array `key`: float, of shape (n,), finite."""
    a = array(arrays, key, where)
    if a.dtype.kind != "f" or a.shape != (n,):
        raise ModelFileError(f"{where}: array {key!r} should be float of shape ({n},), found {a.dtype} {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ModelFileError(f"{where}: array {key!r} holds NaN or inf")
    return a


def encode_weight(w: WeightFormat) -> tuple[dict, dict]:
    """(spec, arrays) of a weight in any format."""
    spec = {"format": w.format_name, "shape": list(w.shape), "dtype": str(w.dtype)}
    if isinstance(w, QNM):
        spec.update(n=w.n, m=w.m)
        return spec, {"data": w.data, "codes": w.codes, "scales": w.scales}
    if isinstance(w, QuantizedFormat):  # int8 values + float32 per-row scales
        if isinstance(w, QBSR):
            spec["blocksize"] = list(w.blocksize)
        if isinstance(w, QDense):
            return spec, {"data": w.data, "scales": w.scales}
        return spec, {"data": w.data, "indices": w.indices, "indptr": w.indptr, "scales": w.scales}
    if isinstance(w, Dense):
        return spec, {"data": w.data}
    if isinstance(w, NM):
        spec.update(n=w.n, m=w.m)
        return spec, {"data": w.data, "codes": w.codes}
    if isinstance(w, BSR):
        spec["blocksize"] = list(w.blocksize)
    return spec, {"data": w.data, "indices": w.indices, "indptr": w.indptr}


def decode_weight(spec, arrays, where) -> WeightFormat:
    """The weight `encode_weight` described, validated in full."""
    fmt = field(spec, "format", str, where)
    shape = tuple(int_list(spec, "shape", 2, where))
    data = array(arrays, "data", where)
    if fmt in ("dense", "qdense"):
        if data.shape != shape:
            raise ModelFileError(f"{where}: dense weight declared shape {shape}, found array {data.shape}")
        if fmt == "qdense":
            return QDense(data, array(arrays, "scales", where), check=True)
        dense = Dense(data)
        dense.check()
        return dense
    if fmt in ("nm", "qnm"):
        n, m = field(spec, "n", int, where), field(spec, "m", int, where)
        try:
            if fmt == "qnm":
                return QNM(data, array(arrays, "codes", where), array(arrays, "scales", where), shape, n, m,
                           check=True)
            return NM(data, array(arrays, "codes", where), shape, n, m, check=True)
        except ShapeError as e:  # n:m itself out of range
            raise ModelFileError(f"{where}: {e}") from None
    if fmt not in ("csr", "bsr", "qcsr", "qbsr"):
        raise ModelFileError(f"{where}: expected weight format dense, csr, bsr, nm, qdense, qcsr, qbsr or qnm, "
                             f"found {fmt!r}")
    indices, indptr = array(arrays, "indices", where), array(arrays, "indptr", where)
    if fmt in ("bsr", "qbsr"):
        blocksize = tuple(int_list(spec, "blocksize", 2, where))
        if data.ndim != 3 or data.shape[1:] != blocksize:
            raise ModelFileError(f"{where}: BSR blocks declared {blocksize}, found data shape {data.shape}")
        if fmt == "qbsr":
            return QBSR(data, indices, indptr, array(arrays, "scales", where), shape, check=True)
        return BSR(data, indices, indptr, shape, check=True)
    if fmt == "qcsr":
        return QCSR(data, indices, indptr, array(arrays, "scales", where), shape, check=True)
    return CSR(data, indices, indptr, shape, check=True)
