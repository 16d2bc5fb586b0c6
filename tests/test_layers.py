"""Every layer and loss through the one helper (`gradcheck.check_layer_gradients`), plus the checks
finite differences cannot make: Dropout's random mask, BatchNorm's running statistics, and layers
agreeing across weight formats (dense, CSR, BSR) in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

import sparsenet
from sparsenet import MSELoss, SoftmaxCrossEntropy, as_format
from sparsenet.errors import DataError, SparsenetError
from sparsenet.nn import (
    GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Clip, Conv2d, Dropout, Flatten, GlobalAvgPool2d, HardSigmoid,
    HardSwish, Identity, LeakyReLU, Linear, MaxPool2d, Module, ReLU, ReLU6, Sequential, Sigmoid, SiLU, Softmax,
    Tanh,
)

from gradcheck import check_layer_gradients

F64 = np.float64
FORMATS = [("dense", None), ("csr", None), ("bsr", (2, 3)), ("bsr", (4, 1))]
FORMAT_IDS = ["dense", "csr", "bsr2x3", "bsr4x1"]


# -- inputs and weights ------------------------------------------------------------------------------

def sparse_weight(shape, fmt, blocksize, seed, density=0.5):
    """A float64 [M, K] weight with zeros: element-wise for dense/CSR, whole blocks (plus a few zeros
    inside stored blocks) for BSR, so the sparse formats really skip entries."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, size=shape)
    if fmt == "bsr":
        r, c = blocksize
        grid = (-(-shape[0] // r), -(-shape[1] // c))
        keep = rng.random(grid) < density
        keep.flat[0] = True
        w *= np.kron(keep, np.ones((r, c)))[: shape[0], : shape[1]]
        w[rng.random(shape) < 0.1] = 0.0  # zeros stored inside kept blocks
    else:
        w[rng.random(shape) >= density] = 0.0
    return w


def to_fmt(w, fmt, blocksize, dtype=F64):
    return as_format(w, fmt, blocksize=blocksize or (4, 4), dtype=dtype)


def away_from_zero(rng, shape, lo=0.1):
    """Values with |v| in [lo, 1]: no activation kink within finite-difference reach."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, 1.0, size=shape)


def no_ties(rng, shape):
    """Distinct values at least 0.05 apart (in random order), so every window has a unique max."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.05


# -- NumPy references for the forward passes ---------------------------------------------------------

def linear_ref(w, b):
    return lambda x: x @ w.T + (0 if b is None else b)


def conv_ref(w2d, b, in_ch, kernel, stride, pad, groups=1, dilation=1):
    """A direct convolution, pixel by pixel and group by group."""
    kh, kw = kernel
    d = dilation
    w4 = w2d.reshape(w2d.shape[0], in_ch // groups, kh, kw)
    cg, og = in_ch // groups, w2d.shape[0] // groups

    def ref(x):
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        oh = (xp.shape[2] - d * (kh - 1) - 1) // stride + 1
        ow = (xp.shape[3] - d * (kw - 1) - 1) // stride + 1
        out = np.zeros((x.shape[0], w4.shape[0], oh, ow))
        for g in range(groups):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + d * (kh - 1) + 1:d,
                               j * stride:j * stride + d * (kw - 1) + 1:d]
                    out[:, g * og:(g + 1) * og, i, j] = np.einsum("bchw,ochw->bo", patch, w4[g * og:(g + 1) * og])
        return out + (0 if b is None else b[None, :, None, None])
    return ref


def pool_ref(reduce, fill, kernel, stride, pad):
    kh, kw = kernel
    sh, sw = stride

    def ref(x):
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
        oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
        out = np.zeros(x.shape[:2] + (oh, ow))
        for i in range(oh):
            for j in range(ow):
                out[:, :, i, j] = reduce(xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
        return out
    return ref


def gelu_ref(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax_ref(axis):
    def ref(x):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return ref


# -- Linear and Conv2d ------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("fmt,blocksize", FORMATS, ids=FORMAT_IDS)
def test_linear(fmt, blocksize, bias):
    w = sparse_weight((5, 7), fmt, blocksize, seed=1)  # 5 x 7: not a multiple of 2x3 nor 4x1
    layer = Linear(7, 5, bias=bias, dtype=F64, seed=3)
    layer.weight = to_fmt(w, fmt, blocksize)
    assert layer.weight.format_name == fmt
    b = layer.bias.data.copy() if bias else None
    x = np.random.default_rng(2).standard_normal((4, 7))
    res = check_layer_gradients(layer, x, seed=4, reference=linear_ref(w, b))
    if fmt != "dense":  # only stored entries are parameters
        assert res["grads"]["weight"].shape == layer.weight.data.shape
        assert layer.weight.nnz < w.size


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("fmt,blocksize", FORMATS[:3], ids=FORMAT_IDS[:3])
def test_conv2d(fmt, blocksize, stride, padding):
    kernel = (2, 3)  # non-square
    w = sparse_weight((3, 2 * 2 * 3), fmt, blocksize, seed=5)
    layer = Conv2d(2, 3, kernel, stride=stride, padding=padding, dtype=F64, seed=6)
    layer.weight = to_fmt(w, fmt, blocksize)
    x = np.random.default_rng(7).standard_normal((2, 2, 5, 6))
    check_layer_gradients(layer, x, seed=8,
                          reference=conv_ref(w, layer.bias.data.copy(), 2, kernel, stride, padding))


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (1, 2, 2), ((1, 4), 3, 0)])
def test_conv2d_more_geometries_no_bias(kernel, stride, padding):
    layer = Conv2d(3, 2, kernel, stride=stride, padding=padding, bias=False, dtype=F64, seed=1)
    w = layer.weight.to_dense()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5))  # strides leave remainders
    check_layer_gradients(layer, x, reference=conv_ref(w, None, 3, layer.kernel_size, stride, padding))


