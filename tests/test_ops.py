"""Every op in `sparsenet.nn.OPS` carries its own spec and ONNX nodes: each is rebuilt from its
spec with every setting intact, and exports to ONNX nodes that onnxruntime runs to the same output.
A new op without an entry here fails `test_every_op_is_covered`."""

import numpy as np
import pytest

from sparsenet import nn
from sparsenet.errors import ModelFileError
from sparsenet.formats import BSR, CSR
from sparsenet.io.layers import decode_layer, encode_layer


def _bn(cls, n):
    bn = cls(n, eps=1e-3, momentum=0.25)
    rng = np.random.default_rng(1)
    bn.weight.data[:], bn.bias.data[:] = rng.random(n) + 0.5, rng.standard_normal(n)
    bn.running_mean[:], bn.running_var[:] = rng.standard_normal(n), rng.random(n) + 0.5
    return bn.eval()


def _sparse_linear():
    w = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    w[:, ::2] = 0
    return nn.Linear(6, 5, weight=CSR.from_dense(w), seed=3)


def _layernorm():
    ln = nn.LayerNorm((2, 4), eps=1e-3)
    rng = np.random.default_rng(8)
    ln.weight.data[...] = rng.random((2, 4)) + 0.5
    ln.bias.data[...] = rng.standard_normal((2, 4))
    return ln


# kind -> (an instance with settings off their defaults, one sample's input shape(s))
CASES = {
    "Linear": (_sparse_linear, [(6,)]),
    "Conv2d": (lambda: nn.Conv2d(2, 4, (3, 2), stride=2, padding=1, bias=False, seed=4,
                                 weight=BSR.from_dense(np.arange(48, dtype=np.float32).reshape(4, 12) % 5, (2, 2))),
               [(2, 7, 6)]),
    "BatchNorm1d": (lambda: _bn(nn.BatchNorm1d, 3), [(3,)]),
    "BatchNorm2d": (lambda: _bn(nn.BatchNorm2d, 2), [(2, 4, 4)]),
    "LayerNorm": (lambda: _layernorm(), [(3, 2, 4)]),
    "MaxPool2d": (lambda: nn.MaxPool2d((3, 2), (2, 1), 1), [(2, 5, 6)]),
    "AvgPool2d": (lambda: nn.AvgPool2d((2, 3), (1, 2), 1, count_include_pad=False), [(2, 5, 6)]),
    "GlobalAvgPool2d": (nn.GlobalAvgPool2d, [(3, 4, 2)]),
    "Flatten": (nn.Flatten, [(2, 3, 2)]),
    "Pad2d": (lambda: nn.Pad2d((1, 0, 2, 3), 0.5), [(2, 3, 2)]),
    "ReLU": (nn.ReLU, [(4,)]),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.3), [(4,)]),
    "Sigmoid": (nn.Sigmoid, [(4,)]),
    "Tanh": (nn.Tanh, [(4,)]),
    "GELU": (lambda: nn.GELU("none"), [(4,)]),
    "SiLU": (nn.SiLU, [(4,)]),
    "Clip": (lambda: nn.Clip(-0.5, 0.75), [(4,)]),
    "ReLU6": (nn.ReLU6, [(4,)]),
    "HardSigmoid": (lambda: nn.HardSigmoid(0.2, 0.4), [(4,)]),
    "HardSwish": (nn.HardSwish, [(4,)]),
    "Softmax": (lambda: nn.Softmax(1), [(3, 2)]),
    "Identity": (nn.Identity, [(4,)]),
    "Dropout": (lambda: nn.Dropout(0.25, seed=7).eval(), [(4,)]),
    "Add": (nn.Add, [(3,), (3,), (3,)]),
    "Concat": (lambda: nn.Concat(2), [(2, 1), (2, 3)]),
    "Mul": (nn.Mul, [(3, 2, 2), (3, 1, 1)]),
    "Sub": (nn.Sub, [(1, 4), (3, 4)]),
    "Div": (nn.Div, [(3,), (3,)]),
    "Shift": (lambda: nn.Shift(np.arange(6, dtype=np.float32).reshape(1, 3, 2)), [(3, 2)]),
    "Scale": (lambda: nn.Scale(np.float32(0.25), trainable=False), [(3, 2)]),
    "MatMul": (nn.MatMul, [(2, 3, 4), (2, 4, 5)]),
    "Mean": (lambda: nn.Mean((1, -1), keepdims=True), [(3, 4, 2)]),
    "Reshape": (lambda: nn.Reshape((-1, 2, 6)), [(3, 4)]),
    "Transpose": (lambda: nn.Transpose((2, 0, 1)), [(3, 4)]),
    "Slice": (lambda: nn.Slice(2, 1, -1), [(3, 5)]),
    "Embedding": (lambda: nn.Embedding(7, 3, seed=9, weight=CSR.from_dense(np.tril(np.ones((7, 3), np.float32)))),
                  [("int64", 7, (2,))]),
}


def test_every_op_is_covered():
    assert set(CASES) == set(nn.OPS)
    assert all(nn.OPS[k].__name__ == k for k in nn.OPS)


