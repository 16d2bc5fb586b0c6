"""Model files: one self-describing ``.npz`` (a zip of ``.npy`` arrays, read with
``allow_pickle=False``) holding a JSON manifest and every layer's arrays. No pickle, no code on load.

Layout: member ``__manifest__`` (uint8 bytes of UTF-8 JSON: format name, schema version, sparsenet
version, input shape, layer specs, metadata) and members ``layers.<i>.<array>``.
Saving writes a temporary file in the target directory and renames it over the target: a failed
save leaves any previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from ..errors import ModelFileError, SparsenetError
from ..nn import Sequential
from .layers import decode_layer, encode_layer

__all__ = ["save_model", "load_model", "read_manifest", "SCHEMA_VERSION", "MAX_FILE_BYTES"]

FORMAT_NAME = "sparsenet-model"
SCHEMA_VERSION = 1
# A file may not declare more than this many uncompressed bytes (guards against zip bombs and
# headers that request gigabytes); override with SPARSENET_MAX_MODEL_BYTES.
MAX_FILE_BYTES = int(os.environ.get("SPARSENET_MAX_MODEL_BYTES", 8 << 30))
_MANIFEST = "__manifest__"


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
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sparsenet-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r}: not found")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ModelFileError(f"model file {path!r}: not a sparsenet model (unreadable zip container: {e})") from None
    declared = sum(i.file_size for i in infos)
    if declared > MAX_FILE_BYTES:
        raise ModelFileError(f"model file {path!r}: declares {declared} bytes of arrays, more than the "
                             f"limit {MAX_FILE_BYTES} (SPARSENET_MAX_MODEL_BYTES)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises many types on corrupt input
        raise ModelFileError(f"model file {path!r}: cannot be read ({type(e).__name__}: {e})") from None


def _read(npz, key, path):
    try:
        return npz[key]
    except KeyError:
        raise ModelFileError(f"model file {path!r}: missing array {key!r}") from None
    except Exception as e:  # truncated member, bad header, object dtype refused...
        raise ModelFileError(f"model file {path!r}: array {key!r} is corrupt ({type(e).__name__}: {e})") from None


def _manifest(npz, path) -> dict:
    raw = _read(npz, _MANIFEST, path)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"model file {path!r}: manifest should be 1-D uint8 bytes, found {raw.dtype} {raw.shape}")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"model file {path!r}: manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFileError(f"model file {path!r}: expected format {FORMAT_NAME!r}, "
                             f"found {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFileError(f"model file {path!r}: schema version {version!r} is not supported "
                             f"(this sparsenet reads version {SCHEMA_VERSION})")
    if not isinstance(manifest.get("layers"), list):
        raise ModelFileError(f"model file {path!r}: manifest field 'layers' should be a list")
    return manifest


def read_manifest(path) -> dict:
    """The JSON manifest of a model file (validated for format and version), without building layers."""
    with _open(path) as npz:
        return _manifest(npz, os.fspath(path))


def load_model(path) -> Sequential:
    """Load a model saved by `save_model`, validating everything before any kernel runs.

    The rebuilt model is checked end to end with a forward pass of one zero sample of its declared
    input shape, so layers whose shapes do not chain are reported here, not at the first prediction.
    """
    path = os.fspath(path)
    with _open(path) as npz:
        manifest = _manifest(npz, path)
        names = set(npz.files)
        layers = []
        for i, spec in enumerate(manifest["layers"]):
            prefix = f"layers.{i}."
            arrays = {k[len(prefix):]: _read(npz, k, path) for k in names if k.startswith(prefix)}
            layers.append(decode_layer(spec, arrays, f"model file {path!r}, layer {i}"))
    model = Sequential(*layers)
    model.meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
    shape = manifest.get("input_shape")
    if shape is not None:
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                for s in shape)):
            raise ModelFileError(f"model file {path!r}: input_shape should be positive integers, found {shape!r}")
        model.input_shape = tuple(shape)
        dtype = next((l.dtype for l in layers if hasattr(l, "dtype")), np.float32)
        try:
            model.eval().forward(np.zeros((1, *shape), dtype=dtype))
        except SparsenetError as e:
            raise ModelFileError(f"model file {path!r}: layers do not chain for input shape {tuple(shape)}: {e}") from None
    model.eval()
    return model
