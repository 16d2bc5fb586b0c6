"""Model files: one self-describing ``.npz`` (a zip of ``.npy`` arrays) holding a JSON manifest and
every layer's arrays. No pickle, no code on load.

Layout: member ``__manifest__.npy`` (uint8 bytes of UTF-8 JSON: format name, schema version, sparsenet
version, input shape, layer specs, metadata) and members ``layers.<i>.<array>.npy``.
Saving writes a temporary file in the target directory and renames it over the target: a failed
save leaves any previous file intact.

Loading treats the file as hostile. Before anything is read: the declared uncompressed sizes of all
members (``MAX_FILE_BYTES``), the number of members (``MAX_ARRAYS``) and the manifest's size
(``MAX_MANIFEST_BYTES``) are capped; only stored or deflated members are accepted (no bzip2/lzma,
whose decompressors cannot be bounded); a name used twice is refused. Each ``.npy`` header is parsed
on its own, through the zip stream, before its data: version 1.0 or 2.0, a header of at most
``_MAX_HEADER_BYTES``, a plain bool/integer/float dtype (never object), every dimension and the
element count at most ``MAX_ARRAY_ELEMENTS``, and a data size equal to what the member holds, so a
tiny file cannot request gigabytes. Data is read in bounded chunks and to the end of the member (the
zip CRC is then verified). Arrays come back C-ordered, native-endian and writable; bools are
normalised to 0/1. Members whose names are not ``__manifest__.npy`` or ``layers.<i>.<name>.npy``
for a layer ``i`` of the manifest are ignored and never opened; a layer's own arrays must be exactly
those the decoded layer would save. The manifest's JSON may not hold NaN/Infinity, and integers in
layer specs must fit in 64 bits. The rebuilt model must chain on a zero sample of its declared input
shape (at most ``MAX_INPUT_ELEMENTS`` values; layers x values bounded so that this check stays short)
and give finite output there. Every failure, whatever its cause, is a `ModelFileError` naming the
file and the member or layer.

Schema versions: ``schema_version`` is an integer, bumped on any change that an older reader would
misread (a renamed field or array, a new required field, a changed meaning); manifest fields that an
older reader may ignore do not (a new array does: readers refuse arrays a layer does not save). Only
version 1 exists. A reader refuses versions newer than its own with a message naming both (upgrade
sparsenet). When version 2 appears, reading version 1 stays supported through a migration step
``_migrate_1_to_2(manifest, names) -> (manifest, names)`` applied after the container checks and
before any layer is decoded, one step per version, so the decoders in `layers.py` only ever see the
current schema; writers always write the current version.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile

import numpy as np

from ..errors import ModelFileError, SparsenetError
from ..nn import Sequential
from ..nn.module import no_grad
from .atomic import atomic_writer
from .layers import decode_layer, encode_layer

__all__ = ["save_model", "load_model", "read_manifest", "SCHEMA_VERSION", "MAX_FILE_BYTES", "MAX_MANIFEST_BYTES",
           "MAX_ARRAYS", "MAX_ARRAY_ELEMENTS", "MAX_LAYERS", "MAX_INPUT_ELEMENTS"]

FORMAT_NAME = "sparsenet-model"
SCHEMA_VERSION = 1
# A file may not declare more than this many uncompressed bytes (guards against zip bombs and
# headers that request gigabytes); override with SPARSENET_MAX_MODEL_BYTES.
MAX_FILE_BYTES = int(os.environ.get("SPARSENET_MAX_MODEL_BYTES", 8 << 30))
MAX_MANIFEST_BYTES = 16 << 20  # the JSON manifest (a real one is a few kB)
MAX_ARRAYS = 100_000  # zip members of any kind
MAX_ARRAY_ELEMENTS = 1 << 34  # per array, and per dimension (also bounded by MAX_FILE_BYTES)
MAX_LAYERS = 100_000
MAX_INPUT_ELEMENTS = 1 << 24  # one sample of the declared input shape (the load-time check allocates it)
_MAX_CHECK_VALUES = 1 << 32  # layers x values per sample: bounds the time of the load-time check pass
_MAX_HEADER_BYTES = 10_000  # numpy's own limit for .npy headers parsed without trusting the file
_MAX_JSON_INT = (1 << 63) - 1
_CHUNK = 1 << 24
_MANIFEST = "__manifest__"
_LAYER_MEMBER = re.compile(r"layers\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_DTYPE_KINDS = "biuf"


def save_model(model: Sequential, path, metadata: dict | None = None) -> None:
    """Write `model` to `path` atomically (temporary file + rename).

    `metadata` must be JSON-serialisable; it is stored with the model (and `model.meta` is merged in).
    """
    from .. import __version__

    if not isinstance(model, Sequential):
        raise SparsenetError(f"save_model: expected a Sequential, found {type(model).__name__}")
    layers, arrays = [], {}
    for i, layer in enumerate(model.layers):
        spec, arrs = encode_layer(layer)
        layers.append(spec)
        arrays.update({f"layers.{i}.{k}": np.ascontiguousarray(v) for k, v in arrs.items()})
    meta = dict(getattr(model, "meta", {}) or {})
    meta.update(metadata or {})
    manifest = {
        "format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "sparsenet_version": __version__,
        "input_shape": list(model.input_shape) if getattr(model, "input_shape", None) else None,
        "layers": layers, "metadata": meta,
    }
    try:
        blob = json.dumps(manifest, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise SparsenetError(f"save_model: metadata is not JSON-serialisable: {e}") from None
    arrays[_MANIFEST] = np.frombuffer(blob, dtype=np.uint8)
    with atomic_writer(path) as f:
        np.savez(f, **arrays)


class _Container:
    """The members of one model file, checked as a zip before anything is read; arrays read on demand.

    `members` maps array keys (member names without ``.npy``) to their ZipInfo; other members are
    left out and never opened.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise ModelFileError(f"model file {path!r}: not found")
        try:
            self.zf = zipfile.ZipFile(path)
            infos = self.zf.infolist()
        except Exception as e:  # BadZipFile, OSError, EOFError, struct errors... on a damaged container
            raise ModelFileError(f"model file {path!r}: not a sparsenet model (unreadable zip container: "
                                 f"{type(e).__name__}: {e})") from None
        try:
            self._index(infos)
        except BaseException:
            self.zf.close()
            raise

    def _index(self, infos) -> None:
        path = self.path
        if len(infos) > MAX_ARRAYS:
            raise ModelFileError(f"model file {path!r}: holds {len(infos)} members, more than the limit {MAX_ARRAYS}")
        declared = sum(i.file_size for i in infos)
        if declared > MAX_FILE_BYTES:
            raise ModelFileError(f"model file {path!r}: declares {declared} bytes of arrays, more than the "
                                 f"limit {MAX_FILE_BYTES} (SPARSENET_MAX_MODEL_BYTES)")
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                continue
            key = name[:-4]
            if key != _MANIFEST and not _LAYER_MEMBER.fullmatch(key):
                continue
            if key in self.members:
                raise ModelFileError(f"model file {path!r}: member {name!r} appears more than once")
            self.members[key] = info

    def close(self) -> None:
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def layer_keys(self, i: int) -> dict[str, str]:
        """{array name: member key} of layer `i`."""
        prefix = f"layers.{i}."
        return {k[len(prefix):]: k for k in self.members if k.startswith(prefix)}

    def read(self, key: str, max_bytes: int | None = None) -> np.ndarray:
        """Array `key`, after its .npy header has been checked against the caps and the member's size."""
        if key not in self.members:
            raise ModelFileError(f"model file {self.path!r}: missing array {key!r}")
        info = self.members[key]
        where = f"model file {self.path!r}: array {key!r}"
        if max_bytes is not None and info.file_size > max_bytes:
            raise ModelFileError(f"{where}: declares {info.file_size} bytes, more than the limit {max_bytes}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{where}: compression method {info.compress_type} is not supported "
                                 f"(expected stored or deflated)")
        try:
            with self.zf.open(info) as f:
                return _read_npy(f, info.file_size, where)
        except ModelFileError:
            raise
        except Exception as e:  # bad CRC, truncated member, encrypted entry, unparsable header...
            raise ModelFileError(f"{where} is corrupt ({type(e).__name__}: {e})") from None


