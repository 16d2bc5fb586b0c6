"""Fuzzing the model-file loader (schema 2, safetensors): mutated files must load correctly or raise
ModelFileError, never anything else, never a crash, a hang or a silent wrong answer.

Hypothesis draws batches of mutations of a few valid model files: damage to the bytes (truncation,
flipped bytes anywhere, flipped bytes in the header); edits of the contents written back as a
consistent file (manifest values, tensor values such as out-of-range indices, dtypes, shapes,
swapped, dropped or renamed tensors), with the checksums recomputed (a hostile file can be
consistent) or left stale; and edits of the raw header (an entry's dtype, shape or offsets, a
repeated name, non-string metadata, the header length, padding, tensors stored in another order).
Each batch is written to a directory and loaded by ONE subprocess (`model_fuzz.RUNNER`: a segfault
shows as a signal, a hang as a timeout), which prints one line per file. Rules:

- every file gives OK or ModelFileError; a ModelFileError caused by a MemoryError is a failure
  (a small file made the loader try to allocate gigabytes), unless it is a known, reported bug;
- a loaded model predicts finite values on zeros of its input shape, or raises a SparsenetError;
- a file whose bytes were damaged, or whose contents were edited without updating the checksums,
  that still loads gives exactly the predictions of the pristine file (the manifest's and every
  tensor's CRC-32 protect them).

The subprocess runs under a 4 GiB address-space limit. The default run is small and derandomised
(deterministic in CI); ``-m slow`` runs a bigger one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsenet as sn
from helpers import manifest_text
from model_fuzz import (BATCH, BUILDERS, cast_float, cast_int, delete_path, graph_model, json_paths, json_values,
                        judge, LIMITED_LOAD, mlp_model, reshape, run_batch, set_path, set_values)
from sparsenet.errors import ModelFileError

V2_BUILDERS = (*BUILDERS, graph_model)  # the last: a Graph (schema 2 only)
_CODES = {np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
          np.dtype(np.uint16): "U16", np.dtype(np.int16): "I16", np.dtype(np.uint32): "U32",
          np.dtype(np.int32): "I32", np.dtype(np.uint64): "U64", np.dtype(np.int64): "I64",
          np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


@dataclass(frozen=True)
class Base:
    manifest: dict
    tensors: tuple  # ((name, array), ...) in file order


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = []
    for i, build in enumerate(V2_BUILDERS):
        path = tmp_path_factory.mktemp("bases") / f"base{i}.safetensors"
        sn.save_model(build().eval(), path)
        with safe_open(path, framework="np") as f:
            manifest = json.loads(f.metadata()["sparsenet"])
        out.append(Base(manifest, tuple(load_file(path).items())))
    return out


# -- writing a file the way a hostile tool could ---------------------------------------------------
def _crc(blob: bytes) -> int:
    return zlib.crc32(blob) & 0xFFFFFFFF


def serialize(manifest: dict, tensors, *, checksums=True, stale_crc: dict | None = None,
              header_edit=None, order=None, padding: int = 0, manifest_crc: int | None = None,
              align: bool = True) -> bytes:
    """A safetensors file of `tensors` ([(name, array)]) with `manifest` in its metadata.

    `checksums`: recompute the manifest's tensor CRCs (else keep `stale_crc`, the pristine ones);
    `header_edit(header: dict) -> str | None` may edit the header (or return its JSON text);
    `order`: a permutation of the data's storage order; `padding`: trailing spaces in the header,
    then (if `align`) up to a multiple of 8 bytes, as the safetensors package writes it."""
    manifest = json.loads(json.dumps(manifest, allow_nan=True))
    blobs = [(name, _CODES.get(arr.dtype, str(arr.dtype)), list(arr.shape), np.ascontiguousarray(arr).tobytes())
             for name, arr in tensors]
    if checksums:
        manifest["crc32"] = {name: _crc(b) for name, _, _, b in blobs}
    elif stale_crc is not None:
        manifest["crc32"] = stale_crc
    if manifest_crc is not None:
        manifest["manifest_crc32"] = manifest_crc
    header = {"__metadata__": {"sparsenet": manifest_text(manifest, checksum=manifest_crc is None)}}
    storage = order if order is not None else range(len(blobs))
    data, offset = [], 0
    offsets = {}
    for k in storage:
        name, _, _, b = blobs[k]
        offsets[k] = [offset, offset + len(b)]
        data.append(b)
        offset += len(b)
    for k, (name, code, shape, _) in enumerate(blobs):
        header[name] = {"dtype": code, "shape": shape, "data_offsets": offsets[k]}
    edited = header_edit(header) if header_edit is not None else None
    raw = (edited if isinstance(edited, str) else json.dumps(header, allow_nan=True)).encode()
    raw += b" " * padding
    if align:
        raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"".join(data)


# -- mutations ------------------------------------------------------------------------------------
selectors = st.integers(0, 2**16)
fractions = st.floats(0.0, 1.0)
int_values = st.one_of(st.sampled_from([-1, -2**31, 2**31 - 1, 2**15, 2**16, 2**16 - 1, 10**6, 2**62]),
                       st.integers(-3, 70))
float_values = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e38, -3e38, 1e-45, 0.0, 1e300])
dtypes = st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "int64", "uint64", "float16", "float32",
                          "float64", "bool"])
entry_values = st.one_of(
    st.sampled_from(["F32", "F64", "F16", "BF16", "F8_E4M3", "I8", "U8", "I32", "U16", "I64", "BOOL", "C64",
                     "", "f4", None, 3, "U64"]),
    st.sampled_from([[], [0], [1], [3, 4], [2**40, 2], [10**9], [2**62, 4], [-1], [1] * 40, [2**64], "3", None,
                     [0, 8], [8, 0], [1, 2**31], [0, 2**63], [5, 3], [-4, 4], [0, 10**12], [1.5, 2]]),
)
bytes_damage = st.one_of(
    st.tuples(st.just("truncate"), fractions),
    st.tuples(st.just("flip"), st.lists(st.tuples(fractions, st.integers(1, 255)), min_size=1, max_size=6)),
    st.tuples(st.just("header_flip"), st.lists(st.tuples(fractions, st.integers(1, 255)), min_size=1, max_size=3)),
)
edits = st.one_of(
    st.tuples(st.just("manifest_set"), selectors, json_values),
    st.tuples(st.just("manifest_set"), selectors, json_values),  # weighted: the richest target
    st.tuples(st.just("manifest_delete"), selectors),
    st.tuples(st.just("int_values"), selectors, st.lists(st.tuples(fractions, int_values), min_size=1, max_size=3)),
    st.tuples(st.just("float_values"), selectors, st.lists(st.tuples(fractions, float_values), min_size=1, max_size=3)),
    st.tuples(st.just("dtype"), selectors, dtypes),
    st.tuples(st.just("reshape"), selectors, st.sampled_from(["flatten", "lead", "transpose", "shorter", "empty",
                                                              "scalar", "longer"])),
    st.tuples(st.just("swap"), selectors, selectors),
    st.tuples(st.just("drop"), selectors),
    st.tuples(st.just("rename"), selectors, st.sampled_from(["layers.0.weight.data", "layers.1.bias", "layers.99.x",
                                                             "layers.01.bias", "__metadata__", "junk", "",
                                                             "layers.1.weight.indices", "layers.-1.bias"])),
)
header_edits = st.one_of(
    st.tuples(st.just("entry_set"), selectors, st.sampled_from(["dtype", "shape", "data_offsets", "extra"]),
              entry_values),
    st.tuples(st.just("repeat_name"), selectors),
    st.tuples(st.just("metadata_value"), st.sampled_from([1, None, ["x"], {"a": "b"}])),
    st.tuples(st.just("header_length"), st.sampled_from([0, 1, 7, 2**63, 2**64 - 1, -8, 8])),
    st.tuples(st.just("not_object"), st.sampled_from(["[]", "1", '"x"', "{", "{}", '{"__metadata__": {}}',
                                                      '{"__metadata__": {"sparsenet": "\\ud800"}}',
                                                      '{"\\udc00": {"dtype": "F32", "shape": [0], '
                                                      '"data_offsets": [0, 0]}}'])),
)
harmless = st.one_of(st.tuples(st.just("padding"), st.integers(1, 64)),
                     st.tuples(st.just("reorder"), st.randoms(use_true_random=False)))
# (base, ops, recompute checksums?)
cases = st.one_of(
    st.tuples(st.integers(0, len(V2_BUILDERS) - 1), st.lists(bytes_damage, min_size=1, max_size=2), st.just(True)),
    st.tuples(st.integers(0, len(V2_BUILDERS) - 1), st.lists(edits, min_size=1, max_size=3), st.booleans()),
    st.tuples(st.integers(0, len(V2_BUILDERS) - 1), st.lists(edits, min_size=1, max_size=3), st.just(True)),
    st.tuples(st.integers(0, len(V2_BUILDERS) - 1), st.lists(st.one_of(header_edits, harmless), min_size=1, max_size=2),
              st.just(True)),
    st.tuples(st.integers(0, len(V2_BUILDERS) - 1), st.lists(edits, min_size=1, max_size=2).flatmap(
        lambda ops: bytes_damage.map(lambda damage: ops + [damage])), st.booleans()),
)


def _header_edit(op):
    kind = op[0]

    def edit(header):
        names = [k for k in header if k != "__metadata__"]
        if kind == "entry_set" and names:
            entry = header[names[op[1] % len(names)]]
            entry[op[2]] = op[3]
        elif kind == "repeat_name" and names:
            name = names[op[1] % len(names)]
            text = json.dumps(header)
            first = json.dumps({name: header[name]})[1:-1]
            return text[:-1] + ", " + first + "}"
        elif kind == "metadata_value":
            header["__metadata__"]["sparsenet.extra"] = op[1]
        elif kind == "not_object":
            return op[1]
        return None
    return edit


def mutate(base: Base, ops, checksums: bool) -> tuple[bytes, bool, list[str]]:
    """(file bytes, judged as damage?, names of the manifest fields edited)."""
    manifest = json.loads(json.dumps(base.manifest))
    tensors = [(n, a.copy()) for n, a in base.tensors]
    fields, edited, raw_ops, header_ops, order, padding, length = [], False, [], [], None, 0, None
    for op in ops:
        kind = op[0]
        if kind in ("truncate", "flip", "header_flip"):
            raw_ops.append(op)
            continue
        if kind in ("entry_set", "repeat_name", "metadata_value", "not_object"):
            header_ops.append(op)
            continue
        if kind == "padding":
            padding = op[1]
            continue
        if kind == "reorder":
            order = list(range(len(tensors)))
            op[1].shuffle(order)
            continue
        if kind == "header_length":
            length = op[1]
            continue
        edited = True
        if kind in ("manifest_set", "manifest_delete"):
            paths = list(json_paths(manifest))
            path = paths[op[1] % len(paths)]
            fields.extend(str(p) for p in path)
            try:
                manifest = set_path(manifest, path, op[2]) if kind == "manifest_set" else delete_path(manifest, path)
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(manifest, dict):
                manifest = {"not": manifest}
            continue
        if not tensors:
            continue
        i = op[1] % len(tensors)
        name, arr = tensors[i]
        new = None
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN -> int casts and the like: wanted here
            if kind == "int_values":
                new = set_values(op[2], cast_int)(arr)
            elif kind == "float_values":
                new = set_values(op[2], cast_float)(arr)
            elif kind == "dtype":
                new = arr.astype(op[2])
            elif kind == "reshape":
                new = reshape(op[2])(arr)
        if new is not None:
            tensors[i] = (name, np.asarray(new))
        elif kind == "swap":
            j = op[2] % len(tensors)
            tensors[i], tensors[j] = (name, tensors[j][1]), (tensors[j][0], arr)
        elif kind == "drop":
            tensors.pop(i)
        elif kind == "rename" and op[2] not in {n for n, _ in tensors}:
            tensors[i] = (op[2], arr)
    if order is not None and len(order) != len(tensors):
        order = None
    stale = None if checksums else base.manifest["crc32"]
    manifest_crc = None if checksums else base.manifest["manifest_crc32"]  # stale: the pristine manifest's
    edit = None
    if header_ops:
        def edit(header, ops=header_ops):
            text = None
            for op in ops:
                out = _header_edit(op)(header)
                text = out if isinstance(out, str) else text
            return text
    data = serialize(manifest, tensors, checksums=checksums, stale_crc=stale, header_edit=edit, order=order,
                     padding=padding, manifest_crc=manifest_crc)
    if length is not None:
        data = (length % 2**64).to_bytes(8, "little") + data[8:]
    header_end = 8 + int.from_bytes(data[:8], "little")
    for op in raw_ops:
        if op[0] == "truncate":
            data = data[:int(op[1] * len(data))]
        elif data:
            data = bytearray(data)
            span = len(data) if op[0] == "flip" else min(header_end, len(data))
            for frac, x in op[1]:
                data[min(int(frac * span), span - 1)] ^= x
            data = bytes(data)
    damaged = bool(raw_ops) or (edited and not checksums)
    return data, damaged, fields


def check_batch(bases, batch):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files, info = [], {}
        for k in range(len(bases)):  # the pristine files (as the fuzzer writes them), for the reference
            name = f"pristine{k}.safetensors"
            (d / name).write_bytes(mutate(bases[k], [], True)[0])
            files.append(d / name)
        for n, (which, ops, checksums) in enumerate(batch):
            data, damaged, fields = mutate(bases[which], ops, checksums)
            name = f"m{n:03d}.safetensors"
            (d / name).write_bytes(data)
            files.append(d / name)
            info[name] = (which, ops, damaged, fields)
        results = run_batch(files, d)
    judge(info, results, {k: results[f"pristine{k}.safetensors"] for k in range(len(bases))})
    return results


def test_the_fuzzer_writes_what_save_model_writes(bases, tmp_path):
    """Its serializer is a faithful safetensors writer: the pristine files load and predict as saved,
    and the safetensors package reads them."""
    from safetensors.numpy import load_file

    for k, build in enumerate(V2_BUILDERS):
        model = build().eval()
        path = tmp_path / f"{k}.safetensors"
        path.write_bytes(mutate(bases[k], [], True)[0])
        assert set(load_file(path)) == {n for n, _ in bases[k].tensors}
        loaded = sn.load(path)
        dtype = sn.nn.model_dtype(loaded)
        x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(dtype)
        assert np.array_equal(sn.predict(loaded, x), sn.predict(model, x))


@settings(settings.get_profile("fuzz-ci"))
@given(st.lists(cases, min_size=BATCH, max_size=BATCH))
def test_mutated_files_load_or_raise_model_file_error(bases, batch):
    check_batch(bases, batch)


@pytest.mark.slow
@settings(settings.get_profile("fuzz-slow"))
@given(st.lists(cases, min_size=BATCH, max_size=BATCH))
def test_mutated_files_load_or_raise_model_file_error_slow(bases, batch):
    check_batch(bases, batch)


# -- targeted cases ---------------------------------------------------------------------------------
X = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def mlp(bases):
    return bases[0], sn.predict(mlp_model().eval(), X)


def _load_error(path) -> str:
    with pytest.raises(ModelFileError) as err:
        sn.load(path)
    return str(err.value)


def _file(tmp_path, base, **kw) -> Path:
    path = tmp_path / "m.safetensors"
    path.write_bytes(serialize(base.manifest, base.tensors, **kw))
    return path


def _with(base, name, arr):
    return [(n, arr if n == name else a) for n, a in base.tensors]


@pytest.mark.parametrize("shape", [[10**9], [2**40, 2**20], [2**20, 2**20, 2**20]])
def test_header_cannot_request_gigabytes_from_a_tiny_file(mlp, tmp_path, shape):
    """An entry claiming gigabytes that the file does not hold, under a 2 GiB address-space limit."""
    base, _ = mlp

    def edit(header):
        header["layers.1.bias"]["shape"] = shape
        n = int(np.prod(shape, dtype=object)) * 4
        header["layers.1.bias"]["data_offsets"] = [header["layers.1.bias"]["data_offsets"][0],
                                                   header["layers.1.bias"]["data_offsets"][0] + n]
    names = [n for n, _ in base.tensors]
    last = [i for i, n in enumerate(names) if n != "layers.1.bias"] + [names.index("layers.1.bias")]
    path = _file(tmp_path, base, header_edit=edit, order=last)  # stored last: its bytes would run past the end
    r = subprocess.run([sys.executable, "-c", LIMITED_LOAD, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "layers.1.bias" in r.stdout and "MemoryError" not in r.stdout, r.stdout


def test_huge_header_length_is_refused_before_reading(mlp, tmp_path):
    base, _ = mlp
    path = _file(tmp_path, base)
    path.write_bytes((2**62).to_bytes(8, "little") + path.read_bytes()[8:])
    assert "more than the limit" in _load_error(path)


@pytest.mark.parametrize("code", ["BF16", "F8_E4M3", "C64", "OBJ", "x"])
def test_unsupported_dtypes_are_refused(mlp, tmp_path, code):
    base, _ = mlp
    path = _file(tmp_path, base, header_edit=lambda h: h["layers.1.bias"].update(dtype=code))
    msg = _load_error(path)
    assert "layers.1.bias" in msg and "not supported" in msg


@pytest.mark.parametrize("offsets, fragment", [([0, 0], "needs"), ("hole", "hole"), ("overlap", "overlaps"),
                                               ([5, 3], "increasing")])
def test_offsets_must_tile_the_data(mlp, tmp_path, offsets, fragment):
    base, _ = mlp

    def edit(header):
        entries = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
        (b0, e0), first = entries[0]
        (b1, e1), second = entries[1]
        if offsets == "hole":  # the second tensor moved one element on: a gap before it
            header[first]["dtype"], header[first]["shape"] = "U8", [e0 - b0 - 4]
            header[first]["data_offsets"] = [b0, e0 - 4]
        elif offsets == "overlap":
            header[second]["data_offsets"] = [b1 - 4, e1 - 4]
        else:
            header[first]["data_offsets"] = offsets
    assert fragment in _load_error(_file(tmp_path, base, header_edit=edit))


def test_misaligned_tensors_are_copied_aligned(mlp, tmp_path):
    """A writer may leave the header unpadded, so that every tensor starts at an odd byte: the loader
    gives kernels aligned, native arrays and the same predictions."""
    base, expected = mlp
    for padding in range(1, 9):
        path = _file(tmp_path, base, align=False, padding=padding)
        if (8 + int.from_bytes(path.read_bytes()[:8], "little")) % 2 == 1:
            break
    assert (8 + int.from_bytes(path.read_bytes()[:8], "little")) % 2 == 1
    loaded = sn.load(path)
    assert np.array_equal(sn.predict(loaded, X), expected)
    for p in loaded.parameters():
        assert p.data.flags.aligned and p.data.dtype.isnative
    w = loaded.layers[1].weight
    assert w.data.flags.aligned and w.indices.flags.aligned and w.indptr.flags.aligned


def test_bool_bytes_other_than_0_1_are_normalised(mlp, tmp_path):
    base, expected = mlp
    mask = dict(base.tensors)["layers.1.weight.mask"]
    sevens = mask.view(np.uint8) * 7  # bytes a foreign writer could store as BOOL
    tensors = _with(base, "layers.1.weight.mask", sevens)
    path = _file(tmp_path, Base(base.manifest, tuple(tensors)),
                 header_edit=lambda h: h["layers.1.weight.mask"].update(dtype="BOOL"))
    loaded = sn.load(path)
    got = loaded.layers[1].weight_param.mask
    assert got.dtype == np.bool_ and np.array_equal(got.view(np.uint8), mask.view(np.uint8))
    assert np.array_equal(sn.predict(loaded, X), expected)


def test_repeated_names_are_refused(mlp, tmp_path):
    base, _ = mlp
    path = _file(tmp_path, base, header_edit=_header_edit(("repeat_name", 0)))
    assert "appears more than once" in _load_error(path)


def test_stray_array_under_a_layer_is_refused(mlp, tmp_path):
    base, _ = mlp
    manifest = json.loads(json.dumps(base.manifest))
    manifest["layers"][1]["bias"] = False  # the bias tensor stays in the file
    msg = _load_error(_file(tmp_path, Base(manifest, base.tensors)))
    assert "layer 1" in msg and "['bias']" in msg and "do not belong" in msg


@pytest.mark.parametrize("cap, value, fragment", [("MAX_MANIFEST_BYTES", 100, "manifest"),
                                                   ("MAX_ARRAYS", 3, "tensors"), ("MAX_LAYERS", 2, "layers"),
                                                   ("MAX_FILE_BYTES", 1000, "SPARSENET_MAX_MODEL_BYTES"),
                                                   ("MAX_ARRAY_ELEMENTS", 100, "elements"),
                                                   ("MAX_INPUT_ELEMENTS", 63, "values per sample"),
                                                   ("_MAX_CHECK_VALUES", 64 * 6, "load-time check")])
def test_caps(mlp, tmp_path, monkeypatch, cap, value, fragment):
    from sparsenet.io import model_file

    base, _ = mlp
    path = _file(tmp_path, base)
    monkeypatch.setattr(model_file, cap, value)
    msg = _load_error(path)
    assert f"limit {value}" in msg and fragment in msg


def test_huge_input_shape_is_refused_before_allocating(mlp, tmp_path):
    base, _ = mlp
    manifest = dict(base.manifest, input_shape=[1, 10**6, 10**6])
    assert "values per sample" in _load_error(_file(tmp_path, Base(manifest, base.tensors)))


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(schema_version=3), "newer than this sparsenet"),
    (lambda m: m.update(schema_version="2"), "schema version '2' is not supported"),
    (lambda m: m.update(schema_version=0), "schema version 0 is not supported"),
    (lambda m: m["layers"][2].update(eps=float("nan")), "NaN is not allowed"),
    (lambda m: m["layers"][2].update(eps=float("inf")), "Infinity is not allowed"),
    (lambda m: m["layers"][3].update(negative_slope=10**30), "does not fit in 64 bits"),
    (lambda m: m.update(input_shape=[1, 8, 2**70]), "does not fit in 64 bits"),
    (lambda m: m.update(crc32=[1, 2]), "'crc32' should map"),
    (lambda m: m["crc32"].update({"layers.1.bias": "12"}), "'crc32' should map"),
    (lambda m: m["crc32"].update({"layers.1.bias": 1 << 32}), "'crc32' should map"),
    (lambda m: m.update(metadata=[1, 2]), "'metadata' should be an object"),
    (lambda m: m["crc32"].pop("layers.1.bias"), "has no checksum"),
    (lambda m: m["crc32"].update({"layers.7.bias": 1}), "does not hold"),
])
def test_manifest_values(mlp, tmp_path, edit, fragment):
    base, _ = mlp
    manifest = json.loads(json.dumps(base.manifest))
    edit(manifest)
    assert fragment in _load_error(_file(tmp_path, Base(manifest, base.tensors), checksums=False,
                                         stale_crc=manifest["crc32"]))


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "\ud800", '{"a": "\udfff"}',
                                  '{"a": 1' + "0" * 5000 + "}", "1e999",
                                  '{"format": "sparsenet-model", "schema_version": 2, "layers": {}}',
                                  '{"format": "sparsenet-model", "schema_version": 2, "layers": [], "crc32": 1}'])
def test_hostile_manifest_json(mlp, tmp_path, text):
    base, _ = mlp

    def edit(header):  # a JSON object gets a valid checksum: the checks after it must refuse it
        doc = json.loads(text) if text.startswith("{") and text.endswith("}") and "0" * 50 not in text else None
        header["__metadata__"] = {"sparsenet": manifest_text(doc) if isinstance(doc, dict) else text}
    msg = _load_error(_file(tmp_path, base, header_edit=edit))
    assert "manifest" in msg or "expected format" in msg


def test_load_caches_nothing_on_the_layers(mlp, tmp_path):
    base, _ = mlp
    loaded = sn.load(_file(tmp_path, base))
    assert all(getattr(layer, "_xt", None) is None for layer in loaded.layers)
