"""Embedding tables and integer graph inputs: the gather kernels against their NumPy references in
every table format, the table's gradient against finite differences, index checks, and the zoo
recommender end to end (training, model files, ONNX, PyTorch's exporters)."""

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsenet as sn
from sparsenet import nn
from sparsenet.errors import ConfigError, DataError, DTypeError, ModelFileError
from sparsenet.formats import BSR, CSR, Dense
from sparsenet.formats.quantized import QCSR, QDense
from sparsenet.kernels import gather
from sparsenet.losses import MSELoss
from sparsenet.onnx import export_onnx, import_onnx

from gradcheck import numerical_gradient
from strategies import SETTINGS, sparse_matrices

TABLE_FORMATS = {"dense": Dense.from_dense, "csr": CSR.from_dense,
                 "qdense": lambda w: QDense.from_float(Dense(w.astype(np.float32))),
                 "qcsr": lambda w: QCSR.from_float(CSR.from_dense(w.astype(np.float32)))}


@pytest.mark.nojit
@SETTINGS
@given(case=sparse_matrices(), fmt=st.sampled_from(sorted(TABLE_FORMATS)), seed=st.integers(0, 2**31),
       n=st.sampled_from([0, 1, 5, 33]))
def test_every_table_format_gathers_the_rows_of_its_dense_table(case, fmt, seed, n):
    m, d = case.w.shape
    if m == 0 or d == 0:
        return  # an Embedding has at least one row and one column (tested below)
    w = TABLE_FORMATS[fmt](case.w)
    layer = nn.Embedding(m, d, weight=w, dtype=w.dtype)
    rows = np.random.default_rng(seed).integers(0, m, (n, 2))
    want = gather.gather_ref(w.to_dense(), rows)
    got = layer.forward(rows)
    assert got.shape == (n, 2, d) and got.dtype == w.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.nojit
@SETTINGS
@given(case=sparse_matrices(dtype=np.float64), csr=st.booleans(), seed=st.integers(0, 2**31),
       n=st.sampled_from([0, 1, 6, 40]))
def test_the_scatter_adds_the_gradient_of_the_looked_up_rows(case, csr, seed, n):
    m, d = case.w.shape
    if m == 0 or d == 0:
        return
    rows = np.random.default_rng(seed).integers(0, m, n)  # repeats: a row looked up twice gets both
    g = np.random.default_rng(seed + 1).standard_normal((n, d))
    want = gather.scatter_add_ref((m, d), rows, g)
    if csr:
        w = CSR.from_mask(case.w, case.mask, np.float64)
        vgrad = np.zeros(w.nnz)
        gather.csr_scatter_add(w.indices, w.indptr, rows.astype(np.intp), g, vgrad)
        np.testing.assert_allclose(vgrad, want[case.mask.nonzero()] if w.nnz else vgrad, rtol=1e-12, atol=1e-12)
    else:
        grad = np.zeros((m, d))
        gather.dense_scatter_add(grad, rows.astype(np.intp), g)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_the_table_gradient_matches_finite_differences_and_accumulates(fmt):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4))
    w[w < -0.3] = 0
    table = Dense(w) if fmt == "dense" else CSR.from_dense(w)
    layer = nn.Embedding(6, 4, weight=table, dtype=np.float64)
    x = np.array([[0, 5, 5], [2, 0, 3]])  # repeats, and rows 1 and 4 never looked up
    g = rng.standard_normal((2, 3, 4))
    layer.zero_grad()
    layer.forward(x)
    assert layer.backward(g) is None  # the indices get no gradient
    analytic = layer.weight_param.grad.copy()
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * g)), layer.weight_param.data, 1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    layer.forward(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight_param.grad, 2 * analytic, rtol=1e-12)
    if fmt == "dense":
        assert not analytic[[1, 4]].any()  # rows not looked up: no gradient


def test_bad_indices_and_tables_are_refused_by_name():
    e = nn.Embedding(5, 3, seed=0)
    e.name = "node 'emb' (Embedding)"
    for bad, message in ((np.array([0, 5]), r"expected indices in \[0, 5\), found 5"),
                         (np.array([-1, 2]), "found -1"), (np.array([[7, 1]]), "found 7")):
        with pytest.raises(DataError, match=message):
            e.forward(bad)
    with pytest.raises(DTypeError, match="expected integer indices, found dtype float64"):
        e.forward(np.array([0.0, 1.0]))
    with pytest.raises(ConfigError, match="stored dense, CSR or int8"):
        e.weight = BSR.from_dense(np.ones((5, 3), np.float32), (1, 3))
    for n, d in ((0, 3), (3, -1), (2.5, 2), (True, 2)):
        with pytest.raises(ConfigError, match="positive integer"):
            nn.Embedding(n, d)
    q = nn.Embedding(5, 3, weight=QDense.from_float(Dense(np.ones((5, 3), np.float32))))
    q.forward(np.array([1]))
    with pytest.raises(ConfigError, match="int8 table is for inference"):
        q.backward(np.ones((1, 3), np.float32))
    assert e.forward(np.zeros((0, 4), np.int64)).shape == (0, 4, 3)  # no samples: no lookups


