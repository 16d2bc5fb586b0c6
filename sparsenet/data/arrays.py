"""`load_arrays`: read a classification dataset from NumPy files (never unpickling anything).

Accepted inputs:
    * one ``.npz`` archive with arrays ``x`` and ``y`` (to be split later), or with
      ``x_train``, ``y_train``, ``x_test``, ``y_test`` (already split); other arrays are ignored;
    * a pair ``(x_path, y_path)`` of ``.npy`` files.

Validated and converted arrays:
    x  float32 (N, features...), C-contiguous, all finite
    y  int64   (N,), non-negative integer class labels

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
    >>> np.savez(path, x=np.ones((4, 3)), y=np.array([0, 1, 1, 0]))
    >>> arrays = load_arrays(path)
    >>> sorted(arrays), arrays["x"].dtype, arrays["y"].dtype
    (['x', 'y'], dtype('float32'), dtype('int64'))
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["load_arrays", "SPLIT_KEYS", "UNSPLIT_KEYS"]

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
UNSPLIT_KEYS = ("x", "y")

PathLike = str | os.PathLike


def _check_file(path: PathLike, suffix: str) -> Path:
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise DataError(f"expected a {suffix} file, found {str(p)!r} (suffix {p.suffix!r})")
    if not p.is_file():
        raise DataError(f"dataset file not found: {str(p)!r}")
    return p


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{str(path)!r} holds object (pickled) arrays, which sparsenet never "
                            f"loads; save plain numeric arrays instead") from exc
        raise DataError(f"{str(path)!r} cannot be read as a NumPy file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{str(path)!r} cannot be read as a NumPy file ({exc})") from exc


def _read_member(z, key: str, where: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{where}: array {key!r} is an object (pickled) array, which sparsenet "
                            f"never loads; save plain numeric arrays instead") from exc
        raise DataError(f"{where}: array {key!r} is unreadable ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{where}: array {key!r} is unreadable ({exc})") from exc


def _as_features(x: np.ndarray, name: str, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: {name} must hold real numbers, found dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{where}: {name} must have shape (N, features...), found shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: {name} has no samples (shape {x.shape})")
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
        out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        n_nan = int(np.isnan(out).sum())
        n_inf = int(np.isinf(out).sum())
        raise DataError(f"{where}: {name} must be finite, found {n_nan} NaN and {n_inf} inf values "
                        f"(after conversion to float32)")
    return out


def _as_labels(y: np.ndarray, name: str, n: int, where: str) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: {name} must hold integer class labels, found dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{where}: {name} must be 1-D of shape ({n},), found shape {y.shape}")
    if y.shape[0] != n:
        raise DataError(f"{where}: {name} must have one label per sample: expected {n} labels "
                        f"(the length of x), found {y.shape[0]}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{where}: {name} labels must be finite integers, found NaN or inf")
        bad = y != np.round(y)
        if bad.any():
            raise DataError(f"{where}: {name} labels must be integers, found non-integer value "
                            f"{y[bad][0]!r} ({int(bad.sum())} such labels)")
    if y.size and y.max() > np.iinfo(np.int64).max:
        raise DataError(f"{where}: {name} labels too large for int64, found {y.max()!r}")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: {name} labels must be non-negative class indices, "
                        f"found {y.min()!r}")
    return y.astype(np.int64)


def _validate(raw: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    if "x" in raw:
        x = _as_features(raw["x"], "x", where)
        return {"x": x, "y": _as_labels(raw["y"], "y", x.shape[0], where)}
    out = {}
    for split in ("train", "test"):
        x = _as_features(raw[f"x_{split}"], f"x_{split}", where)
        out[f"x_{split}"] = x
        out[f"y_{split}"] = _as_labels(raw[f"y_{split}"], f"y_{split}", x.shape[0], where)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise DataError(f"{where}: train and test samples must have the same shape, found "
                        f"{out['x_train'].shape[1:]} (x_train) and {out['x_test'].shape[1:]} (x_test)")
    return {k: out[k] for k in SPLIT_KEYS}


def _load_npz(path: PathLike) -> dict[str, np.ndarray]:
    p = _check_file(path, ".npz")
    where = f"{str(p)!r}"
    z = _np_load(p)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{where}: expected an .npz archive, found a single .npy array")
    with z:
        keys = set(z.files)
        has_split = keys & set(SPLIT_KEYS)
        has_unsplit = keys & set(UNSPLIT_KEYS)
        if has_split and has_unsplit:
            raise DataError(f"{where}: ambiguous archive: it has both unsplit keys "
                            f"{sorted(has_unsplit)} and split keys {sorted(has_split)}; keep only "
                            f"'x','y' or only 'x_train','y_train','x_test','y_test'")
        wanted = SPLIT_KEYS if has_split else UNSPLIT_KEYS
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise DataError(f"{where}: missing arrays {missing}: expected keys 'x','y' or "
                            f"'x_train','y_train','x_test','y_test', found {sorted(keys)}")
        raw = {k: _read_member(z, k, where) for k in wanted}
    return _validate(raw, where)


def _load_npy_pair(x_path: PathLike, y_path: PathLike) -> dict[str, np.ndarray]:
    px, py = _check_file(x_path, ".npy"), _check_file(y_path, ".npy")
    where = f"({str(px)!r}, {str(py)!r})"
    raw = {}
    for key, p in (("x", px), ("y", py)):
        arr = _np_load(p)
        if not isinstance(arr, np.ndarray):
            arr.close()
            raise DataError(f"{str(p)!r}: expected a single .npy array, found an .npz archive")
        raw[key] = arr
    return _validate(raw, where)


def load_arrays(path) -> dict[str, np.ndarray]:
    """Load and validate a dataset from an ``.npz`` file or a pair of ``.npy`` files.

    Args:
        path: a str/PathLike to an ``.npz`` archive, or a 2-tuple/list ``(x_path, y_path)``
            of ``.npy`` files.

    Returns:
        Either ``{"x", "y"}`` (unsplit) or ``{"x_train", "y_train", "x_test", "y_test"}``
        (already split): x float32 (N, features...) C-contiguous, y int64 (N,).

    Raises:
        DataError: file not found or unreadable, wrong suffix, missing or ambiguous keys,
            pickled arrays, bad shapes, NaN or inf in x, non-integer or negative labels,
            or a length mismatch between x and y.
    """
    if isinstance(path, (tuple, list)):
        if len(path) != 2:
            raise DataError(f"expected a pair (x_path, y_path) of .npy files, found {len(path)} paths")
        return _load_npy_pair(*path)
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"expected a path to an .npz file or a pair of .npy paths, "
                        f"found {type(path).__name__}")
    return _load_npz(path)
