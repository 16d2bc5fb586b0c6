"""What the two model-file fuzzers share: the pristine models, JSON values for manifest edits, and
the subprocess that loads a batch of mutated files (so a segfault shows as a signal, a hang as a
timeout) and the rules its results must follow."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

import sparsenet as sn
from sparsenet.nn import (GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d,
                          LeakyReLU, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, Softmax, Tanh)

# No shrinking: a failure already names each failing file's mutations, and shrinking batches of 50
# files through a subprocess takes many minutes.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile("fuzz-ci", derandomize=True, database=None, max_examples=3, deadline=None,
                          suppress_health_check=list(HealthCheck), phases=_PHASES)
settings.register_profile("fuzz-slow", derandomize=True, database=None, max_examples=40, deadline=None,
                          suppress_health_check=list(HealthCheck), phases=_PHASES)

BATCH = 50
SUBPROCESS_TIMEOUT = 120  # seconds for one batch; a hang in the loader shows as a timeout

# Known bugs outside sparsenet/io/, reported; each is a (mutated field, message) pair whose failures
# are counted apart instead of failing the fuzzer (none at present).
KNOWN_BUGS: list[tuple[str, str]] = []


# -- the pristine models ---------------------------------------------------------------------------
def mlp_model():
    lin = Linear(64, 32, seed=1)
    w = lin.weight.to_dense()
    w[np.abs(w) < 0.1] = 0
    lin.weight = sn.CSR.from_dense(w)
    lin.weight_param.mask = lin.weight.data != 0
    bn = BatchNorm1d(32)
    bn.running_mean[:] = np.linspace(-1, 1, 32)
    bn.running_var[:] = np.linspace(0.5, 2, 32)
    m = Sequential(Flatten(), lin, bn, LeakyReLU(0.1), Dropout(0.2, seed=3), Linear(32, 10, seed=2), Softmax())
    m.input_shape = (1, 8, 8)
    return m


def cnn_model():
    conv = Conv2d(1, 4, 3, padding=1, seed=1)
    conv.weight = sn.BSR.from_dense(conv.weight.to_dense() * (np.arange(9) % 2).astype(np.float32),
                                    blocksize=(2, 3))
    head = Linear(4, 3, seed=2)
    head.weight = sn.CSR.from_dense(head.weight.to_dense() * np.array([[1, 0, 1, 0]], dtype=np.float32))
    m = Sequential(conv, BatchNorm2d(4), ReLU(), MaxPool2d(2), AvgPool2d(2, stride=1, padding=1),
                   Conv2d(4, 4, 1, seed=3), GlobalAvgPool2d(), head, Sigmoid(), GELU(), Tanh())
    m.input_shape = (1, 8, 8)
    return m


def f64_model():
    lin = Linear(5, 3, dtype=np.float64, seed=4)
    lin.weight = sn.CSR.from_dense(lin.weight.to_dense() * np.array([1.0, 0, 1, 1, 0]))
    m = Sequential(lin, ReLU(), Linear(3, 2, bias=False, dtype=np.float64, seed=5))
    m.input_shape = (5,)
    return m


def int8_model():
    from sparsenet.quantize import quantize_model

    return quantize_model(cnn_model().eval())  # int8 QBSR, QDense and QCSR weights with float32 scales


BUILDERS = (mlp_model, cnn_model, f64_model, int8_model)


def graph_model():
    """A residual graph with a CSR node, an Add and a Concat (schema 2 only: 0.1 had no graphs)."""
    from sparsenet.nn import Add, Concat, Graph

    fc1 = Linear(64, 16, seed=1)
    w = fc1.weight.to_dense()
    w[np.abs(w) < 0.1] = 0
    fc1.weight = sn.CSR.from_dense(w)
    nodes = [("flat", Flatten(), ["x"]), ("fc1", fc1, ["flat"]), ("relu", ReLU(), ["fc1"]),
             ("fc2", Linear(16, 16, seed=2), ["relu"]), ("res", Add(), ["fc2", "fc1"]),
             ("cat", Concat(), ["res", "relu"]), ("head", Linear(32, 10, seed=3), ["cat"])]
    return Graph({"x": (1, 8, 8)}, nodes, "head")


def json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, prefix + (i,))


_KINDS = ["Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "LeakyReLU", "Softmax",
          "Dropout", "ReLU", "Sigmoid", "Tanh", "GELU", "Identity", "Flatten", "GlobalAvgPool2d", "Exec"]
_HUGE = [2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64, 10**30, -2**63, -2**31, 10**400]
json_values = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 7, 1000] + _HUGE),
    st.integers(-5, 100),
    st.sampled_from([0.5, -0.0, 1e-300, 1e308, -1e308, 1.5, float("nan"), float("inf"), float("-inf")]),
    st.sampled_from([True, False, None, "", "csr", "bsr", "dense", "float16", "float64", "int32", "x" * 300] + _KINDS),
    st.sampled_from([[], [0], [1], [1, 1], [-1, 3], [2**40, 2], [1, 1, 1], [3, 4, 5, 6], [2, 3], [8, 8],
                     [1, 8, 8], [0, 8, 8], [1, 2**20, 2**20], {}, {"a": 1}, [[1]], ["1", 2]]),
)

def set_path(doc, path, value):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def delete_path(doc, path):
    if not path:
        return doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return doc


# -- edits of arrays, shared by the fuzzers --------------------------------------------------------
def set_values(values, cast):
    """An edit setting entries at fractions of an array's length to `values` (cast by `cast`)."""
    def edit(arr):
        if arr.size == 0:
            return None
        flat = arr.reshape(-1).copy()
        for frac, v in values:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flat[min(int(frac * flat.size), flat.size - 1)] = cast(v, flat.dtype)
        return flat.reshape(arr.shape)
    return edit


