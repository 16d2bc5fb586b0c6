"""Model files: one safetensors file (schema 2) holding every layer's arrays as tensors and a JSON
manifest in the header's metadata. No pickle, no code on load.

Layout: tensors ``layers.<i>.<array>`` (e.g. ``layers.1.weight.indices``) and ``__metadata__``
``{"sparsenet": <manifest JSON>}``. The manifest holds the format name, schema version, sparsenet
version, input shape, layer specs, the model's metadata, a CRC-32 of every tensor's bytes
(safetensors itself has no checksum) and ``manifest_crc32``, the CRC-32 of the manifest's canonical
JSON without that field (sorted keys, no spaces). One metadata key only: the safetensors package
writes metadata keys in a random order, and the same model must give the same bytes. Any
safetensors reader can list and read the arrays. A `Graph`'s file lists its nodes' layers in
topological order and adds ``"graph": {"inputs": [{"name", "shape"}], "nodes": [{"name",
"inputs"}], "outputs": [...]}`` (lists, so that the order survives canonical JSON); a
`Sequential`'s file has no ``graph`` field.
Saving goes through `atomic_writer` (temporary file, fsync, rename, directory fsync): a failed or
killed save leaves any previous file intact, and the file gets the mode ``open()`` would give it.

Loading treats the file as hostile (the container checks are in `_safetensors`: header size, file
size, dtypes, shapes, offsets that tile the data, caps on tensors, elements and bytes) and
memory-maps it: weights are not copied (copy-on-write pages, so a loaded model can be trained
without the file changing). Before any layer is built: the manifest's size (``MAX_MANIFEST_BYTES``)
is capped, its JSON may not hold NaN/Infinity and integers in layer specs must fit in 64 bits;
the manifest matches its checksum, and every tensor belongs to a layer of the manifest and has a
checksum; each layer's tensors are matched against their checksums as that layer is read, before it
is decoded (so damage anywhere is an error, never a silently different model). Each
decoder then validates its arrays (dtypes, shapes, the full O(nnz) check of sparse formats); a
layer's arrays must be exactly those the decoded layer would save. The rebuilt model must chain on a
zero sample of its declared input shape (at most ``MAX_INPUT_ELEMENTS`` values; layers x values
bounded so that this check stays short) and give finite output there. Every failure, whatever its
cause, is a `ModelFileError` naming the file and the tensor or layer.

Schema versions: ``schema_version`` is an integer, bumped on any change that an older reader would
misread (a renamed field or array, a new required field, a changed meaning, a new container);
manifest fields that an older reader may ignore do not. Version 1 was sparsenet 0.1's ``.npz``
container (`_legacy_v1`); version 2 is this one. A reader refuses versions newer than its own with a
message naming both (upgrade sparsenet). Older versions are read through migration steps
(``_migrate_1_to_2(manifest) -> manifest``), applied after the container checks and before any layer
is decoded, one step per version, so the decoders in `layers.py` only ever see the current schema;
writers always write the current version (`convert_model` rewrites an old file).
"""

from __future__ import annotations

import json
import math
import os
import zlib

import numpy as np

from ..errors import ConfigError, ModelFileError, SparsenetError
from ..nn import Graph, Sequential
from ..nn.module import inference, model_dtype
from ._common import LAYER_ARRAY, check_ints, finite_float, no_constant
from ._legacy_v1 import V1File, is_npz
from ._safetensors import SafetensorsFile, is_safetensors, write_safetensors
from .atomic import atomic_writer
from .layers import decode_layer, encode_layer

__all__ = ["save_model", "load_model", "read_manifest", "convert_model", "SCHEMA_VERSION", "MAX_FILE_BYTES",
           "MAX_MANIFEST_BYTES", "MAX_ARRAYS", "MAX_ARRAY_ELEMENTS", "MAX_LAYERS", "MAX_INPUT_ELEMENTS"]

