"""2-D convolution whose weight is a [out_channels, in_channels/groups*kh*kw] matrix in any format.

Three ways to compute, chosen by the shape of the convolution:
- ``groups == 1``: the input unfolded (im2col) and one product with the weight format (sparse kernels
  for sparse weights);
- depthwise (``groups == in_channels``, ``out_channels`` a multiple of it): a direct kernel of its own
  (`kernels.dense_depthwise2d`) over the weight as a dense [out, kh*kw] array (a depthwise filter has
  kh*kw taps: there is nothing for a sparse kernel to skip; a CSR or int8 weight is stored as such and
  expanded for the kernel);
- other groups: per group, its slice of the unfolded input times its rows of the weight, through a
  dense copy of the weight.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import ConfigError, ModelFileError, ShapeError
from ..formats import Dense
from ..kernels import epilogue
from ._im2col import col2im, conv_output_size, im2col
from ._spec import field, int_list
from ._weighted import WeightedLayer
from .module import check_input

__all__ = ["Conv2d"]


class Conv2d(WeightedLayer):
    """Convolution (cross-correlation, as in PyTorch). Input [B, C, H, W] -> [B, out, oh, ow].

    The weight is stored as a 2-D [out, C/groups*kh*kw] matrix (Dense, CSR or BSR): removing a filter
    removes a row, and a sparse filter bank runs through the sparse kernels via im2col. `dilation`
    spaces the kernel's taps; `groups` splits the channels into groups convolved separately
    (depthwise: ``groups == in_channels``).

    >>> conv = Conv2d(1, 4, 3, padding=1, seed=0)
    >>> conv(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
    (2, 4, 8, 8)
    >>> Conv2d(8, 8, 3, padding=1, groups=8).weight.shape  # depthwise: 9 taps per channel
    (8, 9)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, groups: int = 1, dilation: int = 1, seed: int = 0, dtype=np.float32,
                 weight=None, bias_value=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = (int(kh), int(kw))
        self.stride, self.padding = int(stride), int(padding)
        self.groups, self.dilation = int(groups), int(dilation)
        if self.stride < 1 or self.padding < 0 or min(self.kernel_size) < 1 or self.dilation < 1:
            raise ShapeError(f"{self.name}: expected kernel >= 1, stride >= 1, padding >= 0, dilation >= 1, found "
                             f"kernel {self.kernel_size}, stride {stride}, padding {padding}, dilation {dilation}")
        if (self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups
                or self.in_channels < 1 or self.out_channels < 1):
            raise ConfigError(f"{self.name}: expected groups >= 1 dividing in_channels and out_channels, found "
                              f"groups {groups} for {in_channels} -> {out_channels} channels")
        fan_in = self.in_channels // self.groups * kh * kw
        self.weight_shape = (self.out_channels, fan_in)
        self._init_params(seed, fan_in, dtype, bias, weight, bias_value)
        self._cols = None
        self._x_shape = None

    @property
    def depthwise(self) -> bool:
        """One input channel per group (each output channel reads one input channel)."""
        return self.groups > 1 and self.groups == self.in_channels

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (conv_output_size(h, kh, self.stride, self.padding, self.dilation),
                conv_output_size(w, kw, self.stride, self.padding, self.dilation))

    def forward(self, x):
        x = check_input(self, x, 4, 1, self.in_channels)
        b, _, h, w = x.shape
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{self.name}: input {h}x{w} is smaller than kernel {self.kernel_size} "
                             f"with padding {self.padding} and dilation {self.dilation}")
        kh, kw = self.kernel_size
        x = x.astype(self.dtype, copy=False)
        if self.depthwise:
            out = np.empty((b, self.out_channels, oh, ow), self.dtype)
            bias = epilogue.no_bias(self.dtype) if self.bias is None else self.bias.data
            run = kernels.depthwise_kernel(self.in_channels, self.out_channels, out.size * kh * kw)
            run(np.ascontiguousarray(x), self._dense_taps(), out, bias, epilogue.NONE,
                0.0, kh, kw, self.stride, self.stride, self.padding, self.dilation)
            self._save(_x=x, _x_shape=x.shape)
            return out
        cols = im2col(x, kh, kw, self.stride, self.padding, self.dilation)
        if self.groups == 1:
            out = self.weight.matmul(cols)  # [out, B*oh*ow]
        else:
            w_dense, g, opg = self.weight.to_dense(), self.groups, self.out_channels // self.groups
            cols_g = cols.reshape(g, -1, cols.shape[1])
            out = np.concatenate([w_dense[k * opg:(k + 1) * opg] @ cols_g[k] for k in range(g)])
        if self.bias is not None:
            out += self.bias.data[:, None]
        self._save(_cols=cols, _x_shape=x.shape)
        return out.reshape(self.out_channels, b, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, grad):
        return self._backward(grad, True)

    def backward_params(self, grad) -> None:
        self._backward(grad, False)

    def _backward(self, grad, need_input: bool):
        b, _, h, w = self._x_shape
        oh, ow = self.output_shape(h, w)
        grad = check_input(self, grad, 4, 1, self.out_channels, what="gradient")
        if grad.shape != (b, self.out_channels, oh, ow):
            raise ShapeError(f"{self.name}: expected gradient of shape {(b, self.out_channels, oh, ow)}, "
                             f"found {grad.shape}")
        kh, kw = self.kernel_size
        if self.depthwise:
            return self._depthwise_backward(grad.astype(self.dtype, copy=False), need_input)
        gt = np.ascontiguousarray(grad.transpose(1, 0, 2, 3), dtype=self.dtype).reshape(self.out_channels, -1)
        if self.bias is not None:
            self.bias.grad += gt.sum(axis=1)
        if self.groups == 1:
            self._add_weight_grad(gt, self._cols)
            if not need_input:
                return None
            dcols = self.weight.tmatmul(gt)
        else:
            g, opg = self.groups, self.out_channels // self.groups
            w_dense = self.weight.to_dense()
            cols_g = self._cols.reshape(g, -1, self._cols.shape[1])
            gw = np.concatenate([gt[k * opg:(k + 1) * opg] @ cols_g[k].T for k in range(g)])
            self.weight_param.grad += self._at_stored(gw)
            if not need_input:
                return None
            dcols = np.concatenate([w_dense[k * opg:(k + 1) * opg].T @ gt[k * opg:(k + 1) * opg] for k in range(g)])
        return col2im(dcols, self._x_shape, kh, kw, self.stride, self.padding, self.dilation)

    def _depthwise_backward(self, grad, need_input: bool = True):
        """Gradients of the depthwise forward by its two kernels (`kernels.dense_depthwise2d_grad_*`);
        the input's only when `need_input`."""
        x = np.ascontiguousarray(self._x)
        grad = np.ascontiguousarray(grad)
        kh, kw = self.kernel_size
        geometry = (kh, kw, self.stride, self.stride, self.padding, self.dilation)
        big = grad.size * kh * kw >= kernels.PARALLEL_MIN_WORK
        gw = np.empty((self.out_channels, kh * kw), self.dtype)
        (kernels.dense_depthwise2d_grad_weight if big else kernels.dense_depthwise2d_grad_weight_serial)(
            grad, x, gw, *geometry)
        self.weight_param.grad += self._at_stored(gw)
        if self.bias is not None:
            self.bias.grad += grad.sum(axis=(0, 2, 3))
        if not need_input:
            return None
        dx = np.empty(x.shape, self.dtype)
        (kernels.dense_depthwise2d_grad_input if big else kernels.dense_depthwise2d_grad_input_serial)(
            grad, self._dense_taps(), dx, *geometry)
        return dx

    def want_dense_grad(self, on: bool = True) -> None:
        if on and self.groups != 1:
            raise ConfigError(f"{self.name}: a grouped or depthwise convolution keeps no dense weight gradient "
                              f"(its gradient is computed per group)")
        super().want_dense_grad(on)

    def _dense_taps(self) -> np.ndarray:
        """The weight as a C-contiguous dense [out, kh*kw] array: a Dense weight's own, else a copy."""
        w = self.weight
        return w.data if isinstance(w, Dense) and w.data.flags.c_contiguous else np.ascontiguousarray(w.to_dense())

    def _at_stored(self, gw: np.ndarray) -> np.ndarray:
        """A dense [out, fan_in] gradient as the weight parameter's gradient: the values at the stored
        entries, in the format's order (the dense array itself for a Dense weight)."""
        fmt = self.weight
        if fmt.data.shape == gw.shape:
            return gw
        return fmt.sampled_grad(gw, np.eye(gw.shape[1], dtype=gw.dtype))  # gw @ I at the stored entries

    def lower(self, builder, inputs):  # unfolded, then one product with the epilogue fused
        return builder.conv2d(self, inputs[0])

    def spec(self):
        settings = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                    "kernel_size": list(self.kernel_size), "stride": self.stride, "padding": self.padding}
        if self.groups != 1 or self.dilation != 1:  # files of plain convolutions stay as before
            settings.update(groups=self.groups, dilation=self.dilation)
        return self._spec_with_weights(settings)

    @classmethod
    def from_spec(cls, spec, arrays, where):
        cin, cout = field(spec, "in_channels", int, where), field(spec, "out_channels", int, where)
        kernel = tuple(int_list(spec, "kernel_size", 2, where))
        stride, padding = field(spec, "stride", int, where), field(spec, "padding", int, where)
        groups = field(spec, "groups", int, where) if "groups" in spec else 1
        dilation = field(spec, "dilation", int, where) if "dilation" in spec else 1
        if not 1 <= dilation <= 64:
            raise ModelFileError(f"{where}: dilation {dilation} should be from 1 to 64")
        extent = dilation * (max(kernel) - 1) + 1
        if padding > extent:  # more padding than kernel computes only zeros, and can request gigabytes
            raise ModelFileError(f"{where}: padding {padding} should be at most the kernel's extent {extent}")
        weight, bias, has_bias = cls._weights_from_spec(spec, arrays, where)
        try:
            return cls(cin, cout, kernel, stride=stride, padding=padding, bias=has_bias, groups=groups,
                       dilation=dilation, weight=weight, bias_value=bias, dtype=weight.dtype)
        except ConfigError as e:
            raise ModelFileError(f"{where}: {e}") from None

    def to_onnx(self, onnx, prefix, inputs):
        kh, kw = self.kernel_size
        w = self.weight.to_dense().reshape(self.out_channels, self.in_channels // self.groups, kh, kw)
        p, s, d = self.padding, self.stride, self.dilation
        return onnx.node("Conv", self._onnx_inputs(onnx, prefix, inputs[0], w), prefix,
                         kernel_shape=[kh, kw], strides=[s, s], pads=[p] * 4, dilations=[d, d], group=self.groups)

    def extra_repr(self) -> str:
        extra = (f", groups={self.groups}" if self.groups != 1 else "") + \
                (f", dilation={self.dilation}" if self.dilation != 1 else "")
        return (f"{self.in_channels} -> {self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{extra}, {self._format_repr()}")