def _ratings(model, n=600, seed=0):
    """Ratings of a low-rank 'true' model on random (user, item) pairs."""
    rng = np.random.default_rng(seed)
    users = model.nodes[0].op.num_embeddings
    items = model.nodes[1].op.num_embeddings
    pu, qi = rng.standard_normal((users, 3)), rng.standard_normal((items, 3))
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    return {"user": u, "item": i}, (np.sum(pu[u] * qi[i], axis=1) / 3).astype(np.float32)


def test_the_zoo_recommender_trains_saves_and_exports(tmp_path):
    model = sn.build_model("recommender", seed=1)
    assert set(model.input_dtypes) == {"user", "item"}
    small = sn.zoo.recommender(30, 40, seed=1, dim=8, hidden=(16,), outputs=1)
    x, y = _ratings(small)
    before = sn.evaluate(small, x, y, loss=MSELoss())["loss"]
    history = sn.fit(small, x, y, epochs=30, batch_size=32, lr=3e-3, loss=MSELoss(), quiet=True)
    after = sn.evaluate(small, x, y, loss=MSELoss())["loss"]
    assert after < 0.5 * before and history.accuracy == []  # regression: no accuracy
    path = tmp_path / "rec.safetensors"
    sn.save_model(small, path)
    back = sn.load(path)
    assert back.input_dtypes == small.input_dtypes
    np.testing.assert_array_equal(back.predict(x), small.predict(x))
    with pytest.raises(DataError, match="expected indices in"):
        back.predict({"user": x["user"] + 30, "item": x["item"]})
    with pytest.raises(DTypeError, match="predict input 'user': expected integer indices"):
        back.predict({"user": x["user"].astype(np.float32), "item": x["item"]})
    int32 = back.predict({"user": x["user"].astype(np.int32), "item": x["item"].astype(np.uint8)})
    np.testing.assert_array_equal(int32, small.predict(x))  # other integer dtypes are cast
    ort = pytest.importorskip("onnxruntime")
    proto = export_onnx(small, None)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, x)[0], small.predict(x), rtol=1e-5, atol=1e-6)
    again = import_onnx(proto)
    np.testing.assert_allclose(again.predict(x), small.predict(x), rtol=1e-6, atol=1e-7)


def test_a_pruned_csr_table_predicts_as_the_masked_dense_one(tmp_path):
    small = sn.zoo.recommender(30, 40, seed=2, dim=8, hidden=(16,), outputs=1)
    x, _ = _ratings(small)
    emb = small.nodes[0].op
    w = emb.weight.to_dense()
    w[np.abs(w) < 0.8] = 0
    emb.weight = Dense(w)
    dense = small.predict(x)
    emb.weight = CSR.from_dense(w)
    np.testing.assert_allclose(small.predict(x), dense, rtol=1e-6, atol=1e-7)
    sn.save_model(small, tmp_path / "csr.safetensors")
    np.testing.assert_allclose(sn.load(tmp_path / "csr.safetensors").predict(x), dense, rtol=1e-6, atol=1e-7)


def test_a_model_file_with_a_bad_input_dtype_is_refused(tmp_path):
    import json

    from sparsenet.io.model_file import _graph_spec

    spec = {"inputs": [{"name": "u", "shape": [], "dtype": "float16"}], "nodes": [], "outputs": []}
    with pytest.raises(ModelFileError, match="dtype should be one of int64"):
        _graph_spec(json.loads(json.dumps(spec)), 0, "f")
    spec["inputs"][0] = {"name": "u", "shape": [], "kind": "x"}
    with pytest.raises(ModelFileError, match=r"should be \{name, shape\[, dtype\]\}"):
        _graph_spec(spec, 0, "f")


TORCH_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                            "ignore::UserWarning")


