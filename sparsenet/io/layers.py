"""Op <-> (JSON spec with its kind, named arrays), for model files. Each op writes and reads its own
spec (`Module.spec`, `Module.from_spec`, helpers in `sparsenet.nn._spec`); this module adds the
kind, looked up in `sparsenet.nn.OPS`, and the pruning masks of the op's parameters.

Every decoder validates what it reads: JSON field types, array dtypes and shapes, and sparse formats
with their full O(nnz) check, so a kernel never sees unvalidated data from a file.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, SparsenetError
from ..nn import OPS
from ..nn._spec import field

__all__ = ["encode_layer", "decode_layer"]


def encode_layer(layer) -> tuple[dict, dict]:
    """(spec with 'kind', arrays by name) for one layer."""
    kind = type(layer).__name__
    if OPS.get(kind) is not type(layer):
        raise SparsenetError(f"cannot save layer {layer.name}: kind {kind} has no file codec")
    spec, arrays = layer.spec()
    arrays = dict(arrays)
    for pname, p in layer.own_parameters().items():  # pruning masks pinned for fine-tuning
        if p.mask is not None:
            arrays[f"{pname}.mask"] = p.mask
    return dict(spec, kind=kind), arrays


def decode_layer(spec, arrays, where: str):
    """Rebuild one layer; any inconsistency raises ModelFileError naming `where`."""
    kind = field(spec, "kind", str, where)
    if kind not in OPS:
        raise ModelFileError(f"{where}: unknown layer kind {kind!r}")
    where = f"{where} ({kind})"
    try:
        layer = OPS[kind].from_spec(spec, arrays, where)
    except ModelFileError:
        raise
    except SparsenetError as e:  # a format or shape check failed on file data
        raise ModelFileError(f"{where}: {e}") from None
    for pname, p in layer.own_parameters().items():
        mask = arrays.get(f"{pname}.mask")
        if mask is None:
            continue
        if mask.dtype != np.bool_ or mask.shape != p.data.shape:
            raise ModelFileError(f"{where}: {pname}.mask should be bool of shape {p.data.shape}, "
                                 f"found {mask.dtype} {mask.shape}")
        p.mask = mask.copy()
        p.apply_mask()
    return layer
