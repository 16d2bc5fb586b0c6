"""Model files: load time and memory of the safetensors loader (schema 2) against sparsenet 0.1's
.npz loader (schema 1, still used for 0.1 files), for a small and a ~100 MB model.

    python benchmarks/model_files.py [--quick] [--json out.json]

Both files hold the same model. Loads are timed through the public API (`sparsenet.load`) with
`timing.compare`: alternating rounds, medians, speedup = median of per-round ratios, files in the
page cache (a warm read, as a service that reloads a model sees it). Memory: in a fresh process per
format, the growth of RssAnon (private memory: copies of the weights) and of RssFile (pages of the
mapped file) across one `load`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


import sparsenet as sn
from sparsenet.io._legacy_v1 import save_v1
from sparsenet.timing import compare

_MEMORY = r"""
import json, sys
import sparsenet as sn

def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields

sn.load(sys.argv[1])  # kernels compiled/cached, imports done
before = status()
model = sn.load(sys.argv[2])
after = status()
print(json.dumps({k: after[k] - before[k] for k in before}))
"""


def _models(quick: bool):
    from sparsenet.nn import Linear, ReLU, Sequential
    from sparsenet.prune import compiled, prune

    small = sn.build_model("lenet300", seed=0)
    prune(small, sparsity=0.9, scope="global")
    small = compiled(small, "csr")
    width = 1024 if quick else 4096
    big = Sequential(Linear(1024, width, seed=1), ReLU(), Linear(width, width, seed=2), ReLU(),
                     Linear(width, 1024, seed=3))
    big.input_shape = (1024,)
    return {"lenet300-90%-csr": small, f"mlp-1024-{width}-{width}-1024-dense": big}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 12 MB model instead of 100 MB, 3 rounds")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else 7
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in _models(args.quick).items():
            v1, v2 = os.path.join(tmp, f"{name}.npz"), os.path.join(tmp, f"{name}.safetensors")
            save_v1(model, v1)
            sn.save_model(model, v2)
            c = compare({"npz (0.1 loader)": lambda: sn.load(v1), "safetensors": lambda: sn.load(v2)},
                        baseline="npz (0.1 loader)", rounds=rounds, min_time=0.05)
            memory = {}
            for label, path in (("npz (0.1 loader)", v1), ("safetensors", v2)):
                r = subprocess.run([sys.executable, "-c", _MEMORY, path, path], capture_output=True, text=True,
                                   check=True)
                memory[label] = json.loads(r.stdout)
            out[name] = {"bytes": {"npz": os.path.getsize(v1), "safetensors": os.path.getsize(v2)},
                         "load_seconds": {k: t.to_dict() for k, t in c.timings.items()},
                         "speedup": c["safetensors"].speedup, "memory_growth_bytes": memory}
            t1, t2 = c["npz (0.1 loader)"], c["safetensors"]
            print(f"{name}: {os.path.getsize(v2) / 1e6:.1f} MB; load npz {t1.median * 1e3:.2f} ms "
                  f"[{t1.min * 1e3:.2f}-{t1.max * 1e3:.2f}], safetensors {t2.median * 1e3:.2f} ms "
                  f"[{t2.min * 1e3:.2f}-{t2.max * 1e3:.2f}]: {t2.speedup:.2f}x; private memory +"
                  f"{memory['npz (0.1 loader)']['RssAnon'] / 1e6:.1f} MB vs +{memory['safetensors']['RssAnon'] / 1e6:.1f} MB"
                  f" (mapped file pages +{memory['safetensors']['RssFile'] / 1e6:.1f} MB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
