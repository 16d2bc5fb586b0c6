"""The inference runtime: checked input, single samples, threads, import cost, cold start, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import sparsenet as sn
from sparsenet import cli, runtime
from sparsenet.errors import ConfigError, DataError, DTypeError, ModelFileError, ShapeError


def _pruned_lenet():
    m = sn.build_model("lenet300", seed=0)
    w = m.layers[1].weight.to_dense()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    m.layers[1].weight = sn.CSR.from_dense(w)
    return m.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "lenet-csr.npz"
    sn.save_model(_pruned_lenet(), path)
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return runtime.load(model_file)


def _x(n, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random((n, 1, 8, 8)).astype(dtype)


# -- predict ----------------------------------------------------------------------------------------
def test_load_is_validated_and_in_eval_mode(model, tmp_path):
    assert model.input_shape == (1, 8, 8) and not model.training
    assert model.layers[1].weight.format_name == "csr"
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 nope")
    with pytest.raises(ModelFileError):
        runtime.load(tmp_path / "bad.npz")


def test_one_predict_behind_every_name(model):
    """sn.predict and model.predict are one implementation: the strict one."""
    assert sn.predict is runtime.predict
    x = _x(37)
    assert np.array_equal(model.predict(x), sn.predict(model, x))
    assert np.allclose(sn.predict(model, x, batch_size=5), sn.predict(model, x), rtol=1e-5, atol=1e-6)
    assert model.predict(x[0]).shape == sn.predict(model, x[0]).shape == (10,)
    for call in (sn.predict, lambda m, v: m.predict(v)):  # both strict: the shape is checked
        with pytest.raises(ShapeError, match=r"\[N, 1, 8, 8\]"):
            call(model, x.reshape(37, 64))


def test_single_sample_gets_and_loses_a_batch_axis(model):
    x = _x(3)
    one = runtime.predict(model, x[1])
    assert one.shape == (10,)
    assert np.array_equal(one, runtime.predict(model, x[1:2])[0])


def test_inputs_are_cast_to_the_model_dtype(model):
    x = (_x(4) * 10).round()
    expected = runtime.predict(model, x.astype(np.float32))
    for dtype in (np.float64, np.int32, np.uint8, np.int64):
        assert np.array_equal(runtime.predict(model, x.astype(dtype)), expected), dtype
    assert runtime.predict(model, x > 5).shape == (4, 10)  # bool is real numeric too
    assert runtime.predict(model, x.tolist()).shape == (4, 10)  # nested lists


@pytest.mark.parametrize("shape", [(4, 64), (4, 1, 8, 9), (1, 8), (64,), (2, 2, 1, 8, 8), ()])
def test_wrong_shape_says_expected_and_found(model, shape):
    with pytest.raises(ShapeError) as err:
        runtime.predict(model, np.zeros(shape, dtype=np.float32))
    msg = str(err.value)
    assert "expected input of shape [N, 1, 8, 8]" in msg and f"found {list(shape)}" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_data_errors(model, bad):
    x = _x(3, dtype=np.float64)
    x[2, 0, 4, 4] = bad
    with pytest.raises(DataError, match="1 NaN/inf"):
        runtime.predict(model, x)


def test_values_overflowing_the_model_dtype_are_data_errors(model):
    x = _x(2, dtype=np.float64)
    x[0, 0, 0, 0] = 1e300  # finite in float64, inf in float32
    with pytest.raises(DataError, match="overflow"):
        runtime.predict(model, x)


@pytest.mark.parametrize("x", [np.zeros((2, 1, 8, 8), dtype=np.complex64), np.full((2, 1, 8, 8), "a"),
                               np.empty((2, 1, 8, 8), dtype=object)])
def test_non_real_dtypes_are_dtype_errors(model, x):
    with pytest.raises(DTypeError, match="real numeric"):
        runtime.predict(model, x)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(model, batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        runtime.predict(model, _x(2), batch_size=batch_size)


def test_empty_batch(model):
    assert runtime.predict(model, np.zeros((0, 1, 8, 8), np.float32)).shape == (0, 10)


def test_model_in_training_mode_is_restored(model_file):
    m = runtime.load(model_file).train()
    x = _x(5)
    assert np.array_equal(runtime.predict(m, x), runtime.predict(runtime.load(model_file), x))
    assert all(mod.training for _, mod in m.named_modules())


def test_model_without_input_shape_needs_a_batch_axis():
    m = sn.nn.Sequential(sn.nn.Linear(3, 2, seed=0))
    assert runtime.predict(m, np.ones((4, 3))).shape == (4, 2)
    with pytest.raises(ShapeError, match="no input shape"):
        runtime.predict(m, np.ones(3))


# -- threads ----------------------------------------------------------------------------------------
def test_threads_predicting_at_once_match_serial_results(csr_model_file):
    # batch 1024 x 1920 stored weights crosses PARALLEL_MIN_WORK: the parallel kernels run too
    model = runtime.load(csr_model_file)
    xs = [_x(n, seed=i) for i, n in enumerate((2048, 1, 300, 1024))]
    serial = [runtime.predict(model, x, batch_size=1024) for x in xs]
    errors, start = [], threading.Barrier(4)

    def work(k):
        start.wait()
        for r in range(3):
            for i in range(len(xs)):
                j = (i + k) % len(xs)
                try:
                    if not np.array_equal(runtime.predict(model, xs[j], batch_size=1024), serial[j]):
                        errors.append((k, r, j, "differs"))
                except Exception as e:  # pragma: no cover - reported below
                    errors.append((k, r, j, repr(e)))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    # no_grad: nothing was cached on the layers
    assert all(getattr(layer, "_xt", None) is None for layer in model.layers)


_CONCURRENT = r"""
import threading, numpy as np, sparsenet as sn
from sparsenet import runtime
m = runtime.load({path!r})
xs = [np.random.default_rng(i).random(({n}, 1, 8, 8), dtype=np.float32) for i in range(3)]
ref = [runtime.predict(m, x, batch_size=1024) for x in xs]
predict = {predict}
bad, start = [], threading.Barrier(4)
def work(k):
    start.wait()
    for i in range({rounds}):
        if not np.array_equal(predict(m, xs[(i + k) % 3], batch_size=1024), ref[(i + k) % 3]):
            bad.append(k)
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
import numba; print(numba.threading_layer(), len(bad))
"""


@pytest.fixture(scope="module")
def csr_model_file(tmp_path_factory):
    """LeNet with every layer CSR: its plan launches parallel kernels at large batches (a plan that
    calls BLAS runs its small parallel kernels serial)."""
    m = sn.build_model("lenet300", seed=0)
    for layer in m.layers[1::2]:
        w = layer.weight.to_dense()
        w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
        layer.weight = sn.CSR.from_dense(w)
    path = tmp_path_factory.mktemp("runtime") / "lenet-all-csr.npz"
    sn.save_model(m.eval(), path)
    return path


def _concurrent_run(model_file, predict, n, rounds):
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    code = _CONCURRENT.format(path=str(model_file), predict=predict, n=n, rounds=rounds)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_runtime_predict_is_thread_safe_under_the_workqueue_layer(csr_model_file):
    r = _concurrent_run(csr_model_file, "runtime.predict", n=2048, rounds=3)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["workqueue", "0"]


def test_training_predict_is_thread_safe_under_the_workqueue_layer(csr_model_file):
    # big batches, many rounds: the abort needs two launches to overlap, which is then all but certain
    r = _concurrent_run(csr_model_file, "lambda m, x, batch_size: sn.predict(m, x, batch_size=batch_size)",
                        n=4096, rounds=12)
    assert r.returncode == 0, r.stderr[-2000:]


def test_set_num_threads_round_trip():
    before = runtime.get_num_threads()
    assert before["numba"] >= 1
    previous = runtime.set_num_threads(1)
    try:
        assert previous == before
        now = runtime.get_num_threads()
        assert now["numba"] == 1 and now["blas"] in (1, None)
        runtime.set_num_threads(10_000, blas=1)  # clamped to Numba's pool size
        import numba

        assert runtime.get_num_threads()["numba"] == numba.config.NUMBA_NUM_THREADS
    finally:
        runtime.set_num_threads(previous["numba"], blas=previous["blas"])
    assert runtime.get_num_threads() == before


@pytest.mark.parametrize("n", [0, -2, 1.5, True, None])
def test_set_num_threads_refuses_nonsense(n):
    with pytest.raises(ConfigError):
        runtime.set_num_threads(n)


def test_set_num_threads_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    for var in runtime._BLAS_ENV:  # setenv first: monkeypatch then restores the original state
        monkeypatch.setenv(var, "0")
        monkeypatch.delenv(var)
    before = runtime.get_num_threads()
    assert before["blas"] is None
    with pytest.warns(RuntimeWarning, match="child processes"):
        previous = runtime.set_num_threads(1, blas=3)
    import numba

    numba.set_num_threads(previous["numba"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and os.environ["OMP_NUM_THREADS"] == "3"


# -- import cost and cold start -------------------------------------------------------------------
_HEAVY = ("scipy.sparse", "onnx", "onnxruntime", "matplotlib", "dask")


def test_import_is_fast_and_light():
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", "import sparsenet"], capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - t0)
        assert r.returncode == 0, r.stderr
    print(f"python -c 'import sparsenet': median {statistics.median(times):.3f} s of {times}")
    assert statistics.median(times) < 1.0


@pytest.mark.parametrize("module", ["sparsenet", "sparsenet.runtime"])
def test_import_pulls_no_heavy_optional_module(module):
    code = f"import sys, {module}; print(' '.join(m for m in {_HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"importing {module} imported {r.stdout.split()}"


_COLD = r"""
import time
t0 = time.perf_counter()
import numpy as np, sparsenet as sn
from sparsenet import runtime
t1 = time.perf_counter()
m = runtime.load({path!r})
t2 = time.perf_counter()
y = runtime.predict(m, np.ones((1, 8, 8), dtype=np.float32))
t3 = time.perf_counter()
assert y.shape == (10,) and np.all(np.isfinite(y))
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}} {{t3 - t2:.3f}}")
"""


def test_second_process_cold_start(model_file, tmp_path):
    # a fresh Numba cache: the first process compiles and fills it, the second one only loads from it
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    figures = []
    for _ in range(2):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", _COLD.format(path=str(model_file))], capture_output=True,
                           text=True, timeout=120, env=env)
        wall = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr[-2000:]
        figures.append((wall, *map(float, r.stdout.split())))
    for name, (wall, imp, load, pred) in zip(("first", "second"), figures):
        print(f"{name} process: {wall:.3f} s wall (import {imp:.3f}, load {load:.3f}, first predict {pred:.3f})")
    assert figures[1][0] < 5.0


# -- the predict command ----------------------------------------------------------------------------
def _wired() -> bool:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return "predict" in sub.choices


@pytest.fixture
def run_cli(monkeypatch):
    """cli.main with `predict` available: the real one once the lead has wired it, else added here."""
    if not _wired():
        original = cli.build_parser

        def build():
            parser = original()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            cli.predict.register(sub)
            return parser

        monkeypatch.setattr(cli, "build_parser", build)
    return cli.main


def test_cli_predict_json_and_atomic_output(run_cli, model_file, tmp_path, capsys):
    x = _x(7)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    assert run_cli(["predict", str(model_file), "--input", str(tmp_path / "x.npy"), "--output", str(out),
                    "--batch-size", "3", "--threads", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["input_shape"] == [7, 1, 8, 8] and payload["output_shape"] == [7, 10]
    assert payload["output"] == str(out) and payload["seconds"] >= 0
    assert np.allclose(np.load(out), runtime.predict(runtime.load(model_file), x), rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]


def test_cli_predict_text_and_single_sample(run_cli, model_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _x(1)[0])
    assert run_cli(["predict", str(model_file), "--input", str(tmp_path / "x.npy"),
                    "--output", str(tmp_path / "y")]) == 0
    assert "saved to" in capsys.readouterr().out
    assert np.load(tmp_path / "y", allow_pickle=False).shape == (10,)  # exactly the path given


def _bad_inputs(tmp_path):
    (tmp_path / "garbage.npy").write_bytes(b"this is not an array")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "shape.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan, np.float32))
    np.savez(tmp_path / "archive.npz", x=np.zeros((2, 1, 8, 8)))
    return {"garbage.npy": "cannot be read", "objects.npy": "cannot be read", "shape.npy": "expected input of shape",
            "nan.npy": "NaN", "archive.npz": ".npz archive", "missing.npy": "No such file"}


def test_cli_bad_input_exits_1_with_one_line(run_cli, model_file, tmp_path, capsys):
    out = tmp_path / "y.npy"
    out.write_bytes(b"previous")
    for name, fragment in _bad_inputs(tmp_path).items():
        code = run_cli(["predict", str(model_file), "--input", str(tmp_path / name), "--output", str(out)])
        captured = capsys.readouterr()
        assert code == 1, name
        assert captured.err.count("\n") == 1 and fragment in captured.err, (name, captured.err)
        assert captured.err.startswith("sparsenet predict: error:") and captured.out == ""
    assert out.read_bytes() == b"previous"  # a failed run leaves the old output alone
    code = run_cli(["predict", str(tmp_path / "garbage.npy"), "--input", str(tmp_path / "shape.npy"),
                    "--output", str(out)])
    assert code == 1 and "not a sparsenet model" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["predict"],
    ["predict", "m.npz", "--output", "y.npy"],
    ["predict", "m.npz", "--input", "x.npy"],
    ["predict", "m.npz", "--input", "x.npy", "--output", "y.npy", "--batch-size", "0"],
    ["predict", "m.npz", "--input", "x.npy", "--output", "y.npy", "--threads", "two"],
])
def test_cli_usage_errors_exit_2(run_cli, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(argv)
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


@pytest.mark.skipif(not _wired(), reason="`sparsenet predict` is not wired into cli.py yet")
def test_cli_predict_through_python_m(model_file, tmp_path):
    np.save(tmp_path / "x.npy", _x(2))
    (tmp_path / "bad.npy").write_bytes(b"nope")
    base = [sys.executable, "-m", "sparsenet", "predict", str(model_file), "--output", str(tmp_path / "y.npy")]
    ok = subprocess.run(base + ["--input", str(tmp_path / "x.npy"), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["output_shape"] == [2, 10]
    bad = subprocess.run(base + ["--input", str(tmp_path / "bad.npy")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    usage = subprocess.run(base, capture_output=True, text=True)
    assert usage.returncode == 2


def test_training_predict_accepts_an_empty_batch(model):
    assert sn.predict(model, np.zeros((0, 1, 8, 8), np.float32)).shape == (0, 10)


def test_bench_command_compares_with_the_dense_equivalent(tmp_path, capsys):
    import json

    from sparsenet.bench import dense_equivalent
    from sparsenet.cli import main
    from sparsenet.prune import compiled, prune

    model = sn.build_model("lenet300", seed=0)
    prune(model, sparsity=0.9)
    small = compiled(model, "csr")
    dense = dense_equivalent(small)
    assert all(type(l.weight).__name__ == "Dense" for l in dense.layers if hasattr(l, "weight"))
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(sn.predict(dense, x), sn.predict(small, x), rtol=1e-5, atol=1e-6)
    path = tmp_path / "m.npz"
    sn.save_model(small, path)
    assert main(["bench", str(path), "--batch", "1,3", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in out["batches"]] == [1, 3]
    assert all(r["model_ms"] > 0 and r["dense_ms"] > 0 for r in out["batches"])
    assert main(["bench", str(path), "--batch", "0"]) == 1


def test_model_predict_method_validates_against_input_shape():
    model = sn.build_model("lenet300", seed=0)
    assert model.predict(np.zeros((2, 1, 8, 8))).shape == (2, 10)
    assert model.predict(np.zeros((1, 8, 8))).shape == (10,)
    with pytest.raises(sn.ShapeError):
        model.predict(np.zeros((2, 64)))


@pytest.mark.parametrize("given", [None, "12345"])
def test_import_bounds_openmp_spinning_unless_the_user_chose(given):
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if given is not None:
        env["GOMP_SPINCOUNT"] = given
    code = "import os, sparsenet; print(os.environ['GOMP_SPINCOUNT'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == (given or "3000")


def test_training_leaves_no_progress_bar_thread_behind():
    # tqdm's monitor thread would keep `quiet_blas` from stopping OpenBLAS's spinning threads
    code = ("import threading, numpy as np, sparsenet as sn\n"
            "m = sn.build_model('lenet300', seed=0)\n"
            "x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32); y = np.arange(32) % 10\n"
            "sn.fit(m, x, y, epochs=2, quiet=True); sn.fit(m, x, y, epochs=2, quiet=False)\n"
            "from sparsenet.prune import sensitivity_scan\n"
            "sensitivity_scan(m, (x, y), sparsities=(0.5,), time_layers=False, quiet=False)\n"
            "print(sorted(t.name for t in threading.enumerate()))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "['MainThread']"


def test_cli_threads_apply_to_the_command_only(run_cli, model_file, tmp_path, capsys):
    before = runtime.get_num_threads()
    np.save(tmp_path / "x.npy", _x(3))
    assert run_cli(["predict", str(model_file), "--input", str(tmp_path / "x.npy"), "--output",
                    str(tmp_path / "y.npy"), "--threads", "1"]) == 0
    capsys.readouterr()
    assert runtime.get_num_threads() == before  # a command run in-process leaves the counts as they were
