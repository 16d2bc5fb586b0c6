"""Eight-lane float32 vectors for kernels whose accumulators must stay in registers.

LLVM keeps a kernel's partial sums in registers only when they are local values: sums written to
`out[i, b]` are reloaded and stored again for every nonzero (it cannot prove that `out` does not
alias the input), and a NumPy scratch array is heap memory (PERF-NOTES, trick 4). Numba has no
vector type and its SLP vectoriser is off, so this module gives kernels one: ``f32x8`` is LLVM's
``<8 x float>`` (one AVX register), and these intrinsics use it:

- ``vzero()``: eight zeros;
- ``vload(a, i, j)``: ``a[i, j:j + 8]`` of a C-contiguous 2-D float32 or int8 array, as float32;
- ``vfma(acc, w, v)``: ``acc + w * v`` for a scalar ``w`` (one fused multiply-add);
- ``vstore(a, i, j, v)``: ``a[i, j:j + 8] = v``;
- ``vload4x2(a, i, j)``: ``a[i, j:j + 4]`` twice (lanes 0-3 and 4-7), float32 only;
- ``vmuladd(acc, u, v)``: ``acc + u * v`` lane by lane;
- ``vsum4x2(v)``: the sums of lanes 0-3 and of lanes 4-7, as a pair of float32;
- ``vpick(src, word, bits)``: lane l of the result is ``src[(word >> (bits * l)) & (2**bits - 1)]``:
  eight packed in-group positions (an N:M weight's codes) select from one group of x (AVX2's
  ``vpermps``; elsewhere a lane-by-lane shuffle);
- ``vpick4(src, word, shift)``: lane l is ``src[(word >> (shift + 2 * l)) & 3]`` for a `src` whose two
  halves hold the same four values (`vload4x2`): AVX's in-lane ``vpermilps``, which reads only
  the two low bits of each index (no mask to apply);
- ``vlane(v, l)``: lane l as a float32.

Like every kernel here they do not bounds-check: ``j + 8 <= a.shape[1]`` is the caller's duty.
With ``NUMBA_DISABLE_JIT=1`` the same names are plain NumPy functions, so kernels still run (slowly)
as Python and the no-JIT tests cover them.
"""

import numpy as np
from numba.core import config

__all__ = ["LANES", "vzero", "vload", "vfma", "vstore", "vload4x2", "vmuladd", "vsum4x2", "vpick", "vpick4",
           "vlane"]

LANES = 8

if config.DISABLE_JIT:

    def vzero():
        return np.zeros(LANES, np.float32)

    def vload(a, i, j):
        return a[i, j:j + LANES].astype(np.float32)

    def vfma(acc, w, v):
        return acc + np.float32(w) * v

    def vstore(a, i, j, v):
        a[i, j:j + LANES] = v

    def vload4x2(a, i, j):
        return np.concatenate([a[i, j:j + 4], a[i, j:j + 4]]).astype(np.float32)

    def vmuladd(acc, u, v):
        return acc + u * v

    def vsum4x2(v):
        return np.float32(v[:4].sum()), np.float32(v[4:].sum())

    def vpick(src, word, bits):
        idx = (int(word) >> (int(bits) * np.arange(LANES))) & ((1 << int(bits)) - 1)
        return src[idx].astype(np.float32)

    def vpick4(src, word, shift):
        idx = (int(word) >> (int(shift) + 2 * np.arange(LANES))) & 3
        return src[idx].astype(np.float32)

    def vlane(v, lane):
        return np.float32(v[lane])

else:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic, models, register_model

    _VEC = ir.VectorType(ir.FloatType(), LANES)

    class F32x8(types.Type):
        """LLVM <8 x float>: only the intrinsics of this module create or consume it."""

        def __init__(self):
            super().__init__(name="f32x8")

    f32x8 = F32x8()

    @register_model(F32x8)
    class _F32x8Model(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, _VEC)

    _LANE_TYPES = {types.float32: ir.FloatType(), types.int8: ir.IntType(8)}

    def _is_rows(a, dtypes=(types.float32,)):
        return isinstance(a, types.Array) and a.dtype in dtypes and a.ndim == 2 and a.layout == "C"

    def _pointer(context, builder, aryty, ary, i, j, lane=_VEC):
        arr = context.make_array(aryty)(context, builder, ary)
        ptr = cgutils.get_item_pointer2(context, builder, data=arr.data,
                                        shape=cgutils.unpack_tuple(builder, arr.shape),
                                        strides=cgutils.unpack_tuple(builder, arr.strides),
                                        layout=aryty.layout, inds=[i, j], wraparound=False)
        return builder.bitcast(ptr, lane.as_pointer())

    def _splat(builder, w):
        undef = ir.Constant(_VEC, ir.Undefined)
        one = builder.insert_element(undef, w, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), LANES),
                                                              [0] * LANES))

    def _as_f32(context, builder, ty, value):
        return context.cast(builder, value, ty, types.float32)

    def _fma(builder, a, b, c):
        fnty = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.v8f32"), [a, b, c])

    @intrinsic
    def vzero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(_VEC, None)
        return f32x8(), codegen

    @intrinsic
    def vload(typingctx, a, i, j):
        if not _is_rows(a, (types.float32, types.int8)):
            return None
        lane = ir.VectorType(_LANE_TYPES[a.dtype], LANES)

        def codegen(context, builder, sig, args):
            ptr = _pointer(context, builder, sig.args[0], args[0], args[1], args[2], lane)
            v = builder.load(ptr, align=4 if lane == _VEC else 1)
            return v if lane == _VEC else builder.sitofp(v, _VEC)
        return f32x8(a, types.intp, types.intp), codegen

    @intrinsic
    def vstore(typingctx, a, i, j, v):
        if not (_is_rows(a) and a.mutable and v == f32x8):
            return None

        def codegen(context, builder, sig, args):
            ptr = _pointer(context, builder, sig.args[0], args[0], args[1], args[2])
            builder.store(args[3], ptr, align=4)
            return context.get_dummy_value()
        return types.none(a, types.intp, types.intp, f32x8), codegen

    @intrinsic
    def vfma(typingctx, acc, w, v):
        # float32 or int8 weights only: a float64 weight would be rounded silently
        if not (acc == f32x8 and v == f32x8 and w in (types.float32, types.int8)):
            return None

        def codegen(context, builder, sig, args):
            ws = _splat(builder, _as_f32(context, builder, sig.args[1], args[1]))
            return _fma(builder, ws, args[2], args[0])
        return f32x8(f32x8, w, f32x8), codegen

    @intrinsic
    def vmuladd(typingctx, acc, u, v):
        if not (acc == f32x8 and u == f32x8 and v == f32x8):
            return None

        def codegen(context, builder, sig, args):
            return _fma(builder, args[1], args[2], args[0])
        return f32x8(f32x8, f32x8, f32x8), codegen

    @intrinsic
    def vload4x2(typingctx, a, i, j):
        if not _is_rows(a):
            return None
        quad = ir.VectorType(ir.FloatType(), 4)

        def codegen(context, builder, sig, args):
            ptr = _pointer(context, builder, sig.args[0], args[0], args[1], args[2], quad)
            q = builder.load(ptr, align=4)
            mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0, 1, 2, 3, 0, 1, 2, 3])
            return builder.shuffle_vector(q, ir.Constant(quad, ir.Undefined), mask)
        return f32x8(a, types.intp, types.intp), codegen

    @intrinsic
    def vsum4x2(typingctx, v):
        if v != f32x8:
            return None
        pair = types.UniTuple(types.float32, 2)

        def codegen(context, builder, sig, args):
            lane = [builder.extract_element(args[0], ir.Constant(ir.IntType(32), k)) for k in range(LANES)]
            lo = builder.fadd(builder.fadd(lane[0], lane[1]), builder.fadd(lane[2], lane[3]))
            hi = builder.fadd(builder.fadd(lane[4], lane[5]), builder.fadd(lane[6], lane[7]))
            return context.make_tuple(builder, pair, [lo, hi])
        return pair(f32x8), codegen

    def _has_avx2() -> bool:
        try:
            import llvmlite.binding as llvm
            return bool(llvm.get_host_cpu_features().get("avx2"))
        except Exception:  # pragma: no cover - no host features: the portable shuffle
            return False

    _AVX2 = _has_avx2()
    _I32 = ir.IntType(32)
    _IDX = ir.VectorType(_I32, LANES)

    @intrinsic
    def vpick(typingctx, src, word, bits):
        if not (src == f32x8 and isinstance(word, types.Integer) and isinstance(bits, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            w = builder.trunc(args[1], _I32) if sig.args[1].bitwidth > 32 else builder.zext(args[1], _I32) \
                if sig.args[1].bitwidth < 32 else args[1]
            b = builder.trunc(args[2], _I32) if sig.args[2].bitwidth > 32 else args[2]
            undef = ir.Constant(_IDX, ir.Undefined)
            splat = ir.Constant(_IDX, [0] * LANES)
            ws = builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(_I32, 0)), undef, splat)
            bs = builder.shuffle_vector(builder.insert_element(undef, b, ir.Constant(_I32, 0)), undef, splat)
            shifts = builder.mul(bs, ir.Constant(_IDX, list(range(LANES))))
            mask = builder.sub(builder.shl(ir.Constant(_IDX, [1] * LANES), bs), ir.Constant(_IDX, [1] * LANES))
            idx = builder.and_(builder.lshr(ws, shifts), mask)
            if _AVX2:
                fnty = ir.FunctionType(_VEC, [_VEC, _IDX])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx2.permps")
                return builder.call(fn, [args[0], idx])
            out = ir.Constant(_VEC, ir.Undefined)
            for lane in range(LANES):
                k = builder.extract_element(idx, ir.Constant(_I32, lane))
                out = builder.insert_element(out, builder.extract_element(args[0], k), ir.Constant(_I32, lane))
            return out
        return f32x8(f32x8, word, bits), codegen

    @intrinsic
    def vpick4(typingctx, src, word, shift):
        if not (src == f32x8 and isinstance(word, types.Integer) and isinstance(shift, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            w = _as_i32(builder, sig.args[1], args[1])
            b = _as_i32(builder, sig.args[2], args[2])
            undef = ir.Constant(_IDX, ir.Undefined)
            splat = ir.Constant(_IDX, [0] * LANES)
            ws = builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(_I32, 0)), undef, splat)
            bs = builder.shuffle_vector(builder.insert_element(undef, b, ir.Constant(_I32, 0)), undef, splat)
            idx = builder.lshr(ws, builder.add(bs, ir.Constant(_IDX, [2 * lane for lane in range(LANES)])))
            if _AVX2:
                fnty = ir.FunctionType(_VEC, [_VEC, _IDX])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx.vpermilvar.ps.256")
                return builder.call(fn, [args[0], idx])
            idx = builder.and_(idx, ir.Constant(_IDX, [3] * LANES))
            out = ir.Constant(_VEC, ir.Undefined)
            for lane in range(LANES):  # lanes 4-7 read the upper half, which holds the same values
                k = builder.extract_element(idx, ir.Constant(_I32, lane))
                out = builder.insert_element(out, builder.extract_element(args[0], k), ir.Constant(_I32, lane))
            return out
        return f32x8(f32x8, word, shift), codegen

    def _as_i32(builder, ty, value):
        if ty.bitwidth > 32:
            return builder.trunc(value, _I32)
        return builder.zext(value, _I32) if ty.bitwidth < 32 else value

    @intrinsic
    def vlane(typingctx, v, lane):
        if not (v == f32x8 and isinstance(lane, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            k = builder.trunc(args[1], _I32) if sig.args[1].bitwidth > 32 else builder.zext(args[1], _I32) \
                if sig.args[1].bitwidth < 32 else args[1]
            return builder.extract_element(args[0], k)
        return types.float32(f32x8, lane), codegen