FORMAT_NAME = "sparsenet-model"
SCHEMA_VERSION = 2
# A file may not declare more than this many bytes of arrays (guards against headers that request
# gigabytes); override with SPARSENET_MAX_MODEL_BYTES.
MAX_FILE_BYTES = int(os.environ.get("SPARSENET_MAX_MODEL_BYTES", 8 << 30))
MAX_MANIFEST_BYTES = 16 << 20  # the JSON manifest (a real one is a few kB)
MAX_ARRAYS = 100_000  # tensors (zip members of a schema-1 file)
MAX_ARRAY_ELEMENTS = 1 << 34  # per array, and per dimension (also bounded by MAX_FILE_BYTES)
MAX_LAYERS = 100_000
MAX_INPUT_ELEMENTS = 1 << 24  # one sample of the declared input shape (the load-time check allocates it)
_MAX_HEADER_BYTES = MAX_MANIFEST_BYTES + (16 << 20)  # manifest + tensor entries (~100 bytes each)
_INDEX_DTYPES = ("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8")  # integer graph inputs
_MAX_CHECK_VALUES = 1 << 32  # layers x values per sample: bounds the time of the load-time check pass
_METADATA_KEY = "sparsenet"


def _crc32(buffer) -> int:
    return zlib.crc32(buffer) & 0xFFFFFFFF


def _canonical(manifest: dict) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False)


def save_model(model: Sequential | Graph, path, metadata: dict | None = None) -> None:
    """Write `model` (a `Sequential` or a `Graph`) to `path` (safetensors, schema 2) atomically and
    durably.

    `metadata` must be JSON-serialisable; it is stored with the model (and `model.meta` is merged in).
    """
    from .. import __version__

    graph = None
    if isinstance(model, Graph):
        modules = [n.op for n in model.nodes]
        graph = {"inputs": [{"name": k, "shape": None if s is None else list(s),
                             **({"dtype": str(model.input_dtypes[k])} if k in model.input_dtypes else {})}
                            for k, s in model.input_shapes.items()],
                 "nodes": [{"name": n.name, "inputs": list(n.inputs)} for n in model.nodes],
                 "outputs": list(model.outputs)}
    elif isinstance(model, Sequential):
        modules = model.layers
    else:
        raise ConfigError(f"save_model: expected a Sequential or a Graph, found {type(model).__name__}")
    layers, tensors = [], {}
    for i, layer in enumerate(modules):
        spec, arrs = encode_layer(layer)
        layers.append(spec)
        tensors.update({f"layers.{i}.{k}": np.ascontiguousarray(v) for k, v in arrs.items()})
    meta = dict(getattr(model, "meta", {}) or {})
    meta.update(metadata or {})
    manifest = {
        "format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "sparsenet_version": __version__,
        "input_shape": list(model.input_shape) if getattr(model, "input_shape", None) is not None else None,
        "layers": layers, "metadata": meta, **({"graph": graph} if graph is not None else {}),
        "crc32": {k: _crc32(memoryview(v).cast("B")) if v.size else 0 for k, v in tensors.items()},
    }
    try:
        body = _canonical(manifest)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"save_model: metadata is not JSON-serialisable: {e}") from None
    blob = _canonical(dict(manifest, manifest_crc32=_crc32(body.encode("utf-8"))))
    with atomic_writer(path) as f:
        write_safetensors(f, tensors, {_METADATA_KEY: blob})


def convert_model(src, dst) -> dict:
    """Rewrite the model file `src` (any schema this sparsenet reads) as a current one at `dst`.

    The layers, arrays and metadata are kept bit for bit, so the converted model predicts exactly
    as the original. `dst` may be `src` (replaced atomically). Returns the source's and the
    result's schema versions: ``{"from": 1, "to": 2}``.
    """
    version = read_manifest(src)["schema_version_read"]
    model = load_model(src)
    save_model(model, dst)
    return {"from": version, "to": SCHEMA_VERSION}


def _parse_manifest(raw: bytes, path: str, *, checksum: bool) -> dict:
    """The manifest's JSON, checked; with `checksum`, its ``manifest_crc32`` is verified and removed."""
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_float=finite_float, parse_constant=no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, huge ints, NaN...
        raise ModelFileError(f"model file {path!r}: manifest is not valid JSON ({type(e).__name__}: {e})") from None
    if checksum and isinstance(manifest, dict):
        claimed = manifest.pop("manifest_crc32", None)
        try:
            actual = _crc32(_canonical(manifest).encode("utf-8"))
        except (ValueError, RecursionError):
            actual = None
        if type(claimed) is not int or claimed != actual:
            raise ModelFileError(f"model file {path!r}: manifest is corrupt (it does not match its checksum "
                                 f"'manifest_crc32')")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"model file {path!r}: expected format {FORMAT_NAME!r}, found {found!r}")
    version = manifest.get("schema_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"model file {path!r}: schema version {version!r} is not supported "
                             f"(expected an integer; this sparsenet reads versions 1 to {SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise ModelFileError(f"model file {path!r}: schema version {version} is not supported: the file is "
                             f"newer than this sparsenet, which reads versions 1 to {SCHEMA_VERSION} "
                             f"(upgrade sparsenet)")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ModelFileError(f"model file {path!r}: manifest field 'layers' should be a list")
    if len(layers) > MAX_LAYERS:
        raise ModelFileError(f"model file {path!r}: {len(layers)} layers, more than the limit {MAX_LAYERS}")
    check_ints(layers, f"model file {path!r}: manifest field 'layers'")
    check_ints(manifest.get("input_shape"), f"model file {path!r}: manifest field 'input_shape'")
    if not isinstance(manifest.get("metadata", {}), dict):
        raise ModelFileError(f"model file {path!r}: manifest field 'metadata' should be an object, found "
                             f"{type(manifest['metadata']).__name__}")
    return manifest


