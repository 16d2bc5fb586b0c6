"""Model files: bit-exact round trips, atomic saves, and a clear ModelFileError for every corruption."""

import json
import os

import numpy as np
import pytest

import sparsenet as sn
from helpers import manifest_text, read_model_file, rewrite_model_file
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
    path = tmp_path / "m.safetensors"
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
    sn.save_model(model, tmp_path / "m.safetensors")
    loaded = sn.load(tmp_path / "m.safetensors")
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
    sn.save_model(m, tmp_path / "m.safetensors")
    assert sn.load(tmp_path / "m.safetensors")[0].weight.dtype == np.float64


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    from sparsenet.io import model_file

    model, _ = _cnn_pool_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    before = path.read_bytes()

    def boom(f, tensors, metadata):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(model_file, "write_safetensors", boom)
    with pytest.raises(OSError, match="disk full"):
        sn.save_model(model, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind


def test_unserialisable_metadata_is_refused_before_writing(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(sn.SparsenetError, match="JSON"):
        sn.save_model(Sequential(Linear(2, 2)), path, metadata={"x": object()})
    assert not path.exists()


def test_file_is_plain_safetensors(tmp_path):
    """Any safetensors reader lists and reads the arrays; the manifest is in the header's metadata."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    tensors = load_file(path)
    assert np.array_equal(tensors["layers.5.weight.indices"], model[5].weight.indices)
    assert tensors["layers.5.weight.mask"].dtype == np.bool_
    with safe_open(path, framework="np") as f:
        manifest = json.loads(f.metadata()["sparsenet"])
    assert manifest["schema_version"] == 2 and manifest["format"] == "sparsenet-model"
    assert set(manifest["crc32"]) == set(tensors) and type(manifest["manifest_crc32"]) is int


def test_same_model_same_bytes(tmp_path):
    model, _ = _every_layer_model()
    sn.save_model(model, tmp_path / "a.safetensors")
    sn.save_model(model, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_strided_arrays_are_written_as_their_values(tmp_path):
    """safetensors.numpy.save alone writes a strided view's buffer, not its values."""
    import io

    from safetensors.numpy import load

    from sparsenet.io._safetensors import write_safetensors

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    buf = io.BytesIO()
    write_safetensors(buf, {"cols": a[:, :-1], "t": a.T, "step": a[::2]}, {})
    back = load(buf.getvalue())
    assert np.array_equal(back["cols"], a[:, :-1]) and np.array_equal(back["t"], a.T)
    assert np.array_equal(back["step"], a[::2])


def test_load_maps_weights_without_copying(tmp_path):
    """Weights are views of the memory-mapped file; writing to them (training) leaves the file as it was."""
    import mmap

    model, x = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    before = path.read_bytes()
    loaded = sn.load(path)

    def mapped(a):
        while isinstance(a, np.ndarray) and a.base is not None:
            a = a.base
        return isinstance(a, memoryview) and isinstance(a.obj, mmap.mmap)

    w = loaded[5].weight
    assert mapped(w.data) and mapped(w.indices) and mapped(w.indptr) and mapped(loaded[9].weight.data)
    assert w.data.flags.writeable and w.data.flags.aligned
    w.data[:] = 0  # copy-on-write: a private page for this process
    assert path.read_bytes() == before
    assert not np.array_equal(sn.predict(loaded, x), sn.predict(sn.load(path), x))


def test_load_without_mmap_reads_the_file_into_memory(tmp_path):
    model, x = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    loaded = sn.load(path, mmap=False)
    path.write_bytes(b"")  # rewritten in place: a mapped model would now fault; this one is unaffected
    w = loaded[5].weight.data
    while isinstance(w, np.ndarray) and w.base is not None:
        w = w.base
    assert isinstance(getattr(w, "obj", w), bytearray)
    assert np.array_equal(sn.predict(loaded, x), sn.predict(model, x))


def test_tensors_foreign_to_the_manifest_are_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"embeddings": np.zeros(3, np.float32)}, path)
    with pytest.raises(ModelFileError, match="without sparsenet's manifest"):
        sn.load(path)


def _edit_manifest(edit):
    return lambda arrays, manifest: edit(manifest)


def _set(key, fn):
    def mutate(arrays, manifest):
        arrays[key] = fn(arrays[key])
    return mutate


def _pop(key):
    return lambda arrays, manifest: arrays.pop(key)


