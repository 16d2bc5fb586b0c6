"""Model files: bit-exact round trips, atomic saves, and a clear ModelFileError for every corruption."""

import json
import os

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.errors import ModelFileError
from sparsenet.nn import (GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                          GlobalAvgPool2d, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, Softmax, Tanh)


def _every_layer_model():
    conv = Conv2d(1, 6, 3, padding=1, seed=1)
    conv.weight = sn.BSR.from_dense(conv.weight.to_dense() * (np.arange(9) % 2).astype(np.float32), blocksize=(2, 3))
    lin = Linear(6 * 4 * 4, 20, seed=2)
    w = lin.weight.to_dense()
    w[np.abs(w) < 0.1] = 0
    lin.weight = sn.CSR.from_dense(w)
    m = Sequential(conv, BatchNorm2d(6), LeakyReLU(0.2), MaxPool2d(2), Flatten(), lin, BatchNorm1d(20), Tanh(),
                   Dropout(0.1, seed=5), Linear(20, 10, bias=False, seed=3), Sigmoid(), GELU(), Softmax())
    m.input_shape = (1, 8, 8)
    lin.weight_param.mask = lin.weight.data != 0  # a pinned pruning mask travels with the file
    x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    m.train().forward(x)  # move BatchNorm running statistics away from their defaults
    return m.eval(), x


def _cnn_pool_model():
    m = Sequential(Conv2d(2, 3, (3, 2), stride=2, seed=0), ReLU(), AvgPool2d(2, stride=1, padding=1),
                   GlobalAvgPool2d(), Linear(3, 4, seed=1))
    m.input_shape = (2, 9, 7)
    return m.eval(), np.random.default_rng(1).random((5, 2, 9, 7), dtype=np.float32)


@pytest.mark.parametrize("build", [_every_layer_model, _cnn_pool_model])
def test_roundtrip_is_bit_exact(build, tmp_path):
    model, x = build()
    path = tmp_path / "m.npz"
    sn.save_model(model, path, metadata={"note": "hello"})
    loaded = sn.load(path)
    assert [type(l) for l in loaded] == [type(l) for l in model]
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    assert np.array_equal(sn.predict(model, x), sn.predict(loaded, x))
    assert loaded.meta["note"] == "hello" and loaded.input_shape == model.input_shape
    assert loaded[0].weight.format_name == model[0].weight.format_name


def test_pruning_masks_survive_a_round_trip(tmp_path):
    from sparsenet.prune import prune

    model = sn.build_model("lenet300", seed=0)
    prune(model, sparsity=0.5)
    sn.save_model(model, tmp_path / "m.npz")
    loaded = sn.load(tmp_path / "m.npz")
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert (a.mask is None) == (b.mask is None)
        if a.mask is not None:
            assert np.array_equal(a.mask, b.mask) and a.mask.mean() == 0.5


def test_weight_of_other_dtype_is_refused():
    layer = Linear(3, 2)
    with pytest.raises(sn.DTypeError, match="float32"):
        layer.weight = sn.CSR.from_dense(np.ones((2, 3)))  # float64


def test_float64_model_roundtrip(tmp_path):
    m = Sequential(Linear(3, 2, dtype=np.float64))
    sn.save_model(m, tmp_path / "m.npz")
    assert sn.load(tmp_path / "m.npz")[0].weight.dtype == np.float64


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    model, _ = _cnn_pool_model()
    path = tmp_path / "m.npz"
    sn.save_model(model, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        sn.save_model(model, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind


def test_unserialisable_metadata_is_refused_before_writing(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(sn.SparsenetError, match="JSON"):
        sn.save_model(Sequential(Linear(2, 2)), path, metadata={"x": object()})
    assert not path.exists()


def _rewrite(path, mutate):
    """Load every array of a model file, let `mutate(arrays)` edit them, write them back."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _edit_manifest(edit):
    def mutate(arrays):
        manifest = json.loads(arrays["__manifest__"].tobytes())
        edit(manifest)
        arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    return mutate


def _set(key, fn):
    def mutate(arrays):
        arrays[key] = fn(arrays[key])
    return mutate


CORRUPTIONS = {
    "index out of range": (_set("layers.5.weight.indices", lambda a: np.full_like(a, 200)), "indices"),
    "indptr not monotone": (_set("layers.5.weight.indptr", lambda a: a[::-1].copy()), "indptr"),
    "missing array": (lambda arrays: arrays.pop("layers.5.weight.indptr"), "missing array"),
    "wrong data dtype": (_set("layers.5.weight.data", lambda a: a.astype(np.int32)), "dtype"),
    "NaN weight": (_set("layers.9.weight.data", lambda a: a * np.nan), "finite"),
    "bias length": (_set("layers.5.bias", lambda a: a[:-1]), "bias"),
    "BSR overhang nonzero or shape": (_set("layers.0.weight.data", lambda a: a[:, :1]), "blocks"),
    "schema version": (_edit_manifest(lambda m: m.update(schema_version=99)), "schema version 99"),
    "format name": (_edit_manifest(lambda m: m.update(format="other")), "expected format"),
    "unknown layer": (_edit_manifest(lambda m: m["layers"][2].update(kind="Exec")), "unknown layer kind"),
    "shape chain": (_edit_manifest(lambda m: m.update(input_shape=[1, 10, 10])), "do not chain"),
    "bool as int": (_edit_manifest(lambda m: m["layers"][5].update(in_features=True)), "in_features"),
    "manifest not json": (_set("__manifest__", lambda a: np.frombuffer(b"{nope", dtype=np.uint8)), "JSON"),
    "manifest missing": (lambda arrays: arrays.pop("__manifest__"), "__manifest__"),
    "mask dtype": (_set("layers.5.weight.mask", lambda a: a.astype(np.uint8)), "mask should be bool"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_raises_model_file_error(case, tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.npz"
    sn.save_model(model, path)
    mutate, fragment = CORRUPTIONS[case]
    _rewrite(path, mutate)
    with pytest.raises(ModelFileError) as err:
        sn.load(path)
    assert fragment in str(err.value)


@pytest.mark.parametrize("cut", [0, 10, 100, 1000, -200, -22])
def test_truncated_file(cut, tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.npz"
    sn.save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError):
        sn.load(path)


def test_pickled_array_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, __manifest__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="corrupt|pickle|Object"):
        sn.load(path)


def test_declared_size_cap(tmp_path, monkeypatch):
    from sparsenet.io import model_file

    model, _ = _cnn_pool_model()
    path = tmp_path / "m.npz"
    sn.save_model(model, path)
    monkeypatch.setattr(model_file, "MAX_FILE_BYTES", 100)
    with pytest.raises(ModelFileError, match="limit"):
        sn.load(path)
