"""The safetensors container of a model file (schema 2), written with the `safetensors` package and
read here, memory-mapped, as a hostile file.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``) and the
tensors' bytes, offsets counted from the end of the header. The package's own reader copies every
tensor into a new array; this one maps the file and hands out views, so a model's weights are not
copied on load (pages are read when a check or a kernel first touches them; the mapping is
copy-on-write, so a loaded model can be trained without the file changing). A mapped file must be
replaced by a rename, as sparsenet's saves do, never rewritten in place (``cp new old``): pages not
yet copied would change under the model, and a file truncated under it ends the process (SIGBUS).
``mmap=False`` reads the file into memory instead.

Checks, before any tensor is touched: the header length (``max_header_bytes``) and the file size
agree; the header is one JSON object without NaN, Infinity or repeated names; every entry has
exactly a known dtype (bool, integers, float16/32/64), a shape of at most 32 non-negative sizes and
``data_offsets`` that hold exactly ``prod(shape) * itemsize`` bytes; the entries tile the data area
without holes or overlaps (as the format requires); the count of tensors (``max_tensors``), the
elements of each (``max_elements``) and the total bytes (``max_bytes``) are capped. Views whose
offset is not a multiple of their item size are copied (aligned) and bools are normalised to 0/1,
so kernels only ever see aligned, native-endian, C-ordered arrays. Every failure raises
`ModelFileError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
import mmap as _mmap
import os
import sys

import numpy as np

from ..errors import ModelFileError
from ._common import MAX_JSON_INT, no_constant

__all__ = ["write_safetensors", "is_safetensors", "SafetensorsFile"]

_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
           "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
           "F16": np.float16, "F32": np.float32, "F64": np.float64}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def write_safetensors(f, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write `tensors` (C-contiguous arrays by name) and string `metadata` to the open binary file `f`."""
    from safetensors.numpy import save

    # safetensors.numpy.save writes a strided array's buffer as if it were contiguous (0.8.0: a
    # [:, :-1] slice reads back as other values), so every array is made C-contiguous first.
    f.write(save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata))


def is_safetensors(head: bytes) -> bool:
    """Whether the first bytes of a file look like safetensors (a header length, then ``{``)."""
    return len(head) >= 9 and head[8:9] == b"{"


def _unique_object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"name {k!r} appears more than once")
        obj[k] = v
    return obj