def _read_exact(f, n: int, what: str) -> bytes:
    parts, left = [], n
    while left > 0:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            raise ModelFileError(f"{what}: truncated ({n - left} of {n} bytes)")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_npy(f, member_size: int, where: str) -> np.ndarray:
    """One .npy stream of `member_size` bytes -> a C-ordered, native-endian, writable array."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ModelFileError(f"{where}: .npy format version {version[0]}.{version[1]} is not supported "
                             f"(expected 1.0 or 2.0)")
    size_field = _read_exact(f, 2 if version == (1, 0) else 4, where)
    header_len = int.from_bytes(size_field, "little")
    if header_len > _MAX_HEADER_BYTES:
        raise ModelFileError(f"{where}: .npy header of {header_len} bytes, more than the limit {_MAX_HEADER_BYTES}")
    header = io.BytesIO(size_field + _read_exact(f, header_len, where))
    reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = reader(header, max_header_size=_MAX_HEADER_BYTES)
    if dtype.hasobject:
        raise ModelFileError(f"{where}: dtype {dtype} holds Python objects (that would need pickle); refused")
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelFileError(f"{where}: expected a bool, integer or float array, found dtype {dtype}")
    if len(shape) > 32 or not all(type(s) is int and s >= 0 for s in shape):
        raise ModelFileError(f"{where}: shape {shape} is not a valid array shape (at most 32 non-negative sizes)")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS or any(s > MAX_ARRAY_ELEMENTS for s in shape):
        raise ModelFileError(f"{where}: shape {shape} ({count} elements) is more than the limit "
                             f"{MAX_ARRAY_ELEMENTS} per array and per dimension")
    nbytes = count * dtype.itemsize
    data_bytes = member_size - (len(npy.MAGIC_PREFIX) + 2 + len(size_field) + header_len)
    if nbytes != data_bytes:
        raise ModelFileError(f"{where}: header declares {dtype} {shape} ({nbytes} bytes) but the member "
                             f"holds {data_bytes} bytes of data")
    buf = bytearray()  # grown as data arrives: a member that only claims a size allocates nothing
    while len(buf) < nbytes:
        chunk = f.read(min(nbytes - len(buf), _CHUNK))
        if not chunk:
            raise ModelFileError(f"{where}: truncated ({len(buf)} of {nbytes} bytes of data)")
        buf += chunk
    if f.read(1):  # reading to the end also makes zipfile verify the CRC
        raise ModelFileError(f"{where}: trailing bytes after the array data")
    if dtype.kind == "b":
        arr = np.frombuffer(buf, dtype=np.uint8, count=count) != 0  # any nonzero byte is True, stored as 1
    else:
        arr = np.frombuffer(buf, dtype=dtype, count=count)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    native = arr.dtype.newbyteorder("=")
    if arr.dtype != native or not arr.flags.c_contiguous or not arr.flags.writeable:
        arr = np.ascontiguousarray(arr, dtype=native)
    return arr


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _check_ints(value, where: str) -> None:
    """Every integer in a JSON value fits in 64 bits (iteratively: no recursion on deep nesting)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > _MAX_JSON_INT:
            raise ModelFileError(f"{where}: integer {v} does not fit in 64 bits")


