"""Where the parallel kernels start to beat the serial ones: the measurement behind
`sparsenet.kernels.PARALLEL_MIN_WORK` (nnz x batch multiply-adds).

    python benchmarks/parallel_threshold.py [--threads 2]

Square CSR matrices at 90 % sparsity, batch 1, 8 and 64, weights hot (small layers live in cache:
this is exactly the regime where thread start-up matters). The two kernels are timed side by side
in alternating rounds (`_harness.measure`); printed is the median of the per-round serial / parallel
time ratios: above 1 the parallel kernel wins.
"""

from __future__ import annotations

import argparse

import numpy as np

from _harness import measure, threads

from sparsenet import kernels
from sparsenet.formats import CSR


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"current PARALLEL_MIN_WORK = {kernels.PARALLEL_MIN_WORK}")
    print("| side | nnz | batch | nnz x batch | serial (us) | parallel (us) | serial / parallel |")
    print("|---|---|---|---|---|---|---|")
    with threads(args.threads):
        for side in (64, 128, 256, 512, 1024, 2048):
            w = CSR.from_dense((rng.standard_normal((side, side)) * (rng.random((side, side)) < 0.1))
                               .astype(np.float32))
            for batch in (1, 8, 64):
                x = rng.standard_normal((side, batch)).astype(np.float32)
                out = np.empty((side, batch), np.float32)
                if batch == 1:
                    pair = (kernels.csr_spmv_serial, kernels.csr_spmv)
                else:
                    pair = (kernels.csr_spmm_f32_serial, kernels.csr_spmm_f32)
                timed = measure({name: (lambda k=k: k(w.data, w.indices, w.indptr, x, out, kernels.no_bias(np.float32), 0, 0.0))
                                 for name, k in zip(("serial", "parallel"), pair)}, baseline="serial")
                ser, par = timed["serial"]["median"], timed["parallel"]["median"]
                print(f"| {side} | {w.nnz} | {batch} | {w.nnz * batch} | {ser * 1e6:.1f} | {par * 1e6:.1f} "
                      f"| {timed['parallel']['speedup']:.2f} |")


if __name__ == "__main__":
    main()