class SafetensorsFile:
    """The validated header of one safetensors file and its memory map; `array(name)` gives a tensor."""

    def __init__(self, path: str, *, max_header_bytes: int, max_tensors: int, max_elements: int,
                 max_bytes: int, mmap: bool = True):
        self.path = path
        where = f"model file {path!r}"
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(8)
                if len(head) < 8:
                    raise ModelFileError(f"{where}: truncated ({size} bytes; a safetensors file starts "
                                         f"with an 8-byte header length)")
                n = int.from_bytes(head, "little")
                if n > max_header_bytes:
                    raise ModelFileError(f"{where}: header of {n} bytes, more than the limit {max_header_bytes}")
                if 8 + n > size:
                    raise ModelFileError(f"{where}: truncated (header of {n} bytes declared, "
                                         f"{size - 8} bytes follow the length)")
                raw = f.read(n)
                self._data_start, data_size = 8 + n, size - 8 - n
                if data_size > max_bytes:  # before mapping or reading anything
                    raise ModelFileError(f"{where}: {data_size} bytes after the header, more than the limit "
                                         f"{max_bytes} (SPARSENET_MAX_MODEL_BYTES)")
                if not data_size:  # an empty data area cannot be mapped; nothing needs mapping then
                    self._map = None
                elif mmap:
                    self._map = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY)
                else:  # the whole file in memory: nothing changes if the file is rewritten in place later
                    f.seek(0)
                    self._map = bytearray(size)
                    if f.readinto(self._map) != size:
                        raise ModelFileError(f"{where}: truncated while being read")
        except ModelFileError:
            raise
        except OSError as e:
            raise ModelFileError(f"{where}: cannot be read ({type(e).__name__}: {e})") from None
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_object,
                                parse_constant=no_constant)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, duplicates, NaN...
            raise ModelFileError(f"{where}: safetensors header is not valid JSON ({type(e).__name__}: {e})") from None
        if not isinstance(header, dict):
            raise ModelFileError(f"{where}: safetensors header should be a JSON object, found "
                                 f"{type(header).__name__}")
        meta = header.pop("__metadata__", {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ModelFileError(f"{where}: safetensors __metadata__ should map names to strings")
        self.metadata: dict[str, str] = meta
        if len(header) > max_tensors:
            raise ModelFileError(f"{where}: holds {len(header)} tensors, more than the limit {max_tensors}")
        self.entries: dict[str, tuple[np.dtype, tuple, int, int]] = {}
        spans, total = [], 0
        for name, entry in header.items():
            dtype, shape, begin, end = self._entry(name, entry, max_elements, where)
            total += end - begin
            spans.append((begin, end, name))
            self.entries[name] = (dtype, shape, begin, end)
        if total > max_bytes:
            raise ModelFileError(f"{where}: declares {total} bytes of tensors, more than the limit {max_bytes} "
                                 f"(SPARSENET_MAX_MODEL_BYTES)")
        position, last = 0, None
        for begin, end, name in sorted(spans):
            if begin != position:
                what = "overlaps the previous tensor" if begin < position else f"leaves a hole at byte {position}"
                raise ModelFileError(f"{where}: tensor {name!r} at bytes [{begin}, {end}) {what}")
            position, last = end, name
        if position != data_size:
            held = f"tensors hold {position} bytes (the last, {last!r}, ends there)" if last else "no tensors"
            raise ModelFileError(f"{where}: {held} but the file has {data_size} bytes after the header"
                                 + (" (truncated)" if position > data_size else ""))

    @staticmethod
    def _entry(name, entry, max_elements, where):
        what = f"{where}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ModelFileError(f"{what}: expected fields {sorted(_ENTRY_KEYS)}, found {found}")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise ModelFileError(f"{what}: dtype {code!r} is not supported (expected one of {sorted(_DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= 32
                and all(type(s) is int and 0 <= s <= MAX_JSON_INT for s in shape)):
            raise ModelFileError(f"{what}: shape {shape!r} is not a valid array shape (at most 32 non-negative sizes)")
        count = math.prod(shape)
        if count > max_elements or any(s > max_elements for s in shape):
            raise ModelFileError(f"{what}: shape {shape} ({count} elements) is more than the limit {max_elements} "
                                 f"per tensor and per dimension")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int and 0 <= o <= MAX_JSON_INT for o in offsets) and offsets[0] <= offsets[1]):
            raise ModelFileError(f"{what}: data_offsets {offsets!r} should be two increasing non-negative integers")
        dtype = np.dtype(_DTYPES[code])
        if offsets[1] - offsets[0] != count * dtype.itemsize:
            raise ModelFileError(f"{what}: {code} {shape} needs {count * dtype.itemsize} bytes but data_offsets "
                                 f"{offsets} hold {offsets[1] - offsets[0]}")
        return dtype, tuple(shape), offsets[0], offsets[1]

    def array(self, name: str) -> np.ndarray:
        """Tensor `name`: a view of the mapped file when aligned, else an aligned copy."""
        if name not in self.entries:
            raise ModelFileError(f"model file {self.path!r}: missing tensor {name!r}")
        dtype, shape, begin, end = self.entries[name]
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, dtype=dtype)
        stored = dtype.newbyteorder("<")
        arr = np.frombuffer(self._map, dtype=np.uint8 if dtype.kind == "b" else stored, count=count,
                            offset=self._data_start + begin)
        if dtype.kind == "b":
            return (arr != 0).reshape(shape)  # any nonzero byte is True, stored as 1
        if sys.byteorder != "little" or (self._data_start + begin) % dtype.itemsize:
            arr = arr.astype(dtype.newbyteorder("="))  # an aligned, native-endian copy
        return arr.reshape(shape)

    def raw(self, name: str) -> memoryview:
        """The stored bytes of tensor `name` (for checksums), without copying."""
        _, _, begin, end = self.entries[name]
        if begin == end:
            return memoryview(b"")
        return memoryview(self._map)[self._data_start + begin:self._data_start + end]
