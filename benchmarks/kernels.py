"""Kernel sweep: one weight matrix times a feature-major batch, every format against numpy dense.

Each configuration (shape, sparsity, batch, threads) times, in the same run: numpy dense (OpenBLAS),
sparsenet CSR (unstructured pruning), sparsenet BSR (block-pruned to the same overall sparsity, several
block shapes), int8-valued variants when available, scipy.sparse CSR, and torch dense / torch.sparse
CSR when torch is installed. Weights are cold (rotated copies totalling >= 192 MiB, more than L3,
per implementation: about 2 GiB alive at once) unless `hot` is set. The implementations of one
configuration are timed side by side in alternating rounds (`_harness.measure`); the reported
speedup is the median of the per-round ratios numpy dense / implementation.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from _harness import measure, rotating, threads

import sparsenet as sn


def unstructured(shape, sparsity, rng):
    w = rng.standard_normal(shape).astype(np.float32)
    drop = rng.permutation(w.size)[: int(round(sparsity * w.size))]
    w.ravel()[drop] = 0
    return w


def block_pruned(shape, sparsity, blocksize, rng):
    r, c = blocksize
    grid = (-(-shape[0] // r), -(-shape[1] // c))
    keep = np.ones(grid[0] * grid[1], dtype=bool)
    keep[rng.permutation(keep.size)[: int(round(sparsity * keep.size))]] = False
    mask = np.kron(keep.reshape(grid), np.ones((r, c), dtype=bool))[: shape[0], : shape[1]]
    return rng.standard_normal(shape).astype(np.float32) * mask


def _copy_fmt(fmt):
    if isinstance(fmt, sn.Dense):
        return sn.Dense(fmt.data.copy())
    if isinstance(fmt, sn.BSR):
        return sn.BSR(fmt.data.copy(), fmt.indices.copy(), fmt.indptr.copy(), fmt.shape, check=False)
    if isinstance(fmt, sn.CSR):
        return sn.CSR(fmt.data.copy(), fmt.indices.copy(), fmt.indptr.copy(), fmt.shape, check=False)
    import copy
    return copy.deepcopy(fmt)  # other formats (int8): a deep copy holds new arrays


def _quantized(fmt):
    try:
        from sparsenet.formats.quantized import QBSR, QCSR
    except ImportError:
        return None
    return QCSR.from_float(fmt) if isinstance(fmt, sn.CSR) and not isinstance(fmt, sn.BSR) else QBSR.from_float(fmt)


def _sparsenet_call(fmt, x, hot):
    if hot:
        return lambda: fmt.matmul(x)
    nxt, _ = rotating(lambda: _copy_fmt(fmt), fmt.nbytes)
    return lambda: nxt().matmul(x)


def _dense_call(w, x, hot):
    if hot:
        return lambda: w @ x
    nxt, _ = rotating(lambda: w.copy(), w.nbytes)
    return lambda: nxt() @ x


def _peers(w, x, hot, n_threads):
    """{name: call}: scipy CSR and (if installed) torch dense and torch.sparse CSR, same weights and input."""
    import scipy.sparse as sp

    out = {}
    m = sp.csr_array(w)
    nxt, _ = rotating(lambda: m.copy(), m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)
    out["scipy-csr"] = (lambda: m @ x) if hot else (lambda: nxt() @ x)
    try:
        import torch
    except ImportError:
        return out
    torch.set_num_threads(n_threads)
    tx = torch.from_numpy(x)
    td = torch.from_numpy(w)
    ts = td.to_sparse_csr()
    out["torch-dense"] = lambda: td @ tx
    out["torch-csr"] = lambda: ts @ tx
    return out


def _torch_inference():
    try:
        import torch
    except ImportError:
        return nullcontext()
    return torch.inference_mode()


def sweep(shapes, sparsities, batches, thread_counts, blocksizes=((4, 4), (8, 1), (16, 1)), hot=False,
          int8=True, peers=True, seed=0, log=print):
    """Yield one record per (configuration, implementation)."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for s in sparsities:
            w = unstructured(shape, s, rng)
            formats = {"csr": sn.CSR.from_dense(w)} if s > 0 else {}
            block_ws = {bs: block_pruned(shape, s, bs, rng) for bs in blocksizes} if s > 0 else {}
            for bs, wb in block_ws.items():
                formats[f"bsr{bs[0]}x{bs[1]}"] = sn.BSR.from_dense(wb, bs)
            if int8:
                for name in list(formats):
                    q = _quantized(formats[name])
                    if q is not None:
                        formats[name + "-int8"] = q
            for batch in batches:
                x = rng.standard_normal((shape[1], batch)).astype(np.float32)
                for t in thread_counts:
                    with threads(t):
                        calls = {"numpy-dense": _dense_call(w, x, hot)}
                        for name, fmt in formats.items():
                            calls[name] = _sparsenet_call(fmt, x, hot)
                        if peers and s > 0:
                            calls.update(_peers(w, x, hot, t))
                        with _torch_inference():
                            results = measure(calls, baseline="numpy-dense")
                        del calls  # frees the rotated copies
                    for impl, r in results.items():
                        fmt = formats.get(impl)
                        nbytes = fmt.nbytes if fmt is not None else w.nbytes
                        nnz = fmt.count_nonzero() if fmt is not None else int(np.count_nonzero(w))
                        rec = {"shape": list(shape), "sparsity": s, "batch": batch, "threads": t, "impl": impl,
                               "cold": not hot, "weight_bytes": int(nbytes), "nnz": int(nnz),
                               "bytes_moved": int(nbytes + x.nbytes + shape[0] * batch * 4),
                               "flops": 2 * int(nnz) * batch, **r, "speedup_vs_numpy": r["speedup"]}
                        yield rec
                    log(f"{shape} s={s} b={batch} t={t}: " + ", ".join(
                        f"{k} {v['speedup']:.2f}x" for k, v in results.items() if k != "numpy-dense"))