@TORCH_WARNINGS
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_a_pytorch_ncf_recommender_imports_with_two_int64_inputs(exporter):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    class NCF(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user, self.item = torch.nn.Embedding(50, 8), torch.nn.Embedding(40, 8)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

        def forward(self, user, item):
            return self.mlp(torch.cat([self.user(user), self.item(item)], dim=1))

    torch.manual_seed(0)
    net = NCF().eval()
    u, i = torch.tensor([1, 2, 49, 0]), torch.tensor([0, 39, 5, 7])
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
        batch = torch.export.Dim("batch")
        proto = torch.onnx.export(net, (u, i), dynamo=True, opset_version=18, verbose=False,
                                  dynamic_shapes=({0: batch}, {0: batch})).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(net, (u, i), buf, dynamo=False, opset_version=17, input_names=["user", "item"],
                          dynamic_axes={"user": {0: "N"}, "item": {0: "N"}})
        proto = onnx.load_from_string(buf.getvalue())
    model = import_onnx(proto)
    names = [v.name for v in proto.graph.input]
    rng = np.random.default_rng(0)
    x = {names[0]: rng.integers(0, 50, 70), names[1]: rng.integers(0, 40, 70)}
    with torch.no_grad():
        want = net(torch.from_numpy(x[names[0]]), torch.from_numpy(x[names[1]])).numpy()
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(model.predict(x), sess.run(None, x)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="expected indices in"):
        model.predict({names[0]: x[names[0]] + 50, names[1]: x[names[1]]})


@pytest.mark.parametrize("rows,bad", [([0, 3, 1], -1), ([2, 4, -1], 1), ([0, -1, 9], 1), ([], -1), ([7], 0)])
def test_the_checked_dense_gather_reads_nothing_outside_the_table(rows, bad):
    """dense_gather_checked returns the first row outside [0, M) and then gathers nothing (the
    plan raises the layer's error); with every row inside, the rows of the table."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    r = np.array(rows, dtype=np.int64)
    out = np.full((len(rows), 3), np.nan, np.float32)
    assert gather.dense_gather_checked(w, r, out) == bad
    if bad < 0:
        np.testing.assert_array_equal(out, w[r])
    else:
        assert np.isnan(out).all()


@pytest.mark.nojit
@SETTINGS
@given(case=sparse_matrices(), fmt=st.sampled_from(sorted(TABLE_FORMATS)), seed=st.integers(0, 2**31),
       n=st.sampled_from([0, 1, 5, 33]), outside=st.booleans())
def test_every_checked_gather_zeroes_its_rows_and_reads_nothing_outside(case, fmt, seed, n, outside):
    """The plan's one-call gathers (a dense, CSR, int8 or int8-CSR table): every output row written
    whole (`out` starts as NaN: a stored-entries-only kernel must zero the rest), the rows of the
    dense table; a row outside [0, M) returns its position and writes nothing."""
    m, d = case.w.shape
    if m == 0 or d == 0:
        return
    w = TABLE_FORMATS[fmt](case.w)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m, n).astype(np.intp)
    if outside and n:
        rows[rng.integers(0, n)] = m if rng.random() < 0.5 else -1
    bad = int(np.flatnonzero((rows < 0) | (rows >= m))[0]) if ((rows < 0) | (rows >= m)).any() else -1
    out = np.full((n, d), np.nan, w.dtype)
    if fmt == "dense":
        got = gather.dense_gather_checked(w.data, rows, out)
    elif fmt == "csr":
        got = gather.csr_gather_checked(w.data, w.indices, w.indptr, rows, out)
    elif fmt == "qdense":
        got = gather.dense_i8_gather_checked(w.data, w.scales, rows, out)
    else:
        got = gather.csr_i8_gather_checked(w.data, w.indices, w.indptr, w.scales, rows, out)
    assert got == bad
    if bad < 0:
        np.testing.assert_allclose(out, gather.gather_ref(w.to_dense(), rows), rtol=1e-6, atol=1e-6)
    else:
        assert np.isnan(out).all()


@pytest.mark.nojit
@pytest.mark.parametrize("fmt", ["csr", "qcsr"])
def test_a_row_pruned_table_gathers_full_rows_densely_and_empty_rows_as_zeros(fmt):
    """Full rows take the dense copy, empty rows the zero fill, a partly filled row the scatter."""
    w = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    w[[1, 4]] = 0  # pruned rows
    w[2, [0, 3]] = 0  # a partly stored row
    t = TABLE_FORMATS[fmt](w)
    rows = np.array([0, 1, 2, 3, 4, 5, 2, 0], np.intp)
    out = np.full((rows.size, 5), np.nan, np.float32)
    if fmt == "csr":
        assert gather.csr_gather_checked(t.data, t.indices, t.indptr, rows, out) == -1
    else:
        assert gather.csr_i8_gather_checked(t.data, t.indices, t.indptr, t.scales, rows, out) == -1
    np.testing.assert_allclose(out, gather.gather_ref(t.to_dense(), rows), rtol=1e-6, atol=1e-6)
