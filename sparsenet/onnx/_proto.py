"""What the importer and exporter share: the lazy `onnx` import, the error type, dtype tables and
conversions between NumPy arrays and (sparse) ONNX tensors."""

from __future__ import annotations

import numpy as np

from ..errors import SparsenetError

__all__ = ["OnnxImportError", "require_onnx", "node_label", "FLOAT_TYPES", "ELEM_TYPE_OF",
           "sparse_to_dense", "sparse_from_pattern"]

_INSTALL_HINT = "pip install 'sparsenet[onnx]'"


class OnnxImportError(SparsenetError, ValueError):
    """An ONNX graph uses an op, attribute value or topology that sparsenet cannot represent."""


def require_onnx():
    """The `onnx` module, imported on first use so that `import sparsenet` never needs it."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise SparsenetError(f"ONNX support needs the onnx package: {_INSTALL_HINT}") from None
    return onnx


def node_label(index: int, node) -> str:
    """'node 3 "conv1" (Conv)': how every import error names the node it is about."""
    return f"node {index} {node.name!r} ({node.op_type})"


# TensorProto element types sparsenet models compute in: FLOAT = 1, DOUBLE = 11.
FLOAT_TYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}
ELEM_TYPE_OF = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}


def sparse_to_dense(sparse) -> tuple[np.ndarray, np.ndarray]:
    """(dense values, stored-entry mask) of a SparseTensorProto.

    Indices are either linear ([nnz], row-major positions) or coordinates ([nnz, rank]), as the
    ONNX spec allows; both are validated against `dims`.
    """
    from onnx import numpy_helper

    dims = tuple(int(d) for d in sparse.dims)
    name = sparse.values.name
    values = numpy_helper.to_array(sparse.values).reshape(-1)
    size = int(np.prod(dims)) if dims else 1
    if sparse.HasField("indices") and sparse.indices.dims:
        idx = numpy_helper.to_array(sparse.indices).astype(np.int64)
    else:
        idx = np.zeros((0,), dtype=np.int64)
    if idx.ndim == 2 and idx.shape[1] == len(dims) and len(dims) > 0:
        if idx.size and (idx.min() < 0 or np.any(idx.max(axis=0) >= np.asarray(dims))):
            raise OnnxImportError(f"sparse initializer {name!r}: coordinates out of range for dims {dims}")
        idx = np.ravel_multi_index(tuple(idx.T), dims) if idx.size else idx.reshape(0)
    elif idx.ndim != 1:
        raise OnnxImportError(f"sparse initializer {name!r}: expected indices of shape [nnz] or "
                              f"[nnz, {len(dims)}], found {idx.shape}")
    if idx.shape[0] != values.shape[0]:
        raise OnnxImportError(f"sparse initializer {name!r}: {idx.shape[0]} indices for {values.shape[0]} values")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise OnnxImportError(f"sparse initializer {name!r}: linear indices out of range [0, {size})")
    if np.unique(idx).size != idx.size:
        raise OnnxImportError(f"sparse initializer {name!r}: duplicate indices")
    dense = np.zeros(size, dtype=values.dtype)
    mask = np.zeros(size, dtype=bool)
    dense[idx] = values
    mask[idx] = True
    return dense.reshape(dims), mask.reshape(dims)


def sparse_from_pattern(name: str, values: np.ndarray, pattern: np.ndarray):
    """A SparseTensorProto holding `values` at the True entries of `pattern` (same shape), with
    linear row-major int64 indices (sorted, as the ONNX checker requires)."""
    from onnx import helper, numpy_helper

    idx = np.flatnonzero(pattern.reshape(-1)).astype(np.int64)
    vals = numpy_helper.from_array(np.ascontiguousarray(values.reshape(-1)[idx]), name)
    ind = numpy_helper.from_array(idx, name + ".indices")
    return helper.make_sparse_tensor(vals, ind, list(values.shape))
