"""The ops a transformer is made of (Reshape, Transpose, Slice, MatMul, Mean, Shift, Scale, a Linear
over tokens): backward against finite differences, shape errors by name; plans that carry a value
whose batch is not its leading axis; the zoo transformer trained, saved, exported and imported."""

import numpy as np
import pytest

import sparsenet as sn
from sparsenet import nn
from sparsenet.errors import ConfigError, ShapeError
from sparsenet.onnx import export_onnx, import_onnx

from gradcheck import _assert_close, check_layer_gradients, numerical_gradient

F64 = np.float64

SINGLE = {
    "reshape": (lambda: nn.Reshape((-1, 3, 2)), (2, 6)),
    "reshape-batch-merged": (lambda: nn.Reshape((4, -1)), (2, 2, 3)),
    "transpose": (lambda: nn.Transpose((0, 2, 1)), (2, 3, 4)),
    "transpose-batch-moved": (lambda: nn.Transpose((1, 0, 2)), (2, 3, 4)),
    "slice": (lambda: nn.Slice(-1, 1, 3), (2, 3, 4)),
    "slice-open": (lambda: nn.Slice(1, -2), (2, 3, 4)),
    "mean": (lambda: nn.Mean((1,)), (2, 3, 4)),
    "mean-keepdims": (lambda: nn.Mean((1, 2), keepdims=True), (2, 3, 4)),
    "shift": (lambda: nn.Shift(np.linspace(-1, 1, 12).reshape(1, 3, 4), dtype=F64), (2, 3, 4)),
    "shift-rows": (lambda: nn.Shift(np.linspace(-1, 1, 4), dtype=F64), (2, 3, 4)),
    "scale": (lambda: nn.Scale(np.linspace(0.5, 2, 4), dtype=F64), (2, 3, 4)),
    "scale-fixed": (lambda: nn.Scale(0.5, trainable=False, dtype=F64), (2, 3, 4)),
    "linear-over-tokens": (lambda: nn.Linear(4, 5, seed=1, dtype=F64), (2, 3, 4)),
}


@pytest.mark.parametrize("case", sorted(SINGLE))
def test_each_op_backward_matches_finite_differences(case):
    make, shape = SINGLE[case]
    layer = make()
    x = np.random.default_rng(0).standard_normal(shape)
    check_layer_gradients(layer, x)


def test_matmul_gradients_of_both_inputs_with_broadcasting():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 5, 2))  # b broadcast over a's axis 0
    op = nn.MatMul()
    out = op.forward(a, b)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-12)
    g = rng.standard_normal(out.shape)
    op.forward(a, b)
    ga, gb = op.backward(g)

    def objective():
        return float(np.sum(op.forward(a, b) * g))

    _assert_close(ga, numerical_gradient(objective, a, 1e-6), 1e-6, 1e-8, "dA")
    _assert_close(gb, numerical_gradient(objective, b, 1e-6), 1e-6, 1e-8, "dB")


def test_bad_settings_and_shapes_are_refused_by_name():
    for make, message in ((lambda: nn.Reshape((-1, -1)), "at most one -1"), (lambda: nn.Reshape((0, 2)), "positive"),
                          (lambda: nn.Reshape("ab"), "list of integers"), (lambda: nn.Transpose((0, 0)), "permutation"),
                          (lambda: nn.Mean((0,)), "axis 0 is the batch"), (lambda: nn.Slice(1.5, 0), "integer axis"),
                          (lambda: nn.Shift([np.nan]), "finite")):
        with pytest.raises(ConfigError, match=message):
            make()
    for op, x, message in ((nn.Reshape((-1, 5)), np.zeros((2, 3)), r"cannot reshape an input of shape \[2, 3\]"),
                           (nn.Transpose((1, 0)), np.zeros((2, 3, 4)), "expected a 2-D input"),
                           (nn.Slice(1, 5), np.zeros((2, 3)), "is empty"),
                           (nn.Mean((3,)), np.zeros((2, 3)), "out of range"),
                           (nn.Shift(np.zeros((4, 3))), np.zeros((2, 3)), "does not broadcast"),
                           (nn.Linear(4, 2), np.zeros((2, 3, 5)), "axis 1 of size 4")):
        with pytest.raises(ShapeError, match=message):
            op.forward(x)
    with pytest.raises(ShapeError, match=r"\[\.\.\., M, K\] @ \[\.\.\., K, N\]"):
        nn.MatMul().forward(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))


