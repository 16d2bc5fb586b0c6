"""Cold start: a fresh process imports sparsenet, loads a pruned model file and predicts once.

    python benchmarks/cold_start.py

The first process fills Numba's on-disk cache (a fresh NUMBA_CACHE_DIR in a temporary directory,
so an earlier run does not help); the next ones load compiled kernels from it. Prints one JSON
object with the wall-clock seconds of each process and the split (import, load, first predict)."""

import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time, json
t0 = time.perf_counter()
import numpy as np, sparsenet as sn
t1 = time.perf_counter()
m = sn.load(MODEL)
t2 = time.perf_counter()
m.predict(np.zeros((1, *m.input_shape), np.float32))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "predict": t3 - t2}))
"""


def main():
    import sparsenet as sn
    from sparsenet.prune import compiled
    from sparsenet.prune import prune

    with tempfile.TemporaryDirectory() as tmp:
        model = sn.build_model("lenet300", seed=0)
        prune(model, sparsity=0.9, scope="global")
        path = os.path.join(tmp, "pruned.safetensors")
        sn.save_model(compiled(model, "csr"), path)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
        runs = []
        for _ in range(4):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", CHILD.replace("MODEL", repr(path))], env=env,
                               capture_output=True, text=True, check=True)
            runs.append({"wall": time.perf_counter() - t0, **json.loads(r.stdout)})
    print(json.dumps({"first_process": runs[0], "later_processes": runs[1:],
                      "later_wall_median": sorted(r["wall"] for r in runs[1:])[1]}, indent=1))


if __name__ == "__main__":
    main()
