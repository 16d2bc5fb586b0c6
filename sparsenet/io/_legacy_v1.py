"""Model files of sparsenet 0.1 (schema 1): a ``.npz`` zip of ``.npy`` arrays, read as a hostile file.

sparsenet writes schema 2 (safetensors, `model_file`); this module only reads schema 1 so that files
written by 0.1 still load (``load_model`` migrates them; ``sparsenet convert OLD NEW`` rewrites them).
`save_v1` and `write_v1` exist for the migration tests and the load-time benchmark only.

Layout: member ``__manifest__.npy`` (uint8 bytes of UTF-8 JSON: the manifest) and members
``layers.<i>.<array>.npy``. Checks, before anything is read: the declared uncompressed sizes of all
members (``max_bytes``), the number of members (``max_members``) and the manifest's size are capped;
only stored or deflated members are accepted (no bzip2/lzma, whose decompressors cannot be bounded);
a name used twice is refused. Each ``.npy`` header is parsed on its own, through the zip stream,
before its data: version 1.0 or 2.0, a header of at most ``_MAX_HEADER_BYTES``, a plain
bool/integer/float dtype (never object), every dimension and the element count capped, and a data
size equal to what the member holds, so a tiny file cannot request gigabytes. Data is read in bounded
chunks and to the end of the member (the zip CRC is then verified). Arrays come back C-ordered,
native-endian and writable; bools are normalised to 0/1. Members whose names are not
``__manifest__.npy`` or ``layers.<i>.<name>.npy`` are ignored and never opened.
"""

from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np

from ..errors import ModelFileError
from ._common import LAYER_ARRAY

__all__ = ["is_npz", "V1File", "save_v1", "write_v1"]

_MAX_HEADER_BYTES = 10_000  # numpy's own limit for .npy headers parsed without trusting the file
_CHUNK = 1 << 24
_MANIFEST = "__manifest__"
_DTYPE_KINDS = "biuf"


def is_npz(head: bytes) -> bool:
    """Whether the first bytes of a file are a zip's (a 0.1 model file)."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def save_v1(model, path) -> None:
    """Write `model` as sparsenet 0.1 did (tests and benchmarks only: sparsenet writes schema 2)."""
    from .layers import encode_layer

    layers, arrays = [], {}
    for i, layer in enumerate(model.layers):
        spec, arrs = encode_layer(layer)
        layers.append(spec)
        arrays.update({f"layers.{i}.{k}": np.ascontiguousarray(v) for k, v in arrs.items()})
    shape = getattr(model, "input_shape", None)
    manifest = {"format": "sparsenet-model", "schema_version": 1, "sparsenet_version": "0.1.0",
                "input_shape": list(shape) if shape else None, "layers": layers,
                "metadata": dict(getattr(model, "meta", {}) or {})}
    write_v1(path, manifest, arrays)


def write_v1(path, manifest: dict, arrays: dict) -> None:
    """Write a schema-1 file of `manifest` and `arrays` as given (tests only)."""
    import json

    from .atomic import atomic_writer

    members = dict(arrays)
    members[_MANIFEST] = np.frombuffer(json.dumps(manifest, allow_nan=False).encode(), dtype=np.uint8)
    with atomic_writer(path) as f:
        np.savez(f, **members)


class V1File:
    """The members of one schema-1 file, checked as a zip before anything is read; arrays read on demand.

    `members` maps array keys (member names without ``.npy``) to their ZipInfo; other members are
    left out and never opened. Use as a context manager (it holds the zip open).
    """

    def __init__(self, path: str, *, max_bytes: int, max_members: int, max_elements: int):
        self.path = path
        self.max_bytes, self.max_members, self.max_elements = max_bytes, max_members, max_elements
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
        if len(infos) > self.max_members:
            raise ModelFileError(f"model file {path!r}: holds {len(infos)} members, more than the limit "
                                 f"{self.max_members}")
        declared = sum(i.file_size for i in infos)
        if declared > self.max_bytes:
            raise ModelFileError(f"model file {path!r}: declares {declared} bytes of arrays, more than the "
                                 f"limit {self.max_bytes} (SPARSENET_MAX_MODEL_BYTES)")
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.layers: dict[int, dict[str, str]] = {}  # layer index -> {array name: member key}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                continue
            key = name[:-4]
            if key != _MANIFEST and not LAYER_ARRAY.fullmatch(key):
                continue
            if key in self.members:
                raise ModelFileError(f"model file {path!r}: member {name!r} appears more than once")
            self.members[key] = info
            m = LAYER_ARRAY.fullmatch(key)
            if m:
                self.layers.setdefault(int(m.group(1)), {})[m.group(2)] = key

    def manifest_bytes(self, max_bytes: int) -> bytes:
        raw = self.read(_MANIFEST, max_bytes)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ModelFileError(f"model file {self.path!r}: manifest should be 1-D uint8 bytes, found "
                                 f"{raw.dtype} {raw.shape}")
        return raw.tobytes()

    def layer_arrays(self, i: int) -> dict[str, np.ndarray]:
        """{array name: array} of layer `i`."""
        return {name: self.read(key) for name, key in self.layers.get(i, {}).items()}

    def close(self) -> None:
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
                return _read_npy(f, info.file_size, where, self.max_elements)
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


def _read_npy(f, member_size: int, where: str, max_elements: int) -> np.ndarray:
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
    if count > max_elements or any(s > max_elements for s in shape):
        raise ModelFileError(f"{where}: shape {shape} ({count} elements) is more than the limit "
                             f"{max_elements} per array and per dimension")
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


