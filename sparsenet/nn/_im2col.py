"""im2col / col2im: convolution as one matrix product with a (possibly sparse) weight.

cols has shape [C * kh * kw, B * oh * ow] (feature-major: one column per output pixel), matching a
weight viewed as [out_channels, C * kh * kw]. With dilation d, the window's taps are d apart: a
kernel of k taps spans d * (k - 1) + 1 input pixels.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv_output_size", "im2col", "col2im"]


def conv_output_size(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def im2col(x, kh: int, kw: int, stride: int, pad: int, dilation: int = 1) -> np.ndarray:
    """x [B, C, H, W] -> cols [C*kh*kw, B*oh*ow] (C-contiguous)."""
    b, c, h, w = x.shape
    if kh == kw == stride == 1 and pad == 0:  # a 1x1 convolution: the input with channels first
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(c, b * h * w)
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    d = dilation
    win = sliding_window_view(x, (d * (kh - 1) + 1, d * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::d, ::d]  # [B, C, oh, ow, kh, kw]
    oh, ow = win.shape[2], win.shape[3]
    return np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, b * oh * ow)


def col2im(cols, x_shape, kh: int, kw: int, stride: int, pad: int, dilation: int = 1) -> np.ndarray:
    """Adjoint of im2col: cols [C*kh*kw, B*oh*ow] -> dx [B, C, H, W] (overlaps summed)."""
    b, c, h, w = x_shape
    if kh == kw == stride == 1 and pad == 0:
        return np.ascontiguousarray(cols.reshape(c, b, h, w).transpose(1, 0, 2, 3))
    d = dilation
    oh = conv_output_size(h, kh, stride, pad, d)
    ow = conv_output_size(w, kw, stride, pad, d)
    cols = cols.reshape(c, kh, kw, b, oh, ow)
    dx = np.zeros((b, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):  # Python loops over the kernel window only (kh * kw steps)
        for j in range(kw):
            dx[:, :, d * i:d * i + stride * oh:stride, d * j:d * j + stride * ow:stride] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    if pad:
        dx = dx[:, :, pad:-pad, pad:-pad]
    return dx