def test_a_plan_carries_values_whose_batch_is_not_leading_and_refuses_them_as_outputs():
    t, d = 5, 4
    g = nn.Graph({"x": (t, d)}, [("t", nn.Transpose((1, 0, 2)), "x"), ("fc", nn.Linear(d, d, seed=1), "t"),
                                 ("r", nn.Reshape((t, -1, 2)), "fc"),          # [T, B * 2, 2]: batch merged
                                 ("back", nn.Reshape((t, -1, d)), "r"), ("t2", nn.Transpose((1, 0, 2)), "back")],
                 "t2")
    x = np.random.default_rng(0).standard_normal((9, t, d)).astype(np.float32)
    np.testing.assert_allclose(g.predict(x, batch_size=4), g.forward(x), rtol=1e-6)
    assert "native" not in sn.plan.build_plan(g).describe()
    bad = nn.Graph({"x": (t, d)}, [("t", nn.Transpose((1, 0, 2)), "x")], "t")
    with pytest.raises(ShapeError, match="not batch-major"):
        bad.predict(x)


def _task(n, t, vocab, seed):
    """Is token 1 more frequent than token 2 in the sequence? (Word counts: attention pools them.)"""
    rng = np.random.default_rng(seed)
    x = rng.integers(3, vocab, (n, t))
    y = rng.integers(0, 2, n)
    for row, label in zip(x, y):
        k = rng.integers(2, 5)
        pos = rng.choice(t, 2 * k - 1, replace=False)
        row[pos[:k]], row[pos[k:]] = (1, 2) if label else (2, 1)
    return x, y


def test_the_zoo_transformer_trains_and_round_trips_through_files_and_onnx(tmp_path):
    model = sn.zoo.transformer(20, 12, 2, seed=0, dim=16, heads=2, layers=1, ffn=32)
    x, y = _task(600, 12, 20, seed=0)
    xt, yt = _task(200, 12, 20, seed=1)
    sn.fit(model, x, y, epochs=12, batch_size=32, lr=3e-3, quiet=True)
    accuracy = sn.evaluate(model, xt, yt)["accuracy"]
    assert accuracy >= 0.85, accuracy  # chance is 0.5
    np.testing.assert_allclose(model.predict(xt), model.forward(xt), rtol=1e-5, atol=1e-6)
    path = tmp_path / "tr.safetensors"
    sn.save_model(model, path)
    back = sn.load(path)
    np.testing.assert_array_equal(back.predict(xt), model.predict(xt))
    ort = pytest.importorskip("onnxruntime")
    for opset in (17, 18):
        proto = export_onnx(model, None, opset=opset)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"tokens": xt})[0], model.predict(xt), rtol=1e-5, atol=1e-5)
        again = import_onnx(proto)
        np.testing.assert_allclose(again.predict(xt), model.predict(xt), rtol=1e-5, atol=1e-5)


def test_build_model_gives_the_default_transformer_and_recommender():
    tr = sn.build_model("transformer", seed=0, num_classes=3)
    assert tr.input_dtypes == {"tokens": np.dtype(np.int64)} and tr.predict(np.zeros((2, 32), np.int64)).shape == (2, 3)
    with pytest.raises(ConfigError, match="not a multiple of heads"):
        sn.zoo.transformer(dim=10, heads=3)


TORCH_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                            "ignore::UserWarning")


def _torch_classifier(norm_first: bool, activation: str, layers: int):
    import torch

    class Classifier(torch.nn.Module):
        """Token embedding + learned positions, nn.TransformerEncoder, mean over tokens, Linear."""

        def __init__(self, vocab=50, t=12, d=16, heads=2, ffn=32, classes=3):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, d)
            self.pos = torch.nn.Parameter(torch.randn(1, t, d) * 0.1)
            layer = torch.nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, activation=activation,
                                                     batch_first=True, norm_first=norm_first)
            self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.fc = torch.nn.Linear(d, classes)

        def forward(self, tokens):
            return self.fc(self.enc(self.emb(tokens) + self.pos).mean(dim=1))

    torch.manual_seed(0)
    return Classifier().eval()


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter,opset", [("legacy", 17), ("legacy", 18), ("legacy", 20), ("dynamo", 18),
                                            ("dynamo", 20)])
@pytest.mark.parametrize("variant", ["post-norm-gelu", "pre-norm-relu"])
def test_a_pytorch_transformer_encoder_classifier_imports_from_each_exporter(exporter, opset, variant):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import io

    import onnx

    net = _torch_classifier(variant.startswith("pre"), variant.split("-")[-1], 2)
    x0 = torch.randint(0, 50, (4, 12))
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
        proto = torch.onnx.export(net, (x0,), dynamo=True, opset_version=opset, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},)).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(net, (x0,), buf, dynamo=False, opset_version=opset, input_names=["tokens"],
                          dynamic_axes={"tokens": {0: "N"}})
        proto = onnx.load_from_string(buf.getvalue())
    model = import_onnx(proto)
    x = np.random.default_rng(1).integers(0, 50, (70, 12))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = model.predict(x, batch_size=32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    from sparsenet.prune import compiled, prune

    prune(model, sparsity=0.5)  # every Linear of the encoder, then stored CSR
    pruned = compiled(model, "csr")
    np.testing.assert_allclose(pruned.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)
    back = export_onnx(pruned, None)
    sess = ort.InferenceSession(back.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], pruned.predict(x),
                               rtol=1e-4, atol=1e-5)
