"""The one shared check: a weight format against the NumPy references and scipy.sparse.

Tolerances are derived, not guessed: every product is a sum of n terms, whose rounding error in
any summation order is at most about n * eps * sum(|terms|). References are computed in float64
from the values the format actually holds, and `assert_close` allows (n + 4) * eps(dtype) times
that sum of magnitudes, elementwise. An entry whose terms are all zero (an empty row) must be
exactly 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparsenet.kernels import reference

__all__ = ["check_format_against_reference", "assert_close"]


def assert_close(got, ref, magnitude, n_terms: int, dtype, what: str) -> None:
    """|got - ref| <= (n_terms + 4) * eps(dtype) * magnitude elementwise.

    `ref` is the float64 reference, `magnitude` the same product over absolute values.
    """
    got = np.asarray(got)
    assert got.shape == np.shape(ref), f"{what}: expected shape {np.shape(ref)}, found {got.shape}"
    tol = (max(int(n_terms), 1) + 4) * np.finfo(dtype).eps * np.asarray(magnitude, dtype=np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= tol)  # also catches NaN (an output entry the kernel never wrote)
    if np.any(bad):
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} entries off; first at {i}: "
                             f"found {got[i]!r}, expected {ref[i]!r} (tolerance {tol[i]:.3g})")


def _check_product(got, shape, dtype, what, contiguous=True):
    assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, found {type(got).__name__}"
    assert got.shape == shape, f"{what}: expected shape {shape}, found {got.shape}"
    assert got.dtype == dtype, f"{what}: expected dtype {dtype}, found {got.dtype}"
    # feature-major activations: the next layer reads the batch as the contiguous axis
    assert not contiguous or got.flags.c_contiguous, f"{what}: expected a C-contiguous result"


def _stored_pattern(fmt) -> np.ndarray:
    """Boolean [M, K]: where `fmt` stores an entry, from its raw arrays via the references."""
    if fmt.format_name == "csr":
        return reference.csr_to_dense_ref(np.ones(fmt.nnz), fmt.indices, fmt.indptr, fmt.shape) != 0
    if fmt.format_name == "bsr":
        ones = np.ones(fmt.data.shape)
        return reference.bsr_to_dense_ref(ones, fmt.indices, fmt.indptr, fmt.shape) != 0
    return np.ones(fmt.shape, dtype=bool)


def _scatter(fmt, values) -> np.ndarray:
    """Dense [M, K] array holding `values` (shaped like fmt.data) at fmt's stored pattern."""
    if fmt.format_name == "csr":
        return reference.csr_to_dense_ref(values, fmt.indices, fmt.indptr, fmt.shape)
    if fmt.format_name == "bsr":
        return reference.bsr_to_dense_ref(values, fmt.indices, fmt.indptr, fmt.shape)
    return np.asarray(values)


