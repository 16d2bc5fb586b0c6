"""Numba kernels, named ``<format>_<op>``: pure functions over arrays, outputs allocated by the caller.

Importing this package sets Numba's threading-layer priority to omp > tbb > workqueue (measured:
tbb was slower than omp here; workqueue has a high per-call cost and is not thread-safe, so under
it `launch` serialises kernel launches) unless NUMBA_THREADING_LAYER is set.

It also sets GOMP_SPINCOUNT to 3000 unless it is set. After a parallel kernel, OpenMP's workers
(GNU libgomp, Numba's omp layer) spin that many times before they sleep: by default 300 000, 10-30
ms here, in which a threaded BLAS call (a dense model's predict, or the user's own ``w @ x``) shares
a core with a spinning worker and waits for a time slice. Measured (2 threads, medians, 2026-12-02):
a 1024 x 1024 x 64 numpy product right after the pruned MLP 1024-4096-4096-10 at batch 1 took
4.9-6.1 ms with the default, 0.8-0.9 ms with 3000 (0.7 ms alone); the MLP itself ran as fast
(0.41-0.62 ms at batch 1, 4.1-6.2 ms at batch 64, against 0.45-0.68 and 5.7-7.1). libgomp reads the
variable once, when it loads: if another library has loaded it before sparsenet, the default
stays.
"""

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
os.environ.setdefault("GOMP_SPINCOUNT", "3000")

from ._jit import PARALLEL_MIN_WORK, launch  # noqa: E402
from .bsr import (  # noqa: E402
    bsr_sddmm, bsr_sddmm_serial, bsr_spmm, bsr_spmm_f32, bsr_spmm_f32_serial, bsr_spmm_serial, bsr_spmv, bsr_spmv_f32, bsr_spmv_f32_serial, bsr_spmv_serial,
    bsr_transpose_values, bsr_transpose_values_serial,
)
from .conv import dense_conv2d, dense_conv2d_serial  # noqa: E402
from .dense import (  # noqa: E402
    dense_add, dense_batchnorm, dense_batchnorm_fold, dense_epilogue, dense_epilogue_serial, dense_epilogue_t, dense_global_avgpool,
    dense_layernorm, dense_maxpool2d, dense_mean_axis, dense_softmax_rows, dense_spmm,
    dense_spmm_serial,
)
from .depthwise import (  # noqa: E402
    dense_depthwise2d, dense_depthwise2d_cl, dense_depthwise2d_cl_serial, dense_depthwise2d_grad_input,
    dense_depthwise2d_grad_input_serial, dense_depthwise2d_grad_weight, dense_depthwise2d_grad_weight_serial,
    dense_depthwise2d_serial, depthwise_kernel,
)
from .epilogue import no_bias  # noqa: E402
from .int8 import (  # noqa: E402
    bsr_i8_spmm, bsr_i8_spmm_serial, csr_i8_spmm, csr_i8_spmm_serial, dense_i8_spmm, dense_i8_spmm_serial,
)
from .nm import (  # noqa: E402
    nm_spmm, nm_spmm_f32, nm_spmm_f32_serial, nm_spmm_serial,
    nm_spmv_f32, nm_spmv_f32_serial,
)
from .optim import (  # noqa: E402
    dense_adam_update, dense_adam_update_serial, dense_sgd_update, dense_sgd_update_serial,
)
from .csr import (  # noqa: E402
    csr_sddmm, csr_sddmm_serial, csr_spmm, csr_spmm_f32, csr_spmm_f32_serial, csr_spmm_serial, csr_spmv, csr_spmv_serial,
    csr_transpose_pattern, csr_transpose_values, csr_transpose_values_serial,
)

__all__ = [
    "PARALLEL_MIN_WORK", "launch", "no_bias",
    "dense_adam_update", "dense_adam_update_serial", "dense_sgd_update", "dense_sgd_update_serial",
    "dense_spmm", "dense_spmm_serial", "dense_epilogue", "dense_epilogue_serial", "dense_epilogue_t", "dense_batchnorm",
    "dense_batchnorm_fold", "dense_conv2d", "dense_conv2d_serial", "dense_maxpool2d", "dense_add", "dense_global_avgpool", "dense_layernorm", "dense_mean_axis", "dense_softmax_rows", "dense_depthwise2d", "dense_depthwise2d_serial", "dense_depthwise2d_cl", "dense_depthwise2d_cl_serial", "depthwise_kernel", "dense_depthwise2d_grad_input",
    "dense_depthwise2d_grad_input_serial", "dense_depthwise2d_grad_weight", "dense_depthwise2d_grad_weight_serial",
    "csr_spmv", "csr_spmv_serial", "bsr_spmv", "bsr_spmv_serial",
    "csr_spmm", "csr_spmm_serial", "csr_spmm_f32", "csr_spmm_f32_serial", "csr_transpose_pattern", "csr_transpose_values", "csr_transpose_values_serial", "csr_sddmm", "csr_sddmm_serial",
    "bsr_spmm", "bsr_spmm_serial", "bsr_spmv_f32", "bsr_spmv_f32_serial", "bsr_spmm_f32", "bsr_spmm_f32_serial",
    "nm_spmv_f32", "nm_spmv_f32_serial", "nm_spmm_f32", "nm_spmm_f32_serial", "nm_spmm", "nm_spmm_serial",
    "dense_i8_spmm", "dense_i8_spmm_serial", "csr_i8_spmm", "csr_i8_spmm_serial", "bsr_i8_spmm", "bsr_i8_spmm_serial", "bsr_transpose_values", "bsr_transpose_values_serial", "bsr_sddmm", "bsr_sddmm_serial",
]
