"""The public API as a whole: one name per action (deprecated names warn, name their replacement and
agree with it; the package never calls them), the same mistake raising the same class at every entry
point, and the Python floor that pyproject, README and the code agree on."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.data import load_dataset, train_test_split
from sparsenet.errors import ConfigError, DataError, ShapeError, SparsenetError, TimingError
from sparsenet.prune import compiled, prune, sensitivity_scan, allocate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_data(digits):
    return digits.x_train[:64], digits.y_train[:64]


def _model():
    return sn.build_model("lenet300", seed=0)


# -- one name per action -----------------------------------------------------------------------------

def test_deprecated_names_warn_name_their_replacement_and_agree(tmp_path, digits):
    import sparsenet.train

    model = _model()
    path = tmp_path / "m.safetensors"
    sn.save_model(model, path)
    x = digits.x_test[:16]
    with pytest.warns(DeprecationWarning, match=r"sparsenet\.load_model is deprecated.*0\.3.*sparsenet\.load"):
        old = sn.load_model(path)
    np.testing.assert_array_equal(sn.predict(old, x), sn.predict(sn.load(path), x))
    with pytest.warns(DeprecationWarning, match=r"sparsenet\.train\.predict is deprecated.*sparsenet\.predict"):
        np.testing.assert_array_equal(sparsenet.train.predict(model, x), sn.predict(model, x))
    assert "load_model" not in sn.__all__ and "predict" not in sparsenet.train.__all__
    assert "compile" not in sn.prune.__all__ and "compiled" in sn.prune.__all__


def test_one_function_behind_each_kept_name():
    from sparsenet import nn, runtime

    assert sn.predict is runtime.predict  # model.predict calls it: test_runtime checks they agree
    assert sn.load is runtime.load
    assert nn.model_dtype(_model()) == np.float32
    assert nn.model_dtype(nn.Sequential(nn.ReLU(), nn.Linear(2, 2, dtype=np.float64))) == np.float64
    assert nn.model_dtype(nn.Sequential(nn.BatchNorm1d(3, dtype=np.float64))) == np.float64
    assert nn.model_dtype(nn.Sequential(nn.ReLU())) == np.float32


# Deprecated names as they would appear in the package's own source.
_DEPRECATED_CALLS = [
    (r"\bimport\s+compile\b|\bprune\.compile\(|import compile as", "sparsenet.prune.compile"),
    (r"\bcompiler\s+import\s+[^\n]*\bcompile_model\b|\bcompiler\.compile_model\(", "compiler.compile_model"),
    (r"\bformat_spec_of\(", "format_spec_of"),
    (r"\bsn\.load_model\(|\bsparsenet\.load_model\(|from \.\. import load_model|from \. import load_model",
     "sparsenet.load_model"),
    (r"\btrain import [^\n]*\bpredict\b", "sparsenet.train.predict"),
]


def test_the_package_source_never_calls_a_deprecated_name():
    offenders = []
    files = [*ROOT.joinpath("sparsenet").rglob("*.py"), *ROOT.joinpath("benchmarks").rglob("*.py")]
    # not our sources: virtual environments (benchmarks/.venv-deepsparse) and other hidden folders
    files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    for path in files:
        if path.name == "_deprecation.py":
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):  # definitions of the deprecated names are fine; calls are not
            if isinstance(node, ast.FunctionDef) and node.name in ("compile", "compile_model", "format_spec_of"):
                text = text.replace(ast.get_source_segment(text, node), "")
        for pattern, name in _DEPRECATED_CALLS:
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    for path in ROOT.joinpath("notebooks").glob("*.ipynb"):
        text = path.read_text()
        for pattern, name in _DEPRECATED_CALLS:
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders


def test_main_paths_raise_no_deprecation_warning_from_sparsenet(tmp_path, digits, small_data):
    """Everything a user does first, with sparsenet's own DeprecationWarnings as errors."""
    from sparsenet.prune.report import pruning_report
    from sparsenet.quantize import quantize_model
    from sparsenet.summary import summarize

    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=DeprecationWarning, module=r"sparsenet")
        model = _model()
        sn.fit(model, *small_data, epochs=1, quiet=True)
        sn.evaluate(model, digits.x_test, digits.y_test)
        sn.predict(model, digits.x_test[0])
        model.predict(digits.x_test)
        original = sn.build_model("lenet300", seed=0)
        prune(model, sparsity=0.5, train_data=small_data, finetune_epochs=1)
        prune(sn.build_model("lenet300", seed=0), method="movement", schedule="gradual", sparsity=0.5,
              train_data=small_data, finetune_epochs=1)
        small = compiled(model, "csr")
        summarize(small)
        pruning_report(original, small)
        quantize_model(small)
        sensitivity_scan(model, (digits.x_test[:32], digits.y_test[:32]), sparsities=(0.5,), time_layers=False)
        sn.save_model(small, tmp_path / "small.safetensors")
        sn.load(tmp_path / "small.safetensors").predict(digits.x_test[:4])