@pytest.mark.parametrize("fmt,blocksize", [("dense", None), ("csr", None)], ids=["dense", "csr"])
@pytest.mark.parametrize("cin,cout,groups,stride,padding,dilation", [
    (3, 3, 3, 1, 1, 1),   # depthwise
    (3, 6, 3, 2, 1, 1),   # depthwise, two filters per channel, strided
    (4, 4, 4, 1, 2, 2),   # depthwise, dilated
    (4, 6, 2, 1, 1, 1),   # two groups
    (6, 3, 3, 2, 0, 2),   # three groups, strided, dilated
    (2, 3, 1, 1, 2, 2),   # no groups, dilated
])
def test_conv2d_groups_and_dilation(cin, cout, groups, stride, padding, dilation, fmt, blocksize):
    layer = Conv2d(cin, cout, 3, stride=stride, padding=padding, groups=groups, dilation=dilation, dtype=F64,
                   seed=2)
    w = sparse_weight(layer.weight_shape, fmt, blocksize, seed=3, density=0.6 if fmt == "csr" else 1.0)
    layer.weight = to_fmt(w, fmt, blocksize)
    x = np.random.default_rng(4).standard_normal((2, cin, 7, 6))
    check_layer_gradients(layer, x, reference=conv_ref(w, layer.bias.data.copy(), cin, (3, 3), stride, padding,
                                                       groups, dilation))


@pytest.mark.parametrize("shape,affine", [((5,), True), ((3, 4), True), ((4,), False)])
def test_layernorm(shape, affine):
    from sparsenet.nn import LayerNorm

    layer = LayerNorm(shape, eps=1e-3, elementwise_affine=affine, dtype=F64)
    if affine:
        rng = np.random.default_rng(1)
        layer.weight.data[...] = rng.random(shape) + 0.5
        layer.bias.data[...] = rng.standard_normal(shape)
    x = np.random.default_rng(2).standard_normal((2, 3, *shape))
    axes = tuple(range(2, x.ndim))

    def ref(v):
        y = (v - v.mean(axis=axes, keepdims=True)) / np.sqrt(v.var(axis=axes, keepdims=True) + 1e-3)
        return y * layer.weight.data + layer.bias.data if affine else y

    check_layer_gradients(layer, x, reference=ref)


def test_pad2d():
    from sparsenet.nn import Pad2d

    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    check_layer_gradients(Pad2d((1, 2, 0, 3), -1.5), x,
                          reference=lambda v: np.pad(v, ((0, 0), (0, 0), (1, 2), (0, 3)), constant_values=-1.5))


