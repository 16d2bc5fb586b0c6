"""Pooling layers: max, average and global average, over [B, C, H, W]."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from ._spec import field, int_list
from .module import Module, as_float, check_input

__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]


class _Pool2d(Module):
    """`ceil_mode` (PyTorch's and ONNX's): the output size rounds up, the last windows overhanging
    the bottom and right edges (never starting past the input and its top/left padding, so each
    window holds an element of the input); what overhangs is left out."""

    def __init__(self, kernel_size, stride=None, padding: int = 0, ceil_mode: bool = False):
        super().__init__()
        self.ceil_mode = bool(ceil_mode)
        k = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
        s = k if stride is None else ((stride, stride) if np.isscalar(stride) else tuple(stride))
        self.kernel_size, self.stride, self.padding = (int(k[0]), int(k[1])), (int(s[0]), int(s[1])), int(padding)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or self.padding < 0:
            raise ShapeError(f"{self.name}: expected kernel >= 1, stride >= 1, padding >= 0, found "
                             f"{kernel_size}, {stride}, {padding}")
        if self.padding * 2 > min(self.kernel_size):
            raise ShapeError(f"{self.name}: padding {padding} must be at most half the kernel {self.kernel_size}")

    def out_size(self, n: int, axis: int) -> int:
        """The output size along spatial `axis` (0: height, 1: width) for an input of size `n`."""
        k, s, p = self.kernel_size[axis], self.stride[axis], self.padding
        if not self.ceil_mode:
            return (n + 2 * p - k) // s + 1
        o = -(-(n + 2 * p - k) // s) + 1
        return o - 1 if (o - 1) * s >= n + p else o

    def _extra(self, h: int, w: int) -> tuple[int, int]:
        """The rows and columns the ceil-mode windows overhang below and right of the padded input."""
        return tuple(max(0, (self.out_size(n, a) - 1) * self.stride[a] + self.kernel_size[a] - (n + 2 * self.padding))
                     for a, n in enumerate((h, w)))

    def _windows(self, x, fill):
        x = as_float(check_input(self, x, 4))
        p = self.padding
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if x.shape[2] + 2 * p < kh or x.shape[3] + 2 * p < kw:
            raise ShapeError(f"{self.name}: input {x.shape[2:]} (padded) is smaller than kernel {self.kernel_size}")
        eh, ew = self._extra(*x.shape[2:])
        if p or eh or ew:
            x = np.pad(x, ((0, 0), (0, 0), (p, p + eh), (p, p + ew)), constant_values=fill)
        win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # [B,C,oh,ow,kh,kw]
        return win[:, :, :self.out_size(x.shape[2] - 2 * p - eh, 0), :self.out_size(x.shape[3] - 2 * p - ew, 1)]

    def _scatter(self, contrib, x_shape):
        """Sum window contributions [B,C,oh,ow,kh,kw] back onto the (padded) input and unpad."""
        b, c, h, w = x_shape
        p = self.padding
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = contrib.shape[2], contrib.shape[3]
        eh, ew = self._extra(h, w)
        dx = np.zeros((b, c, h + 2 * p + eh, w + 2 * p + ew), dtype=contrib.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += contrib[:, :, :, :, i, j]
        return dx[:, :, p:p + h, p:p + w]

    def spec(self):
        spec = {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": self.padding}
        if self.ceil_mode:  # files of the default stay as before
            spec["ceil_mode"] = True
        return spec, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(tuple(int_list(spec, "kernel_size", 2, where)), tuple(int_list(spec, "stride", 2, where)),
                   field(spec, "padding", int, where), **_ceil(spec, where))

    def _onnx_attrs(self) -> dict:
        attrs = {"kernel_shape": list(self.kernel_size), "strides": list(self.stride), "pads": [self.padding] * 4}
        if self.ceil_mode:
            attrs["ceil_mode"] = 1
        return attrs

    def extra_repr(self) -> str:
        return f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}" + (
            ", ceil_mode=True" if self.ceil_mode else "")


def _ceil(spec, where) -> dict:
    return {"ceil_mode": field(spec, "ceil_mode", bool, where)} if "ceil_mode" in spec else {}


class MaxPool2d(_Pool2d):
    """Max over windows; the gradient goes to the (first) maximum of each window."""

    def forward(self, x):
        win = self._windows(x, -np.inf)
        b, c, oh, ow, kh, kw = win.shape
        flat = win.reshape(b, c, oh, ow, kh * kw)
        arg = flat.argmax(axis=-1)
        self._save(_arg=arg, _x_shape=np.shape(x))
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def lower(self, builder, inputs):  # a kernel of its own (sparsenet.kernels.dense_maxpool2d)
        return builder.maxpool2d(self, inputs[0])

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("MaxPool", inputs[:1], prefix, **self._onnx_attrs())

    def backward(self, grad):
        b, c, oh, ow = self._arg.shape
        kh, kw = self.kernel_size
        contrib = np.zeros((b, c, oh, ow, kh * kw), dtype=grad.dtype)
        np.put_along_axis(contrib, self._arg[..., None], grad[..., None], axis=-1)
        return self._scatter(contrib.reshape(b, c, oh, ow, kh, kw), self._x_shape)


class AvgPool2d(_Pool2d):
    """Mean over windows. With padding, `count_include_pad` (the default, as PyTorch and ONNX's
    count_include_pad=1) divides every window by its full size; without it, by the number of its
    elements that lie inside the input (PyTorch's ``count_include_pad=False``)."""

    def __init__(self, kernel_size, stride=None, padding: int = 0, count_include_pad: bool = True,
                 ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _divides_by_kernel(self) -> bool:
        return (self.count_include_pad or not self.padding) and not self.ceil_mode

    def _counts(self, h, w, dtype):
        """[oh, ow]: each window's divisor: how many of its elements lie inside the h x w input, or
        inside the padded input with `count_include_pad` (a ceil-mode overhang never counts, as in
        PyTorch and onnxruntime)."""
        p = self.padding
        eh, ew = self._extra(h, w)
        ones = np.ones((h + 2 * p, w + 2 * p), dtype) if self.count_include_pad else np.pad(np.ones((h, w), dtype), p)
        ones = np.pad(ones, ((0, eh), (0, ew)))
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        counts = sliding_window_view(ones, (kh, kw))[::sh, ::sw].sum(axis=(-2, -1))
        return counts[:self.out_size(h, 0), :self.out_size(w, 1)]

    def forward(self, x):
        win = self._windows(x, 0)
        self._save(_x_shape=np.shape(x))
        if self._divides_by_kernel():
            return win.mean(axis=(-2, -1))
        counts = self._counts(*np.shape(x)[2:], win.dtype)
        return win.sum(axis=(-2, -1)) / counts

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("AveragePool", inputs[:1], prefix, count_include_pad=int(self.count_include_pad),
                         **self._onnx_attrs())

    def backward(self, grad):
        kh, kw = self.kernel_size
        if self._divides_by_kernel():
            share = grad / (kh * kw)
        else:
            share = grad / self._counts(*self._x_shape[2:], grad.dtype)
        contrib = np.broadcast_to(share[..., None, None], grad.shape + (kh, kw))
        return self._scatter(contrib, self._x_shape)

    def spec(self):
        spec, arrays = super().spec()
        if not self.count_include_pad:  # files of the default stay as before
            spec["count_include_pad"] = False
        return spec, arrays

    @classmethod
    def from_spec(cls, spec, arrays, where):
        include = field(spec, "count_include_pad", bool, where) if "count_include_pad" in spec else True
        return cls(tuple(int_list(spec, "kernel_size", 2, where)), tuple(int_list(spec, "stride", 2, where)),
                   field(spec, "padding", int, where), include, **_ceil(spec, where))

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.count_include_pad else ", count_include_pad=False")


class GlobalAvgPool2d(Module):
    """[B, C, H, W] -> [B, C]: the mean over each channel's spatial map."""

    def forward(self, x):
        x = check_input(self, x, 4)
        self._save(_x_shape=x.shape)
        return x.mean(axis=(2, 3))

    def lower(self, builder, inputs):  # a kernel of its own (sparsenet.kernels.dense_global_avgpool)
        return builder.global_avgpool(self, inputs[0])

    def to_onnx(self, onnx, prefix, inputs):  # ONNX's pool keeps [N, C, 1, 1]
        pooled = onnx.node("GlobalAveragePool", inputs[:1], prefix)
        return onnx.node("Flatten", [pooled], f"{prefix}.flatten", axis=1)

    def backward(self, grad):
        b, c, h, w = self._x_shape
        return np.broadcast_to((grad / (h * w))[:, :, None, None], self._x_shape).copy()