def _migrate_1_to_2(manifest: dict) -> dict:
    """Schema 1 (0.1's .npz container) -> 2. The container changed; the manifest's fields did not,
    and checksums are not needed for arrays the zip's CRC has already verified."""
    return dict(manifest, schema_version=2)


class _Source:
    """One opened model file of either container: its manifest (migrated to the current schema) and
    `layer_arrays(i)`. Use as a context manager."""

    def __init__(self, path: str, *, mmap: bool = True):
        self.path = path
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            raise ModelFileError(f"model file {path!r}: not found") from None
        except OSError as e:  # a directory, no permission...
            raise ModelFileError(f"model file {path!r}: cannot be read ({type(e).__name__}: {e})") from None
        caps = dict(max_bytes=MAX_FILE_BYTES, max_elements=MAX_ARRAY_ELEMENTS)
        if is_npz(head):
            self._v1 = V1File(path, max_members=MAX_ARRAYS, **caps)
            try:
                self.manifest = _parse_manifest(self._v1.manifest_bytes(MAX_MANIFEST_BYTES), path, checksum=False)
                if self.manifest["schema_version"] != 1:
                    raise ModelFileError(f"model file {path!r}: a .npz container holds schema version 1, "
                                         f"found {self.manifest['schema_version']}")
                self.version_read = 1
                self.manifest = _migrate_1_to_2(self.manifest)
            except BaseException:
                self._v1.close()
                raise
            return
        self._v1 = None
        if not is_safetensors(head):
            raise ModelFileError(f"model file {path!r}: not a sparsenet model (expected a safetensors file, "
                                 f"or a .npz of sparsenet 0.1; found {len(head)} bytes starting {head[:8]!r})")
        st = SafetensorsFile(path, max_header_bytes=_MAX_HEADER_BYTES, max_tensors=MAX_ARRAYS,
                             max_elements=caps["max_elements"], max_bytes=caps["max_bytes"], mmap=mmap)
        raw = st.metadata.get(_METADATA_KEY)
        if raw is None:
            raise ModelFileError(f"model file {path!r}: a safetensors file without sparsenet's manifest "
                                 f"(__metadata__ key {_METADATA_KEY!r}); is it a model of another tool?")
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate escape (\ud800) is valid JSON, not valid text
            raise ModelFileError(f"model file {path!r}: manifest is not valid UTF-8 text ({e})") from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ModelFileError(f"model file {path!r}: manifest of {len(raw)} bytes, more than the limit "
                                 f"{MAX_MANIFEST_BYTES}")
        self.manifest = _parse_manifest(raw, path, checksum=True)
        self.version_read = self.manifest["schema_version"]
        if self.version_read != 2:
            raise ModelFileError(f"model file {path!r}: a safetensors container holds schema version 2, "
                                 f"found {self.version_read}")
        self._st = st
        self._layers = self._index_tensors(st, self.manifest, path)

    @staticmethod
    def _index_tensors(st, manifest, path) -> dict[int, dict[str, str]]:
        n = len(manifest["layers"])
        crc = manifest.get("crc32")
        if not isinstance(crc, dict) or not all(type(v) is int and 0 <= v < 1 << 32 for v in crc.values()):
            raise ModelFileError(f"model file {path!r}: manifest field 'crc32' should map tensor names to "
                                 f"32-bit checksums")
        layers: dict[int, dict[str, str]] = {}
        for name in st.entries:
            m = LAYER_ARRAY.fullmatch(name)
            if not m or int(m.group(1)) >= n:
                raise ModelFileError(f"model file {path!r}: tensor {name!r} does not belong to any of the "
                                     f"{n} layers (expected names layers.<i>.<array>)")
            if name not in crc:
                raise ModelFileError(f"model file {path!r}: tensor {name!r} has no checksum in the manifest")
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = name
        stray = sorted(set(crc) - set(st.entries))
        if stray:
            raise ModelFileError(f"model file {path!r}: the manifest lists checksums of tensors {stray[:5]} that "
                                 f"the file does not hold")
        return layers

    def layer_arrays(self, i: int) -> dict[str, np.ndarray]:
        if self._v1 is not None:
            return self._v1.layer_arrays(i)
        out = {}
        for name, key in self._layers.get(i, {}).items():
            if _crc32(self._st.raw(key)) != self.manifest["crc32"][key]:
                raise ModelFileError(f"model file {self.path!r}: tensor {key!r} is corrupt (its bytes do not "
                                     f"match the checksum in the manifest)")
            out[name] = self._st.array(key)
        return out

    def close(self) -> None:
        if self._v1 is not None:
            self._v1.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_manifest(path) -> dict:
    """The JSON manifest of a model file (validated for format and version, migrated to the current
    schema), without building layers. ``schema_version_read`` says which version the file holds."""
    with _Source(os.fspath(path)) as src:
        return dict(src.manifest, schema_version_read=src.version_read)


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


