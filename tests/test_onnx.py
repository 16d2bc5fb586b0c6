"""ONNX import and export, checked against onnxruntime: every supported op and attribute variant,
zoo models (dense, pruned and compiled), PyTorch exports, and errors that name the node."""

import argparse
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import sparsenet as sn
from sparsenet import nn
from sparsenet.errors import ModelFileError, SparsenetError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsenet.cli.onnx import register as add_onnx_parsers  # noqa: E402
from sparsenet.onnx import OnnxImportError, export_onnx, import_onnx  # noqa: E402

FLOAT = TensorProto.FLOAT
_rng = np.random.default_rng(0)


def _rand(*shape, low=None):
    a = _rng.standard_normal(shape) if low is None else _rng.uniform(low, 2.0, shape)
    return a.astype(np.float32)


def _model(nodes, inits, in_shape=None, *, opset=17, sparse=(), elem=FLOAT, outputs=None, inputs=None):
    graph = helper.make_graph(
        nodes, "test", inputs or [helper.make_tensor_value_info("x", elem, list(in_shape))],
        outputs or [helper.make_tensor_value_info("y", elem, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
        sparse_initializer=list(sparse))
    ops = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))
    if outputs is None:  # the checker wants the output's shape: let onnx infer it
        proto.graph.output[0].CopyFrom(onnx.shape_inference.infer_shapes(proto).graph.output[0])
    return proto


def _chain(steps, inits=None, in_shape=("N", 8), **kw):
    """x -> steps[0] -> ... -> y; each step (op, constant inputs after the data, attributes)."""
    nodes, prev = [], "x"
    for k, (op, extra, attrs) in enumerate(steps):
        out = "y" if k == len(steps) - 1 else f"v{k}"
        nodes.append(helper.make_node(op, [prev, *extra], [out], name=f"{op.lower()}{k}", **attrs))
        prev = out
    return _model(nodes, inits or {}, in_shape, **kw)


