"""A bound plan as one tape for `sparsenet.kernels.chain.chain_run`: one entry into compiled code
per call instead of one per kernel.

Where it pays: when every call of a bound plan is a small serial kernel (entering Numba costs
more than the kernels compute: a pruned LeNet-300-100 at batch 1 runs ~2 us of kernels behind
~2.5 us of five kernel entries). Plans with a parallel kernel, a BLAS product or a generic step
keep the call-by-call `_Program` (their kernels take long enough that the entries do not count).
``SPARSENET_PLAN_TAPE=0`` switches tapes off (to compare both paths; results are the same bits).
"""

from __future__ import annotations

import os

import numba
import numpy as np

from ..kernels import chain, dense_epilogue_serial, layout

_ENABLED = os.environ.get("SPARSENET_PLAN_TAPE", "1") != "0"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX = {np.dtype(np.uint16)}  # column indices a tape reads (chain's contract)
_POINTER = {np.dtype(np.int32)}


class _Tape:
    """A `_Program` whose one-input, one-output run is a single `chain_run` call."""

    __slots__ = ("program", "tape", "alphas", "rest", "rest_alphas", "ingest", "view", "dtype")

    def __init__(self, program, rows, alphas, dtype):
        self.program = program  # keeps every array the tape addresses alive
        self.tape = np.array(rows, dtype=np.int64).reshape(len(rows), chain.WIDTH)
        self.alphas = np.array(alphas, dtype=np.float64)
        self.rest, self.rest_alphas = self.tape[1:], self.alphas[1:]  # after the ingest (other input dtypes)
        self.ingest, _, self.view = program.ingests[0]
        self.dtype = dtype

    def run1(self, x, out) -> int:
        if x.dtype == self.dtype and x.flags.writeable:  # (a read-only x would compile a new chain_run)
            return chain.chain_run(self.tape, self.alphas, x, out)
        bad = self.ingest(x, self.view)  # the cast from another dtype, outside the tape
        return bad or chain.chain_run(self.rest, self.rest_alphas, out, out)

    def run(self, xs, outs):  # (a tape has one input and one output)
        return 0 if self.run1(xs[0], outs[0]) else None  # as _Program.run: the index of a bad input


def _operand(a) -> list:
    """Four tape slots naming array `a`: its data address and shape."""
    shape = list(a.shape) + [0] * (3 - a.ndim)
    return [a.ctypes.data, *shape]


def _row(op, act, arrays) -> list:
    row = [op, act]
    for a in arrays:
        row += _operand(a)
    return row + [0] * (chain.WIDTH - len(row))


def _arrays_fit(arrays) -> bool:
    """Whether `arrays` can be tape operands: C-contiguous arrays of at most three dimensions (the
    dtypes are checked by the caller)."""
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.ndim <= 3 for a in arrays)


def _floats(arrays, dtype) -> bool:
    """Whether `arrays` are tape operands of the plan's float dtype."""
    return _arrays_fit(arrays) and all(a.dtype == dtype for a in arrays)


def tape_of(program, dtype):
    """A `_Tape` running `program` (a bound `_Program`), or `program` itself where a tape does not
    apply: tapes off, Numba's JIT disabled, a generic step, several inputs or outputs, a call
    `chain_run` does not make (a parallel kernel, BLAS, a copy, a layout change), or arrays of other types."""
    dtype = np.dtype(dtype)
    if (not _ENABLED or numba.config.DISABLE_JIT or program.generic or dtype not in _FLOATS
            or len(program.finals) != 1 or len(program.ingests) != 1 or program.ingests[0][0] is not layout.ingest_fm):
        return program
    rows, alphas = [], []
    view = program.ingests[0][2]
    if not _floats([view], dtype) or view.ndim != 2:
        return program
    rows.append(_row(chain.INGEST, 0, [view]))
    alphas.append(0.0)
    for fn, args in program.calls:
        if fn in chain.OPS:
            *arrays, act, alpha = args
            if not _product_fits(fn, arrays, dtype):
                return program
            rows.append(_row(chain.OPS[fn], int(act), arrays))
        elif fn is dense_epilogue_serial:
            buf, bias, act, alpha = args
            if not _floats([buf, bias], dtype) or buf.ndim != 2 or bias.ndim != 1:
                return program
            rows.append(_row(chain.EPILOGUE, int(act), [buf, bias]))
        else:
            return program
        alphas.append(float(alpha))
    fn, view, _ = program.finals[0]
    if not _floats([view], dtype) or view.ndim != 2:
        return program
    if fn is not layout.transpose:  # a batch-major output (not produced by products)
        return program
    rows.append(_row(chain.OUTPUT, 0, [view]))
    alphas.append(0.0)
    return _Tape(program, rows, alphas, dtype)


def _product_fits(fn, arrays, dtype) -> bool:
    op = chain.OPS[fn]
    *weights, x, out, bias = arrays
    if (not _arrays_fit(weights) or not _floats([x, out, bias], dtype) or x.ndim != 2 or out.ndim != 2
            or bias.ndim != 1 or weights[0].ndim != chain.VALUE_NDIM[op]
            or any(a.ndim != 1 for a in weights[1:])):  # index arrays and scales
        return False
    if op in chain.FLOAT32_ONLY and dtype != np.float32:
        return False
    if op in chain.QUANTIZED:
        values, *index, scales = weights
        if values.dtype != np.int8 or scales.dtype != np.float32 or dtype != np.float32:
            return False
    else:
        values, *index = weights
        if values.dtype != dtype:
            return False
    if index:
        columns, pointers = index
        if columns.dtype not in _INDEX or pointers.dtype not in _POINTER:
            return False
    return True