def _manifest(box: _Container) -> dict:
    path = box.path
    raw = box.read(_MANIFEST, MAX_MANIFEST_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"model file {path!r}: manifest should be 1-D uint8 bytes, found {raw.dtype} {raw.shape}")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"), parse_float=_finite_float,
                              parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, huge ints, NaN...
        raise ModelFileError(f"model file {path!r}: manifest is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"model file {path!r}: expected format {FORMAT_NAME!r}, found {found!r}")
    version = manifest.get("schema_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"model file {path!r}: schema version {version!r} is not supported "
                             f"(expected an integer; this sparsenet reads version {SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise ModelFileError(f"model file {path!r}: schema version {version} is not supported: the file is "
                             f"newer than this sparsenet, which reads version {SCHEMA_VERSION} (upgrade sparsenet)")
    # version < SCHEMA_VERSION cannot happen yet: version 1 is the first (see the module docstring)
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ModelFileError(f"model file {path!r}: manifest field 'layers' should be a list")
    if len(layers) > MAX_LAYERS:
        raise ModelFileError(f"model file {path!r}: {len(layers)} layers, more than the limit {MAX_LAYERS}")
    _check_ints(layers, f"model file {path!r}: manifest field 'layers'")
    _check_ints(manifest.get("input_shape"), f"model file {path!r}: manifest field 'input_shape'")
    return manifest


def read_manifest(path) -> dict:
    """The JSON manifest of a model file (validated for format and version), without building layers."""
    with _Container(os.fspath(path)) as box:
        return _manifest(box)


def _decode(spec, arrays, where):
    """Rebuild one layer; then its arrays in the file must be exactly those the layer would save (a
    stray array, e.g. a bias under a spec saying bias=false, means spec and arrays disagree)."""
    try:
        layer = decode_layer(spec, arrays, where)
        expected = set(encode_layer(layer)[1])
    except SparsenetError:
        raise
    except Exception as e:  # a gap in a decoder or constructor must still surface as a file error
        raise ModelFileError(f"{where}: cannot be built ({type(e).__name__}: {e})") from None
    stray = sorted(set(arrays) - expected)
    if stray:
        raise ModelFileError(f"{where} ({type(layer).__name__}): arrays {stray} do not belong to the layer its "
                             f"spec describes (expected {sorted(expected)})")
    return layer


def _input_shape(manifest, path):
    shape = manifest.get("input_shape")
    if shape is None:
        return None
    if not (isinstance(shape, list) and shape and all(type(s) is int and s > 0 for s in shape)):
        raise ModelFileError(f"model file {path!r}: input_shape should be positive integers, found {shape!r}")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"model file {path!r}: input_shape {shape} has {math.prod(shape)} values per sample, "
                             f"more than the limit {MAX_INPUT_ELEMENTS}")
    return tuple(shape)


