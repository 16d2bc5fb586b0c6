"""The epilogue every forward product applies before it stores: ``out = act(W @ x + bias)``.

Every forward kernel (``<format>_spmv``, ``<format>_spmm``, their ``_f32`` twins and the int8
kernels) takes three trailing arguments, ``bias, act, alpha``:

- ``bias``: [M] in the output's dtype, or an empty array (`no_bias`) for none;
- ``act``: an activation code below (``NONE`` for a plain product);
- ``alpha``: the activation's parameter (LeakyReLU's negative slope), else ignored.

The kernels apply it to a row (or a task's rows) right after computing it, while the row is still
in cache, so that a compiled plan runs a Linear + bias + activation as one kernel call. The
activation formulas are those of `sparsenet.nn.activation` (a stable sigmoid; GELU in its tanh and
its erf form; CLIP0 is ``min(max(v, 0), alpha)``, ReLU6 with alpha 6; HARDSIGMOID is
``min(max(alpha * v + 0.5, 0), 1)``, PyTorch's with alpha 1/6). `activate_ref` is the NumPy
reference the tests compare against.
"""

import math

import numba
import numpy as np

from ._jit import OPTIONS, VECTOR_OPTIONS

__all__ = ["NONE", "RELU", "LEAKY_RELU", "SIGMOID", "TANH", "GELU_TANH", "CLIP0", "HARDSIGMOID", "HARDSWISH",
           "SILU", "GELU_ERF", "ACTIVATIONS", "no_bias", "activate", "activate_into", "epilogue_rows",
           "activate_ref", "erf_into", "exp_f32", "transcendental_f32"]

NONE, RELU, LEAKY_RELU, SIGMOID, TANH, GELU_TANH = 0, 1, 2, 3, 4, 5
CLIP0, HARDSIGMOID, HARDSWISH, SILU, GELU_ERF = 6, 7, 8, 9, 10
ACTIVATIONS = {"none": NONE, "relu": RELU, "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID, "tanh": TANH,
               "gelu_tanh": GELU_TANH, "clip0": CLIP0, "hardsigmoid": HARDSIGMOID, "hardswish": HARDSWISH,
               "silu": SILU, "gelu_erf": GELU_ERF}

_GELU_C = np.sqrt(2 / np.pi)
_SQRT_HALF = np.sqrt(0.5)
_NO_BIAS = {np.dtype(np.float32): np.zeros(0, np.float32), np.dtype(np.float64): np.zeros(0, np.float64)}


def no_bias(dtype) -> np.ndarray:
    """The empty bias array of `dtype` (float32 or float64) that means "no bias"."""
    return _NO_BIAS[np.dtype(dtype)]


@numba.njit(**OPTIONS)
def activate(v, act, alpha):
    """act(v) for one value (of the output's dtype)."""
    if act == RELU:
        return v if v > 0 else v * 0
    if act == LEAKY_RELU:
        return v if v > 0 else v * alpha
    if act == SIGMOID:
        e = np.exp(-abs(v))
        return 1 / (1 + e) if v >= 0 else e / (1 + e)
    if act == TANH:
        return np.tanh(v)
    if act == GELU_TANH:
        return 0.5 * v * (1 + np.tanh(_GELU_C * (v + 0.044715 * v * v * v)))
    if act == CLIP0:
        return min(max(v, v * 0), alpha)
    if act == HARDSIGMOID:
        return min(max(alpha * v + 0.5, v * 0), v * 0 + 1)
    if act == HARDSWISH:
        return v * min(max(v / 6 + 0.5, v * 0), v * 0 + 1)
    if act == SILU:
        e = np.exp(-abs(v))
        return v / (1 + e) if v >= 0 else v * e / (1 + e)
    if act == GELU_ERF:
        return 0.5 * v * (1 + math.erf(v * _SQRT_HALF))
    return v


@numba.njit(**OPTIONS)
def activate_into(x, out, act, alpha):
    """out = act(x) over two flat arrays of one size (out may be x)."""
    for i in range(np.uintp(0), np.uintp(x.shape[0])):
        out[i] = activate(x[i], act, alpha)


@numba.njit(**OPTIONS)
def erf_into(x, out):
    """out = erf(x) over two flat arrays of one size (NumPy has no erf)."""
    for i in range(np.uintp(0), np.uintp(x.shape[0])):
        out[i] = math.erf(x[i])


