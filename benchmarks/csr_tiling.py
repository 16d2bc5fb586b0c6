"""How the batched float32 CSR kernel's two tiling sizes were chosen: the bytes of x one panel
gathers from (`X_PANEL_BYTES`) and the rows per parallel task (`ROW_CHUNK`).

    python benchmarks/csr_tiling.py [--threads 2] [--rounds 5]

4096 x 4096 at 90 % (uniform random pattern), batch 64, weights hot (the kernel is bound by the
gathers from x, not by the 10 MB of weights). Every configuration runs the library's own inner
loops (`sparsenet.kernels._csr_tiles.csr_rows_f32`) under a parallel driver defined here, all
configurations side by side in alternating rounds (`_harness.measure`); printed are medians over
rounds, in ms, and the speedup over the shipped sizes (median of the per-round ratios).
The last row is `csr_spmm`, the kernel without register tiles (used for float64), for comparison.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from numba import prange

from _harness import measure, threads

from sparsenet.formats import CSR
from sparsenet.kernels import _csr_tiles, csr_spmm, no_bias


@numba.njit(parallel=True, fastmath=True, boundscheck=False)
def _driver(data, indices, indptr, x, out, panel_bytes, rows):
    m = out.shape[0]
    for c in prange((m + rows - 1) // rows):
        r0 = c * rows
        r1 = min(m, r0 + rows)
        cur = np.empty(r1 - r0, np.uintp)
        _csr_tiles.csr_rows_f32(data, indices, indptr, x, out, r0, r1, cur, panel_bytes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    w = CSR.from_dense((rng.standard_normal((4096, 4096)) * (rng.random((4096, 4096)) < 0.1)).astype(np.float32))
    x = rng.standard_normal((4096, 64)).astype(np.float32)
    out = np.empty((4096, 64), np.float32)
    shipped = (_csr_tiles.X_PANEL_BYTES, _csr_tiles.ROW_CHUNK)
    configs = [(kib << 10, rows) for kib in (16, 32, 64, 128, 256, 1024) for rows in (32, 64, 256)]
    configs = sorted(set(configs) | {shipped})
    names = {c: f"{c[0] >> 10} KiB x {c[1]} rows" for c in configs}
    candidates = {names[c]: (lambda c=c: _driver(w.data, w.indices, w.indptr, x, out, *c)) for c in configs}
    candidates["csr_spmm"] = lambda: csr_spmm(w.data, w.indices, w.indptr, x, out, no_bias(np.float32), 0, 0.0)
    with threads(args.threads):
        timed = measure(candidates, baseline=names[shipped], rounds=args.rounds)
    print(f"shipped: X_PANEL_BYTES = {shipped[0] >> 10} KiB, ROW_CHUNK = {shipped[1]}")
    print("| x panel (KiB) | rows per task | ms | speedup over shipped |")
    print("|---|---|---|---|")
    for c in configs:
        r = timed[names[c]]
        print(f"| {c[0] >> 10} | {c[1]} | {r['median'] * 1e3:.2f} | {r['speedup']:.2f} |")
    r = timed["csr_spmm"]
    print(f"| csr_spmm: sums in out, no panels | | {r['median'] * 1e3:.2f} | {r['speedup']:.2f} |")


if __name__ == "__main__":
    main()