def test_conv2d_refuses_groups_that_do_not_divide():
    with pytest.raises(SparsenetError, match="dividing in_channels and out_channels, found groups 2 for 3 -> 4"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(SparsenetError, match="dilation 0"):
        Conv2d(3, 3, 3, dilation=0)


# -- pooling, flatten --------------------------------------------------------------------------------

POOLS = [  # kernel, stride, padding
    ((2, 2), None, 0),    # non-overlapping
    ((3, 3), (2, 2), 1),  # overlapping, padded
    ((2, 3), (1, 2), 1),  # overlapping, rectangular, padded
    ((3, 2), (2, 1), 0),  # windows that do not cover the last row
    ((2, 2), (3, 3), 1),  # stride past the window: some inputs get no gradient
]


@pytest.mark.parametrize("kernel,stride,padding", POOLS)
def test_maxpool2d(kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = no_ties(rng, (2, 2, 5, 6))
    layer = MaxPool2d(kernel, stride, padding)
    check_layer_gradients(layer, x, reference=pool_ref(np.max, -np.inf, kernel, stride or kernel, padding))


@pytest.mark.parametrize("kernel,stride,padding", POOLS)
def test_avgpool2d(kernel, stride, padding):
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 6))
    layer = AvgPool2d(kernel, stride, padding)
    check_layer_gradients(layer, x, reference=pool_ref(np.mean, 0.0, kernel, stride or kernel, padding))


@pytest.mark.parametrize("kernel,stride,padding", POOLS)
def test_avgpool2d_without_the_padding_in_the_count(kernel, stride, padding):
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 6))
    layer = AvgPool2d(kernel, stride, padding, count_include_pad=False)
    check_layer_gradients(layer, x, reference=pool_ref(np.nanmean, np.nan, kernel, stride or kernel, padding))


CEIL_POOLS = [  # kernel, stride, padding, input h x w: ceil mode adds a last, overhanging window
    ((2, 2), (2, 2), 0, (5, 7)),
    ((3, 3), (2, 2), 1, (6, 6)),   # PyTorch's rule drops a window that would start in the padding
    ((3, 2), (2, 3), 1, (7, 5)),
    ((2, 2), (2, 2), 0, (4, 4)),   # sizes where ceil and floor agree
]


