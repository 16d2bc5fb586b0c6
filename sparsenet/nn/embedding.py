"""Embedding: rows of a table looked up by integer indices (tokens, users, items), as PyTorch's
nn.Embedding and ONNX's Gather on axis 0.

The table [num_embeddings, embedding_dim] is a weight in any row format: Dense, CSR (a pruned
table: only stored entries are read, trained and saved), or int8 (QDense, QCSR: one scale per row,
inference only). Block formats are refused (a block spans several rows). Indices are any integer
dtype; one outside ``[0, num_embeddings)`` raises `DataError` before a kernel reads the table.

Backward adds each looked-up row's gradient into the table's gradient, at the looked-up rows only
(`kernels.gather`; a CSR table only at its stored entries). The indices get no gradient (None).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError, DTypeError, ShapeError
from ..formats import CSR, Dense, WeightFormat
from ..formats.quantized import QCSR, QDense, QuantizedFormat
from ..kernels import gather
from ._spec import field
from ._weighted import WeightedLayer

__all__ = ["Embedding"]

_TABLE_FORMATS = (Dense, CSR, QDense, QCSR)


class Embedding(WeightedLayer):
    """``y[..., :] = W[x[...], :]``: integer indices of any shape -> ``[*x.shape, embedding_dim]``.

    Initialised from N(0, 1) as PyTorch does (seeded); `weight` (an array or a row format) replaces it.

    >>> e = Embedding(5, 3, seed=0)
    >>> e(np.array([[0, 4], [4, 1]])).shape
    (2, 2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, seed: int = 0, dtype=np.float32, weight=None):
        super().__init__()
        for what, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"Embedding: expected a positive integer {what}, found {v!r}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.weight_shape = (self.num_embeddings, self.embedding_dim)
        if weight is None:
            weight = np.random.default_rng(seed).standard_normal(self.weight_shape).astype(dtype)
        self._init_params(seed, self.embedding_dim, dtype, False, weight)
        self._rows = self._index_shape = None

    float_formats = ("dense", "csr")  # a block or an N:M group spans several rows

    @WeightedLayer.weight.setter
    def weight(self, fmt) -> None:
        if isinstance(fmt, WeightFormat) and not isinstance(fmt, _TABLE_FORMATS):
            raise ConfigError(f"{self.name}: an embedding table is stored dense, CSR or int8 (QDense, QCSR), "
                              f"found {fmt.format_name} (a block spans several rows)")
        WeightedLayer.weight.fset(self, fmt)

    def reset_parameters(self, rng) -> None:
        p = self.weight_param
        p.data[...] = rng.standard_normal(p.data.shape).astype(p.data.dtype)
        p.apply_mask()

    def _gather(self, rows, out) -> int:
        """out[r] = table[rows[r]] in the table's format, in one kernel entry that also checks the
        rows (what a compiled plan runs, `_gather_into`, and what `compiled(..., "auto")` times
        through this forward): returns the position of the first row outside the table, -1 if
        none (then every output row is written; otherwise nothing is)."""
        w = self.weight
        if isinstance(w, Dense):
            return gather.dense_gather_checked(w.data, rows, out)
        if isinstance(w, CSR):
            return gather.csr_gather_checked(w.data, w.indices, w.indptr, rows, out)
        if isinstance(w, QDense):
            return gather.dense_i8_gather_checked(w.data, w.scales, rows, out)
        return gather.csr_i8_gather_checked(w.data, w.indices, w.indptr, w.scales, rows, out)  # QCSR

    def _check_indices(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "iu":
            raise DTypeError(f"{self.name}: expected integer indices, found dtype {x.dtype}")
        rows = np.ascontiguousarray(x.reshape(-1), dtype=np.intp)
        if rows.size:
            low, high = int(rows.min()), int(rows.max())
            if low < 0 or high >= self.num_embeddings:
                bad = low if low < 0 else high
                raise DataError(f"{self.name}: expected indices in [0, {self.num_embeddings}), found {bad} "
                                f"(indices range over {low}..{high})")
        return rows

    def forward(self, x):
        x = np.asarray(x)
        rows = self._check_indices(x)
        out = np.empty((rows.size, self.embedding_dim), dtype=self.dtype)
        self._gather(rows, out)
        self._save(_rows=rows, _index_shape=x.shape)
        return out.reshape(*x.shape, self.embedding_dim)

    def lower(self, builder, inputs):
        return builder.bound(self, inputs)

    def bound_call(self, xs, out):
        """The plan's call: the indices checked and the rows gathered into the bound output, from
        the table this layer holds at the time of the call (pruned or quantized in place: seen)."""
        return _gather_into, (self, xs[0].reshape(-1), out.reshape(-1, self.embedding_dim))

    def backward(self, grad):
        w = self.weight
        if isinstance(w, QuantizedFormat):
            raise ConfigError(f"{self.name}: an int8 table is for inference; train the float table, then quantize")
        want = (*self._index_shape, self.embedding_dim)
        grad = np.asarray(grad)
        if grad.shape != want:
            raise ShapeError(f"{self.name}: expected a gradient of shape {list(want)}, found {list(grad.shape)}")
        g = np.ascontiguousarray(grad.reshape(-1, self.embedding_dim), dtype=self.dtype)
        if isinstance(w, Dense):
            gather.dense_scatter_add(self.weight_param.grad, self._rows, g)
        else:
            gather.csr_scatter_add(w.indices, w.indptr, self._rows, g, self.weight_param.grad)
        return None  # integer indices have no gradient

    def spec(self):
        return self._spec_with_weights({"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim})

    @classmethod
    def from_spec(cls, spec, arrays, where):
        n, d = field(spec, "num_embeddings", int, where), field(spec, "embedding_dim", int, where)
        weight, _, has_bias = cls._weights_from_spec(spec, arrays, where)
        if has_bias:
            raise ConfigError(f"{where}: an Embedding has no bias")
        return cls(n, d, weight=weight, dtype=weight.dtype)

    def to_onnx(self, onnx, prefix, inputs):  # Gather(table, indices) on axis 0
        table = onnx.const(f"{prefix}.weight", self.weight.to_dense(), self.weight)
        return onnx.node("Gather", [table, inputs[0]], prefix, axis=0)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings} x {self.embedding_dim}, {self._format_repr()}"


def _gather_into(layer, rows, out):
    """A plan's Embedding call: `rows` (the bound integer input) checked against the table and
    gathered in one kernel entry (an index outside the table raises DataError, as the layer's
    forward does)."""
    if layer._gather(rows, out) >= 0:
        layer._check_indices(rows)  # raises the layer's error, naming the index