_CHUNK = 4096  # values per pass of the exp-based activations (their scratch: 32 KB)


@numba.njit(**OPTIONS)
def epilogue_rows(out, r0, r1, bias, act, alpha):
    """out[r0:r1, :] = act(out[r0:r1, :] + bias[r0:r1, None]) in place (out: [M, B], C-contiguous)."""
    if (act == NONE and bias.shape[0] == 0) or out.shape[1] == 0:
        return
    nb = np.uintp(out.shape[1])
    has_bias = bias.shape[0] != 0
    # out[i, j] rather than a view per row: a view costs two reference counts (a convolution's
    # epilogue over 64 x 64 planes of 64: 4096 rows)
    for i in range(r0, r1):
        if has_bias:
            b = bias[i]
            for j in range(np.uintp(0), nb):
                out[i, j] += b
        if act == RELU:  # the common cases as loops of their own in the row's dtype, which LLVM vectorises
            for j in range(np.uintp(0), nb):
                v = out[i, j]
                out[i, j] = v if v > 0 else v * 0
        elif act == CLIP0 and out.itemsize == 4:  # the bound in the row's dtype (no array per row)
            hi = np.float32(alpha)
            for j in range(np.uintp(0), nb):
                v = out[i, j]
                v = v if v > 0 else v * 0
                out[i, j] = v if v < hi else hi
        elif act == CLIP0:
            hi64 = np.float64(alpha)
            for j in range(np.uintp(0), nb):
                v = out[i, j]
                v = v if v > 0 else v * 0
                out[i, j] = v if v < hi64 else hi64
        elif act == HARDSWISH:
            for j in range(np.uintp(0), nb):
                v = out[i, j]
                g = v * (1 / 6) + 0.5
                g = g if g > 0 else g * 0
                g = g if g < 1 else g * 0 + 1
                out[i, j] = v * g
        elif act == LEAKY_RELU:
            for j in range(np.uintp(0), nb):
                v = out[i, j]
                out[i, j] = v if v > 0 else v * alpha
        elif act == HARDSIGMOID:
            for j in range(np.uintp(0), nb):
                g = out[i, j] * alpha + 0.5
                g = g if g > 0 else g * 0
                out[i, j] = g if g < 1 else g * 0 + 1
        elif out.itemsize == 4 and nb >= 8 and act in (SIGMOID, SILU, GELU_TANH, GELU_ERF, TANH):
            # scratch for these only (two allocations at the top of every call, whatever the
            # activation, took a BatchNorm + ReLU over 64 x 96 x 16 from 50 to 870 us), and at most
            # _CHUNK values of it, reused along the row: scratch of a whole long row is fresh pages
            # at every call (GELU over the transformer's 2048 x 64 FFN block: 400 -> 170 us)
            size = min(nb, np.uintp(_CHUNK))
            tmp, bits = np.empty(size, out.dtype), np.empty(size, np.int32)
            row = out[i]
            for j0 in range(np.uintp(0), nb, np.uintp(_CHUNK)):
                j1 = min(nb, j0 + np.uintp(_CHUNK))
                transcendental_f32(row[j0:j1], act, tmp[:j1 - j0], bits[:j1 - j0])
        elif act != NONE:
            for j in range(np.uintp(0), nb):
                out[i, j] = activate(out[i, j], act, alpha)


@numba.njit(**VECTOR_OPTIONS)
def exp_f32(x, bits):
    """x = exp(x) in place over a flat float32 array (`bits`: int32 scratch of its size; in place
    because LLVM does not vectorise a loop whose input and output may overlap): Cephes' expf (range reduction by ln 2 in two parts, a degree-6 polynomial, the power of
    two built from its exponent bits), relative error below 2e-7, in two loops that LLVM vectorises.
    NumPy's and Numba's exp call libm per element here (Numba has no SVML on this machine): 5x
    slower. Arguments are clamped to [-87, 88] (exp underflows and overflows float32 beyond)."""
    n = np.uintp(x.shape[0])
    scale = bits.view(np.float32)
    for j in range(np.uintp(0), n):
        v = min(max(x[j], np.float32(-87.0)), np.float32(88.0))
        k = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
        r = v - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        x[j] = p * r * r + r + np.float32(1.0)
        bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)
    for j in range(np.uintp(0), n):
        x[j] *= scale[j]