def _inputs(shapes, seed=0):
    """Three samples per input: float32 normals, or for ("int64", n, shape) indices in [0, n)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, s[1], (3, *s[2])) if isinstance(s[0], str) else
            rng.standard_normal((3, *s)).astype(np.float32) for s in shapes]


def _shape(s):
    return s[2] if isinstance(s[0], str) else s


@pytest.mark.parametrize("kind", sorted(CASES))
def test_spec_round_trip_keeps_every_setting(kind):
    make, shapes = CASES[kind]
    op = make()
    spec, arrays = encode_layer(op)
    assert spec["kind"] == kind
    back = decode_layer(spec, arrays, "layer 0")
    assert type(back) is type(op)
    spec2, arrays2 = encode_layer(back)
    assert spec2 == spec
    assert arrays2.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(arrays2[k], arrays[k])
    xs = _inputs(shapes)
    np.testing.assert_array_equal(back.eval().forward(*xs), op.eval().forward(*xs))
    assert back.buffers().keys() == op.buffers().keys()


@pytest.mark.parametrize("kind", ["Conv2d", "MaxPool2d", "Concat", "LeakyReLU", "BatchNorm2d"])
def test_a_wrong_setting_names_the_layer_and_the_field(kind):
    spec, arrays = encode_layer(CASES[kind][0]())
    key = next(k for k in spec if k not in ("kind", "weight", "bias"))
    bad = dict(spec, **{key: "seven"})
    with pytest.raises(ModelFileError, match=rf"layer 3 \({kind}\).*{key}"):
        decode_layer(bad, arrays, "layer 3")


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("opset", [13, 17, 20])
def test_each_op_exports_nodes_that_onnxruntime_runs_alike(kind, opset):
    if kind == "LayerNorm" and opset < 17:
        pytest.skip("LayerNormalization is an opset-17 op (export refuses earlier opsets: tested below)")
    ort = pytest.importorskip("onnxruntime")
    from sparsenet.onnx import export_onnx

    make, shapes = CASES[kind]
    op = make().eval()
    names = [f"x{k}" for k in range(len(shapes))]
    graph = nn.Graph(inputs={n: _shape(s) for n, s in zip(names, shapes)}, nodes=[("op", op, names)],
                     outputs=["op"], input_dtypes={n: s[0] for n, s in zip(names, shapes) if isinstance(s[0], str)})
    proto = export_onnx(graph, None, opset=opset)
    xs = [x if x.dtype.kind == "i" else x * 4 for x in _inputs(shapes, seed=5)]  # past the clipping corners
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, dict(zip(names, xs)))[0]
    np.testing.assert_allclose(got, op.forward(*xs), rtol=1e-5, atol=1e-5)


CONV_VARIANTS = {  # groups and dilation: spec fields written only when not 1
    "depthwise": lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3, seed=1),
    "grouped-dilated": lambda: nn.Conv2d(4, 6, 3, padding=2, groups=2, dilation=2, seed=2,
                                         weight=CSR.from_dense(np.eye(6, 18, dtype=np.float32))),
}


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_groups_and_dilation_round_trip_through_files_and_onnx(variant):
    ort = pytest.importorskip("onnxruntime")
    from sparsenet.onnx import export_onnx, import_onnx

    conv = CONV_VARIANTS[variant]().eval()
    spec, arrays = encode_layer(conv)
    back = decode_layer(spec, arrays, "layer 0")
    assert (back.groups, back.dilation) == (conv.groups, conv.dilation)
    x = _inputs([(conv.in_channels, 7, 6)], seed=3)[0]
    np.testing.assert_array_equal(back.forward(x), conv.forward(x))
    graph = nn.Graph({"x": (conv.in_channels, 7, 6)}, [("op", conv, ["x"])], "op")
    proto = export_onnx(graph, None)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], conv.forward(x), rtol=1e-5, atol=1e-5)
    imported = import_onnx(proto).layers[0]
    assert (imported.groups, imported.dilation) == (conv.groups, conv.dilation)
    np.testing.assert_allclose(imported.forward(x), conv.forward(x), rtol=1e-6, atol=1e-6)


def test_plain_conv_files_keep_their_fields_and_bad_groups_name_the_layer():
    spec, arrays = encode_layer(nn.Conv2d(2, 2, 3))
    assert "groups" not in spec and "dilation" not in spec  # files of 0.1 and this version alike
    spec, arrays = encode_layer(CONV_VARIANTS["depthwise"]())
    with pytest.raises(ModelFileError, match=r"layer 2 \(Conv2d\).*groups 2"):
        decode_layer(dict(spec, groups=2), arrays, "layer 2")
    with pytest.raises(ModelFileError, match=r"layer 2 \(Conv2d\).*dilation 99"):
        decode_layer(dict(spec, dilation=99), arrays, "layer 2")


def test_layernorm_imports_back_and_refuses_old_opsets():
    from sparsenet.onnx import export_onnx, import_onnx

    ln = _layernorm()
    graph = nn.Graph({"x": (3, 2, 4)}, [("ln", ln, ["x"])], "ln")
    x = _inputs([(3, 2, 4)], seed=9)[0]
    back = import_onnx(export_onnx(graph, None, opset=17)).layers[0]
    assert isinstance(back, nn.LayerNorm) and back.normalized_shape == (2, 4)
    np.testing.assert_allclose(back.forward(x), ln.forward(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(Exception, match="opset 17 or later"):
        export_onnx(graph, None, opset=16)


def test_reset_parameters_draws_fresh_values_under_the_mask():
    layer = _sparse_linear()
    layer.weight_param.mask = layer.weight.data != 0
    layer.weight_param.mask[0] = False
    before = layer.weight.data.copy()
    layer.reset_parameters(np.random.default_rng(9))
    assert not np.array_equal(layer.weight.data, before)
    assert np.all(layer.weight.data[~layer.weight_param.mask] == 0)
    bn = _bn(nn.BatchNorm1d, 3)
    bn.reset_parameters(np.random.default_rng(0))
    assert np.all(bn.weight.data == 1) and np.all(bn.running_var == 1) and np.all(bn.running_mean == 0)