def _ort(proto, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _same(proto, x, **kw):
    """Import `proto` and check sparsenet's predict against onnxruntime's output."""
    m = import_onnx(proto, **kw)
    np.testing.assert_allclose(sn.predict(m, x), _ort(proto, x), rtol=1e-5, atol=1e-5)
    return m


def _kinds(m):
    return [type(layer).__name__ for layer in m.layers]


# -- import: MLP ops -------------------------------------------------------------------------------
W, B, S = _rand(6, 8), _rand(6), _rand(6, low=0.5)
BN6 = {"g": _rand(6, low=0.5), "be": _rand(6), "mu": _rand(6), "var": _rand(6, low=0.5)}
MLP_CASES = {
    "gemm-transB": ([("Gemm", ["W", "B"], {"transB": 1})], {"W": W, "B": B}, ["Linear"]),
    "gemm-alpha-beta-C2d": ([("Gemm", ["Wt", "B2"], {"alpha": 0.5, "beta": 2.0})], {"Wt": W.T.copy(), "B2": B[None]},
                            ["Linear"]),
    "gemm-scalar-C": ([("Gemm", ["W", "c"], {"transB": 1})], {"W": W, "c": np.float32(0.3)}, ["Linear"]),
    "gemm-no-C": ([("Gemm", ["W"], {"transB": 1}), ("Relu", [], {})], {"W": W}, ["Linear", "ReLU"]),
    "matmul-add": ([("MatMul", ["Wt"], {}), ("Add", ["B"], {})], {"Wt": W.T.copy(), "B": B}, ["Linear"]),
    "matmul-affine-folds": ([("MatMul", ["Wt"], {}), ("Add", ["B"], {}), ("Mul", ["S"], {}), ("Sub", ["B"], {}),
                             ("Div", ["S"], {})], {"Wt": W.T.copy(), "B": B, "S": S}, ["Linear"]),
    "gemm-bn-folded": ([("Gemm", ["W", "B"], {"transB": 1}), ("BatchNormalization", ["g", "be", "mu", "var"], {})],
                       {"W": W, "B": B, **BN6}, ["Linear"]),
    "bn1d-after-relu": ([("Gemm", ["W", "B"], {"transB": 1}), ("Relu", [], {}),
                         ("BatchNormalization", ["g", "be", "mu", "var"], {"epsilon": 1e-3})],
                        {"W": W, "B": B, **BN6}, ["Linear", "ReLU", "BatchNorm1d"]),
    "activations": ([("LeakyRelu", [], {"alpha": 0.2}), ("Sigmoid", [], {}), ("Tanh", [], {}), ("Relu", [], {})],
                    {}, ["LeakyReLU", "Sigmoid", "Tanh", "ReLU"]),
    "softmax-axis1": ([("Gemm", ["W", "B"], {"transB": 1}), ("Softmax", [], {"axis": 1})], {"W": W, "B": B},
                      ["Linear", "Softmax"]),
    "softmax-default": ([("Softmax", [], {})], {}, ["Softmax"]),
    "dropout-identity-cast-transpose": ([("Dropout", ["r"], {}), ("Identity", [], {}), ("Cast", [], {"to": FLOAT}),
                                         ("Transpose", [], {"perm": [0, 1]}), ("Gemm", ["W"], {"transB": 1})],
                                        {"r": np.float32(0.25), "W": W}, ["Dropout", "Linear"]),
}


@pytest.mark.parametrize("case", sorted(MLP_CASES))
def test_import_mlp_ops_match_onnxruntime(case):
    steps, inits, kinds = MLP_CASES[case]
    m = _same(_chain(steps, inits), _rand(5, 8))
    assert _kinds(m) == kinds
    assert m.input_shape == (8,) and not m.training


def test_import_old_opset_softmax_and_dropout_ratio_attribute():
    proto = _chain([("Dropout", [], {"ratio": 0.1}), ("Softmax", [], {})], opset=11)
    m = _same(proto, _rand(4, 8))
    assert _kinds(m) == ["Dropout", "Softmax"] and m[0].p == 0.1


def test_import_gelu_tanh_opset20():
    m = _same(_chain([("Gelu", [], {"approximate": "tanh"})], opset=20), _rand(4, 8) * 3)
    assert _kinds(m) == ["GELU"]


def test_import_float64_graph_gives_float64_layers():
    proto = _chain([("Gemm", ["W", "B"], {"transB": 1}), ("Tanh", [], {})],
                   {"W": W.astype(np.float64), "B": B.astype(np.float64)}, elem=TensorProto.DOUBLE)
    m = _same(proto, _rand(3, 8).astype(np.float64))
    assert m[0].dtype == np.float64


def test_batchnorm_fold_is_float64_exact_and_optional():
    proto = _chain([("Gemm", ["W", "B"], {"transB": 1}), ("BatchNormalization", ["g", "be", "mu", "var"], {})],
                   {"W": W, "B": B, **BN6})
    folded = import_onnx(proto)
    s = BN6["g"].astype(np.float64) / np.sqrt(BN6["var"].astype(np.float64) + np.float64(np.float32(1e-5)))
    np.testing.assert_array_equal(folded[0].weight.to_dense(), (W.astype(np.float64) * s[:, None]).astype(np.float32))
    assert folded.meta["onnx"]["folded"] == ["node 1 'batchnormalization1' (BatchNormalization)"]
    kept = _same(proto, _rand(4, 8), fold_batchnorm=False)
    assert _kinds(kept) == ["Linear", "BatchNorm1d"] and kept[1].eps == 1e-5 and kept[1].momentum == pytest.approx(0.1)


# -- import: CNN ops -------------------------------------------------------------------------------
WC, BC = _rand(4, 3, 3, 3), _rand(4)
BN4 = {"g": _rand(4, low=0.5), "be": _rand(4), "mu": _rand(4), "var": _rand(4, low=0.5)}
FLAT = [("Flatten", [], {})]
CNN_CASES = {
    "conv-pad1-bias": ([("Conv", ["W", "B"], {"pads": [1, 1, 1, 1]})], ["Conv2d"]),
    "conv-stride2-nobias": ([("Conv", ["W"], {"strides": [2, 2], "kernel_shape": [3, 3]})], ["Conv2d"]),
    "conv-same-upper": ([("Conv", ["W", "B"], {"auto_pad": "SAME_UPPER"})], ["Conv2d"]),
    "conv-valid": ([("Conv", ["W", "B"], {"auto_pad": "VALID", "dilations": [1, 1], "group": 1})], ["Conv2d"]),
    "conv-rect-kernel": ([("Conv", ["W31"], {})], ["Conv2d"]),
    "conv-depthwise": ([("Conv", ["Wdw", "B3"], {"group": 3, "pads": [1, 1, 1, 1]})], ["Conv2d"]),
    "conv-depthwise-x2-stride2": ([("Conv", ["Wdw2"], {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]})],
                                  ["Conv2d"]),
    "pad-then-conv": ([("Pad", ["pads8", "padv"], {}), ("Conv", ["W"], {"strides": [2, 2]})], ["Pad2d", "Conv2d"]),
    "pad-axes": ([("Pad", ["pads4", "", "axes23"], {})], ["Pad2d"]),
    "conv-asymmetric-pads": ([("Conv", ["W", "B"], {"pads": [0, 0, 1, 1], "strides": [2, 2]})], ["Pad2d", "Conv2d"]),
    "conv-same-upper-odd": ([("Conv", ["W"], {"auto_pad": "SAME_UPPER", "strides": [2, 2]})], ["Pad2d", "Conv2d"]),
    "conv-same-lower-odd": ([("Conv", ["W"], {"auto_pad": "SAME_LOWER", "strides": [2, 2]})], ["Pad2d", "Conv2d"]),
    "conv-dilated": ([("Conv", ["W", "B"], {"dilations": [2, 2], "pads": [2, 2, 2, 2]})], ["Conv2d"]),
    "conv-depthwise-dilated-relu6": ([("Conv", ["Wdw"], {"group": 3, "dilations": [2, 2]}),
                                      ("Clip", ["zero", "six"], {})], ["Conv2d", "ReLU6"]),
    "conv-bn-folded": ([("Conv", ["W", "B"], {}), ("BatchNormalization", ["g", "be", "mu", "var"], {})], ["Conv2d"]),
    "conv-relu-bn2d": ([("Conv", ["W"], {}), ("Relu", [], {}), ("BatchNormalization", ["g", "be", "mu", "var"], {})],
                       ["Conv2d", "ReLU", "BatchNorm2d"]),
    "conv-add-mul-folded": ([("Conv", ["W"], {}), ("Add", ["Bc4"], {}), ("Mul", ["Sc3"], {})], ["Conv2d"]),
    "maxpool-2": ([("MaxPool", [], {"kernel_shape": [2, 2], "strides": [2, 2]})], ["MaxPool2d"]),
    "maxpool-3-s2-p1": ([("MaxPool", [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})],
                        ["MaxPool2d"]),
    "maxpool-rect-ceil": ([("MaxPool", [], {"kernel_shape": [2, 3], "strides": [1, 2], "ceil_mode": 0})],
                          ["MaxPool2d"]),
    "maxpool-ceil-same-size": ([("MaxPool", [], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1})],
                               ["MaxPool2d"]),
    "maxpool-ceil-overhangs": ([("MaxPool", [], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})],
                               ["MaxPool2d"]),
    "avgpool-ceil-include-pad": ([("AveragePool", [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                       "ceil_mode": 1, "count_include_pad": 1})], ["AvgPool2d"]),
    "avgpool-ceil-exclude-pad": ([("AveragePool", [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                       "ceil_mode": 1})], ["AvgPool2d"]),
    "avgpool-include-pad": ([("AveragePool", [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                  "count_include_pad": 1})], ["AvgPool2d"]),
    "avgpool-exclude-pad": ([("AveragePool", [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})], ["AvgPool2d"]),
    "avgpool-no-pad": ([("AveragePool", [], {"kernel_shape": [2, 2], "strides": [2, 2]})], ["AvgPool2d"]),
    "gap-flatten": ([("GlobalAveragePool", [], {}), ("Relu", [], {})] + FLAT, ["GlobalAvgPool2d", "ReLU"]),
    "gap-reshape": ([("GlobalAveragePool", [], {}), ("Reshape", ["shape0m1"], {})], ["GlobalAvgPool2d"]),
    "gap-squeeze": ([("GlobalAveragePool", [], {}), ("Squeeze", ["axes23"], {})], ["GlobalAvgPool2d"]),
    "gap-last": ([("GlobalAveragePool", [], {})], ["AvgPool2d"]),
    "gap-then-conv": ([("GlobalAveragePool", [], {}), ("Conv", ["W11"], {})], ["AvgPool2d", "Conv2d"]),
    "reducemean-keepdims0": ([("ReduceMean", ["axes23"], {"keepdims": 0})], ["GlobalAvgPool2d"]),
    "flatten": (FLAT + [("Gemm", ["Wfc"], {"transB": 1})], ["Flatten", "Linear"]),
    "reshape-minus1-F": ([("Reshape", ["shapeF"], {"allowzero": 1})], ["Flatten"]),
    "reshape-noop": ([("Reshape", ["shape4d"], {})], []),
    "nhwc-flatten-tf2onnx": ([("Conv", ["W", "B"], {"pads": [1, 1, 1, 1]}), ("Relu", [], {}),
                              ("Transpose", [], {"perm": [0, 2, 3, 1]}), ("Reshape", ["shapeF4"], {}),
                              ("MatMul", ["Wnhwc"], {}), ("Add", ["B5"], {})], ["Conv2d", "ReLU", "Flatten", "Linear"]),
}
CNN_INITS = {"W": WC, "B": BC, "W31": _rand(4, 3, 3, 1), "W11": _rand(2, 3, 1, 1), "Bc4": _rand(1, 4, 1, 1),
             "Sc3": _rand(4, 1, 1, low=0.5), **BN4, "shape0m1": np.array([0, -1], np.int64),
             "axes23": np.array([2, 3], np.int64), "Wfc": _rand(5, 3 * 8 * 8),
             "shapeF": np.array([-1, 3 * 8 * 8], np.int64), "shape4d": np.array([-1, 3, 8, 8], np.int64),
             "shapeF4": np.array([-1, 4 * 8 * 8], np.int64), "Wnhwc": _rand(4 * 8 * 8, 5), "B5": _rand(5),
             "Wdw": _rand(3, 1, 3, 3), "Wdw2": _rand(6, 1, 3, 3), "B3": _rand(3),
             "zero": np.array(0, np.float32), "six": np.array(6, np.float32),
             "pads8": np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "padv": np.array(0.5, np.float32),
             "pads4": np.array([1, 0, 2, 3], np.int64)}


@pytest.mark.parametrize("case", sorted(CNN_CASES))
def test_import_cnn_ops_match_onnxruntime(case):
    steps, kinds = CNN_CASES[case]
    used = {n for _, extra, _ in steps for n in extra}
    m = _same(_chain(steps, {k: v for k, v in CNN_INITS.items() if k in used}, ("N", 3, 8, 8), opset=18),
              _rand(2, 3, 8, 8))
    assert _kinds(m) == kinds
    assert m.input_shape == (3, 8, 8)


def test_import_reshape_with_fixed_batch_and_symbolic_sizes():
    m = _same(_chain([("Reshape", ["s"], {})], {"s": np.array([2, -1], np.int64)}, (2, 3, 4, 4)), _rand(2, 3, 4, 4))
    assert _kinds(m) == ["Flatten"]
    m = import_onnx(_chain([("Conv", ["W"], {}), ("Reshape", ["s"], {})], {"W": WC, "s": np.array([0, -1], np.int64)},
                           ("N", 3, "H", "W")))
    assert m.input_shape is None and _kinds(m) == ["Conv2d", "Flatten"]
    assert sn.predict(m, _rand(2, 3, 5, 6)).shape == (2, 4 * 3 * 4)