def _graph_spec(spec, n_layers: int, path: str):
    """(inputs {name: shape or None}, node names and input names, outputs) of a manifest's ``graph``
    field, its JSON types checked (the structure itself is `Graph`'s to check)."""
    where = f"model file {path!r}: manifest field 'graph'"

    def names(value, what):
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ModelFileError(f"{where}: {what} should be a list of names, found {value!r}"[:500])
        return value

    if not (isinstance(spec, dict) and set(spec) == {"inputs", "nodes", "outputs"}):
        raise ModelFileError(f"{where}: expected an object with inputs, nodes and outputs, found "
                             f"{sorted(spec) if isinstance(spec, dict) else type(spec).__name__}")
    inputs, dtypes = {}, {}
    if not isinstance(spec["inputs"], list) or not spec["inputs"]:
        raise ModelFileError(f"{where}: inputs should be a non-empty list")
    for entry in spec["inputs"]:
        if not (isinstance(entry, dict) and set(entry) in ({"name", "shape"}, {"name", "shape", "dtype"})
                and isinstance(entry["name"], str)):
            raise ModelFileError(f"{where}: an input should be {{name, shape[, dtype]}}, found {entry!r}"[:500])
        if entry["name"] in inputs:
            raise ModelFileError(f"{where}: input {entry['name']!r} is listed twice")
        inputs[entry["name"]] = _shape(entry["shape"], f"{where}: input {entry['name']!r}")
        if "dtype" in entry:
            if entry["dtype"] not in _INDEX_DTYPES:
                raise ModelFileError(f"{where}: input {entry['name']!r}: dtype should be one of "
                                     f"{', '.join(_INDEX_DTYPES)}, found {entry['dtype']!r}"[:500])
            dtypes[entry["name"]] = entry["dtype"]
    if sum(math.prod(s) for s in inputs.values() if s is not None) > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"{where}: the inputs hold more values per sample than the limit {MAX_INPUT_ELEMENTS}")
    nodes = spec["nodes"]
    if not isinstance(nodes, list) or len(nodes) != n_layers:
        raise ModelFileError(f"{where}: nodes should be a list of one entry per layer ({n_layers}), found "
                             f"{len(nodes) if isinstance(nodes, list) else type(nodes).__name__}")
    wiring = []
    for i, entry in enumerate(nodes):
        if not (isinstance(entry, dict) and set(entry) == {"name", "inputs"} and isinstance(entry["name"], str)):
            raise ModelFileError(f"{where}: node {i} should be {{name, inputs}}, found {entry!r}"[:500])
        wiring.append((entry["name"], names(entry["inputs"], f"node {i}'s inputs")))
    return inputs, dtypes, wiring, names(spec["outputs"], "outputs")


def _shape(shape, where):
    """One sample's shape from a manifest (None allowed), checked and capped."""
    if shape is None:
        return None
    if not (isinstance(shape, list) and all(type(s) is int and s > 0 for s in shape)):
        raise ModelFileError(f"{where}: input_shape should be positive integers, found {shape!r}"[:500])
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"{where}: input_shape {shape} has {math.prod(shape)} values per sample, "
                             f"more than the limit {MAX_INPUT_ELEMENTS}")
    return tuple(shape)


