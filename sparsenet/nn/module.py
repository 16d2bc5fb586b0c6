"""`Parameter` and `Module`: the two small abstractions every layer is built from.

A layer computes ``forward(x)`` and, after it, ``backward(grad_out) -> grad_in``; backward adds the
gradients of its parameters into ``Parameter.grad`` (so gradients accumulate until `zero_grad`).
Each layer's backward sits beside its forward in the layer's file.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..errors import ShapeError, SparsenetError

__all__ = ["Parameter", "Module", "no_grad", "grad_enabled", "inference", "model_dtype", "generation"]

_local = threading.local()
_GENERATION = [0]


def generation() -> int:
    """A counter that moves whenever any module's attribute (other than its training flag) is set or
    a parameter's contents are replaced: compiled plans (`sparsenet.plan`) cached on a model are
    rebuilt when it moved since they were built. In-place changes to arrays do not move it (plans
    read the model's own arrays)."""
    return _GENERATION[0]


def grad_enabled() -> bool:
    """Whether layers keep what backward needs (the default). Per thread."""
    return getattr(_local, "grad", True)


@contextmanager
def no_grad():
    """Inside this block (in this thread) forward passes store nothing on the layers: inference
    needs no backward, uses less memory, and several threads can share one model safely.

    >>> with no_grad():
    ...     pass
    """
    previous = grad_enabled()
    _local.grad = False
    try:
        yield
    finally:
        _local.grad = previous


@contextmanager
def enable_grad():
    """Inside this block (in this thread) layers keep what backward needs even within `no_grad`:
    what a criterion that reads the layers' saved inputs needs (`Frequency` reads the looked-up rows).

    >>> with no_grad(), enable_grad():
    ...     grad_enabled()
    True
    """
    previous = grad_enabled()
    _local.grad = True
    try:
        yield
    finally:
        _local.grad = previous


_RUNTIME_PREDICT: list = []


def predict(model: "Module", x, batch_size: int = 256):
    """`sparsenet.predict` (what ``Sequential.predict`` and ``Graph.predict`` call), imported once
    and kept: an import statement on every call cost a user's per-request loop ~0.5 us."""
    if not _RUNTIME_PREDICT:
        from ..runtime import predict as run

        _RUNTIME_PREDICT.append(run)
    return _RUNTIME_PREDICT[0](model, x, batch_size)


@contextmanager
def inference(model: "Module"):
    """`model` in evaluation mode and under `no_grad` inside this block; every module's own training
    flag is restored after (``model.train(was)`` would set them all to the top module's).

    >>> from sparsenet.nn import Dropout
    >>> d = Dropout(0.5)
    >>> with inference(d):
    ...     d.training
    False
    >>> d.training
    True
    """
    training = [m for _, m in model.named_modules() if m.training]
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        for m in training:
            m.training = True


def _zero_gradient(data: np.ndarray) -> np.ndarray:
    # np.zeros takes zeroed pages from the OS (calloc), which cost no memory until a gradient is
    # written; np.zeros_like fills them: a loaded 100 MB model used 84 MB more for gradients that
    # inference never computes (benchmarks/model_files.py).
    return np.zeros(data.shape, dtype=data.dtype)


class Parameter:
    """A trainable array and its gradient.

    ``data`` is updated *in place* by optimisers; for a sparse weight it is the format's value array,
    so updates touch stored entries only and the sparsity pattern never changes. An optional boolean
    ``mask`` of the same shape pins masked-out entries to zero (pruning before compilation).

    A layer whose weight is replaced (``layer.weight = CSR(...)``) keeps its Parameter and calls
    `replace`, so that an optimiser built before still updates it; `version` counts replacements, and
    optimisers drop their state (momentum, Adam moments) for a parameter whose version changed, or
    carry it over where the replacement says how (`carry`: a sparse weight whose pattern changed).
    """

    __slots__ = ("data", "grad", "mask", "version", "carry")

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad = _zero_gradient(data)
        self.mask: np.ndarray | None = None
        self.version = 0
        self.carry: tuple[int, np.ndarray] | None = None

    def replace(self, data: np.ndarray, carry: np.ndarray | None = None) -> None:
        """New contents (any shape): `data` itself (not a copy), a zero gradient, no mask; the version
        is bumped so that optimiser state built for the old contents is dropped.

        `carry` (for new contents that are mostly the old ones, rearranged: a sparse weight whose
        pattern changed) gives, for each index along the new data's first axis, the index along the
        old data's first axis it continues, or -1 for a new entry: optimisers then keep the state
        of continued entries (moved to their new places) and start new ones from zero."""
        if carry is not None:
            carry = np.asarray(carry, dtype=np.int64)
            if carry.shape != data.shape[:1] or (carry.size and not -1 <= carry.min() <= carry.max() < self.data.shape[0]):
                found = f"[{carry.min()}, {carry.max()}]" if carry.size and carry.shape == data.shape[:1] else \
                    f"shape {carry.shape}"
                raise ShapeError(f"Parameter.replace: expected carry of shape {data.shape[:1]} holding -1 or indices "
                                 f"below {self.data.shape[0]}, found {found}")
        self.data = data
        self.grad = _zero_gradient(data)
        self.mask = None
        self.version += 1
        self.carry = None if carry is None else (self.version, carry)
        _GENERATION[0] += 1

    @property
    def shape(self):
        return self.data.shape

    def apply_mask(self) -> None:
        """Zero the masked-out entries of data and grad (no-op without a mask)."""
        if self.mask is not None:
            self.data *= self.mask
            self.grad *= self.mask

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and containers."""

    def __init__(self):
        self.training = True
        self.name = type(self).__name__

    def __setattr__(self, name, value) -> None:
        if name != "training":  # a new weight, layer or setting: cached plans are out of date
            _GENERATION[0] += 1
        object.__setattr__(self, name, value)

    # -- to override --------------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward_params(self, grad) -> None:
        """The parameters' gradients of `backward`, when the gradient with respect to the input is not
        needed (the first layers of a model being trained, `fit`): layers with weights override it
        to skip that product (W.T @ dy, and a convolution's col2im)."""
        self.backward(grad)

    # Whether the output's axis 0 is the batch whenever the inputs' is (False for ops that may move
    # or merge it: Reshape, Transpose, Slice); a compiled plan probes the others at two batch sizes.
    keeps_batch = True

    def own_parameters(self) -> dict[str, Parameter]:
        """This module's own parameters by name (not its children's)."""
        return {}

    def children(self) -> list[tuple[str, "Module"]]:
        return []

    def extra_repr(self) -> str:
        return ""

    def lower(self, builder, inputs):
        """This module as steps of a compiled plan (`sparsenet.plan`): `inputs` are the plan values
        it reads, the value it writes is returned. By default a generic step runs `forward`;
        modules with kernels of their own (Linear, activations) override it; modules whose plan
        step is one call on the bound buffers return ``builder.bound(self, inputs)`` and define
        ``bound_call(views, out)``: the (function, arguments) the step calls, for the input views
        and the output view of one batch size (e.g. Transpose: ``np.copyto(out, view.transpose(...))``)."""
        return builder.generic(self, inputs)

    def spec(self) -> tuple[dict, dict]:
        """(settings as JSON values, arrays by name): what a model file stores of this op;
        `from_spec` reads it back (helpers in `sparsenet.nn._spec`). Ops with settings or arrays
        override both; the pruning masks of `own_parameters` are stored beside, by the file."""
        return {}, {}

    @classmethod
    def from_spec(cls, spec: dict, arrays: dict, where: str) -> "Module":
        """The op that `spec()` described. `spec` and `arrays` come from a file: a wrong type,
        shape or value raises `ModelFileError` (or another `SparsenetError`) naming `where`."""
        return cls()

    def buffers(self) -> dict[str, np.ndarray]:
        """This module's own state that is not a parameter (BatchNorm's running statistics), by
        name: what a lottery-ticket rewind restores along with the parameters."""
        return {}

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Fresh values, drawn from `rng` as at construction, for this module's own parameters and
        buffers (masks kept). Nothing to do for ops without parameters."""

    def to_onnx(self, onnx, prefix: str, inputs: list[str]) -> str:
        """Append this op's ONNX nodes through `onnx` (the exporter's builder: ``onnx.node``,
        ``onnx.const`` for values of the model's dtype, ``onnx.ints`` for int64 ones, ``onnx.opset``), reading the values named `inputs`; returns the name of the
        value it writes. The node that `import_onnx` reads the op back from is named `prefix`, the
        others and the initializers start with it."""
        raise SparsenetError(f"export_onnx: layer {self.name} of kind {type(self).__name__} has no ONNX mapping")

    # -- shared -------------------------------------------------------------------------------------
    def __call__(self, *xs, **named):
        return self.forward(*xs, **named)

    def _save(self, **state) -> None:
        """Keep what backward needs, unless gradients are off (`no_grad`)."""
        if grad_enabled():
            self.__dict__.update(state)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod.own_parameters().items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def model_dtype(model: Module) -> np.dtype:
    """The dtype `model` computes in, to which inference casts its input: that of its first layer with
    a weight (Linear, Conv2d; a quantised layer computes in float32), else that of its first
    parameter (a BatchNorm-only model), else float32. The one place this is decided.

    >>> from sparsenet.nn import Linear, ReLU, Sequential
    >>> model_dtype(Sequential(ReLU(), Linear(2, 2, dtype=np.float64)))
    dtype('float64')
    """
    for _, m in model.named_modules():
        dtype = getattr(m, "dtype", None)
        if dtype is not None:
            return np.dtype(dtype)
    params = model.parameters()
    return np.dtype(params[0].data.dtype) if params else np.dtype(np.float32)


def as_float(x) -> np.ndarray:
    """`x` as a floating-point array: float arrays unchanged, integers and bools as float32."""
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float32)


def check_input(layer: Module, x, ndim: int, axis: int | None = None, size: int | None = None,
                what: str = "input") -> np.ndarray:
    """Return `x` as an ndarray after checking ndim (and x.shape[axis] == size); errors name the layer."""
    from ..errors import DTypeError, ShapeError

    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DTypeError(f"{layer.name}: expected a real numeric {what}, found dtype {x.dtype}")
    if x.ndim != ndim:
        raise ShapeError(f"{layer.name}: expected a {ndim}-D {what}, found shape {x.shape}")
    if axis is not None and x.shape[axis] != size:
        raise ShapeError(f"{layer.name}: expected {what} axis {axis} of size {size}, found shape {x.shape}")
    return x