def _ceil_pool_ref(kind, kernel, stride, pad, include_pad):
    """Each output window explicitly: the input elements inside it (max or mean), the divisor of
    a mean counting the padding when `include_pad` but never what overhangs the padded input."""
    (kh, kw), (sh, sw) = kernel, stride

    def size(n, k, s):
        o = -(-(n + 2 * pad - k) // s) + 1
        return o - 1 if (o - 1) * s >= n + pad else o

    def ref(x):
        h, w = x.shape[2:]
        oh, ow = size(h, kh, sh), size(w, kw, sw)
        out = np.zeros(x.shape[:2] + (oh, ow))
        for i in range(oh):
            for j in range(ow):
                r0, c0 = i * sh - pad, j * sw - pad
                rows, cols = slice(max(r0, 0), min(r0 + kh, h)), slice(max(c0, 0), min(c0 + kw, w))
                win = x[:, :, rows, cols]
                if kind == "max":
                    out[:, :, i, j] = win.max(axis=(2, 3))
                    continue
                if include_pad:
                    n = (min(r0 + kh, h + pad) - r0) * (min(c0 + kw, w + pad) - c0)
                else:
                    n = win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / n
        return out
    return ref


@pytest.mark.parametrize("kernel,stride,padding,hw", CEIL_POOLS)
@pytest.mark.parametrize("kind", ["max", "avg-include-pad", "avg-exclude-pad"])
def test_ceil_mode_pools(kind, kernel, stride, padding, hw):
    """MaxPool2d and AvgPool2d with ceil_mode against an explicit reference (forward and gradients
    by finite differences), against PyTorch, and through a compiled plan and a model file spec."""
    x = no_ties(np.random.default_rng(3), (2, 2, *hw))
    include = kind == "avg-include-pad"
    layer = (MaxPool2d(kernel, stride, padding, ceil_mode=True) if kind == "max" else
             AvgPool2d(kernel, stride, padding, count_include_pad=include, ceil_mode=True))
    check_layer_gradients(layer, x, reference=_ceil_pool_ref(kind[:3], kernel, stride, padding, include))
    assert layer.out_size(hw[0], 0) == layer.forward(x).shape[2]
    spec, arrays = layer.spec()
    assert spec["ceil_mode"] is True and type(layer).from_spec(spec, arrays, "test").ceil_mode
    try:
        import torch
    except ImportError:
        return
    t = torch.from_numpy(x)
    want = (torch.nn.functional.max_pool2d(t, kernel, stride, padding, ceil_mode=True) if kind == "max" else
            torch.nn.functional.avg_pool2d(t, kernel, stride, padding, ceil_mode=True, count_include_pad=include))
    np.testing.assert_allclose(layer.forward(x), want.numpy(), rtol=1e-12, atol=1e-12)


def test_global_avgpool2d():
    x = np.random.default_rng(2).standard_normal((3, 4, 3, 5))
    check_layer_gradients(GlobalAvgPool2d(), x, reference=lambda v: v.mean(axis=(2, 3)))


def test_flatten():
    x = np.random.default_rng(3).standard_normal((3, 2, 3, 4))
    check_layer_gradients(Flatten(), x, reference=lambda v: v.reshape(3, -1))


# -- activations -------------------------------------------------------------------------------------

def _gelu_erf_ref(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


# (layer, reference, its kinks: inputs are kept 0.05 away from them, beyond finite differences' reach)
ACTIVATIONS = [
    (ReLU(), lambda x: np.maximum(x, 0)),
    (LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    (Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (Tanh(), np.tanh),
    (GELU(), gelu_ref),
    (GELU("none"), _gelu_erf_ref),
    (SiLU(), lambda x: x / (1 + np.exp(-x))),
    (Clip(-0.5, 0.75), lambda x: np.minimum(np.maximum(x, -0.5), 0.75)),
    (ReLU6(), lambda x: np.minimum(np.maximum(x, 0), 6)),
    (HardSigmoid(), lambda x: np.minimum(np.maximum(x / 6 + 0.5, 0), 1)),
    (HardSigmoid(0.2, 0.3), lambda x: np.minimum(np.maximum(0.2 * x + 0.3, 0), 1)),
    (HardSwish(), lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6),
    (Softmax(), softmax_ref(-1)),
    (Identity(), lambda x: x),
]
KINKS = [0.0, -0.5, 0.75, 6.0, -6.0, -3.0, 3.0, -1.5, 3.5]  # Clip's, ReLU6's, HardSigmoid's, HardSwish's


@pytest.mark.parametrize("layer,ref", ACTIVATIONS, ids=lambda v: type(v).__name__ if isinstance(v, Module) else "")
def test_activation(layer, ref):
    x = np.random.default_rng(4).uniform(-8, 8, (6, 8))  # across every kink and saturated end
    for k in KINKS:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] >= k, 0.05, -0.05)
    check_layer_gradients(layer, x, reference=ref)


def test_softmax_other_axis_4d():
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 2))
    check_layer_gradients(Softmax(axis=1), x, reference=softmax_ref(1))


def test_sigmoid_and_softmax_stable_on_large_inputs():
    x = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = Sigmoid()(x)
        p = Softmax()(x)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.5, 1.0, 1.0]])
    np.testing.assert_array_equal(p, [[0.0, 0.0, 0.0, 0.0, 1.0]])


def test_activations_keep_float32():
    x = away_from_zero(np.random.default_rng(6), (3, 4)).astype(np.float32)
    for layer, _ in ACTIVATIONS:
        y = layer.forward(x)
        assert y.dtype == np.float32, type(layer).__name__
        assert layer.backward(np.ones_like(y)).dtype == np.float32, type(layer).__name__


# -- dropout: a new mask every forward, so no finite differences ---------------------------------------

def test_dropout_eval_is_identity():
    x = np.random.default_rng(0).standard_normal((8, 5))
    layer = Dropout(0.5, seed=1).eval()
    check_layer_gradients(layer, x, reference=lambda v: v)


