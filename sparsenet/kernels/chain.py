"""One compiled executor for a whole plan: its kernels run from a tape, in one call from Python.

A compiled plan whose steps are all small serial kernels (a LeNet at batch 1: 5 430 multiply-adds
in three layers) spends most of its time entering Numba, not computing: each kernel call from
Python costs ~0.15 us plus ~0.05 us per array argument (unboxing), about 0.6 us for a CSR product,
and five calls per prediction. `chain_run` takes the whole plan as a tape, one row per call, and
makes the same kernel calls from compiled code: one entry per prediction with four arguments.

A tape row is ``[op, act, operand, operand, ...]``, each operand four int64 slots ``address, d0,
d1, d2`` naming an array the plan owns (a weight, a bias, a buffer) by its data address and shape.
The rows: INGEST (the input `x`, batch-major, cast and checked into a feature-major buffer), one
product per weighted layer (bias and activation fused), EPILOGUE (an activation applied in place
where it could not be fused), and OUTPUT (the last buffer transposed into `out`). The arrays are the model's and the plan's own (no copies), so
in-place changes to weight values are seen as on the plan's other path; the caller keeps every
array alive while the tape may run (`sparsenet.plan`). Tapes are built from validated formats and
checked shapes only: nothing here checks an address.

The same kernels with the same argument types as the plan's call-by-call path: the results are
the same bits. Index arrays must be uint16 (columns) and int32 (row pointers), which every format
chooses for layers small enough to run here.
"""

import hashlib
import os

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from ._jit import OPTIONS, _renamed
from .bsr import bsr_spmm_f32_serial, bsr_spmm_serial, bsr_spmv_f32_serial, bsr_spmv_serial
from .csr import csr_spmm_f32_serial, csr_spmm_serial, csr_spmv_serial
from .dense import dense_epilogue_serial, dense_spmm_serial
from .int8 import bsr_i8_spmm_serial, csr_i8_spmm_serial, dense_i8_spmm_serial
from .layout import ingest_fm, transpose

__all__ = ["chain_run", "OPS", "FLOAT32_ONLY", "QUANTIZED", "VALUE_NDIM", "WIDTH", "INGEST", "EPILOGUE", "OUTPUT"]

# op codes of a tape row (row[0]); the product codes are keyed by the kernel they call
INGEST, EPILOGUE, OUTPUT = 1, 2, 3
_CSR_SPMV, _CSR_SPMM, _CSR_SPMM_F32 = 10, 11, 12
_BSR_SPMV, _BSR_SPMM, _BSR_SPMV_F32, _BSR_SPMM_F32 = 20, 21, 22, 23
_DENSE = 30
_QDENSE, _QCSR, _QBSR = 40, 41, 42

# kernel -> op code: the serial product kernels a tape can call
OPS = {
    csr_spmv_serial: _CSR_SPMV, csr_spmm_serial: _CSR_SPMM, csr_spmm_f32_serial: _CSR_SPMM_F32,
    bsr_spmv_serial: _BSR_SPMV, bsr_spmm_serial: _BSR_SPMM,
    bsr_spmv_f32_serial: _BSR_SPMV_F32, bsr_spmm_f32_serial: _BSR_SPMM_F32,
    dense_spmm_serial: _DENSE,
    dense_i8_spmm_serial: _QDENSE, csr_i8_spmm_serial: _QCSR, bsr_i8_spmm_serial: _QBSR,
}
# the products `_float32_products` runs (float32 plans only), and those with int8 values + scales
FLOAT32_ONLY = {_CSR_SPMM_F32, _BSR_SPMV_F32, _BSR_SPMM_F32, _QDENSE, _QCSR, _QBSR}
QUANTIZED = {_QDENSE, _QCSR, _QBSR}
# the dimensions of each product's values (operand 0): CSR 1, dense [M, K] 2, BSR [blocks, R, C] 3
VALUE_NDIM = {_CSR_SPMV: 1, _CSR_SPMM: 1, _CSR_SPMM_F32: 1, _QCSR: 1, _DENSE: 2, _QDENSE: 2,
              _BSR_SPMV: 3, _BSR_SPMM: 3, _BSR_SPMV_F32: 3, _BSR_SPMM_F32: 3, _QBSR: 3}
# int64 slots per row: op, act, then up to seven operands of four slots
WIDTH = 2 + 7 * 4


