"""Files written by sparsenet 0.1 (schema 1, .npz) still load, compute as 0.1 computed, and convert
to schema 2 bit for bit.

The layers' own forward and `predict` (the compiled plan: fused bias and activation, dense layers
without BLAS at small sizes) give 0.1's outputs within float rounding: Numba compiles the kernels for
the CPU it runs on, and on another one (AVX-512 against AVX2) a fast-math kernel may sum in another
order. On one machine, a file converted to schema 2 computes bit for bit as the schema 1 file.

``tests/data/v0.1/`` holds files that sparsenet 0.1 wrote (an MLP with a CSR weight and a pinned
mask, a CNN with BSR weights, a float64 MLP, an int8 CNN), the input each was run on and the output
0.1 gave.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.errors import ModelFileError
from sparsenet.io import convert_model, read_manifest
from sparsenet.nn import inference

DATA = Path(__file__).parent / "data" / "v0.1"
NAMES = ["mlp", "cnn", "f64", "int8"]


def _case(name):
    return DATA / f"{name}.npz", np.load(DATA / f"{name}.input.npy"), np.load(DATA / f"{name}.output.npy")


def _computes_as_0_1(model, x, y):
    """The layers' forward and the plan's predict within float rounding of 0.1's output."""
    tol = 1e-12 if y.dtype == np.float64 else 2e-6
    with inference(model):
        np.testing.assert_allclose(model.forward(x), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(model.predict(x), y, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_v1_file_predicts_as_0_1_did(name):
    path, x, y = _case(name)
    assert read_manifest(path)["schema_version_read"] == 1
    _computes_as_0_1(sn.load(path), x, y)


@pytest.mark.parametrize("name", NAMES)
def test_v1_loaded_and_saved_again_is_bit_identical(name, tmp_path):
    path, x, y = _case(name)
    old = sn.load(path)
    sn.save_model(old, tmp_path / "new.safetensors")
    new = sn.load(tmp_path / "new.safetensors")
    assert read_manifest(tmp_path / "new.safetensors")["schema_version_read"] == 2
    _computes_as_0_1(new, x, y)
    with inference(old), inference(new):
        assert np.array_equal(new.forward(x), old.forward(x))
    assert np.array_equal(new.predict(x), old.predict(x))
    assert new.meta == old.meta and new.input_shape == old.input_shape
    for a, b in zip(old.parameters(), new.parameters()):
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
        assert (a.mask is None) == (b.mask is None) and (a.mask is None or np.array_equal(a.mask, b.mask))


def test_convert_rewrites_in_place_and_elsewhere(tmp_path):
    path, x, y = _case("mlp")
    work = tmp_path / "mlp.npz"
    shutil.copy(path, work)
    assert convert_model(work, tmp_path / "mlp.safetensors") == {"from": 1, "to": 2}
    assert convert_model(work, work) == {"from": 1, "to": 2}  # replaced atomically
    assert work.read_bytes() == (tmp_path / "mlp.safetensors").read_bytes()
    _computes_as_0_1(sn.load(work), x, y)
    assert convert_model(work, work) == {"from": 2, "to": 2}


def test_convert_command(tmp_path):
    path, x, y = _case("cnn")
    out = tmp_path / "cnn.safetensors"
    r = subprocess.run([sys.executable, "-m", "sparsenet", "convert", str(path), str(out), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"input": str(path), "output": str(out), "from_schema": 1, "to_schema": 2}
    _computes_as_0_1(sn.load(out), x, y)
    r = subprocess.run([sys.executable, "-m", "sparsenet", "convert", str(tmp_path / "nope.npz"), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_v1_with_another_schema_version_is_refused(tmp_path):
    from sparsenet.io._legacy_v1 import V1File, write_v1

    path, _, _ = _case("f64")
    with V1File(str(path), max_bytes=1 << 30, max_members=100, max_elements=1 << 20) as box:
        manifest = json.loads(box.manifest_bytes(1 << 20))
        arrays = {key: box.read(key) for key in box.members if key != "__manifest__"}
    write_v1(tmp_path / "bad.npz", dict(manifest, schema_version=2), arrays)
    with pytest.raises(ModelFileError, match="holds schema version 1"):
        sn.load(tmp_path / "bad.npz")
    write_v1(tmp_path / "ok.npz", manifest, arrays)  # the test writer itself writes loadable files
    sn.load(tmp_path / "ok.npz")