def cast_int(v, dtype):
    return np.array(v, dtype=np.int64).astype(dtype) if dtype.kind != "f" else float(v)


def cast_float(v, dtype):
    return np.array(v).astype(dtype)


def reshape(how):
    """An edit giving an array another shape or length."""
    def edit(arr):
        if how == "flatten":
            return arr.reshape(-1)
        if how == "lead":
            return arr[None]
        if how == "transpose":
            return arr.T.copy()
        if how == "shorter":
            return arr.reshape(-1)[:-1] if arr.size else arr
        if how == "longer":
            return np.concatenate([arr.reshape(-1), arr.reshape(-1)[:1]])
        if how == "empty":
            return arr.reshape(-1)[:0]
        return arr.reshape(-1)[0].copy() if arr.size else arr.reshape(())
    return edit


# -- the subprocess -------------------------------------------------------------------------------
RUNNER = r"""
import faulthandler, hashlib, resource, sys, warnings
faulthandler.enable()
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
warnings.simplefilter("ignore")
import numpy as np
import sparsenet as sn

def line(name, status, detail=""):
    print(name, status, " ".join(str(detail).split())[:300], flush=True)

for name in sys.argv[1:]:
    print("START", name, file=sys.stderr, flush=True)
    try:
        model = sn.load(name)
    except sn.ModelFileError as e:
        line(name, "ModelFileError", e)
        continue
    except BaseException as e:
        line(name, "BAD-LOAD", f"{type(e).__name__}: {e}")
        continue
    shape = model.input_shape
    if shape is None:
        line(name, "OK", "no-input-shape")
        continue
    dtype = sn.nn.model_dtype(model)
    try:
        zeros = sn.predict(model, np.zeros((2, *shape), dtype=dtype))
        x = np.random.default_rng(0).standard_normal((3, *shape)).astype(dtype)
        digest = hashlib.sha256(np.ascontiguousarray(sn.predict(model, x)).tobytes()).hexdigest()[:16]
    except sn.SparsenetError as e:
        line(name, "OK", f"predict refused: {type(e).__name__}")
        continue
    except BaseException as e:
        line(name, "BAD-PREDICT", f"{type(e).__name__}: {e}")
        continue
    if not np.all(np.isfinite(zeros)):
        line(name, "BAD-NONFINITE", zeros.ravel()[:4])
    else:
        line(name, "OK", digest)
"""


# Loads the file argv[1] under a 2 GiB address-space limit; prints the ModelFileError's message.
LIMITED_LOAD = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import sparsenet as sn
try:
    sn.load(sys.argv[1])
except sn.ModelFileError as e:
    print(str(e))
"""


def run_batch(files: list[Path], cwd: Path) -> dict[str, tuple[str, str]]:
    try:
        r = subprocess.run([sys.executable, "-c", RUNNER, *map(str, files)], capture_output=True, text=True,
                           timeout=SUBPROCESS_TIMEOUT, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        started = [l for l in err.splitlines() if l.startswith("START")]
        pytest.fail(f"loader subprocess timed out after {SUBPROCESS_TIMEOUT} s; last file started: "
                    f"{started[-1] if started else None}")
    started = [l for l in r.stderr.splitlines() if l.startswith("START")]
    assert r.returncode == 0, (f"loader subprocess died with exit code {r.returncode} "
                               f"(negative = signal) on {started[-1] if started else None}:\n{r.stderr[-3000:]}")
    results = {}
    for row in r.stdout.splitlines():
        name, status, *detail = row.split(" ", 2)
        results[Path(name).name] = (status, detail[0] if detail else "")
    return results


def judge(info: dict, results: dict, reference: dict) -> None:
    """Apply the rules to one batch. `info`: file name -> (base index, ops, container-only?, edited
    manifest fields); `results`: file name -> (status, detail); `reference`: base index -> result."""
    assert all(status == "OK" for status, _ in reference.values()), reference
    failures, known = [], []
    for name, (which, ops, container_only, fields) in info.items():
        status, detail = results.get(name, ("MISSING", "no output line"))
        bug = next((b for b in KNOWN_BUGS if b[0] in fields and b[1] in detail), None)
        if status == "ModelFileError" and "MemoryError" in detail and bug is None:
            failures.append((name, ops, "a MemoryError: the file made the loader try to allocate gigabytes: " + detail))
        elif status == "ModelFileError" and bug is not None:
            known.append((name, bug))
        elif status not in ("OK", "ModelFileError"):
            failures.append((name, ops, f"{status}: {detail}"))
        elif status == "OK" and container_only and detail != reference[which][1]:
            failures.append((name, ops, f"container damage loaded silently with different predictions "
                                        f"({detail} != {reference[which][1]})"))
    if known:
        print(f"{len(known)} files hit known bugs: {sorted({b for _, b in known})}")
    assert not failures, "\n".join(f"{n}: {ops!r}\n    {why}" for n, ops, why in failures[:10])