@intrinsic
def _pointer(typingctx, address):
    """The int64 `address` as a void pointer (for `numba.carray`)."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


def _float32_products(row, act, alpha, out):
    """The float32-only products of a tape row (register-tiled CSR/BSR kernels, int8 weights):
    compiled into `chain_run` for float32 plans only (`_float32_products_impl`)."""


@overload(_float32_products, jit_options=OPTIONS)
def _float32_products_impl(row, act, alpha, out):
    if out.dtype != types.float32:
        return lambda row, act, alpha, out: None

    def impl(row, act, alpha, out):
        op, f = row[0], np.float32
        if op == _CSR_SPMM_F32:
            csr_spmm_f32_serial(_v1(row, 0, f), *_pattern_io(row, f), act, alpha)
        elif op == _BSR_SPMV_F32 or op == _BSR_SPMM_F32:
            data = _v3(row, 0, f)
            idx, ptr, src, dst, bias = _pattern_io(row, f)
            if op == _BSR_SPMV_F32:
                bsr_spmv_f32_serial(data, idx, ptr, src, dst, bias, act, alpha)
            else:
                bsr_spmm_f32_serial(data, idx, ptr, src, dst, bias, act, alpha)
        elif op == _QDENSE:
            dense_i8_spmm_serial(_v2(row, 0, np.int8), _v1(row, 1, f), _v2(row, 2, f), _v2(row, 3, f),
                                 _v1(row, 4, f), act, alpha)
        elif op == _QCSR:
            csr_i8_spmm_serial(_v1(row, 0, np.int8), _v1(row, 1, np.uint16), _v1(row, 2, np.int32),
                               _v1(row, 3, f), _v2(row, 4, f), _v2(row, 5, f), _v1(row, 6, f), act, alpha)
        elif op == _QBSR:
            bsr_i8_spmm_serial(_v3(row, 0, np.int8), _v1(row, 1, np.uint16), _v1(row, 2, np.int32),
                               _v1(row, 3, f), _v2(row, 4, f), _v2(row, 5, f), _v1(row, 6, f), act, alpha)

    return impl


@numba.njit(**OPTIONS)
def _v1(row, j, dtype):
    """Operand j of `row` as a 1-D array of `dtype`."""
    s = 2 + 4 * j
    return numba.carray(_pointer(row[s]), row[s + 1], dtype)


@numba.njit(**OPTIONS)
def _v2(row, j, dtype):
    s = 2 + 4 * j
    return numba.carray(_pointer(row[s]), (row[s + 1], row[s + 2]), dtype)


@numba.njit(**OPTIONS)
def _v3(row, j, dtype):
    s = 2 + 4 * j
    return numba.carray(_pointer(row[s]), (row[s + 1], row[s + 2], row[s + 3]), dtype)


@numba.njit(**OPTIONS)
def _pattern_io(row, f):
    """Operands 1-5 of a CSR or BSR product row: columns, row pointers, x, out, bias."""
    return _v1(row, 1, np.uint16), _v1(row, 2, np.int32), _v2(row, 3, f), _v2(row, 4, f), _v1(row, 5, f)


def _chain_run(tape, alphas, x, out):
    """Run the calls of `tape` (int64 [steps, WIDTH]) in order; alphas[r]: the activation
    parameter of row r; x: the batch-major input [B, F] (read by INGEST rows), out: the
    batch-major output [B, M] (written by the OUTPUT row). Returns the count of
    input values that are not finite (then the rows after the ingest did not run), else 0."""
    f = out.dtype
    for r in range(tape.shape[0]):
        row = tape[r]
        op = row[0]
        act = row[1]
        alpha = alphas[r]
        if op == INGEST:
            bad = ingest_fm(x, _v2(row, 0, f))
            if bad:
                return bad
        elif op == EPILOGUE:
            dense_epilogue_serial(_v2(row, 0, f), _v1(row, 1, f), act, alpha)
        elif op == OUTPUT:
            transpose(_v2(row, 0, f), out)
        elif op == _CSR_SPMV or op == _CSR_SPMM:
            data = _v1(row, 0, f)
            idx, ptr, src, dst, bias = _pattern_io(row, f)
            if op == _CSR_SPMV:
                csr_spmv_serial(data, idx, ptr, src, dst, bias, act, alpha)
            else:
                csr_spmm_serial(data, idx, ptr, src, dst, bias, act, alpha)
        elif op == _BSR_SPMV or op == _BSR_SPMM:
            data = _v3(row, 0, f)
            idx, ptr, src, dst, bias = _pattern_io(row, f)
            if op == _BSR_SPMV:
                bsr_spmv_serial(data, idx, ptr, src, dst, bias, act, alpha)
            else:
                bsr_spmm_serial(data, idx, ptr, src, dst, bias, act, alpha)
        elif op == _DENSE:
            dense_spmm_serial(_v2(row, 0, f), _v2(row, 1, f), _v2(row, 2, f), _v1(row, 3, f), act, alpha)
        else:
            _float32_products(row, act, alpha, out)
    return 0


def _kernels_stamp() -> str:
    """A digest of the kernel sources' sizes and modification times. Numba's cache checks only the
    file of the function it compiled, and `chain_run` has every kernel compiled into it: naming it
    after this digest makes an edit to any kernel file compile a new one instead of loading a stale
    one."""
    here = os.path.dirname(os.path.abspath(__file__))
    stamp = hashlib.sha1()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(here, name))
            stamp.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return stamp.hexdigest()[:12]


chain_run = numba.njit(**OPTIONS)(_renamed(_chain_run, "_" + _kernels_stamp()))
