"""2-D convolution whose weight is a [out_channels, in_channels*kh*kw] matrix in any format."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, ShapeError
from ._im2col import col2im, conv_output_size, im2col
from ._spec import field, int_list
from ._weighted import WeightedLayer
from .module import check_input

__all__ = ["Conv2d"]


class Conv2d(WeightedLayer):
    """Convolution (cross-correlation, as in PyTorch). Input [B, C, H, W] -> [B, out, oh, ow].

    The weight is stored as a 2-D [out, C*kh*kw] matrix (Dense, CSR or BSR): removing a filter removes
    a row, and a sparse filter bank runs through the sparse kernels via im2col.

    >>> conv = Conv2d(1, 4, 3, padding=1, seed=0)
    >>> conv(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
    (2, 4, 8, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, seed: int = 0, dtype=np.float32, weight=None, bias_value=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = (int(kh), int(kw))
        self.stride, self.padding = int(stride), int(padding)
        if self.stride < 1 or self.padding < 0 or min(self.kernel_size) < 1:
            raise ShapeError(f"{self.name}: expected kernel >= 1, stride >= 1, padding >= 0, found "
                             f"kernel {self.kernel_size}, stride {stride}, padding {padding}")
        fan_in = self.in_channels * kh * kw
        self.weight_shape = (self.out_channels, fan_in)
        self._init_params(seed, fan_in, dtype, bias, weight, bias_value)
        self._cols = None
        self._x_shape = None

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (conv_output_size(h, kh, self.stride, self.padding),
                conv_output_size(w, kw, self.stride, self.padding))

    def forward(self, x):
        x = check_input(self, x, 4, 1, self.in_channels)
        b, _, h, w = x.shape
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{self.name}: input {h}x{w} is smaller than kernel {self.kernel_size} "
                             f"with padding {self.padding}")
        kh, kw = self.kernel_size
        cols = im2col(x.astype(self.dtype, copy=False), kh, kw, self.stride, self.padding)
        out = self.weight.matmul(cols)  # [out, B*oh*ow]
        if self.bias is not None:
            out += self.bias.data[:, None]
        self._save(_cols=cols, _x_shape=x.shape)
        return out.reshape(self.out_channels, b, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, grad):
        b, _, h, w = self._x_shape
        oh, ow = self.output_shape(h, w)
        grad = check_input(self, grad, 4, 1, self.out_channels, what="gradient")
        if grad.shape != (b, self.out_channels, oh, ow):
            raise ShapeError(f"{self.name}: expected gradient of shape {(b, self.out_channels, oh, ow)}, "
                             f"found {grad.shape}")
        gt = np.ascontiguousarray(grad.transpose(1, 0, 2, 3), dtype=self.dtype).reshape(self.out_channels, -1)
        self.weight_param.grad += self.weight.sampled_grad(gt, self._cols)
        if self.bias is not None:
            self.bias.grad += gt.sum(axis=1)
        kh, kw = self.kernel_size
        return col2im(self.weight.tmatmul(gt), self._x_shape, kh, kw, self.stride, self.padding)

    def lower(self, builder, inputs):  # unfolded, then one product with the epilogue fused
        return builder.conv2d(self, inputs[0])

    def spec(self):
        return self._spec_with_weights({"in_channels": self.in_channels, "out_channels": self.out_channels,
                                        "kernel_size": list(self.kernel_size), "stride": self.stride,
                                        "padding": self.padding})

    @classmethod
    def from_spec(cls, spec, arrays, where):
        cin, cout = field(spec, "in_channels", int, where), field(spec, "out_channels", int, where)
        kernel = tuple(int_list(spec, "kernel_size", 2, where))
        stride, padding = field(spec, "stride", int, where), field(spec, "padding", int, where)
        if padding > max(kernel):  # more padding than kernel computes only zeros, and can request gigabytes
            raise ModelFileError(f"{where}: padding {padding} should be at most the kernel size {kernel}")
        weight, bias, has_bias = cls._weights_from_spec(spec, arrays, where)
        return cls(cin, cout, kernel, stride=stride, padding=padding, bias=has_bias, weight=weight,
                   bias_value=bias, dtype=weight.dtype)

    def to_onnx(self, onnx, prefix, inputs):
        kh, kw = self.kernel_size
        w = self.weight.to_dense().reshape(self.out_channels, self.in_channels, kh, kw)
        p, s = self.padding, self.stride
        return onnx.node("Conv", self._onnx_inputs(onnx, prefix, inputs[0], w), prefix,
                         kernel_shape=[kh, kw], strides=[s, s], pads=[p] * 4)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, {self._format_repr()}")