def _check_chain(model, layers, shape, path) -> None:
    """One zero sample through the model: layers that do not chain fail here, not at first use."""
    dtype = next((l.dtype for l in layers if hasattr(l, "dtype")), np.float32)
    try:
        with no_grad():  # nothing of this pass stays cached on the layers
            out = model.eval().forward(np.zeros((1, *shape), dtype=dtype))
    except SparsenetError as e:
        raise ModelFileError(f"model file {path!r}: layers do not chain for input shape {shape}: {e}") from None
    except Exception as e:  # MemoryError, or a constructor that accepted a value its forward cannot use
        raise ModelFileError(f"model file {path!r}: the check forward pass on input shape {shape} failed "
                             f"({type(e).__name__}: {e})") from None
    out = np.asarray(out)
    if out.dtype.kind not in "biuf" or (out.dtype.kind == "f" and not np.all(np.isfinite(out))):
        raise ModelFileError(f"model file {path!r}: the model gives non-finite output ({out.dtype}) on a zero "
                             f"input of shape {shape}")


def load_model(path) -> Sequential:
    """Load a model saved by `save_model`, validating everything before any kernel runs.

    The rebuilt model is checked end to end with a forward pass of one zero sample of its declared
    input shape, so layers whose shapes do not chain are reported here, not at the first prediction.
    Any problem raises `ModelFileError` (see the module docstring for the checks and caps).

    >>> import tempfile, os, sparsenet as sn
    >>> m = sn.build_model("mlp", seed=0)
    >>> p = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> sn.save_model(m, p)
    >>> load_model(p).input_shape
    (1, 8, 8)
    """
    path = os.fspath(path)
    with _Container(path) as box:
        manifest = _manifest(box)
        shape = _input_shape(manifest, path)
        layers = []
        for i, spec in enumerate(manifest["layers"]):
            arrays = {name: box.read(key) for name, key in box.layer_keys(i).items()}
            layers.append(_decode(spec, arrays, f"model file {path!r}, layer {i}"))
    model = Sequential(*layers)
    model.meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
    if shape is not None:
        if len(layers) * math.prod(shape) > _MAX_CHECK_VALUES:
            raise ModelFileError(f"model file {path!r}: {len(layers)} layers on inputs of {math.prod(shape)} values "
                                 f"is more than the limit {_MAX_CHECK_VALUES} for the load-time check")
        model.input_shape = shape
        _check_chain(model, layers, shape, path)
    model.eval()
    return model