def check_format_against_reference(fmt, w_dense, x, dy) -> None:
    """Check `fmt` (Dense, CSR or BSR holding `w_dense` [M, K]) on inputs x [K, B] and dy [M, B].

    Checks ``to_dense`` (exact, also through the reference to-dense of the raw arrays),
    ``to_scipy`` (exact, same pattern), ``fmt @ x`` / ``fmt.matmul(x)`` (and ``fmt @ x[:, 0]``),
    ``tmatmul(dy)`` and ``sampled_grad(dy, x)`` against the NumPy references and scipy.sparse.
    x and dy may have any real dtype: products are computed in the weight's dtype.
    """
    dtype = fmt.dtype
    m, k = fmt.shape
    w = np.asarray(w_dense).astype(dtype)
    assert w.shape == (m, k), f"w_dense: expected shape {(m, k)}, found {w.shape}"
    xd, dyd = np.asarray(x).astype(dtype), np.asarray(dy).astype(dtype)
    assert xd.ndim == 2 and xd.shape[0] == k and dyd.shape == (m, xd.shape[1])
    batch = xd.shape[1]
    w64, x64, dy64 = w.astype(np.float64), xd.astype(np.float64), dyd.astype(np.float64)
    pattern = _stored_pattern(fmt)

    # -- storage ---------------------------------------------------------------------------------
    dense = fmt.to_dense()
    _check_product(dense, (m, k), dtype, "to_dense")
    np.testing.assert_array_equal(dense, w, err_msg="to_dense")
    if fmt.format_name != "dense":
        np.testing.assert_array_equal(_scatter(fmt, fmt.data), w, err_msg="reference to-dense")
        np.testing.assert_array_equal(fmt.mask(), pattern, err_msg="mask()")
    assert not np.any(w[~pattern]), "w_dense has nonzeros outside the stored pattern"

    s = fmt.to_scipy()
    assert sp.issparse(s), f"to_scipy: expected a scipy.sparse object, found {type(s).__name__}"
    assert s.shape == (m, k) and s.dtype == dtype, f"to_scipy: found shape {s.shape}, dtype {s.dtype}"
    np.testing.assert_array_equal(s.toarray(), w, err_msg="to_scipy().toarray()")
    if fmt.format_name != "dense":  # sparse formats keep their explicit zeros
        s_pattern = sp.csr_array(s, copy=True)
        s_pattern.data[:] = 1
        np.testing.assert_array_equal(s_pattern.toarray() != 0, pattern, err_msg="to_scipy pattern")

    # -- Y = W @ X --------------------------------------------------------------------------------
    ref, mag = reference.spmm_ref(w64, x64), reference.spmm_ref(np.abs(w64), np.abs(x64))
    for what, got in (("fmt @ x", fmt @ x), ("fmt.matmul(x)", fmt.matmul(x)), ("scipy @ x", s @ xd)):
        _check_product(np.asarray(got), (m, batch), dtype, what, contiguous=what != "scipy @ x")
        assert_close(got, ref, mag, k, dtype, what)
    if batch:
        got = fmt @ np.asarray(x)[:, 0]
        _check_product(got, (m,), dtype, "fmt @ x[:, 0]")
        assert_close(got, ref[:, 0], mag[:, 0], k, dtype, "fmt @ x[:, 0]")

    # -- dX = W.T @ dY ----------------------------------------------------------------------------
    ref, mag = reference.spmm_t_ref(w64, dy64), reference.spmm_t_ref(np.abs(w64), np.abs(dy64))
    for what, got in (("tmatmul(dy)", fmt.tmatmul(dy)), ("scipy.T @ dy", s.T @ dyd)):
        _check_product(np.asarray(got), (k, batch), dtype, what, contiguous=what != "scipy.T @ dy")
        assert_close(got, ref, mag, m, dtype, what)

    # -- dW = (dY @ X.T) at the stored pattern ----------------------------------------------------
    grad = fmt.sampled_grad(dy, x)
    _check_product(grad, fmt.data.shape, dtype, "sampled_grad")
    full, full_mag = dy64 @ x64.T, np.abs(dy64) @ np.abs(x64).T
    if fmt.format_name == "csr":
        ref = reference.csr_sddmm_ref(fmt.indices, fmt.indptr, dy64, x64)
        mag = reference.csr_sddmm_ref(fmt.indices, fmt.indptr, np.abs(dy64), np.abs(x64))
    elif fmt.format_name == "bsr":  # also requires zeros in the overhang of edge blocks
        ref = reference.bsr_sddmm_ref(fmt.indices, fmt.indptr, dy64, x64, fmt.blocksize)
        mag = reference.bsr_sddmm_ref(fmt.indices, fmt.indptr, np.abs(dy64), np.abs(x64), fmt.blocksize)
    else:
        ref, mag = full, full_mag
    assert_close(grad, ref, mag, batch, dtype, "sampled_grad vs reference")
    assert_close(_scatter(fmt, grad), np.where(pattern, full, 0.0), full_mag, batch, dtype,
                 "sampled_grad vs (dy @ x.T) masked by the stored pattern")
    if fmt.format_name != "dense":
        s_pattern = sp.csr_array(s, copy=True)
        s_pattern.data[:] = 1
        masked = sp.csr_array(s_pattern.multiply(full)).toarray()
        assert_close(_scatter(fmt, grad), masked, full_mag, batch, dtype,
                     "sampled_grad vs scipy pattern * (dy @ x.T)")


def read_model_file(path):
    """(manifest, {tensor name: array}) of a sparsenet model file (safetensors); the manifest as
    stored, with its ``manifest_crc32``."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(path, framework="np") as f:
        manifest = json.loads(f.metadata()["sparsenet"])
    return manifest, dict(load_file(path))


def rewrite_model_file(path, mutate, *, checksums=True):
    """Let `mutate(arrays, manifest)` edit a model file's tensors and manifest in place, then write
    them back; the checksums are recomputed (a hostile file can be consistent) unless `checksums` is
    False (then the file's own, now stale, stay)."""
    import zlib

    from safetensors.numpy import save

    manifest, arrays = read_model_file(path)
    mutate(arrays, manifest)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if checksums:
        manifest["crc32"] = {k: zlib.crc32(np.ascontiguousarray(v).tobytes()) for k, v in arrays.items()}
    with open(path, "wb") as f:
        f.write(save(arrays, metadata={"sparsenet": manifest_text(manifest)}))


def manifest_text(manifest: dict, *, checksum: bool = True) -> str:
    """A manifest as a model file stores it: canonical JSON with its own ``manifest_crc32`` (kept as
    the manifest has it when `checksum` is False)."""
    import json
    import zlib

    if checksum:
        body = {k: v for k, v in manifest.items() if k != "manifest_crc32"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
        manifest = dict(body, manifest_crc32=zlib.crc32(canonical.encode()))
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=True)
