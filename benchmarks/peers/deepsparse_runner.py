"""Run in DeepSparse's own virtual environment (see setup_deepsparse.sh): time an ONNX model.

    .venv-deepsparse/bin/python peers/deepsparse_runner.py MODEL.onnx --batch 64 --cores 2

Prints one JSON object: {"median": seconds, "min", "max", "repeats", "deepsparse": version}.
Uses only the standard library, numpy and deepsparse (this file is not part of sparsenet).
"""

import argparse
import json
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--cores", type=int, required=True)
    p.add_argument("--input-shape", required=True, help="one sample's shape, comma separated")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--min-sample", type=float, default=0.01)
    args = p.parse_args()
    import deepsparse

    engine = deepsparse.compile_model(args.model, batch_size=args.batch, num_cores=args.cores)
    shape = [args.batch] + [int(s) for s in args.input_shape.split(",")]
    x = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    engine(x)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            engine(x)
        if time.perf_counter() - t0 >= args.min_sample or n >= 1 << 14:
            break
        n *= 2
    samples = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            engine(x)
        samples.append((time.perf_counter() - t0) / n)
    print(json.dumps({"median": float(np.median(samples)), "min": float(min(samples)), "max": float(max(samples)),
                      "repeats": len(samples), "deepsparse": deepsparse.__version__}))


if __name__ == "__main__":
    main()