def test_import_shape_subgraph_flatten_and_constant_folding():
    """x.view(x.size(0), -1) as PyTorch's legacy exporter writes it, weights behind Identity and Constant nodes."""
    n = helper.make_node
    nodes = [
        n("Constant", [], ["w_raw"], name="wconst", value=numpy_helper.from_array(WC, "w")),
        n("Identity", ["w_raw"], ["w"], name="wid"),
        n("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        n("Shape", ["c"], ["shp"], name="shape"),
        n("Constant", [], ["zero"], name="zero", value_int=0),
        n("Gather", ["shp", "zero"], ["batch"], name="gather", axis=0),
        n("Constant", [], ["ax"], name="ax", value_ints=[0]),
        n("Unsqueeze", ["batch", "ax"], ["batch1"], name="unsq"),
        n("Constant", [], ["m1"], name="m1", value_ints=[-1]),
        n("Concat", ["batch1", "m1"], ["target"], name="concat", axis=0),
        n("Reshape", ["c", "target"], ["flat"], name="reshape"),
        n("Gemm", ["flat", "wfc", "bfc"], ["y"], name="fc", transB=1),
    ]
    proto = _model(nodes, {"b": BC, "wfc": _rand(5, 4 * 8 * 8), "bfc": _rand(5)}, ("N", 3, 8, 8))
    m = _same(proto, _rand(3, 3, 8, 8))
    assert _kinds(m) == ["Conv2d", "Flatten", "Linear"]


def test_import_sparse_initializers_give_csr_weights():
    wfc = _rand(5, 4 * 6 * 6)
    wfc[_rng.random(wfc.shape) < 0.8] = 0
    wc = WC.copy()
    wc[_rng.random(wc.shape) < 0.5] = 0

    def sparse(name, w):
        idx = np.flatnonzero(w)
        return helper.make_sparse_tensor(numpy_helper.from_array(w.ravel()[idx], name),
                                         numpy_helper.from_array(idx.astype(np.int64), name + "_i"), list(w.shape))

    proto = _chain([("Conv", ["W", "B"], {}), ("Relu", [], {})] + FLAT + [("Gemm", ["Wfc"], {"transB": 1})],
                   {"B": BC}, ("N", 3, 8, 8), sparse=[sparse("W", wc), sparse("Wfc", wfc)],
                   outputs=[helper.make_tensor_value_info("y", FLOAT, ["N", 5])])
    m = import_onnx(proto)
    np.testing.assert_allclose(sn.predict(m, x := _rand(2, 3, 8, 8)),
                               sn.predict(_dense_twin(m), x), rtol=1e-6, atol=1e-6)
    assert [m[0].weight.format_name, m[3].weight.format_name] == ["csr", "csr"]
    assert (m[0].weight.nnz, m[3].weight.nnz) == (np.count_nonzero(wc), np.count_nonzero(wfc))
    np.testing.assert_array_equal(m[3].weight.to_dense(), wfc)


def test_import_sparse_constant_node():
    w = np.array([[0, 2, 0], [1, 0, 0]], np.float32)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2, 1], np.float32), "w"),
                                       numpy_helper.from_array(np.array([1, 3], np.int64), "wi"), [2, 3])
    nodes = [helper.make_node("Constant", [], ["W"], name="c", sparse_value=sparse),
             helper.make_node("Gemm", ["x", "W"], ["y"], name="g", transB=1)]
    m = _same(_model(nodes, {}, ("N", 3), outputs=[helper.make_tensor_value_info("y", FLOAT, ["N", 2])]),
              _rand(4, 3))
    assert m[0].weight.format_name == "csr" and m[0].weight.nnz == 2
    np.testing.assert_array_equal(m[0].weight.to_dense(), w)