CORRUPTIONS = {
    "index out of range": (_set("layers.5.weight.indices", lambda a: np.full_like(a, 200)), "indices"),
    "indptr not monotone": (_set("layers.5.weight.indptr", lambda a: a[::-1].copy()), "indptr"),
    "missing array": (_pop("layers.5.weight.indptr"), "missing array"),
    "wrong data dtype": (_set("layers.5.weight.data", lambda a: a.astype(np.int32)), "dtype"),
    "NaN weight": (_set("layers.9.weight.data", lambda a: a * np.nan), "finite"),
    "bias length": (_set("layers.5.bias", lambda a: a[:-1]), "bias"),
    "BSR overhang nonzero or shape": (_set("layers.0.weight.data", lambda a: a[:, :1].copy()), "blocks"),
    "schema version": (_edit_manifest(lambda m: m.update(schema_version=99)), "schema version 99"),
    "schema 1 in safetensors": (_edit_manifest(lambda m: m.update(schema_version=1)), "holds schema version 2"),
    "format name": (_edit_manifest(lambda m: m.update(format="other")), "expected format"),
    "unknown layer": (_edit_manifest(lambda m: m["layers"][2].update(kind="Exec")), "unknown layer kind"),
    "shape chain": (_edit_manifest(lambda m: m.update(input_shape=[1, 10, 10])), "do not chain"),
    "bool as int": (_edit_manifest(lambda m: m["layers"][5].update(in_features=True)), "in_features"),
    "mask dtype": (_set("layers.5.weight.mask", lambda a: a.astype(np.uint8)), "mask should be bool"),
    "tensor of no layer": (lambda arrays, m: arrays.update({"layers.99.weight.data": np.zeros(2, np.float32)}),
                           "does not belong"),
    "stray array": (lambda arrays, m: arrays.update({"layers.1.extra": np.zeros(2, np.float32)}), "do not belong"),
    "bad tensor name": (lambda arrays, m: arrays.update({"../etc": np.zeros(2, np.float32)}), "does not belong"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_raises_model_file_error(case, tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    mutate, fragment = CORRUPTIONS[case]
    rewrite_model_file(path, mutate)
    with pytest.raises(ModelFileError) as err:
        sn.load(path)
    assert fragment in str(err.value)


@pytest.mark.parametrize("cut", [0, 7, 8, 10, 100, 1000, -200, -1])
def test_truncated_file(cut, tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError):
        sn.load(path)


def test_flipped_data_byte_fails_its_checksum(tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="is corrupt"):
        sn.load(path)


def test_edited_manifest_without_checksum_update_is_refused(tmp_path):
    from safetensors.numpy import save

    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    manifest, arrays = read_model_file(path)
    manifest["layers"][1]["eps"] = 0.5  # a BatchNorm's epsilon: a silently different model
    path.write_bytes(save(arrays, metadata={"sparsenet": manifest_text(manifest, checksum=False)}))
    with pytest.raises(ModelFileError, match="manifest is corrupt"):
        sn.load(path)


def test_edited_tensor_without_checksum_update_is_refused(tmp_path):
    model, _ = _every_layer_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    rewrite_model_file(path, _set("layers.9.weight.data", lambda a: a * 2), checksums=False)
    with pytest.raises(ModelFileError, match="'layers.9.weight.data' is corrupt"):
        sn.load(path)


def test_pickle_and_other_files_are_refused(tmp_path):
    import pickle

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="not a sparsenet model"):
        sn.load(path)
    path = tmp_path / "p.npz"  # a 0.1-style container whose manifest needs pickle
    np.savez(path, __manifest__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="corrupt|pickle|Object"):
        sn.load(path)
    with pytest.raises(ModelFileError, match="not found"):
        sn.load(tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError, match="cannot be read"):
        sn.load(tmp_path)


@pytest.mark.parametrize("cap, value, fragment", [("MAX_FILE_BYTES", 100, "SPARSENET_MAX_MODEL_BYTES"),
                                                  ("MAX_ARRAYS", 3, "tensors"),
                                                  ("MAX_ARRAY_ELEMENTS", 10, "elements"),
                                                  ("MAX_MANIFEST_BYTES", 50, "manifest"),
                                                  ("_MAX_HEADER_BYTES", 50, "header")])
def test_caps(cap, value, fragment, tmp_path, monkeypatch):
    from sparsenet.io import model_file

    model, _ = _cnn_pool_model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    monkeypatch.setattr(model_file, cap, value)
    with pytest.raises(ModelFileError, match="limit") as err:
        sn.load(path)
    assert fragment in str(err.value)
