"""Pooling layers: max, average and global average, over [B, C, H, W]."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from ._spec import field, int_list
from .module import Module, as_float, check_input

__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding: int = 0):
        super().__init__()
        k = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
        s = k if stride is None else ((stride, stride) if np.isscalar(stride) else tuple(stride))
        self.kernel_size, self.stride, self.padding = (int(k[0]), int(k[1])), (int(s[0]), int(s[1])), int(padding)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or self.padding < 0:
            raise ShapeError(f"{self.name}: expected kernel >= 1, stride >= 1, padding >= 0, found "
                             f"{kernel_size}, {stride}, {padding}")
        if self.padding * 2 > min(self.kernel_size):
            raise ShapeError(f"{self.name}: padding {padding} must be at most half the kernel {self.kernel_size}")

    def _windows(self, x, fill):
        x = as_float(check_input(self, x, 4))
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if x.shape[2] < kh or x.shape[3] < kw:
            raise ShapeError(f"{self.name}: input {x.shape[2:]} (padded) is smaller than kernel {self.kernel_size}")
        return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # [B,C,oh,ow,kh,kw]

    def _scatter(self, contrib, x_shape):
        """Sum window contributions [B,C,oh,ow,kh,kw] back onto the (padded) input and unpad."""
        b, c, h, w = x_shape
        p = self.padding
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = contrib.shape[2], contrib.shape[3]
        dx = np.zeros((b, c, h + 2 * p, w + 2 * p), dtype=contrib.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += contrib[:, :, :, :, i, j]
        return dx[:, :, p:p + h, p:p + w]

    def spec(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": self.padding}, {}

    @classmethod
    def from_spec(cls, spec, arrays, where):
        return cls(tuple(int_list(spec, "kernel_size", 2, where)), tuple(int_list(spec, "stride", 2, where)),
                   field(spec, "padding", int, where))

    def _onnx_attrs(self) -> dict:
        return {"kernel_shape": list(self.kernel_size), "strides": list(self.stride), "pads": [self.padding] * 4}

    def extra_repr(self) -> str:
        return f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}"


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

    def __init__(self, kernel_size, stride=None, padding: int = 0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def _counts(self, h, w, dtype):
        """[oh, ow]: how many of each window's elements lie inside an h x w input."""
        p = self.padding
        ones = np.pad(np.ones((h, w), dtype), ((p, p), (p, p)))
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return sliding_window_view(ones, (kh, kw))[::sh, ::sw].sum(axis=(-2, -1))

    def forward(self, x):
        win = self._windows(x, 0)
        self._save(_x_shape=np.shape(x))
        if self.count_include_pad or not self.padding:
            return win.mean(axis=(-2, -1))
        counts = self._counts(*np.shape(x)[2:], win.dtype)
        return win.sum(axis=(-2, -1)) / counts

    def to_onnx(self, onnx, prefix, inputs):
        return onnx.node("AveragePool", inputs[:1], prefix, count_include_pad=int(self.count_include_pad),
                         **self._onnx_attrs())

    def backward(self, grad):
        kh, kw = self.kernel_size
        if self.count_include_pad or not self.padding:
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
                   field(spec, "padding", int, where), include)

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