def test_import_keras_tf2onnx_style_mlp():
    """tf2onnx writes Dense as MatMul + Add, a symbolic batch named unk__N, opset 13."""
    w1, b1, w2, b2 = _rand(8, 16), _rand(16), _rand(16, 4), _rand(4)
    proto = _chain([("MatMul", ["w1"], {}), ("Add", ["b1"], {}), ("Relu", [], {}), ("MatMul", ["w2"], {}),
                    ("Add", ["b2"], {}), ("Softmax", [], {"axis": -1})],
                   {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, ("unk__6", 8), opset=13)
    m = _same(proto, _rand(5, 8))
    assert _kinds(m) == ["Linear", "ReLU", "Linear", "Softmax"]


def _dense_twin(model):
    from sparsenet.prune import compiled
    return compiled(model, "dense")


# -- import: errors name the node ------------------------------------------------------------------
ERROR_CASES = {
    "unsupported-op": (_chain([("Gemm", ["W"], {"transB": 1}), ("Sin", [], {})], {"W": W}),
                       ["node 1 'sin1' (Sin)", "not supported"]),
    "conv-group-misfit": (_chain([("Conv", ["Wg"], {"group": 3})], {"Wg": _rand(4, 2, 3, 3)}, ("N", 6, 8, 8)),
                          ["node 0 'conv0' (Conv)", "group=3 does not divide the 4 output channels"]),
    "maxpool-asymmetric-pads": (_chain([("MaxPool", [], {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]})],
                                       in_shape=("N", 3, 8, 8)), ["node 0 'maxpool0' (MaxPool)", "pads=[0, 0, 1, 1]"]),
    "conv-dilations-differ": (_chain([("Conv", ["W"], {"dilations": [1, 2]})], {"W": WC}, ("N", 3, 8, 8)),
                              ["(Conv)", "dilations=[1, 2]"]),
    "conv-strides-differ": (_chain([("Conv", ["W"], {"strides": [1, 2]})], {"W": WC}, ("N", 3, 8, 8)),
                            ["(Conv)", "strides=[1, 2]"]),
    "gelu-unknown-form": (_chain([("Gelu", [], {"approximate": "fast"})], opset=20),
                          ["node 0 'gelu0' (Gelu)", "approximate='fast'"]),
    "clip-no-bounds": (_chain([("Clip", [], {})]), ["(Clip)", "min=-inf, max=inf"]),
    "pad-reflect": (_chain([("Pad", ["p"], {"mode": "reflect"})], {"p": np.zeros(8, np.int64)}, ("N", 3, 8, 8),
                           opset=18), ["(Pad)", "mode='reflect'"]),
    "pad-channels": (_chain([("Pad", ["p"], {})], {"p": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64)},
                            ("N", 3, 8, 8), opset=18), ["(Pad)", "only non-negative padding of the two spatial"]),
    "swish-alpha": (_chain([("Swish", [], {"alpha": 2.0})], opset=24), ["(Swish)", "alpha=2.0"]),
    "maxpool-ceil-mode-2": (_chain([("MaxPool", [], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 2})],
                                   in_shape=("N", 3, 7, 7)), ["(MaxPool)", "ceil_mode=2"]),
    "flatten-axis2": (_chain([("Flatten", [], {"axis": 2})], in_shape=("N", 3, 8, 8)), ["(Flatten)", "axis=2"]),
    "reshape-not-static": (_chain([("Reshape", ["s"], {})], {"s": np.array([-1, 3, 8], np.int64)},
                                  ("N", 3, "H", 8)), ["node 0 'reshape0' (Reshape)", "Reshape to [-1, 3, 8]", "static"]),
    "reshape-batch-unknown": (_chain([("Reshape", ["s"], {})], {"s": np.array([2, 3, 8], np.int64)}, (3, 16)),
                              ["(Reshape)", "cannot tell which dimension of [2, 3, 8] holds the batch"]),
    "mul-not-broadcasting": (_chain([("Relu", [], {}), ("Mul", ["S"], {})], {"S": _rand(2, 1, 8)}),
                             ["node 1 'mul1' (Mul)", "must broadcast to the data's non-batch axes"]),
    "mean-of-the-batch": (_chain([("ReduceMean", [], {"axes": [0, 1]})]), ["(ReduceMean)", "averages axis 0"]),
    "gemm-transA": (_chain([("Gemm", ["W"], {"transA": 1})], {"W": W.T.copy()}, (8, 8)), ["(Gemm)", "transA=1"]),
    "gemm-data-as-B": (_model([helper.make_node("Gemm", ["W", "x"], ["y"], name="g")], {"W": _rand(8, 8)}, ("N", 8)),
                       ["node 0 'g' (Gemm)", "input A"]),
    "linear-size-mismatch": (_chain([("Gemm", ["W"], {"transB": 1})], {"W": _rand(6, 5)},
                                    outputs=[helper.make_tensor_value_info("y", FLOAT, ["N", 6])]),
                             ["(Gemm)", "5 input features"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_import_errors_name_node_and_op(case):
    proto, fragments = ERROR_CASES[case]
    with pytest.raises(SparsenetError) as e:
        import_onnx(proto)
    assert isinstance(e.value, OnnxImportError)
    for fragment in fragments:
        assert fragment in str(e.value)


def _out(*dims):
    """A declared output (no shape inference: some graphs below are invalid on purpose)."""
    return [helper.make_tensor_value_info("y", FLOAT, list(dims))]


def _conv(attrs, w=WC):
    return _chain([("Conv", ["W"], attrs)], {"W": w}, ("N", 3, 8, 8), outputs=_out("N", 4, 6, 6))


def _pool(op, attrs):
    return _chain([(op, [], attrs)], in_shape=("N", 3, 8, 8), outputs=_out("N", 3, 4, 4))


def _sparse_int_weight():
    values = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "W")
    indices = numpy_helper.from_array(np.array([0, 9, 40], np.int64), "W_idx")
    return _chain([("Gemm", ["W"], {"transB": 1})], sparse=[helper.make_sparse_tensor(values, indices, [6, 8])],
                  outputs=_out("N", 6))


# An initializer whose element type does not fit its use, and zero or negative attribute values: each
# used to fail as a bare ValueError/ZeroDivisionError (or silently convert); now an OnnxImportError
# names the node and the initializer or attribute.
BAD_VALUE_CASES = {
    "gemm-int64-weight": (_chain([("Gemm", ["W"], {"transB": 1})], {"W": W.astype(np.int64)}, outputs=_out("N", 6)),
                          ["node 0 'gemm0' (Gemm)", "weight B", "float32", "int64"]),
    "gemm-float64-weight": (_chain([("Gemm", ["W"], {"transB": 1})], {"W": W.astype(np.float64)},
                                   outputs=_out("N", 6)), ["node 0 'gemm0' (Gemm)", "weight B", "float64"]),
    "gemm-int64-bias": (_chain([("Gemm", ["W", "B"], {"transB": 1})], {"W": W, "B": np.ones(6, np.int64)},
                               outputs=_out("N", 6)), ["(Gemm)", "bias C", "int64"]),
    "gemm-sparse-int64-weight": (_sparse_int_weight(), ["(Gemm)", "weight B", "int64"]),
    "matmul-int32-weight": (_chain([("MatMul", ["W"], {})], {"W": W.T.astype(np.int32)}, outputs=_out("N", 6)),
                            ["node 0 'matmul0' (MatMul)", "weight", "int32"]),
    "conv-int64-weight": (_conv({}, WC.astype(np.int64)), ["node 0 'conv0' (Conv)", "weight W", "int64"]),
    "add-float64-constant": (_chain([("Gemm", ["W"], {"transB": 1}), ("Add", ["B"], {})],
                                    {"W": W, "B": B.astype(np.float64)}, outputs=_out("N", 6)),
                             ["node 1 'add1' (Add)", "Add constant", "float64"]),
    "batchnorm-int64-scale": (_chain([("BatchNormalization", ["s", "b", "m", "v"], {})],
                                     {"s": np.ones(8, np.int64), "b": B[:1].repeat(8), "m": np.zeros(8, np.float32),
                                      "v": np.ones(8, np.float32)}, outputs=_out("N", 8)),
                              ["(BatchNormalization)", "scale", "int64"]),
    "reshape-float-shape": (_chain([("Reshape", ["s"], {})], {"s": np.array([0, np.nan], np.float32)},
                                   ("N", 3, 8, 8), outputs=_out("N", 192)), ["(Reshape)", "shape", "float32"]),
    "squeeze-float-axes": (_chain([("Squeeze", ["a"], {})], {"a": np.array([2.0])}, ("N", 8, 1),
                                  outputs=_out("N", 8)), ["(Squeeze)", "axes", "float64"]),
    "squeeze-axes-out-of-range": (_chain([("Squeeze", ["a"], {})], {"a": np.array([7], np.int64)}, ("N", 8, 1),
                                         outputs=_out("N", 8)), ["(Squeeze)", "axes=[7]", "out of range"]),
    "dropout-vector-ratio": (_chain([("Dropout", ["r"], {})], {"r": np.array([0.1, 0.2], np.float32)},
                                    outputs=_out("N", 8)), ["(Dropout)", "ratio", "scalar"]),
    "dropout-int-ratio": (_chain([("Dropout", ["r"], {})], {"r": np.array(0, np.int64)}, outputs=_out("N", 8)),
                          ["(Dropout)", "ratio", "int64"]),
    "conv-stride-0": (_conv({"strides": [0, 0]}), ["node 0 'conv0' (Conv)", "strides=[0, 0]", "positive"]),
    "conv-group-0": (_conv({"group": 0}), ["node 0 'conv0' (Conv)", "group=0", "positive"]),
    "conv-kernel-0": (_conv({"kernel_shape": [0, 0]}), ["(Conv)", "kernel_shape=[0, 0]", "positive"]),
    "conv-dilation-0": (_conv({"dilations": [0, 0]}), ["(Conv)", "dilations=[0, 0]", "positive"]),
    "conv-negative-pad": (_conv({"pads": [-1, -1, -1, -1]}), ["(Conv)", "pads=[-1, -1, -1, -1]", ">= 0"]),
    "maxpool-stride-0": (_pool("MaxPool", {"kernel_shape": [2, 2], "strides": [0, 0]}),
                         ["node 0 'maxpool0' (MaxPool)", "strides=[0, 0]"]),
    "maxpool-kernel-0": (_pool("MaxPool", {"kernel_shape": [0, 0]}), ["(MaxPool)", "kernel_shape=[0, 0]"]),
    "maxpool-dilation-0": (_pool("MaxPool", {"kernel_shape": [2, 2], "dilations": [0, 0]}),
                           ["(MaxPool)", "dilations=[0, 0]"]),
    "avgpool-stride-0": (_pool("AveragePool", {"kernel_shape": [2, 2], "strides": [0, 0]}),
                         ["node 0 'averagepool0' (AveragePool)", "strides=[0, 0]"]),
    "avgpool-negative-stride": (_pool("AveragePool", {"kernel_shape": [2, 2], "strides": [-2, -2]}),
                                ["(AveragePool)", "strides=[-2, -2]"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUE_CASES))
def test_bad_initializers_and_attributes_name_the_node(case):
    proto, fragments = BAD_VALUE_CASES[case]
    with pytest.raises(OnnxImportError) as e:
        import_onnx(proto)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_an_unforeseen_error_in_a_handler_still_names_the_node(monkeypatch):
    from sparsenet.onnx import _ops

    def broken(st, node, attrs, slot, inputs):
        return 1 // 0

    monkeypatch.setitem(_ops.OPS, "Relu", broken)
    with pytest.raises(OnnxImportError, match=r"node 0 'relu0' \(Relu\).*ZeroDivisionError"):
        import_onnx(_chain([("Relu", [], {})]))


def test_float_types_the_spec_lets_differ_are_accepted():
    """BatchNormalization's parameters (T1/T2) and Dropout's ratio may have another float type."""
    bn = {"s": np.ones(8, np.float64), "b": np.zeros(8, np.float64), "m": np.zeros(8, np.float16),
          "v": np.ones(8, np.float64)}
    proto = _chain([("Gemm", ["W"], {"transB": 1}), ("Relu", [], {}), ("Dropout", ["r"], {})],
                   {"W": _rand(8, 8), "r": np.array(0.25)}, opset=17)
    _same(proto, _rand(3, 8))
    folded = _chain([("Gemm", ["W"], {"transB": 1}), ("BatchNormalization", ["s", "b", "m", "v"], {})],
                    {"W": _rand(8, 8), **bn}, outputs=_out("N", 8))
    assert import_onnx(folded)(np.zeros((1, 8), np.float32)).dtype == np.float32


def _ort_outputs(proto, feeds):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_residual_and_branching_graphs_import_as_graphs():
    n = helper.make_node
    residual = _model([n("Gemm", ["x", "W"], ["h"], name="/fc/Gemm", transB=1), n("Relu", ["h"], ["r"], name="act"),
                       n("Add", ["r", "x"], ["y"], name="skip")], {"W": _rand(8, 8)}, ("N", 8))
    m = import_onnx(residual)
    assert isinstance(m, nn.Graph)
    assert [(k.name, type(k.op).__name__, k.inputs) for k in m.nodes] == [
        ("fc_Gemm", "Linear", ("x",)), ("act", "ReLU", ("fc_Gemm",)), ("skip", "Add", ("act", "x"))]
    x = _rand(5, 8)
    np.testing.assert_allclose(m.predict(x), _ort_outputs(residual, {"x": x})[0], rtol=1e-5, atol=1e-6)
    # a value read by two nodes and also a graph output; two outputs; a Concat of the branches
    two_out = _model([n("Gemm", ["x", "W"], ["y"], name="a", transB=1), n("Sigmoid", ["y"], ["s"], name="b"),
                      n("Tanh", ["y"], ["t"], name="c"), n("Concat", ["s", "t"], ["z"], name="cat", axis=-1)],
                     {"W": _rand(8, 8)}, ("N", 8),
                     outputs=[helper.make_tensor_value_info(v, FLOAT, ["N", k]) for v, k in (("y", 8), ("z", 16))])
    m = import_onnx(two_out)
    assert m.outputs == ("a", "cat") and isinstance(m.nodes[-1].op, nn.Concat) and m.nodes[-1].op.axis == 1
    for got, want in zip(m.forward(x), _ort_outputs(two_out, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_graphs_with_two_inputs_and_a_conv_residual_block():
    n = helper.make_node
    w1, w2 = _rand(4, 4, 3, 3), _rand(4, 4, 3, 3)
    bn = {"g": _rand(4) + 2, "be": _rand(4), "mu": _rand(4), "var": np.abs(_rand(4)) + 0.5}
    nodes = [n("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             n("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["b1"], name="bn1"),
             n("Relu", ["b1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             n("Add", ["c2", "x"], ["s"], name="add"), n("Relu", ["s"], ["r2"], name="relu2"),
             n("Add", ["r2", "x2"], ["y"], name="add2")]
    inputs = [helper.make_tensor_value_info(k, FLOAT, ["N", 4, 6, 6]) for k in ("x", "x2")]
    proto = _model(nodes, {"w1": w1, "w2": w2, **bn}, inputs=inputs)
    m = import_onnx(proto)
    assert isinstance(m, nn.Graph) and list(m.input_shapes) == ["x", "x2"]
    assert [type(k.op).__name__ for k in m.nodes] == ["Conv2d", "ReLU", "Conv2d", "Add", "ReLU", "Add"]
    assert m.meta["onnx"]["folded"] == ["node 1 'bn1' (BatchNormalization)"]
    x, x2 = _rand(3, 4, 6, 6), _rand(3, 4, 6, 6)
    np.testing.assert_allclose(m.forward(x, x2), _ort_outputs(proto, {"x": x, "x2": x2})[0], rtol=1e-4, atol=1e-5)


def test_graph_export_import_round_trip():
    from sparsenet.onnx import export_onnx

    g = nn.Graph({"x": (8,)}, [("fc", nn.Linear(8, 8, seed=1), ["x"]), ("act", nn.Tanh(), ["fc"]),
                               ("res", nn.Add(), ["act", "x"]), ("head", nn.Linear(8, 3, seed=2), ["res"]),
                               ("cat", nn.Concat(), ["head", "res"])], ["cat", "head"])
    back = import_onnx(export_onnx(g, None))
    assert [(k.name, type(k.op), k.inputs) for k in back.nodes] == [(k.name, type(k.op), k.inputs) for k in g.nodes]
    assert back.outputs == g.outputs
    x = _rand(4, 8)
    for got, want in zip(back.eval().forward(x), g.eval().forward(x)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


_n = helper.make_node
JOIN_ERRORS = {
    "max-of-two-values": ([_n("Max", ["r", "x"], ["y"], name="j")],
                          r"node 1 'j' \(Max\): Max reads 2 values.*only Add, Sum, Concat, Mul, Sub, Div"),
    "add-broadcast-ranks": ([_n("ReduceMean", ["r"], ["m"], name="mean", axes=[1], keepdims=0),
                             _n("Add", ["r", "m"], ["y"], name="j")], r"node 2 'j' \(Add\).*one rank"),
    "add-with-a-constant-too": ([_n("Sum", ["r", "x", "c"], ["y"], name="j")],
                                r"node 1 'j' \(Sum\).*and constants together"),
    "concat-batch-axis": ([_n("Concat", ["r", "x"], ["y"], name="j", axis=0)], r"node 1 'j' \(Concat\): axis=0"),
}


@pytest.mark.parametrize("case", sorted(JOIN_ERRORS))
def test_unsupported_joins_name_the_node(case):
    nodes, fragment = JOIN_ERRORS[case]
    proto = _model([helper.make_node("Relu", ["x"], ["r"], name="relu"), *nodes], {"c": _rand(8)}, ("N", 8),
                   outputs=_out("N", 8))
    with pytest.raises(OnnxImportError, match=fragment):
        import_onnx(proto)


def test_a_computed_value_that_nothing_reads_names_its_node():
    n = helper.make_node
    tapped = _model([n("Relu", ["x"], ["r"], name="a"), n("Sigmoid", ["r"], ["y"], name="b"),
                     n("Tanh", ["r"], ["t"], name="c")], {}, ("N", 8))
    with pytest.raises(OnnxImportError, match=r"node 2 'c' \(Tanh\).*'t' is neither used"):
        import_onnx(tapped)


def test_invalid_onnx_is_a_model_file_error_naming_the_node():
    with pytest.raises(ModelFileError, match="foo.*relu0"):
        import_onnx(_chain([("Relu", [], {"foo": 1})],
                           outputs=[helper.make_tensor_value_info("y", FLOAT, ["N", 8])]))


def test_import_bad_sources(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        import_onnx(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ModelFileError):
        import_onnx(tmp_path / "bad.onnx")
    with pytest.raises(SparsenetError, match="expected a path"):
        import_onnx(3.5)


def test_missing_onnx_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(SparsenetError, match=r"pip install 'sparsenet\[onnx\]'"):
        import_onnx(b"")
    with pytest.raises(SparsenetError, match=r"pip install 'sparsenet\[onnx\]'"):
        export_onnx(sn.build_model("mlp"), None)


def test_import_sparsenet_does_not_import_onnx():
    code = "import sys, sparsenet, sparsenet.onnx; assert 'onnx' not in sys.modules, 'onnx imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- export ----------------------------------------------------------------------------------------
X8 = _rand(7, 1, 8, 8)


def _exported_matches(model, x, **kw):
    proto = export_onnx(model, None, **kw)
    onnx.checker.check_model(proto)
    np.testing.assert_allclose(_ort(proto, x), sn.predict(model, x), rtol=1e-5, atol=1e-5)
    back = import_onnx(proto)
    np.testing.assert_allclose(sn.predict(back, x), sn.predict(model, x), rtol=1e-5, atol=1e-5)
    return proto, back


@pytest.mark.parametrize("name", ["mlp", "lenet300", "cnn"])
def test_zoo_export_runs_in_onnxruntime_and_round_trips(name):
    model = sn.build_model(name, seed=1)
    proto, back = _exported_matches(model, X8)
    inp = proto.graph.input[0]
    assert inp.name == "input" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].name == "output"
    assert back.input_shape == (1, 8, 8) and back.meta["architecture"] == name


@pytest.mark.parametrize("name,granularity,fmt", [("lenet300", "unstructured", "csr"), ("cnn", "unstructured", "csr"),
                                                  ("lenet300", "block4x4", "bsr4x4")])
def test_pruned_compiled_export(name, granularity, fmt):
    from sparsenet.prune import compiled as compile_copy, prune

    model = sn.build_model(name, seed=0)
    prune(model, sparsity=0.8, granularity=granularity)
    compiled = compile_copy(model, fmt)
    weighted = [l for l in compiled.layers if isinstance(l, (nn.Linear, nn.Conv2d))]
    dense_proto, _ = _exported_matches(compiled, X8)
    assert not dense_proto.graph.sparse_initializer
    proto, back = _exported_matches(compiled, X8, sparse_initializers=True)
    assert len(proto.graph.sparse_initializer) == len(weighted)
    if fmt == "csr":  # 80% of unstructured zeros: values + int64 indices are smaller than dense
        assert proto.ByteSize() < dense_proto.ByteSize()
    back_weighted = [l for l in back.layers if isinstance(l, (nn.Linear, nn.Conv2d))]
    assert all(l.weight.format_name == "csr" for l in back_weighted)
    assert [l.weight.nnz for l in back_weighted] == [int(l.weight.mask().sum()) for l in weighted]


def _every_layer_model():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, seed=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.AvgPool2d(3, 1, 1),
        nn.Conv2d(4, 4, 3, stride=2, seed=2), nn.Tanh(), nn.MaxPool2d(2, 1), nn.GlobalAvgPool2d(),
        nn.BatchNorm1d(4), nn.Sigmoid(), nn.Linear(4, 6, seed=3), nn.GELU(), nn.Identity(), nn.Dropout(0.3),
        nn.Linear(6, 3, seed=4, bias=False), nn.Softmax())
    for bn in (model[1], model[8]):
        bn.running_mean[:] = _rand(bn.num_features)
        bn.running_var[:] = _rand(bn.num_features, low=0.5)
        bn.weight.data[:] = _rand(bn.num_features, low=0.5)
        bn.bias.data[:] = _rand(bn.num_features)
    model.input_shape = (2, 8, 8)
    return model.eval()


def test_every_layer_kind_exports_opset20_and_round_trips():
    x = _rand(3, 2, 8, 8)
    proto, back = _exported_matches(_every_layer_model(), x, opset=20)
    assert "Gelu" in [n.op_type for n in proto.graph.node]
    assert "BatchNorm2d" not in _kinds(back) and "BatchNorm1d" in _kinds(back)


def test_gelu_before_opset20_is_a_formula_that_reimports_as_gelu():
    model = _every_layer_model()
    x = _rand(3, 2, 8, 8) * 3
    proto = export_onnx(model, None, opset=17)
    assert "Gelu" not in {node.op_type for node in proto.graph.node}
    np.testing.assert_allclose(_ort(proto, x), sn.predict(model, x), rtol=1e-5, atol=1e-5)
    back = import_onnx(proto)
    gelus = [layer for layer in back.layers if isinstance(layer, nn.GELU)]
    assert len(gelus) == 1 and gelus[0].approximate == "tanh"
    np.testing.assert_allclose(sn.predict(back, x), sn.predict(model, x), rtol=1e-5, atol=1e-5)


def test_export_writes_file_and_infers_or_requires_input_shape(tmp_path):
    lin = nn.Sequential(nn.Linear(8, 3), nn.ReLU())
    export_onnx(lin, tmp_path / "lin.onnx")
    assert import_onnx(tmp_path / "lin.onnx").input_shape == (8,)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    proto = export_onnx(conv, None)
    np.testing.assert_allclose(_ort(proto, x := _rand(2, 1, 6, 9)), sn.predict(conv, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(SparsenetError, match="input_shape"):
        export_onnx(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), None)
    with pytest.raises(SparsenetError, match="opset"):
        export_onnx(lin, None, opset=12)


def test_cli_export_and_import(tmp_path, capsys):
    from sparsenet.prune import compiled as compile_copy, prune

    parser = argparse.ArgumentParser(prog="sparsenet")
    add_onnx_parsers(parser.add_subparsers(dest="command", required=True))
    model = sn.build_model("lenet300", seed=0)
    prune(model, sparsity=0.9)
    sn.save_model(compile_copy(model, "csr"), tmp_path / "m.npz")

    def run(*argv):
        args = parser.parse_args([str(a) for a in argv])
        assert args.func(args) == 0
        return json.loads(capsys.readouterr().out)

    out = run("export-onnx", tmp_path / "m.npz", "-o", tmp_path / "m.onnx", "--sparse-initializers", "--json")
    assert out["sparse_initializers"] == 3 and out["bytes"] > 0
    out = run("import-onnx", tmp_path / "m.onnx", "-o", tmp_path / "back.npz", "--json")
    assert out["layers"] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    np.testing.assert_allclose(sn.predict(sn.load(tmp_path / "back.npz"), X8),
                               sn.predict(sn.load(tmp_path / "m.npz"), X8), rtol=1e-5, atol=1e-5)


# -- PyTorch exports -------------------------------------------------------------------------------
def _torch_model(arch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnn = torch.nn
    if arch == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(64, 32), tnn.ReLU(), tnn.Dropout(0.2),
                              tnn.Linear(32, 10)).eval()
    bns = [tnn.BatchNorm2d(8), tnn.BatchNorm2d(12)]
    for bn in bns:  # non-trivial statistics, so that folding is tested
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    return tnn.Sequential(tnn.Conv2d(1, 8, 3, padding=1), bns[0], tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(8, 12, 3), bns[1], tnn.ReLU(), tnn.Flatten(), tnn.Linear(12 * 2 * 2, 10)).eval()


def _check_torch_import(module, proto):
    import torch

    x = _rand(5, 1, 8, 8)
    m = _same(proto, x)
    with torch.no_grad():
        np.testing.assert_allclose(sn.predict(m, x), module(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    return m, x


def _torch_export(module, x0, exporter: str, opset: int):
    """`module` exported by PyTorch's legacy or dynamo exporter with a symbolic batch, as a ModelProto."""
    import torch

    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
        return torch.onnx.export(module, (x0,), dynamo=True, opset_version=opset, verbose=False,
                                 dynamic_shapes=({0: torch.export.Dim("batch")},)).model_proto
    buf = io.BytesIO()
    torch.onnx.export(module, (x0,), buf, dynamo=False, opset_version=opset, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


def _check_torch_graph(m, net, proto, x, sparsity):
    """The imported `m` against PyTorch and onnxruntime, then pruned, compiled to CSR, and exported
    with sparse initializers: each step within rounding of the one before."""
    import torch

    from sparsenet.prune import compiled as compile_copy, prune

    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.predict(x), _ort(proto, x), rtol=1e-5, atol=1e-5)
    prune(m, sparsity=sparsity)
    pruned = compile_copy(m, "csr")
    np.testing.assert_allclose(pruned.predict(x), m.predict(x), rtol=1e-5, atol=1e-5)
    back = export_onnx(pruned, None, sparse_initializers=True)
    np.testing.assert_allclose(_ort(back, x), pruned.predict(x), rtol=1e-4, atol=1e-5)


TORCH_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@TORCH_WARNINGS
@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_torch_legacy_export_imports_and_prunes(arch, opset, tmp_path):
    torch = pytest.importorskip("torch")

    module = _torch_model(arch)
    path = tmp_path / "t.onnx"
    # no constant folding: BatchNormalization and the Identity nodes on weights stay in the graph
    torch.onnx.export(module, (torch.zeros(2, 1, 8, 8),), str(path), dynamo=False, opset_version=opset,
                      do_constant_folding=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    m, x = _check_torch_import(module, onnx.load(str(path)))
    if arch == "cnn":
        assert _kinds(m)[:3] == ["Conv2d", "ReLU", "MaxPool2d"]  # BatchNorm folded
        assert len(m.meta["onnx"]["folded"]) == 2
    from sparsenet.prune import compiled as compile_copy, prune

    result = prune(m, sparsity=0.7)
    assert result.sparsity == pytest.approx(0.7, abs=0.01)
    compiled = compile_copy(m, "csr")
    np.testing.assert_allclose(sn.predict(compiled, x), sn.predict(m, x), rtol=1e-5, atol=1e-5)
    proto = export_onnx(compiled, None, sparse_initializers=True)
    np.testing.assert_allclose(_ort(proto, x), sn.predict(compiled, x), rtol=1e-5, atol=1e-5)


@TORCH_WARNINGS
def test_torch_legacy_view_flatten_and_global_pool():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return h.view(h.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape

    net = Net().eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(2, 1, 8, 8),), buf, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    proto = onnx.load_from_string(buf.getvalue())
    assert "Shape" in [n.op_type for n in proto.graph.node]
    m, _ = _check_torch_import(net, proto)
    assert _kinds(m) == ["Conv2d", "ReLU", "Flatten"]
    gap = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3)).eval()
    buf = io.BytesIO()
    torch.onnx.export(gap, (torch.zeros(2, 1, 8, 8),), buf, dynamo=False, opset_version=18,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    m, _ = _check_torch_import(gap, onnx.load_from_string(buf.getvalue()))
    assert _kinds(m) == ["Conv2d", "GlobalAvgPool2d", "Linear"]


@TORCH_WARNINGS
@pytest.mark.parametrize("opset", [17, 18])
def test_torch_dynamo_export_imports(opset):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    module = _torch_model("cnn")
    program = torch.onnx.export(module, (torch.zeros(2, 1, 8, 8),), dynamo=True, opset_version=opset,
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    m, _ = _check_torch_import(module, program.model_proto)
    assert _kinds(m) == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Flatten", "Linear"]


def _torch_resnet():
    """A small ResNet: stem, a BasicBlock with an identity shortcut, one with a strided 1x1
    projection shortcut (Conv + BatchNorm), a Bottleneck (1x1, 3x3, 1x1 x4, projection), global pool,
    classifier."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    torch.manual_seed(0)

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
            self.c2, self.b2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
            self.short = (tnn.Sequential() if stride == 1 and cin == cout else
                          tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout)))

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))

    class Bottleneck(tnn.Module):  # 1x1 reduce, 3x3, 1x1 expand (x4), projection shortcut
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = 4 * width
            self.body = tnn.Sequential(tnn.Conv2d(cin, width, 1, bias=False), tnn.BatchNorm2d(width), tnn.ReLU(),
                                       tnn.Conv2d(width, width, 3, stride, 1, bias=False), tnn.BatchNorm2d(width),
                                       tnn.ReLU(), tnn.Conv2d(width, cout, 1, bias=False), tnn.BatchNorm2d(cout))
            self.short = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    net = tnn.Sequential(tnn.Conv2d(1, 8, 3, 1, 1), tnn.BatchNorm2d(8), tnn.ReLU(), Block(8, 8, 1), Block(8, 16, 2),
                         Bottleneck(16, 4, 1), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(16, 10)).eval()
    for m in net.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return net


@TORCH_WARNINGS
@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("opset", [17, 20])
def test_torch_resnet_imports_as_a_graph_and_prunes(opset, dynamo):
    torch = pytest.importorskip("torch")
    net = _torch_resnet()
    proto = _torch_export(net, torch.zeros(2, 1, 8, 8), "dynamo" if dynamo else "legacy", opset)
    m = import_onnx(proto)
    assert isinstance(m, nn.Graph)
    kinds = [type(k.op).__name__ for k in m.nodes]
    assert kinds.count("Add") == 3 and kinds.count("Conv2d") == 10 and "BatchNorm2d" not in kinds  # all folded
    _check_torch_graph(m, net, proto, _rand(5, 1, 8, 8), sparsity=0.7)


# -- activations PyTorch writes as formulas (fused by sparsenet.onnx._fuse) ------------------------
TORCH_ACTIVATIONS = {"GELU": ("GELU", {}), "GELU-tanh": ("GELU", {"approximate": "tanh"}), "SiLU": ("SiLU", {}),
                     "Hardswish": ("HardSwish", {}), "ReLU6": ("ReLU6", {}), "Hardsigmoid": ("HardSigmoid", {}),
                     "LayerNorm": ("LayerNorm", {"normalized_shape": 16})}


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter,opset", [("legacy", 17), ("legacy", 20), ("dynamo", 18)])
@pytest.mark.parametrize("act", sorted(TORCH_ACTIVATIONS))
def test_torch_activations_import_as_one_layer(act, exporter, opset):
    torch = pytest.importorskip("torch")
    kind, kwargs = TORCH_ACTIVATIONS[act]
    torch.manual_seed(0)
    tnn = torch.nn
    module = tnn.Sequential(tnn.Linear(4, 16), getattr(tnn, act.split("-")[0])(**kwargs), tnn.Linear(16, 3)).eval()
    for p in module[1].parameters():  # LayerNorm's affine parameters off 1 and 0
        p.data.uniform_(0.5, 1.5)
    proto = _torch_export(module, torch.zeros(2, 4), exporter, opset)
    data = _rand(64, 4) * 4  # across the clipping activations' corners
    m = _same(proto, data)
    assert _kinds(m) == ["Linear", kind, "Linear"]
    with torch.no_grad():
        np.testing.assert_allclose(sn.predict(m, data), module(torch.from_numpy(data)).numpy(), rtol=1e-5, atol=1e-5)


def test_a_formula_whose_inner_value_is_read_elsewhere_is_not_fused():
    n = helper.make_node
    nodes = [n("Sigmoid", ["x"], ["s"], name="sig"), n("Mul", ["x", "s"], ["y"], name="mul"),
             n("Relu", ["s"], ["z"], name="other")]
    outputs = [helper.make_tensor_value_info(k, FLOAT, ("N", 4)) for k in ("y", "z")]
    proto = _model(nodes, {}, ("N", 4), outputs=outputs)
    m = import_onnx(proto)  # node by node: the Sigmoid's output is also the ReLU's input
    assert [type(n.op).__name__ for n in m.nodes] == ["Sigmoid", "Mul", "ReLU"]
    x = _rand(3, 4)
    for got, want in zip(m.predict({"x": x}).values(), _ort_outputs(proto, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    erf = _model([n("Erf", ["x"], ["y"], name="lonely")], {}, ("N", 4))
    with pytest.raises(OnnxImportError, match="lonely.*op Erf is not supported"):
        import_onnx(erf)


def _torch_mobilenet(act):
    """A tiny MobileNetV2/V3: inverted residual blocks (1x1 expansion, depthwise 3x3 strided or
    not, with two filters per channel in one block, linear 1x1 projection), ReLU6 or Hardswish, a
    residual Add, global pooling, a classifier."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    torch.manual_seed(1)

    class Inverted(tnn.Module):
        def __init__(self, cin, cout, t, stride, mult=1):
            super().__init__()
            hidden = cin * t
            self.body = tnn.Sequential(
                tnn.Conv2d(cin, hidden, 1, bias=False), tnn.BatchNorm2d(hidden), act(),
                tnn.Conv2d(hidden, hidden * mult, 3, stride, 1, groups=hidden, bias=False),
                tnn.BatchNorm2d(hidden * mult), act(),
                tnn.Conv2d(hidden * mult, cout, 1, bias=False), tnn.BatchNorm2d(cout))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    net = tnn.Sequential(tnn.Conv2d(1, 8, 3, 1, 1), tnn.BatchNorm2d(8), act(), Inverted(8, 8, 2, 1),
                         Inverted(8, 12, 2, 2, mult=2), tnn.Conv2d(12, 16, 1), act(), tnn.AdaptiveAvgPool2d(1),
                         tnn.Flatten(), tnn.Linear(16, 10)).eval()
    for m in net.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return net


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter,opset", [("legacy", 17), ("legacy", 20), ("dynamo", 18)])
@pytest.mark.parametrize("act", ["ReLU6", "Hardswish"])
def test_torch_mobilenet_imports_depthwise_and_prunes(act, exporter, opset):
    torch = pytest.importorskip("torch")
    net = _torch_mobilenet(getattr(torch.nn, act))
    proto = _torch_export(net, torch.zeros(2, 1, 8, 8), exporter, opset)
    m = import_onnx(proto)
    convs = [k.op for k in m.nodes if isinstance(k.op, nn.Conv2d)]
    assert [c.groups for c in convs if c.groups > 1] == [16, 16]  # the two depthwise convolutions
    kinds = [type(k.op).__name__ for k in m.nodes]
    assert kinds.count("Add") == 1 and "BatchNorm2d" not in kinds
    assert kinds.count({"ReLU6": "ReLU6", "Hardswish": "HardSwish"}[act]) == 6
    _check_torch_graph(m, net, proto, _rand(5, 1, 8, 8) * 2, sparsity=0.6)


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter,opset", [("legacy", 17), ("dynamo", 18)])
def test_torch_squeeze_excitation_gate_imports_as_a_broadcasting_mul(exporter, opset):
    """MobileNetV3's squeeze-and-excitation: x * hardsigmoid(fc(relu(fc(pool(x))))), a Mul of [C, H, W]
    and [C, 1, 1] computed values."""
    torch = pytest.importorskip("torch")
    tnn, F = torch.nn, torch.nn.functional
    torch.manual_seed(2)

    class SE(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv, self.fc1, self.fc2 = tnn.Conv2d(1, c, 3, padding=1), tnn.Conv2d(c, 2, 1), tnn.Conv2d(2, c, 1)
            self.head = tnn.Linear(c * 64, 10)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            gate = F.hardsigmoid(self.fc2(torch.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
            return self.head((x * gate).flatten(1))

    net = SE(8).eval()
    proto = _torch_export(net, torch.zeros(2, 1, 8, 8), exporter, opset)
    m = import_onnx(proto)
    assert "Mul" in [type(n.op).__name__ for n in m.nodes]
    x = _rand(5, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(m.predict(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.predict(x), _ort(proto, x), rtol=1e-5, atol=1e-5)
    back = export_onnx(m, None)
    np.testing.assert_allclose(_ort(back, x), m.predict(x), rtol=1e-5, atol=1e-5)


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter,opset", [("legacy", 17), ("legacy", 18), ("dynamo", 18)])
def test_torch_split_and_chunk_import_as_slices(exporter, opset):
    """A Split node (torch.chunk and torch.split, equal and given sizes) becomes one Slice chain per
    output; the graph matches PyTorch and onnxruntime, prunes and exports."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = torch.nn.Linear(64, 24), torch.nn.Linear(8, 10)

        def forward(self, x):
            h = self.a(x.flatten(1))
            p, q, r = torch.chunk(h, 3, dim=1)  # 8 + 8 + 8
            s, t = torch.split(r, [3, 5], dim=1)
            return self.b(p * torch.sigmoid(q) + torch.cat([t, s], dim=1))

    net = Net().eval()
    proto = _torch_export(net, torch.zeros(2, 1, 8, 8), exporter, opset)
    assert any(n.op_type == "Split" for n in proto.graph.node)
    m = import_onnx(proto)
    assert sum(isinstance(op, nn.Slice) for _, op in m.children()) >= 4
    _check_torch_graph(m, net, proto, X8[:7], 0.5)


def test_a_split_of_the_batch_or_of_bad_sizes_is_refused():
    def graph(axis, sizes):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
        split = helper.make_tensor("sizes", TensorProto.INT64, [2], sizes)
        node = helper.make_node("Split", ["x", "sizes"], ["y0", "y1"], axis=axis, name="cut")
        add = helper.make_node("Add", ["y0", "y1"], ["z"], name="join")
        z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])
        return helper.make_model(helper.make_graph([node, add], "g", [x], [z], [split]),
                                 opset_imports=[helper.make_opsetid("", 17)])

    m = import_onnx(graph(1, [3, 3]))
    xs = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_allclose(m.predict(xs), xs[:, :3] + xs[:, 3:])
    with pytest.raises(OnnxImportError, match="cut.*holds the batch"):
        import_onnx(graph(0, [1, 1]))
    with pytest.raises(OnnxImportError, match=r"cut.*split sizes \[2, 3\] do not cut axis 1 of size 6"):
        import_onnx(graph(1, [2, 3]))


def test_a_keras_cnn_exported_by_tf2onnx_imports_and_matches_keras():
    """tests/data/keras/keras_cnn.onnx (make_keras_onnx.py: Keras 3 on TensorFlow 2.21, tf2onnx
    1.17, opset 17): NHWC input, ResNet blocks with BatchNorm, identity and strided projection
    shortcuts (Keras's "same" at stride 2: asymmetric pads, imported as a Pad2d before the
    convolution), depthwise, ReLU6 and hard-swish. Matches Keras's outputs, onnxruntime, and
    prunes, compiles and exports."""
    import os

    here = os.path.join(os.path.dirname(__file__), "data", "keras")
    proto = onnx.load(os.path.join(here, "keras_cnn.onnx"))
    data = np.load(os.path.join(here, "keras_cnn.npz"), allow_pickle=False)
    m = import_onnx(proto)
    kinds = [type(op).__name__ for _, op in m.children()]
    assert "Pad2d" in kinds and "BatchNorm2d" not in kinds  # asymmetric pads; BatchNorm folded
    np.testing.assert_allclose(m.predict(data["x"]), data["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict(data["x"]), _ort(proto, data["x"]), rtol=1e-5, atol=1e-6)
    from sparsenet.prune import compiled as compile_copy, prune

    prune(m, sparsity=0.5)
    pruned = compile_copy(m, "csr")
    np.testing.assert_allclose(pruned.predict(data["x"]), m.predict(data["x"]), rtol=1e-5, atol=1e-5)
    back = export_onnx(pruned, None)
    np.testing.assert_allclose(_ort(back, data["x"]), pruned.predict(data["x"]), rtol=1e-4, atol=1e-5)


def test_a_keras_ncf_exported_by_tf2onnx_imports_its_index_wraps_and_matches_keras():
    """tests/data/keras/keras_ncf.onnx: two int64 inputs, Keras's Embedding (its negative-index
    wrap, index arithmetic before each Gather, is recognised as the identity on the table's
    indices), concatenated, an MLP. Matches Keras and onnxruntime; an index outside a table raises
    (where Keras would wrap a negative one); the ModelProto given is left unchanged."""
    import os

    here = os.path.join(os.path.dirname(__file__), "data", "keras")
    proto = onnx.load(os.path.join(here, "keras_ncf.onnx"))
    before = proto.SerializeToString()
    data = np.load(os.path.join(here, "keras_ncf.npz"), allow_pickle=False)
    m = import_onnx(proto)
    assert proto.SerializeToString() == before
    assert m.input_dtypes == {"user": np.dtype(np.int64), "item": np.dtype(np.int64)}
    assert sum(isinstance(op, nn.Embedding) for _, op in m.children()) == 2
    x = {"user": data["user"], "item": data["item"]}
    np.testing.assert_allclose(m.predict(x), data["y"], rtol=1e-5, atol=1e-6)
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(m.predict(x), sess.run(None, x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(SparsenetError, match="expected indices in"):
        m.predict({"user": data["user"] - 31, "item": data["item"]})


def test_an_index_subgraph_that_is_not_the_identity_is_not_rewired():
    """Indices computed as i + 1 before a Gather are not a wrap: the import refuses them by name."""
    x = helper.make_tensor_value_info("i", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    table = numpy_helper.from_array(_rand(5, 2), "table")
    nodes = [helper.make_node("Add", ["i", "one"], ["j"], name="shift"),
             helper.make_node("Gather", ["table", "j"], ["y"], name="lookup")]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [one, table]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="shift"):
        import_onnx(proto)