# -- the same mistake, the same class ------------------------------------------------------------

def _mistakes():
    m, x, y = _model, lambda: np.zeros((4, 1, 8, 8), np.float32), lambda: np.zeros(4, np.int64)
    calib = lambda: (x(), y())  # noqa: E731
    scan = {"sparsities": [0.0, 0.5], "baseline_accuracy": 0.9, "layers": {"1": {"params": 10,
            "accuracy": [0.9, 0.9], "reached": [0.0, 0.5], "latency_us": {}}}}
    cases = {}
    for bad in (0, -1, 2.5, True, "8"):
        cases |= {
            f"predict batch_size={bad!r}": (lambda b=bad: sn.predict(m(), x(), batch_size=b), ConfigError, "batch_size"),
            f"model.predict batch_size={bad!r}": (lambda b=bad: m().predict(x(), batch_size=b), ConfigError,
                                                  "batch_size"),
            f"evaluate batch_size={bad!r}": (lambda b=bad: sn.evaluate(m(), x(), y(), batch_size=b), ConfigError,
                                             "batch_size"),
            f"fit batch_size={bad!r}": (lambda b=bad: sn.fit(m(), x(), y(), batch_size=b, quiet=True), ConfigError,
                                        "batch_size"),
            f"prune batch_size={bad!r}": (lambda b=bad: prune(m(), batch_size=b), ConfigError, "batch_size"),
            f"compiled batch_size={bad!r}": (lambda b=bad: compiled(m(), "csr", batch_size=b), ConfigError,
                                             "batch_size"),
            f"sensitivity_scan batch_size={bad!r}": (lambda b=bad: sensitivity_scan(m(), calib(), batch_size=b),
                                                     ConfigError, "batch_size"),
        }
    from sparsenet.bench import bench_model

    for bad in (0, -2, 1.5, "1"):
        cases |= {
            f"bench batch={bad!r}": (lambda b=bad: bench_model(m(), batches=(b,)), ConfigError, "batch size"),
            f"bench repeats={bad!r}": (lambda b=bad: bench_model(m(), batches=(1,), repeats=b), ConfigError,
                                       "repeats"),
        }
    for bad in (-1, 1.5, None, "0"):
        cases |= {
            f"fit seed={bad!r}": (lambda s=bad: sn.fit(m(), x(), y(), seed=s, quiet=True), ConfigError, "seed"),
            f"prune seed={bad!r}": (lambda s=bad: prune(m(), seed=s), ConfigError, "seed"),
            f"compiled seed={bad!r}": (lambda s=bad: compiled(m(), "csr", seed=s), ConfigError, "seed"),
            f"train_test_split seed={bad!r}": (lambda s=bad: train_test_split(x(), y(), seed=s), ConfigError, "seed"),
            f"load_dataset seed={bad!r}": (lambda s=bad: load_dataset("digits", seed=s), ConfigError, "seed"),
        }
    for bad in (1.5, -0.1, "half", None):
        cases |= {
            f"prune sparsity={bad!r}": (lambda s=bad: prune(m(), sparsity=s), ConfigError, "sparsity"),
            f"prune per-layer sparsity={bad!r}": (lambda s=bad: prune(m(), sparsity={"1": s}), ConfigError,
                                                  "sparsity"),
            f"sensitivity_scan sparsities={bad!r}": (lambda s=bad: sensitivity_scan(m(), calib(), sparsities=(s,)),
                                                     ConfigError, "sparsities"),
            f"allocate target_sparsity={bad!r}": (lambda s=bad: allocate(scan, target_sparsity=s), ConfigError,
                                                  "target_sparsity"),
        }
    for bad in (0.0, -1e-3, "0.1"):
        cases |= {
            f"fit lr={bad!r}": (lambda r=bad: sn.fit(m(), x(), y(), lr=r, quiet=True), ConfigError, "lr"),
            f"Adam lr={bad!r}": (lambda r=bad: sn.Adam(m().parameters(), lr=r), ConfigError, "lr"),
            f"SGD lr={bad!r}": (lambda r=bad: sn.SGD(m().parameters(), lr=r), ConfigError, "lr"),
        }
    cases |= {
        "unknown model": (lambda: sn.build_model("vgg16"), ConfigError, "unknown model"),
        "unknown dataset": (lambda: load_dataset("mnist"), ConfigError, "unknown dataset"),
        "unknown method": (lambda: prune(m(), method="nope"), ConfigError, "unknown pruning method"),
        "unknown granularity": (lambda: prune(m(), granularity="nope"), ConfigError, "unknown granularity"),
        "unknown schedule": (lambda: prune(m(), schedule="nope"), ConfigError, "unknown schedule"),
        "unknown scope": (lambda: prune(m(), scope="nope"), ConfigError, "unknown scope"),
        "unknown format spec": (lambda: compiled(m(), "coo"), ConfigError, "format spec"),
        "movement one-shot": (lambda: prune(m(), method="movement", data=calib()), ConfigError, "movement"),
        "set_num_threads 0": (lambda: sn.set_num_threads(0), ConfigError, "set_num_threads"),
        "predict wrong shape": (lambda: sn.predict(m(), np.zeros((4, 64))), ShapeError, r"\[N, 1, 8, 8\]"),
        "evaluate wrong shape": (lambda: sn.evaluate(m(), np.zeros((4, 64)), y()), ShapeError, r"\[N, 1, 8, 8\]"),
        "evaluate one sample": (lambda: sn.evaluate(m(), np.zeros((1, 8, 8)), y()[:1]), ShapeError, "evaluate"),
        "predict NaN": (lambda: sn.predict(m(), np.full((2, 1, 8, 8), np.nan)), DataError, "NaN"),
        "evaluate NaN": (lambda: sn.evaluate(m(), np.full((4, 1, 8, 8), np.nan), y()), DataError, "NaN"),
        "fit NaN": (lambda: sn.fit(m(), np.full((4, 1, 8, 8), np.nan), y(), quiet=True), DataError, "NaN"),
    }
    return cases