def test_dropout_train_backward_is_grad_times_mask():
    rng = np.random.default_rng(0)
    x = away_from_zero(rng, (200, 50))
    layer = Dropout(0.3, seed=1)
    y = layer.forward(x)
    mask = y / x
    assert set(np.unique(np.round(mask, 12))) <= {0.0, round(1 / 0.7, 12)}
    assert abs(np.mean(mask == 0) - 0.3) < 0.02
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), g * mask, rtol=1e-12, atol=0)
    # a new mask each forward; `reseed` replays the masks
    assert not np.array_equal(layer.forward(x) / x, mask)
    layer.reseed(1)
    np.testing.assert_allclose(layer.forward(x) / x, mask, rtol=1e-12)


def test_dropout_p0_is_identity_in_training():
    x = np.random.default_rng(0).standard_normal((4, 3))
    check_layer_gradients(Dropout(0.0), x, reference=lambda v: v)


def test_dropout_rejects_p_out_of_range():
    for p in (-0.1, 1.0):
        with pytest.raises(sparsenet.SparsenetError):
            Dropout(p)


# -- batch norm --------------------------------------------------------------------------------------

def _bn_ref(x, axes, gamma, beta, eps, mean=None, var=None):
    shape = [1] * x.ndim
    shape[1] = -1
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (6, 4)), (BatchNorm2d, (3, 4, 2, 3))],
                         ids=["1d", "2d"])
def test_batchnorm(cls, shape, training):
    rng = np.random.default_rng(0)
    layer = cls(shape[1], dtype=F64)
    layer.weight.data[:] = rng.uniform(0.5, 2, shape[1])
    layer.bias.data[:] = rng.standard_normal(shape[1])
    for _ in range(3):  # non-trivial running statistics
        layer.forward(rng.standard_normal(shape) * 2 + 1)
    layer.train(training)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    x = rng.standard_normal(shape) * 3 - 1
    if training:
        ref = lambda v: _bn_ref(v, axes, layer.weight.data, layer.bias.data, layer.eps)  # noqa: E731
    else:
        mean, var = layer.running_mean.copy(), layer.running_var.copy()
        ref = lambda v: _bn_ref(v, axes, layer.weight.data, layer.bias.data, layer.eps, mean, var)  # noqa: E731
    check_layer_gradients(layer, x, reference=ref)


def test_batchnorm_running_statistics_use_unbiased_variance():
    rng = np.random.default_rng(1)
    layer = BatchNorm2d(3, momentum=0.25, dtype=F64)
    x = rng.standard_normal((4, 3, 2, 5)) * 2 + 3
    layer.forward(x)
    n = 4 * 2 * 5
    np.testing.assert_allclose(layer.running_mean, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.75 + 0.25 * x.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-12)
    layer.eval()
    before = layer.running_mean.copy()
    layer.forward(x)
    np.testing.assert_array_equal(layer.running_mean, before)  # eval does not update


# -- a whole Sequential ------------------------------------------------------------------------------

@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_sequential_conv_bn_relu_pool_linear(sparse):
    conv = Conv2d(2, 3, (3, 2), padding=1, dtype=F64, seed=1)
    lin = Linear(3 * 2 * 3, 4, dtype=F64, seed=2)
    if sparse:
        conv.weight = to_fmt(sparse_weight((3, 12), "csr", None, seed=3), "csr", None)
        lin.weight = to_fmt(sparse_weight((4, 18), "bsr", (2, 3), seed=4), "bsr", (2, 3))
    model = Sequential(conv, BatchNorm2d(3, dtype=F64), ReLU(), MaxPool2d(2), Flatten(), lin)
    x = np.random.default_rng(5).standard_normal((3, 2, 4, 6))
    res = check_layer_gradients(model, x, seed=6)
    assert res["out"].shape == (3, 4)
    assert len(res["grads"]) == 6  # conv w, b; bn gamma, beta; linear w, b


# -- losses, through the same helper -----------------------------------------------------------------

