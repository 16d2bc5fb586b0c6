"""Pruning sweeps: configuration, results store, tables, and the runner on a process pool and on Dask
(identical metrics, resume after a kill, failures recorded, lost workers retried)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sparsenet.errors import SparsenetError
from sparsenet.sweep import (POINT_FIELDS, ResultStore, dense_key, example_path, load_config,
                             parse_config, point_key, run_point, run_sweep, summarize_rows, train_dense)
from sparsenet.sweep import runner as sweep_runner
from sparsenet.sweep.__main__ import main as sweep_main

SMALL = example_path("digits-small")


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def _point_events(store):
    keys = [e["key"] for e in store.events() if e["event"] == "point"]
    return {k: keys.count(k) for k in keys}


def _metrics_by_key(out_dir):
    store = ResultStore(out_dir)
    return {k: r["metrics"] for k, r in store.load_all()["points"].items()}


# -- configuration ----------------------------------------------------------------------------------
def test_example_grid_expands_seed_innermost_with_distinct_keys():
    cfg = load_config(SMALL)
    points = cfg.points()
    assert len(points) == 8 and all(set(p) == set(POINT_FIELDS) for p in points)
    assert [p["seed"] for p in points[:4]] == [0, 1, 0, 1]
    assert [(p["method"], p["sparsity"]) for p in points[::2]] == [
        ("magnitude", 0.5), ("magnitude", 0.9), ("random", 0.5), ("random", 0.9)]
    keys = [point_key(p) for p in points]
    assert len(set(keys)) == 8 and all(len(k) == 64 for k in keys)
    # points of one seed share one dense baseline, whatever their pruning settings
    assert len({dense_key(p) for p in points}) == 2
    assert dense_key(points[0]) == dense_key(points[2]) != dense_key(points[1])


def test_keys_ignore_name_timing_metrics_and_file_order_but_not_settings():
    a = parse_config({"name": "a", "grid": {"sparsity": [0.5, 0.9], "method": ["magnitude"]}})
    b = parse_config({"name": "b", "metrics": ["accuracy"], "timing": {"repeats": 9},
                      "grid": {"method": ["magnitude"], "sparsity": [0.5, 0.9]}})
    assert [point_key(p) for p in a.points()] == [point_key(p) for p in b.points()]
    c = parse_config({"prune": {"finetune_epochs": 1}, "grid": {"sparsity": [0.5, 0.9]}})
    assert point_key(a.points()[0]) != point_key(c.points()[0])
    # 1 and 1.0 are the same learning rate
    d = parse_config({"train": {"lr": 1}, "grid": {"sparsity": [0.5]}})
    e = parse_config({"train": {"lr": 1.0}, "grid": {"sparsity": [0.5]}})
    assert point_key(d.points()[0]) == point_key(e.points()[0])


def test_toml_json_and_yaml_studies_give_the_same_points(tmp_path):
    study = {"model": "mlp", "train": {"epochs": 1}, "grid": {"method": ["magnitude", "l2"], "seed": [0, 3]}}
    toml = _write(tmp_path / "s.toml", """
        model = "mlp"
        [train]
        epochs = 1
        [grid]
        method = ["magnitude", "l2"]
        seed = [0, 3]
        """)
    (tmp_path / "s.json").write_text(json.dumps(study))
    keys = [point_key(p) for p in load_config(toml).points()]
    assert keys == [point_key(p) for p in load_config(tmp_path / "s.json").points()]
    yaml = pytest.importorskip("yaml")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    assert keys == [point_key(p) for p in load_config(tmp_path / "s.yaml").points()]


@pytest.mark.parametrize("raw, message", [
    ({"prune": {"sparsty": 0.5}}, "unknown setting(s) 'sparsty'"),
    ({"grid": {"sparsity": 0.5}}, "grid.sparsity: expected a non-empty list"),
    ({"grid": {"sparsity": []}}, "grid.sparsity: expected a non-empty list"),
    ({"grid": {"sparsity": [0.5, 0.5]}}, "appears twice"),
    ({"grid": {"sparsity": [0.5, 1.5]}}, "grid.sparsity: expected a number in [0.0, 1.0]"),
    ({"grid": {"train_epochs": [1, 2]}}, "unknown setting(s) 'train_epochs'"),
    ({"prune": {"scope": "model"}}, "prune.scope: expected one of 'layer', 'global'"),
    ({"prune": {"finetune_epochs": -1}}, "prune.finetune_epochs: expected an integer >= 0"),
    ({"prune": {"format": "auto"}}, "'auto' chooses formats by timing them"),
    ({"prune": {"format": "coo"}}, "format spec"),
    ({"prune": {"sparsity": 0.5}, "grid": {"sparsity": [0.5, 0.9]}}, "both as a fixed setting and as a grid axis"),
    ({"seeds": [0, 1]}, "seeds are a grid axis"),
    ({"train": {"epochs": True}}, "train.epochs: expected an integer"),
    ({"timing": {"batch_sizes": [0]}}, "timing.batch_sizes"),
    ({"metrics": ["acuracy"]}, "unknown metric(s) ['acuracy']"),
    ({"model": ""}, "model: expected a non-empty string"),
    ({"grid": "x"}, "[grid] must be a table"),
    ({"name": "../up"}, "it names the results directory"),
])
def test_invalid_studies_are_refused_with_the_setting_named(raw, message):
    with pytest.raises(SparsenetError) as e:
        parse_config(raw)
    assert message in str(e.value)


def test_unreadable_study_files(tmp_path):
    with pytest.raises(SparsenetError, match="cannot read it"):
        load_config(tmp_path / "missing.toml")
    bad = _write(tmp_path / "bad.toml", "model = \n")
    with pytest.raises(SparsenetError, match="not valid TOML"):
        load_config(bad)
    (tmp_path / "s.ini").write_text("")
    with pytest.raises(SparsenetError, match="expected a .toml, .json, .yaml"):
        load_config(tmp_path / "s.ini")
    with pytest.raises(SparsenetError, match="unknown example study"):
        example_path("nope")


# -- store and tables --------------------------------------------------------------------------------
def test_opening_a_store_leaves_a_live_writers_temporary_alone(tmp_path):
    from sparsenet.io.atomic import atomic_writer

    ResultStore(tmp_path)
    target = tmp_path / "points" / ("b" * 64 + ".json")
    with atomic_writer(target) as f:
        f.write(b"{}")
        ResultStore(tmp_path)  # a second driver looking at the directory (its lock() would refuse it)
    assert target.read_bytes() == b"{}"


def test_store_writes_atomically_and_takes_over_a_dead_drivers_lock(tmp_path):
    store = ResultStore(tmp_path)
    key = "a" * 64
    (tmp_path / "points" / f".{key}.json.123.tmp").write_text("{half a rec")  # a writer killed mid-way
    store = ResultStore(tmp_path)
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path / "points"))  # opening alone removes nothing
    store.lock()
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path / "points"))
    store.unlock()
    assert store.point(key) is None
    store.write_point({"key": key, "metrics": {"accuracy": 1.0}})
    assert store.point(key)["metrics"] == {"accuracy": 1.0} and _point_events(store) == {key: 1}
    # a lock left by a process that no longer exists is taken over; a live one is refused
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "lock.json").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    store.lock()
    assert json.loads((tmp_path / "lock.json").read_text())["pid"] == os.getpid()
    store.unlock()
    assert not (tmp_path / "lock.json").exists()
    (tmp_path / "lock.json").write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(SparsenetError, match="is in use by process"):
        ResultStore(tmp_path).lock()


def test_summary_mean_and_std_across_seeds_on_hand_made_rows():
    rows = [
        {"method": "magnitude", "sparsity": 0.5, "seed": 0, "accuracy": 0.90, "bytes": 100, "note": "x"},
        {"method": "magnitude", "sparsity": 0.5, "seed": 1, "accuracy": 0.80, "bytes": 100, "note": "x"},
        {"method": "magnitude", "sparsity": 0.5, "seed": 2, "accuracy": 0.85, "bytes": 130, "note": "x"},
        {"method": "random", "sparsity": 0.5, "seed": 0, "accuracy": 0.40, "bytes": 100, "note": "x"},
        {"method": "magnitude", "sparsity": 0.9, "seed": 0, "accuracy": 0.70, "bytes": None, "note": "x"},
        {"method": "magnitude", "sparsity": 0.9, "seed": 1, "accuracy": "n/a", "bytes": 50, "note": "x"},
    ]
    s = summarize_rows(rows, group_by=["method", "sparsity"], metrics=["accuracy", "bytes"])
    assert [(r["method"], r["sparsity"], r["n"], r["seeds"]) for r in s] == [
        ("magnitude", 0.5, 3, "0,1,2"), ("random", 0.5, 1, "0"), ("magnitude", 0.9, 2, "0,1")]
    assert s[0]["accuracy_mean"] == pytest.approx(0.85)
    assert s[0]["accuracy_std"] == pytest.approx(np.std([0.9, 0.8, 0.85], ddof=1))
    assert s[0]["bytes_mean"] == pytest.approx(110) and s[0]["bytes_std"] == pytest.approx(np.std([100, 100, 130], ddof=1))
    assert s[1]["accuracy_mean"] == 0.4 and s[1]["accuracy_std"] is None  # one seed: no spread to report
    # values that are not numbers are left out of the statistics
    assert s[2]["accuracy_mean"] == 0.7 and s[2]["accuracy_std"] is None and s[2]["bytes_mean"] == 50
    assert "note_mean" not in s[0] and "seed" not in s[0]
    # by default every setting but the seed groups, and every metric present is summarised
    auto = summarize_rows(rows)
    assert len(auto) == 3 and "accuracy_mean" in auto[0] and "bytes_mean" in auto[0]


# -- the task -------------------------------------------------------------------------------------------
def test_run_point_is_deterministic_and_matches_a_stored_baseline():
    point = parse_config({"model": "mlp", "train": {"epochs": 1},
                          "prune": {"sparsity": 0.8, "finetune_epochs": 1}}).points()[0]
    dense = train_dense(point)
    assert dense["key"] == dense_key(point) and isinstance(dense["model_file"], bytes)
    a = run_point(point, dense["model_file"])
    b = run_point(point)  # trains its own baseline: the same bits as the stored one
    assert a["key"] == point_key(point) and a["metrics"] == b["metrics"]
    m = a["metrics"]
    assert m["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert m["bytes"] < m["bytes_dense"] and m["flops_speedup"] > 3
    assert m["dense_accuracy"] == dense["metrics"]["accuracy"]
    assert 0 <= m["accuracy"] <= 1 and set(m) >= {"precision", "recall", "f1", "params"}
    assert [layer["format"] for layer in a["layers"]] == ["csr", "csr", "csr"]  # fewest bytes at 80 %
    with pytest.raises(SparsenetError, match="unknown pruning method"):
        run_point({**point, "method": "nosuch"}, dense["model_file"])


# -- the runner ---------------------------------------------------------------------------------------
def test_backend_choice_and_settings(monkeypatch):
    from sparsenet.sweep import backends

    monkeypatch.setattr(backends, "dask_available", lambda: False)
    be = backends.make_backend("auto", workers=1)  # without Dask: the process pool, nothing to install
    try:
        assert be.name == "processes" and be.workers == 1
    finally:
        be.close()
    for kwargs, message in [({"backend": "threads"}, "expected 'auto', 'dask' or 'processes'"),
                            ({"workers": 0}, "workers: expected a positive integer"),
                            ({"scheduler": "tcp://h:8786", "workers": 2}, "drop one of them"),
                            ({"scheduler": "tcp://h:8786", "backend": "processes"}, "needs the dask backend")]:
        with pytest.raises(SparsenetError, match=message):
            backends.check_backend(**kwargs)


@pytest.fixture(scope="module")
def process_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "processes"
    res = run_sweep(SMALL, out_dir=out, backend="processes", workers=2, progress=False)
    return out, res


def test_process_pool_sweep_stores_every_point_metric_and_timing(process_sweep):
    out, res = process_sweep
    assert (res.points, res.computed, res.skipped, res.failed, res.timed) == (8, 8, 0, 0, 8)
    assert res.backend == "processes" and len(res.rows) == 8 and len(res.summary) == 4
    row = res.rows[0]
    for col in ("accuracy", "precision", "recall", "f1", "sparsity", "bytes", "params", "flops_speedup",
                "measured_speedup_b1", "measured_speedup_b64", "method", "sparsity", "seed", "key"):
        assert col in row, col
    assert row["measured_speedup_b1"] > 0 and row["dense_latency_us_b64"] > 0
    s = res.summary[0]
    assert s["n"] == 2 and s["seeds"] == "0,1" and s["accuracy_std"] is not None
    # timings live apart from the (deterministic) point records
    store = ResultStore(out)
    assert "measured_speedup_b1" not in store.point(row["key"])["metrics"]
    assert store.timing(row["key"])["batches"]["64"]["speedup"] == row["measured_speedup_b64"]
    for name in ("results.csv", "summary.csv", "results.json"):
        assert os.path.exists(res.files[name])
    header = open(res.files["results.csv"]).readline().strip().split(",")
    assert header[:2] == ["key", "model"] and "accuracy" in header
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert os.path.exists(res.files["accuracy.png"]) and os.path.exists(res.files["speedup.png"])
    assert not os.path.exists(out / "lock.json")


def test_rerun_skips_every_finished_point(process_sweep):
    out, _ = process_sweep
    res = run_sweep(SMALL, out_dir=out, backend="processes", workers=2, progress=False)
    assert (res.computed, res.skipped, res.timed, res.backend) == (0, 8, 0, None)  # no pool was even started
    assert len(res.rows) == 8
    assert set(_point_events(ResultStore(out)).values()) == {1}  # each point was computed exactly once


def test_local_cluster_gives_the_same_metrics_as_the_process_pool(process_sweep, tmp_path):
    pytest.importorskip("dask.distributed")
    out, _ = process_sweep
    res = run_sweep(SMALL, out_dir=tmp_path / "dask", backend="dask", workers=2, timing=False, progress=False)
    assert res.backend == "dask" and (res.computed, res.failed) == (8, 0)
    assert _metrics_by_key(tmp_path / "dask") == _metrics_by_key(out)
    pids = {r["info"]["pid"] for r in ResultStore(tmp_path / "dask").load_all()["points"].values()}
    assert os.getpid() not in pids  # computed by the cluster's workers, not the driver


def test_an_existing_scheduler_by_address_runs_the_same_code_path(process_sweep, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    out, _ = process_sweep
    cfg = parse_config({"name": "two", "train": {"epochs": 2}, "prune": {"finetune_epochs": 1},
                        "grid": {"method": ["magnitude"], "sparsity": [0.9], "seed": [0, 1]}})
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        res = run_sweep(cfg, out_dir=tmp_path / "remote", scheduler=cluster.scheduler_address,
                        timing=False, plots=False, progress=False)
    assert res.backend == "dask" and res.computed == 2
    expected = _metrics_by_key(out)
    for key, metrics in _metrics_by_key(tmp_path / "remote").items():
        assert metrics == expected[key]  # the same points as in the 8-point study


def test_a_point_that_raises_is_recorded_and_the_others_are_returned(tmp_path, capsys):
    study = _write(tmp_path / "bad.toml", """
        name = "bad"
        model = "mlp"
        [train]
        epochs = 1
        [grid]
        method = ["magnitude", "nosuch"]
        """)
    out = tmp_path / "out"
    code = sweep_main([str(study), "--out", str(out), "--backend", "processes", "--workers", "1", "--json",
                       "--no-timing", "--no-plots"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1 and (payload["computed"], payload["failed"]) == (1, 1)
    store = ResultStore(out)
    (fail,) = store.load_all()["failures"].values()
    assert fail["point"]["method"] == "nosuch" and fail["attempts"] == 1  # bad input: not retried
    assert "unknown pruning method 'nosuch'" in fail["error"] and "Traceback" in fail["traceback"]
    assert payload["failures"][0]["key"] == fail["key"]
    # a re-run tries the failed point again, never the finished one
    res = run_sweep(study, out_dir=out, backend="processes", workers=1, timing=False, plots=False, progress=False)
    assert (res.computed, res.skipped, res.failed) == (0, 1, 1)
    assert len(res.rows) == 1 and res.rows[0]["method"] == "magnitude"
    assert [e["event"] for e in store.events()].count("failure") == 2


def _crash_first_attempt(point, dense):
    """A point task whose worker process dies the first time it runs each point."""
    marker = os.path.join(os.environ["SPARSENET_SWEEP_TEST_MARKERS"], point_key(point))
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return run_point(point, dense)


def _always_crash(point, dense):
    os._exit(3)


def test_a_dead_worker_is_retried_then_recorded(tmp_path, monkeypatch):
    cfg = parse_config({"name": "crash", "model": "mlp", "train": {"epochs": 1},
                        "grid": {"sparsity": [0.5, 0.9]}})
    monkeypatch.setenv("SPARSENET_SWEEP_TEST_MARKERS", str(tmp_path))
    monkeypatch.setattr(sweep_runner, "_POINT_TASK", _crash_first_attempt)
    res = run_sweep(cfg, out_dir=tmp_path / "a", backend="processes", workers=1, retries=1, timing=False,
                    plots=False, progress=False)
    assert (res.computed, res.failed) == (2, 0)  # the point queued behind a crash was not charged for it
    events = [e["event"] for e in ResultStore(tmp_path / "a").events()]
    assert events.count("retry") == 2 and events.count("point") == 2

    monkeypatch.setattr(sweep_runner, "_POINT_TASK", _always_crash)
    res = run_sweep(cfg, out_dir=tmp_path / "b", backend="processes", workers=1, retries=1, timing=False,
                    plots=False, progress=False)
    assert (res.computed, res.failed) == (0, 2)
    for f in res.failures:
        assert f["attempts"] == 2 and f["error"].startswith("worker lost")


_KILL_STUDY = """
    name = "kill"
    model = "lenet300"
    [train]
    epochs = 2
    [prune]
    finetune_epochs = 4
    [grid]
    method = ["magnitude", "random"]
    sparsity = [0.5, 0.7, 0.9]
    seed = [0, 1]
    """


def _start_and_stop(cmd, out, sig):
    """Start `cmd` in its own process group, wait for its first finished point, send `sig` to the group."""
    # a runner that starts jobs in the background (CI) leaves SIGINT ignored, and a Python started
    # that way never raises KeyboardInterrupt: give the child the default disposition back
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    points = out / "points"
    while time.monotonic() < deadline and proc.poll() is None:
        if points.is_dir() and any(n.endswith(".json") for n in os.listdir(points)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def _finished(out):
    points = out / "points"
    return {n: (points / n).read_bytes() for n in os.listdir(points) if n.endswith(".json")}


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_sweep_resumes_without_recomputing_finished_points(tmp_path, how):
    study = _write(tmp_path / "kill.toml", _KILL_STUDY)
    out = tmp_path / "out"
    if how == "SIGKILL":  # the driver and its workers die at once, wherever they are
        code = (f"from sparsenet.sweep import run_sweep; run_sweep({str(study)!r}, out_dir={str(out)!r}, "
                f"backend='processes', workers=1, timing=False, progress=False)")
        rc, _ = _start_and_stop([sys.executable, "-c", code], out, signal.SIGKILL)
        assert rc == -signal.SIGKILL
    else:  # Ctrl-C in a terminal: SIGINT to the whole foreground group
        cmd = [sys.executable, "-m", "sparsenet.sweep", str(study), "--out", str(out), "--backend", "processes",
               "--workers", "1", "--no-timing", "--quiet"]
        rc, err = _start_and_stop(cmd, out, signal.SIGINT)
        assert rc == 130 and "run the same command again to resume" in err
        assert not (out / "lock.json").exists()
    before = _finished(out)
    assert 1 <= len(before) < 12

    res = run_sweep(study, out_dir=out, backend="processes", workers=2, timing=False, plots=False, progress=False)
    assert res.failed == 0 and len(res.rows) == 12
    assert res.skipped == len(before) and res.computed == 12 - len(before)
    after = _finished(out)
    assert all(after[n] == data for n, data in before.items())  # finished points were not redone
    assert set(_point_events(ResultStore(out)).values()) == {1}  # no point was computed twice


def test_cli_json_reports_a_finished_sweep(process_sweep, capsys):
    out, _ = process_sweep
    assert sweep_main([SMALL, "--out", str(out), "--json", "--backend", "processes"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["points"], payload["computed"], payload["skipped"], payload["failed"]) == (8, 0, 8, 0)
    assert sweep_main([SMALL, "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "8 already done" in text and "magnitude" in text and "±" in text
    assert sweep_main([SMALL, "--out", str(out), "--scheduler", "tcp://x:1", "--backend", "processes"]) == 1
    assert "needs the dask backend" in capsys.readouterr().err


# -- slow: Dask losing a worker, the realistic study ------------------------------------------------
@pytest.mark.slow
def test_dask_worker_death_is_retried(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    try:
        cfg = parse_config({"name": "crash", "model": "mlp", "train": {"epochs": 1},
                            "grid": {"sparsity": [0.5, 0.9]}})
        monkeypatch.setenv("SPARSENET_SWEEP_TEST_MARKERS", str(tmp_path))
        monkeypatch.setattr(sweep_runner, "_POINT_TASK", _crash_first_attempt)
        res = run_sweep(cfg, out_dir=tmp_path / "a", backend="dask", workers=2, timing=False, plots=False,
                        progress=False)
        assert (res.computed, res.failed) == (2, 0)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_realistic_study_subset_on_dask(tmp_path):
    pytest.importorskip("dask.distributed")
    raw = load_config(example_path("digits-study"))
    cfg = parse_config({"name": "subset", "train": {"epochs": 10}, "prune": {"finetune_epochs": 3},
                        "grid": {"method": ["magnitude", "taylor"], "granularity": ["unstructured", "neuron"],
                                 "sparsity": [0.5, 0.9], "schedule": ["oneshot", "gradual"], "seed": [0, 1]}})
    assert len(raw.points()) == 360
    res = run_sweep(cfg, out_dir=tmp_path, backend="dask", workers=2, progress=False)
    assert (res.computed, res.failed) == (32, 0) and len(res.summary) == 16