MISTAKES = _mistakes()


@pytest.mark.parametrize("case", list(MISTAKES))
def test_the_same_mistake_raises_the_same_class_everywhere(case):
    call, cls, match = MISTAKES[case]
    with pytest.raises(cls, match=match) as info:
        call()
    assert isinstance(info.value, SparsenetError) and type(info.value) is cls


def test_error_hierarchy_refines_the_builtins():
    from sparsenet.onnx import OnnxImportError

    for cls in (ConfigError, DataError, ShapeError, sn.FormatError, sn.ModelFileError, OnnxImportError,
                TimingError):
        assert issubclass(cls, SparsenetError) and issubclass(cls, ValueError)
    assert issubclass(sn.DTypeError, TypeError) and issubclass(TimingError, ConfigError)
    doc = sn.errors.__doc__
    assert all(c in doc for c in ("ConfigError", "DataError", "ShapeError", "DTypeError", "FormatError",
                                  "ModelFileError", "OnnxImportError", "TimingError"))


# -- the Python floor --------------------------------------------------------------------------------

def test_python_floor_is_the_same_everywhere_and_met():
    """requires-python is 3.11 (tomllib, for study files); CI runs 3.11, so it runs the floor."""
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert floor and (int(floor[1]), int(floor[2])) == (3, 11)
    assert sys.version_info[:2] >= (3, 11)
    readme = ROOT.joinpath("README.md").read_text()
    assert "Python ≥ 3.11" in readme and "3.10" not in readme
    config = ROOT.joinpath("sparsenet", "sweep", "config.py").read_text()
    assert re.search(r"^import tomllib\b", config, re.M), "tomllib is imported at module level"
    assert "tomli" not in config.replace("tomllib", "")


def test_study_files_read_as_toml():
    import sparsenet.sweep as sw
    from sparsenet.sweep.config import load_config

    cfg = load_config(sw.example_path("digits-small"))
    assert cfg.name == "digits-small" and cfg.points()