class LossAsLayer(Module):
    """Adapter: x -> loss(x, target) as a 0-d array; backward scales d loss / d x by the upstream grad."""

    def __init__(self, loss, target):
        super().__init__()
        self.loss, self.target = loss, target

    def forward(self, x):
        return np.array(self.loss(x, self.target))

    def backward(self, grad):
        return self.loss.backward() * grad


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 10
    target = rng.integers(0, 4, size=5)
    ref = lambda z: -np.mean(z[np.arange(5), target] - np.log(np.exp(z).sum(axis=1)))  # noqa: E731
    check_layer_gradients(LossAsLayer(SoftmaxCrossEntropy(), target), logits, reference=ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    loss = SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss(logits, np.array([0, 2, 1]))
        grad = loss.backward()
    np.testing.assert_allclose(value, (0.0 + 2e4 + np.log(3)) / 3, rtol=1e-6)
    np.testing.assert_allclose(grad, np.array([[0, 0, 0], [1, 0, -1], [1 / 3, -2 / 3, 1 / 3]]) / 3, atol=1e-7)
    # finite differences still agree at that scale (coarser eps: the loss is ~1e4)
    check_layer_gradients(LossAsLayer(loss, np.array([0, 2, 1])), logits.astype(F64), eps=1e-3, rtol=1e-5,
                          atol=1e-6)


def test_softmax_cross_entropy_rejects_bad_labels():
    loss = SoftmaxCrossEntropy()
    with pytest.raises(DataError):
        loss(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(DataError):
        loss(np.zeros((2, 3)), np.array([0, 3]))


def test_mse_gradient():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((4, 3))
    check_layer_gradients(LossAsLayer(MSELoss(), target), rng.standard_normal((4, 3)),
                          reference=lambda z: np.mean((z - target) ** 2))


# -- integer input: layers accept it (check_input allows kinds "fiub", so do fit and predict) ------------

@pytest.mark.parametrize("make,shape", [
    (lambda: Linear(3, 2), (4, 3)),
    (lambda: Conv2d(2, 2, 3, padding=1), (2, 2, 4, 4)),
    (lambda: MaxPool2d(2), (2, 2, 4, 4)),
    (lambda: MaxPool2d(3, 2, 1), (2, 2, 4, 4)),
    (lambda: AvgPool2d(3, 1, 1), (2, 2, 4, 4)),
    (lambda: GlobalAvgPool2d(), (2, 2, 4, 4)),
    (lambda: Flatten(), (2, 2, 4, 4)),
    (lambda: ReLU(), (4, 3)),
    (lambda: LeakyReLU(0.1), (4, 3)),
    (lambda: Sigmoid(), (4, 3)),
    (lambda: Tanh(), (4, 3)),
    (lambda: GELU(), (4, 3)),
    (lambda: Softmax(), (4, 3)),
    (lambda: Identity(), (4, 3)),
    (lambda: Dropout(0.5, seed=0), (4, 3)),
    (lambda: BatchNorm1d(3), (4, 3)),
    (lambda: BatchNorm2d(2), (2, 2, 4, 4)),
])
def test_integer_input_gives_the_float_result(make, shape):
    """Integer input must either be rejected with a SparsenetError or give the float answer."""
    x = np.random.default_rng(0).integers(-5, 6, size=shape)
    want = np.asarray(make().forward(x.astype(F64)), dtype=F64)
    try:
        with np.errstate(all="ignore"):
            got = make().forward(x)
    except sparsenet.SparsenetError:
        return
    np.testing.assert_allclose(np.asarray(got, dtype=F64), want, rtol=1e-5, atol=1e-5)


# -- the helper itself catches what it should -----------------------------------------------------------

class _Broken(Module):
    """x * w with a configurable defect."""

    def __init__(self, defect):
        super().__init__()
        self.defect = defect
        self.w = sparsenet.nn.Parameter(np.array([1.5, -2.0, 0.5]))

    def own_parameters(self):
        return {"w": self.w}

    def forward(self, x):
        self._x = x.copy()
        return x * self.w.data

    def backward(self, grad):
        self.w.grad += (grad * self._x).sum(axis=0) * (1.01 if self.defect == "param-grad" else 1.0)
        if self.defect == "mutates-grad":
            grad += 1e-3
        dx = grad * self.w.data
        return dx * 1.01 if self.defect == "input-grad" else dx


@pytest.mark.parametrize("defect", ["input-grad", "param-grad", "mutates-grad", "reference"])
def test_helper_detects_defects(defect):
    x = np.random.default_rng(0).standard_normal((4, 3))
    ref = (lambda v: v * 1.5) if defect == "reference" else None
    with pytest.raises(AssertionError):
        check_layer_gradients(_Broken(defect), x, reference=ref)


def test_helper_passes_the_correct_layer():
    check_layer_gradients(_Broken(None), np.random.default_rng(0).standard_normal((4, 3)),
                          reference=lambda v: v * np.array([1.5, -2.0, 0.5]))


# -- the same weights in every format give the same numbers ------------------------------------------

CROSS_CASES = {  # name: (layer factory, weight shape, input shape)
    "linear": (lambda d: Linear(7, 5, dtype=d, seed=0), (5, 7), (6, 7)),
    "linear-wide": (lambda d: Linear(300, 130, dtype=d, seed=0), (130, 300), (8, 300)),  # parallel kernels
    "conv": (lambda d: Conv2d(2, 5, (2, 3), stride=2, padding=1, dtype=d, seed=0), (5, 12), (3, 2, 6, 7)),
    "conv-big": (lambda d: Conv2d(8, 9, 3, padding=1, dtype=d, seed=0), (9, 72), (4, 8, 10, 10)),  # parallel
}


def _forward_backward(layer, x, g):
    layer.zero_grad()
    out = np.array(layer.forward(x))
    dx = np.array(layer.backward(g))
    dw = layer.weight.with_data(layer.weight_param.grad).to_dense()  # scattered back to [M, K]
    return out, dx, dw, layer.bias.grad.copy()


@pytest.mark.parametrize("empty", [False, True], ids=["sparse", "all-zero"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CROSS_CASES))
def test_formats_agree(case, dtype, empty):
    make, wshape, xshape = CROSS_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xshape).astype(dtype)
    w = np.zeros(wshape) if empty else sparse_weight(wshape, "bsr", (2, 3), seed=1, density=0.4)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    ref = g = None
    for (fmt, blocksize), name in zip(FORMATS, FORMAT_IDS):
        layer = make(dtype)
        layer.weight = to_fmt(w, fmt, blocksize, dtype=dtype)
        assert layer.dtype == dtype
        if g is None:
            g = rng.standard_normal(np.shape(layer.forward(x))).astype(dtype)
        out, dx, dw, db = _forward_backward(layer, x, g)
        assert out.dtype == dx.dtype == dw.dtype == db.dtype == dtype, name
        if ref is None:  # dense first: every entry is a parameter
            ref = (out, dx, dw, db)
            continue
        stored = layer.weight.mask()
        if empty:
            assert layer.weight.nnz == 0
        np.testing.assert_allclose(out, ref[0], **tol, err_msg=f"{name} forward")
        np.testing.assert_allclose(dx, ref[1], **tol, err_msg=f"{name} input gradient")
        np.testing.assert_allclose(dw[stored], ref[2][stored], **tol, err_msg=f"{name} weight gradient")
        assert not np.any(dw[~stored]), f"{name}: gradient outside the stored pattern"
        np.testing.assert_allclose(db, ref[3], **tol, err_msg=f"{name} bias gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_values_layout_and_nan(dtype):
    """ReLU and LeakyReLU keep the input's dtype and memory layout (a Linear returns a transposed,
    column-major view; copying it back to row-major cost a quarter of a sparse MLP's time), map
    -inf to 0 (ReLU) and keep NaN as NaN, as PyTorch does; the backward mask is zero at NaN."""
    x = np.array([[np.nan, -np.inf, -1.5, 0.0], [2.0, np.inf, -0.0, 3.0]], dtype=dtype).T  # F-ordered
    relu = ReLU()
    y = relu.forward(x)
    assert y.dtype == dtype and y.flags.f_contiguous
    np.testing.assert_array_equal(y, np.array([[np.nan, 0, 0, 0], [2, np.inf, 0, 3]], dtype=dtype).T)
    np.testing.assert_array_equal(relu.backward(np.ones_like(x)), (x > 0).astype(dtype))
    leaky = LeakyReLU(0.1)
    z = leaky.forward(x)
    assert z.dtype == dtype and z.flags.f_contiguous
    finite = np.isfinite(x)
    np.testing.assert_allclose(z[finite], np.where(x > 0, x, x * dtype(0.1))[finite])
    assert np.isnan(z[0, 0]) and z[1, 1] == np.inf and z[1, 0] == -np.inf