@numba.njit(**VECTOR_OPTIONS)
def transcendental_f32(row, act, tmp, bits):
    """row = act(row) in place for a float32 row and an activation built on exp (SIGMOID, SILU,
    GELU_TANH, GELU_ERF, TANH), through `exp_f32` (`tmp`, `bits`: scratch of the row's size), in
    loops without branches that LLVM vectorises. GELU_TANH is v * sigmoid(2u) (the same function as
    0.5 v (1 + tanh u)); GELU_ERF uses erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) (Numerical
    Recipes' erfcc, relative error below 1.2e-7 everywhere, so the negative tail keeps its digits);
    TANH uses Cephes' polynomial below 0.625 and 1 - 2 / (1 + exp(2|v|)) above."""
    n = np.uintp(row.shape[0])
    one = np.float32(1.0)
    if act == GELU_ERF:
        for j in range(np.uintp(0), n):
            z = abs(row[j]) * np.float32(_SQRT_HALF)
            t = one / (one + np.float32(0.5) * z)
            p = np.float32(0.17087277)
            p = p * t + np.float32(-0.82215223)
            p = p * t + np.float32(1.48851587)
            p = p * t + np.float32(-1.13520398)
            p = p * t + np.float32(0.27886807)
            p = p * t + np.float32(-0.18628806)
            p = p * t + np.float32(0.09678418)
            p = p * t + np.float32(0.37409196)
            p = p * t + np.float32(1.00002368)
            tmp[j] = p * t - np.float32(1.26551223) - z * z
        exp_f32(tmp, bits)
        for j in range(np.uintp(0), n):
            v = row[j]
            t = one / (one + np.float32(0.5) * abs(v) * np.float32(_SQRT_HALF))
            c = t * tmp[j]  # erfc(|v| / sqrt 2)
            row[j] = np.float32(0.5) * v * (c if v < 0 else np.float32(2.0) - c)
        return
    if act == TANH:
        for j in range(np.uintp(0), n):
            tmp[j] = np.float32(-2.0) * abs(row[j])
        exp_f32(tmp, bits)
        for j in range(np.uintp(0), n):
            v = row[j]
            a = abs(v)
            big = (one - tmp[j]) / (one + tmp[j])
            z = v * v
            p = np.float32(-5.70498872745e-3)
            p = p * z + np.float32(2.06390887954e-2)
            p = p * z + np.float32(-5.37397155531e-2)
            p = p * z + np.float32(1.33314422036e-1)
            p = p * z + np.float32(-3.33332819422e-1)
            small = a + a * z * p
            m = small if a < np.float32(0.625) else big
            row[j] = m if v >= 0 else -m
        return
    for j in range(np.uintp(0), n):  # sigmoid(s) of s = v, or 2u for GELU_TANH
        v = row[j]
        s = np.float32(2.0 * _GELU_C) * (v + np.float32(0.044715) * v * v * v) if act == GELU_TANH else v
        tmp[j] = -abs(s)
    exp_f32(tmp, bits)
    for j in range(np.uintp(0), n):
        v = row[j]
        e = tmp[j]
        inv = one / (one + e)
        if act == GELU_TANH:
            s = np.float32(2.0 * _GELU_C) * (v + np.float32(0.044715) * v * v * v)
        else:
            s = v
        sig = inv if s >= 0 else e * inv
        row[j] = sig if act == SIGMOID else v * sig


def activate_ref(y, act, alpha=0.0):
    """NumPy reference of `activate` over an array (float64 in, float64 out)."""
    y = np.asarray(y, np.float64)
    if act == RELU:
        return np.maximum(y, 0)
    if act == LEAKY_RELU:
        return np.where(y > 0, y, y * alpha)
    if act == SIGMOID:
        return 1 / (1 + np.exp(-y))
    if act == TANH:
        return np.tanh(y)
    if act == GELU_TANH:
        return 0.5 * y * (1 + np.tanh(_GELU_C * (y + 0.044715 * y ** 3)))
    if act == CLIP0:
        return np.clip(y, 0, alpha)
    if act == HARDSIGMOID:
        return np.clip(alpha * y + 0.5, 0, 1)
    if act == HARDSWISH:
        return y * np.clip(y / 6 + 0.5, 0, 1)
    if act == SILU:
        return y / (1 + np.exp(-y))
    if act == GELU_ERF:
        return 0.5 * y * (1 + np.vectorize(math.erf, otypes=[np.float64])(y / np.sqrt(2)))
    return y