def _check_chain(model, shapes: dict, path) -> None:
    """One zero sample through the model (`shapes`: {input name: sample shape}): layers that do not
    chain fail here, not at first use."""
    shape = next(iter(shapes.values())) if len(shapes) == 1 else shapes
    try:
        if isinstance(model, Graph):  # node by node, bounded, a mismatch named by its node
            out = model.trace()
        else:
            with inference(model):  # nothing of this pass stays cached on the layers
                out = model.forward(np.zeros((1, *shape), dtype=model_dtype(model)))
    except SparsenetError as e:
        raise ModelFileError(f"model file {path!r}: layers do not chain for input shape {shape}: {e}") from None
    except Exception as e:  # MemoryError, or a constructor that accepted a value its forward cannot use
        raise ModelFileError(f"model file {path!r}: the check forward pass on input shape {shape} failed "
                             f"({type(e).__name__}: {e})") from None
    for o in out if isinstance(out, tuple) else (out,):
        o = np.asarray(o)
        if o.dtype.kind not in "biuf" or (o.dtype.kind == "f" and not np.all(np.isfinite(o))):
            raise ModelFileError(f"model file {path!r}: the model gives non-finite output ({o.dtype}) on a zero "
                                 f"input of shape {shape}")


def load_model(path, *, mmap: bool = True) -> Sequential | Graph:
    """Load a model saved by `save_model` (or by sparsenet 0.1), validating everything before any
    kernel runs.

    With `mmap` (the default) weights are views of the memory-mapped file, not copies (copy-on-write:
    training the model leaves the file as it is); replace a mapped file by a rename (as `save_model`
    does), never by writing into it. ``mmap=False`` reads the file into memory. The rebuilt model
    (a `Sequential`, or a `Graph` when the file holds one) is checked end to end with a forward pass
    of one zero sample of its declared input shapes, so layers whose shapes do not chain are
    reported here, not at the first prediction. Any problem raises `ModelFileError` (see the module
    docstring for the checks and caps).

    >>> import tempfile, os, sparsenet as sn
    >>> m = sn.build_model("mlp", seed=0)
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> sn.save_model(m, p)
    >>> load_model(p).input_shape
    (1, 8, 8)
    """
    path = os.fspath(path)
    with _Source(path, mmap=mmap) as src:
        manifest = src.manifest
        shape = _shape(manifest.get("input_shape"), f"model file {path!r}")
        graph = manifest.get("graph")
        if "graph" in manifest and graph is None:
            raise ModelFileError(f"model file {path!r}: manifest field 'graph' should be an object, found null")
        if graph is not None:
            inputs, dtypes, wiring, outputs = _graph_spec(graph, len(manifest["layers"]), path)
            shapes = inputs if all(s is not None for s in inputs.values()) else None
            declared = next(iter(inputs.values())) if len(inputs) == 1 else None
            if shape != declared:
                raise ModelFileError(f"model file {path!r}: input_shape {shape} should be the graph's single input's "
                                     f"shape ({declared}; None for several inputs)")
        else:
            shapes = {"x": shape} if shape is not None else None
        if shapes is not None and len(manifest["layers"]) * sum(map(math.prod, shapes.values())) > _MAX_CHECK_VALUES:
            raise ModelFileError(f"model file {path!r}: {len(manifest['layers'])} layers on inputs of "
                                 f"{sum(map(math.prod, shapes.values()))} values is more than the limit "
                                 f"{_MAX_CHECK_VALUES} for the load-time check")
        layers = [_decode(spec, src.layer_arrays(i), f"model file {path!r}, layer {i}")
                  for i, spec in enumerate(manifest["layers"])]
    if graph is None:
        model = Sequential(*layers)
        model.input_shape = shape
    else:
        try:  # the structure (names, cycles, arity); the zero sample is `_check_chain`'s, below
            model = Graph(inputs, [(name, layer, ins) for (name, ins), layer in zip(wiring, layers)], outputs,
                          check_shapes=False, input_dtypes=dtypes)
        except SparsenetError as e:
            raise ModelFileError(f"model file {path!r}: graph: {e}") from None
        except Exception as e:  # a layer that accepted a value its forward cannot use
            raise ModelFileError(f"model file {path!r}: graph: the check forward pass failed "
                                 f"({type(e).__name__}: {e})") from None
    model.meta = manifest.get("metadata", {})
    if shapes is not None:
        _check_chain(model, shapes, path)
    model.eval()
    return model
