"""The command line: subcommands, --json output, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.cli import main


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.npz"
    m = sn.build_model("lenet300", seed=0)
    w = m.layers[1].weight.to_dense()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    m.layers[1].weight = sn.CSR.from_dense(w)
    sn.save_model(m, path)
    return path, m


def test_info_json_reports_true_bytes(small_model_file, capsys):
    path, model = small_model_file
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    layer = info["layers"][1]
    assert layer["format"] == "csr" and layer["shape"] == [300, 64]
    w, b = model.layers[1].weight, model.layers[1].bias.data
    assert layer["nnz"] == w.count_nonzero() + np.count_nonzero(b)
    assert layer["bytes"] == w.data.nbytes + w.indices.nbytes + w.indptr.nbytes + b.nbytes
    assert w.indices.dtype == np.uint16
    assert info["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert info["total_bytes"] < info["dense_bytes"]
    assert set(info) >= {"params", "nonzero_params", "total_bytes", "dense_bytes"}


def test_bad_file_exits_1_with_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    r = subprocess.run([sys.executable, "-m", "sparsenet", "info", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "not a sparsenet model" in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_exits_2():
    r = subprocess.run([sys.executable, "-m", "sparsenet", "train", "--model", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_demo_quick_writes_figures(tmp_path, capsys):
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "demo.json").read_text())
    assert figures["dense"]["lenet300"]["accuracy"] > 0.9
    assert (tmp_path / "lenet300-dense.safetensors").exists()
    pruned = figures["pruned"]
    assert len(pruned) == 2
    for row in pruned.values():
        # "auto" keeps a layer dense where sparse measured slower (a loaded machine): never bigger
        assert row["accuracy"] > 0.85 and row["bytes"] <= row["bytes_before"]
        assert set(row["measured_speedup"]) == {"batch1", "batch64"}
        assert all(v > 0 for v in row["measured_speedup"].values())
    neurons = pruned["neurons 50% (structured)"]
    assert [r["shape_after"] for r in neurons["layers"]] == [[150, 64], [50, 150], [10, 50]]
    assert neurons["bytes"] < neurons["bytes_before"]  # removed units are gone whatever the formats


def test_prune_cli_reports_and_saves(small_model_file, tmp_path, capsys):
    path, _ = small_model_file
    out = tmp_path / "p.npz"
    assert main(["prune", str(path), "-o", str(out), "--sparsity", "0.8", "--scope", "global",
                 "--format", "csr", "--dataset", "digits", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["pruning"]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert 0 <= payload["accuracy_after"] <= 1 and 0 <= payload["accuracy_before"] <= 1
    rows = payload["report"]["layers"]
    assert [r["format"] for r in rows] == ["csr", "csr", "csr"]
    assert payload["report"]["totals"]["bytes_after"] < payload["report"]["totals"]["bytes_before"]
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_bytes"] == payload["report"]["totals"]["bytes_after"]


def test_prune_cli_per_layer_targets_and_errors(small_model_file, tmp_path, capsys):
    path, _ = small_model_file
    out = tmp_path / "p.npz"
    assert main(["prune", str(path), "-o", str(out), "--sparsity", "3=0.5,5=0.75", "--format", "dense",
                 "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["pruning"]["layers"]
    assert layers["3"]["reached"] == pytest.approx(0.5) and layers["5"]["reached"] == pytest.approx(0.75)
    assert "1" not in layers  # not targeted: left as it was
    assert main(["prune", str(path), "-o", str(out), "--method", "taylor"]) == 1
    assert "needs data" in capsys.readouterr().err
    assert main(["prune", str(path), "-o", str(out), "--sparsity", "lots"]) == 1


def test_predict_input_that_is_not_npy_says_so(small_model_file, tmp_path, capsys):
    import pickle

    path, _ = small_model_file
    (tmp_path / "x.txt").write_text("0.1 0.2 0.3\n")
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(np.zeros((2, 1, 8, 8))))
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, 8, 8)))
    (tmp_path / "empty.npy").write_bytes(b"")
    for name in ("x.txt", "x.pkl", "x.npz", "empty.npy"):
        x = tmp_path / name
        assert main(["predict", str(path), "--input", str(x), "--output", str(tmp_path / "y.npy")]) == 1, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--input {str(x)!r}" in err and "not a .npy array" in err, err
        assert "pickled" not in err and not (tmp_path / "y.npy").exists()


def test_interrupt_exits_130_with_one_line(small_model_file, monkeypatch, capsys):
    import sparsenet.io

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(sparsenet.io, "load_model", interrupted)
    path, _ = small_model_file
    assert main(["info", str(path)]) == 130
    assert capsys.readouterr().err == "sparsenet info: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "info", str(path)])


def test_ctrl_c_stops_a_long_command_with_exit_130():
    import os
    import select
    import signal
    import time

    # SIGINT's default disposition, even under a runner that starts jobs with it ignored
    proc = subprocess.Popen([sys.executable, "-m", "sparsenet", "train", "--model", "mlp", "--epochs", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err, deadline = b"", time.monotonic() + 60
    try:
        while b"epoch" not in err and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.1)[0]:  # wait for the progress bar: training has begun
                err += os.read(proc.stderr.fileno(), 4096)
        assert proc.poll() is None and b"epoch" in err, err
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    err = (err + rest).decode()
    assert proc.returncode == 130 and out == b""
    # the progress bar rewrites its line with \r and adds no newline: one line on the terminal
    assert err.count("\n") == 1 and err.endswith("sparsenet train: interrupted\n") and "Traceback" not in err


def test_help_imports_only_the_parsers():
    # `sparsenet --help` stays fast: commands import the library's heavy parts when they run
    heavy = ("sparsenet.cli", "sparsenet.sweep", "sparsenet.onnx", "sparsenet.prune", "sparsenet.demo",
             "sparsenet.quantize", "sparsenet.bench", "sparsenet.data", "tqdm", "matplotlib", "onnx", "dask")
    code = ("import sys, sparsenet; before = set(sys.modules); from sparsenet.cli import build_parser; "
            f"build_parser(); print(' '.join(m for m in sorted(sys.modules) if m.startswith({heavy!r}) "
            "and not m.startswith('sparsenet.cli')), 'sparsenet.cli' in before)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False"]  # and `import sparsenet` alone does not import the CLI


def test_library_modules_parse_no_command_lines():
    import pathlib

    root = pathlib.Path(sn.__file__).parent
    for path in root.rglob("*.py"):
        if root / "cli" in path.parents or path.name == "__main__.py":
            continue
        text = path.read_text()
        assert "argparse" not in text and "from .cli" not in text and "from ..cli" not in text, path


def test_predict_a_graph_of_named_inputs_and_outputs(tmp_path, capsys):
    from sparsenet.nn import Add, Graph, Linear

    g = Graph({"u": (3,), "v": (3,)}, [("s", Add(), ["u", "v"]), ("head", Linear(3, 2, seed=1), ["s"])],
              ["s", "head"])
    sn.save_model(g, tmp_path / "g.safetensors")
    rng = np.random.default_rng(0)
    u, v = rng.random((5, 3), np.float32), rng.random((5, 3), np.float32)
    np.save(tmp_path / "u.npy", u)
    np.save(tmp_path / "v.npy", v)
    argv = ["predict", str(tmp_path / "g.safetensors"), "--input", f"u={tmp_path / 'u.npy'}",
            "--input", f"v={tmp_path / 'v.npy'}", "--output", f"s={tmp_path / 's.npy'}",
            "--output", f"head={tmp_path / 'head.npy'}", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_shape"] == {"u": [5, 3], "v": [5, 3]} and out["output_shape"] == {"s": [5, 3], "head": [5, 2]}
    want = g.eval().forward(u, v)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), want[0], rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "head.npy"), want[1], rtol=1e-5, atol=1e-6)
    # one plain output path for a model of two outputs; a missing input: one line each, exit 1
    for bad in (argv[:6] + ["--output", str(tmp_path / "y.npy")], argv[:4] + argv[6:]):
        assert main(bad) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("head" in err or "missing ['v']" in err), err


def test_a_reader_that_goes_away_is_not_an_error(small_model_file):
    # ``sparsenet info m | head -1``: the pipe closes before the table is written
    path, _ = small_model_file
    p = subprocess.Popen([sys.executable, "-m", "sparsenet", "info", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Broken pipe" not in err and "Error" not in err, err


def test_prune_a_graph_by_its_groups_then_info_and_bench_against_the_original(tmp_path, capsys):
    """`sparsenet prune --granularity filter` on a graph lists the groups it removed (nodes, channels
    before -> after), `info` shows them again, `bench --baseline` times the pair; a transformer
    prunes heads, its indices benchmarked as indices."""
    original = tmp_path / "resnet.safetensors"
    sn.save_model(sn.build_model("resnet", seed=0), original)
    out = tmp_path / "half.safetensors"
    assert main(["prune", str(original), "-o", str(out), "--granularity", "filter", "--sparsity", "0.5",
                 "--format", "dense"]) == 0
    text = capsys.readouterr().out
    assert "group" in text and "stem" in text and "16 -> 8" in text and "s2b1_proj_bn" in text
    assert main(["info", str(out)]) == 0
    assert "s3b1_proj" in capsys.readouterr().out
    assert main(["bench", str(out), "--baseline", str(original), "--batch", "2", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline"] == str(original) and result["batches"][0]["speedup"] > 0
    t = tmp_path / "t.safetensors"
    sn.save_model(sn.build_model("transformer", seed=0), t)
    assert main(["prune", str(t), "-o", str(tmp_path / "t2.safetensors"), "--granularity", "head",
                 "--sparsity", "0.5", "--format", "dense", "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["removed_units"]
    assert {k: (v["before"], v["after"]) for k, v in removed.items()} == {"l1_q": (2, 1), "l2_q": (2, 1)}
    assert main(["bench", str(tmp_path / "t2.safetensors"), "--batch", "1", "--repeats", "1"]) == 0  # int inputs
    capsys.readouterr()
    assert main(["bench", str(tmp_path / "t2.safetensors"), "--baseline", str(original), "--batch", "1"]) == 1
    assert "takes other inputs" in capsys.readouterr().err


def test_train_sparse_from_scratch_saves_csr_at_the_sparsity(tmp_path, capsys):
    out = tmp_path / "rigl.safetensors"
    assert main(["train", "--model", "lenet300", "--epochs", "3", "--sparse-train", "rigl", "--sparsity", "0.8",
                 "--delta-t", "20", "-o", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["sparse_training"]["method"] == "rigl" and figures["sparse_training"]["updates"] > 0
    assert figures["test_accuracy"] > 0.5
    model = sn.load(out)
    layers = sn.prune.prunable_layers(model)
    dense = model.meta["pruning"]["dense"]
    assert dense == ["5"]  # ERK gives the 100 -> 10 layer all it holds
    assert all(isinstance(layer.weight, sn.Dense if n in dense else sn.CSR) for n, layer in layers.items())
    stored = sum(layer.weight.nnz for layer in layers.values())
    total = sum(int(np.prod(layer.weight_shape)) for layer in layers.values())
    assert stored / total == pytest.approx(0.2, abs=0.005)
    assert model.meta["pruning"]["schedule"] == "dynamic"
