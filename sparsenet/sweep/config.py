"""Sweep configuration: read a study file (TOML, JSON, or YAML with PyYAML), validate it, expand its grid
into points, and key every point by a hash of its full configuration.

A study file::

    name = "digits-small"
    model = "lenet300"          # zoo model (may also be a grid axis)
    dataset = "digits"          # 'digits' or an .npz path readable on every worker (may be a grid axis)
    metrics = ["accuracy", "f1", "sparsity", "bytes", "flops_speedup"]   # summary columns (optional)

    [train]                     # the dense baseline, trained once per (model, dataset, seed)
    epochs = 10

    [prune]                     # settings shared by every point (any of them can be a grid axis)
    finetune_epochs = 3

    [grid]                      # one point per combination, in this file's order, seed innermost
    method = ["magnitude", "random"]
    sparsity = [0.5, 0.9]
    seed = [0, 1]

    [timing]                    # the serial latency phase (measured in the driver, after all points)
    batch_sizes = [1, 64]

A point is a flat dict holding every setting that changes its result (`POINT_FIELDS`). Its key is the
SHA-256 of the point's canonical JSON together with `POINT_SCHEMA`. The sparsenet version is *not*
part of the key: re-running a study after an upgrade resumes it instead of recomputing everything
(each record stores the version that computed it, shown in the results table). `POINT_SCHEMA` is
bumped when the meaning of a point changes (what `run_point` does with it), which invalidates old
records on purpose. The study's name, timing settings and metrics list are not part of any key.

Example:
    >>> cfg = parse_config({"model": "mlp", "grid": {"sparsity": [0.5, 0.9], "seed": [0, 1]}})
    >>> pts = expand_grid(cfg)
    >>> len(pts), pts[0]["sparsity"], pts[1]["seed"]
    (4, 0.5, 1)
    >>> len(point_key(pts[0]))
    64
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tomllib  # Python >= 3.11, the floor in pyproject.toml
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, SparsenetError

__all__ = ["SweepConfig", "load_config", "parse_config", "expand_grid", "point_key", "dense_key",
           "dense_spec", "POINT_FIELDS", "POINT_SCHEMA", "METRICS"]

POINT_SCHEMA = 1


class _Field:
    """One point setting: its default and a checker returning the normalised value or raising."""

    def __init__(self, default, check, doc):
        self.default, self.check, self.doc = default, check, doc


def _str(name, value):
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a non-empty string, found {value!r}")
    return value.strip()


def _int(low):
    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}: expected an integer >= {low}, found {value!r}")
        return int(value)
    return check


def _float(low, high, *, open_low=False):
    def check(name, value):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (value > low if open_low else value >= low) and value <= high
        if not ok:
            interval = f"{'(' if open_low else '['}{low}, {high}]"
            raise ConfigError(f"{name}: expected a number in {interval}, found {value!r}")
        return float(value)
    return check


def _choice(*options):
    def check(name, value):
        if value not in options:
            raise ConfigError(f"{name}: expected one of {', '.join(map(repr, options))}, found {value!r}")
        return value
    return check


def _names(name, value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name}: expected a list of layer names, found {value!r}")
    return list(value)


def _format(name, value):
    from ..prune.compiler import parse_format_spec

    value = _str(name, value).lower()
    if value == "smallest":
        return value
    if value == "auto":
        raise ConfigError(f"{name}: 'auto' chooses formats by timing them, which inside a sweep runs on "
                          f"cores shared with other tasks; use 'smallest' (fewest bytes per layer, "
                          f"deterministic) or a fixed spec: 'dense', 'csr', 'bsrRxC'")
    fmt, bs = parse_format_spec(value)  # raises with the expected specs
    return f"bsr{bs[0]}x{bs[1]}" if fmt == "bsr" else fmt


# Method and granularity names are checked by the engine when a point runs (the engine owns them, and
# a point that fails is recorded with its error rather than stopping the whole study).
_PRUNE = {
    "method": _Field("magnitude", _str, "pruning criterion (sparsenet.prune.CRITERIA)"),
    "granularity": _Field("unstructured", _str, "'unstructured', 'neuron'/'filter', 'blockRxC', 'N:M'"),
    "scope": _Field("layer", _choice("layer", "global"), "'layer' or 'global'"),
    "normalize": _Field("mean", _choice("none", "mean", "l2"), "how the global scope compares layers"),
    "sparsity": _Field(0.5, _float(0.0, 1.0), "target fraction of pruned weights"),
    "schedule": _Field("oneshot", _choice("oneshot", "iterative", "gradual"), "pruning schedule"),
    "rounds": _Field(3, _int(1), "rounds of the iterative schedule"),
    "finetune_epochs": _Field(0, _int(0), "fine-tuning budget in epochs"),
    "finetune_lr": _Field(1e-3, _float(0.0, 1e3, open_low=True), "fine-tuning learning rate"),
    "finetune_batch_size": _Field(32, _int(1), "fine-tuning batch size"),
    "calibration": _Field(512, _int(1), "calibration samples for data-driven criteria"),
    "exclude": _Field([], _names, "layer names (or 'first'/'last') not to prune"),
    "format": _Field("smallest", _format, "storage of the compiled model: 'smallest', 'dense', 'csr', 'bsrRxC'"),
}
_TRAIN = {
    "epochs": _Field(10, _int(0), "dense training epochs"),
    "batch_size": _Field(32, _int(1), "dense training batch size"),
    "lr": _Field(1e-3, _float(0.0, 1e3, open_low=True), "dense training learning rate"),
}
_TOP = {
    "model": _Field("lenet300", _str, "zoo model"),
    "dataset": _Field("digits", _str, "'digits' or an .npz path (the same path on every worker)"),
    "split_seed": _Field(0, _int(0), "seed of the train/test split, the same for every point"),
    "test_fraction": _Field(0.25, _float(0.0, 1.0, open_low=True), "share of samples held out for testing"),
}
_TIMING = {
    "batch_sizes": _Field([1, 64], None, "batch sizes of the latency measurements"),
    "repeats": _Field(5, _int(1), "alternating rounds (samples per median)"),
    "min_time": _Field(5e-3, _float(0.0, 10.0), "seconds per sample, at least"),
}

# Point fields in grid order (the last varies fastest); train settings are prefixed with 'train_'.
POINT_FIELDS = (*_TOP, *(f"train_{k}" for k in _TRAIN), *_PRUNE, "seed")
GRID_FIELDS = ("model", "dataset", *_PRUNE, "seed")
_DENSE_FIELDS = (*_TOP, *(f"train_{k}" for k in _TRAIN), "seed")

# Metrics each point record holds (see `sparsenet.sweep.task.run_point`) and the timing phase adds.
METRICS = ("accuracy", "precision", "recall", "f1", "sparsity", "params", "params_dense", "bytes", "bytes_dense",
           "bytes_ratio", "flops_speedup", "dense_accuracy", "accuracy_drop", "measured_speedup_b1",
           "measured_speedup_b64")


@dataclass
class SweepConfig:
    """A validated study: its name, the grid's points, timing settings and summary metrics."""

    name: str
    base: dict
    grid: dict
    timing: dict = field(default_factory=dict)
    metrics: tuple | None = None  # summary columns; None: every metric
    source: str | None = None

    def points(self) -> list[dict]:
        return expand_grid(self)

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "grid": self.grid, "timing": self.timing,
                "metrics": list(self.metrics or ()) or None, "source": self.source}


def _section(raw, name, where):
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [{name}] must be a table of settings, found {type(section).__name__}")
    return section


def _unknown(section: dict, allowed, where: str):
    extra = sorted(set(section) - set(allowed))
    if extra:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(map(repr, extra))}; "
                          f"expected {', '.join(allowed)}")


def parse_config(raw: dict, *, source: str | None = None) -> SweepConfig:
    """Validate a study given as a dict (the parsed file) and return a `SweepConfig`.

    Raises `ConfigError` naming the section and setting at fault, and what was expected.
    """
    where = source or "sweep config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table of settings, found {type(raw).__name__}")
    for key in ("seed", "seeds"):
        if key in raw:
            raise ConfigError(f"{where}: seeds are a grid axis: write them as [grid] seed = [0, 1, 2]")
    _unknown(raw, ("name", *_TOP, "metrics", "train", "prune", "grid", "timing"), where)
    base = {}
    for key, f in _TOP.items():
        base[key] = f.check(key, raw.get(key, f.default))
    train = _section(raw, "train", where)
    _unknown(train, _TRAIN, f"{where} [train]")
    for key, f in _TRAIN.items():
        base[f"train_{key}"] = f.check(f"train.{key}", train.get(key, f.default))
    prune = _section(raw, "prune", where)
    _unknown(prune, _PRUNE, f"{where} [prune]")
    for key, f in _PRUNE.items():
        base[key] = f.check(f"prune.{key}", prune.get(key, f.default))
    base["seed"] = 0

    grid_raw = _section(raw, "grid", where)
    _unknown(grid_raw, GRID_FIELDS, f"{where} [grid]")
    checks = {**{k: _TOP[k] for k in ("model", "dataset")}, **_PRUNE, "seed": _Field(0, _int(0), "seed")}
    grid = {}
    for key in GRID_FIELDS:  # canonical order, whatever the file's
        if key not in grid_raw:
            continue
        values = grid_raw[key]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"grid.{key}: expected a non-empty list of values, found {values!r}")
        checked = [checks[key].check(f"grid.{key}", v) for v in values]
        canon = [json.dumps(v, sort_keys=True) for v in checked]
        if len(set(canon)) != len(canon):
            raise ConfigError(f"grid.{key}: a value appears twice in {values!r}")
        if key in prune or (key in raw and key in _TOP):
            raise ConfigError(f"{key}: set both as a fixed setting and as a grid axis; keep one")
        grid[key] = checked
    grid.setdefault("seed", [0])

    timing = _section(raw, "timing", where)
    _unknown(timing, _TIMING, f"{where} [timing]")
    tset = {k: (f.check(f"timing.{k}", timing.get(k, f.default)) if f.check else timing.get(k, f.default))
            for k, f in _TIMING.items()}
    bs = tset["batch_sizes"]
    if not isinstance(bs, (list, tuple)) or not bs or not all(isinstance(b, int) and not isinstance(b, bool)
                                                               and b >= 1 for b in bs):
        raise ConfigError(f"timing.batch_sizes: expected a non-empty list of integers >= 1, found {bs!r}")
    tset["batch_sizes"] = sorted(set(bs))

    metrics = raw.get("metrics")
    if metrics is not None and (not isinstance(metrics, (list, tuple)) or not metrics):
        raise ConfigError(f"metrics: expected a non-empty list of metric names, found {metrics!r}")
    bad = [m for m in metrics or () if m not in METRICS and not str(m).startswith("measured_speedup_b")]
    if bad:
        raise ConfigError(f"metrics: unknown metric(s) {bad}; expected names among {', '.join(METRICS)} "
                          f"(or measured_speedup_bN for a timed batch size N)")
    name = raw.get("name", Path(source).stem if source else "sweep")
    name = _str("name", name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"name: expected letters, digits, '.', '_' or '-' (it names the results "
                          f"directory), found {name!r}")
    return SweepConfig(name=name, base=base, grid=grid, timing=tset, metrics=tuple(metrics) if metrics else None,
                       source=source)


def load_config(path) -> SweepConfig:
    """Read and validate a study file: ``.toml``, ``.json``, or ``.yaml``/``.yml`` (needs PyYAML).

    >>> import sparsenet.sweep as sw
    >>> cfg = load_config(sw.example_path("digits-small"))
    >>> cfg.name, len(cfg.points())
    ('digits-small', 8)
    """
    if isinstance(path, SweepConfig):
        return path
    if isinstance(path, dict):
        return parse_config(path)
    path = os.fspath(path)
    ext = Path(path).suffix.lower()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"sweep config {path!r}: cannot read it ({e.strerror or e})") from None
    try:
        if ext == ".toml":
            raw = tomllib.loads(data.decode("utf-8"))
        elif ext == ".json":
            raw = json.loads(data.decode("utf-8"))
        elif ext in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SparsenetError(f"sweep config {path!r}: reading YAML needs PyYAML "
                                     f"(pip install pyyaml), or write the study as TOML or JSON") from None
            raw = yaml.safe_load(data.decode("utf-8"))
        else:
            raise ConfigError(f"sweep config {path!r}: expected a .toml, .json, .yaml or .yml file")
    except SparsenetError:
        raise
    except Exception as e:  # each parser has its own error class
        raise ConfigError(f"sweep config {path!r}: not valid {ext[1:].upper()}: {e}") from None
    return parse_config(raw, source=path)


def expand_grid(config: SweepConfig) -> list[dict]:
    """Every combination of the grid's axes over the fixed settings: plain dicts with `POINT_FIELDS`."""
    axes = list(config.grid)
    points = []
    for values in itertools.product(*(config.grid[a] for a in axes)):
        point = dict(config.base)
        point.update(zip(axes, values))
        points.append({k: point[k] for k in POINT_FIELDS})
    return points


def _digest(kind: str, payload: dict) -> str:
    text = json.dumps({"kind": kind, "schema": POINT_SCHEMA, **payload}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def point_key(point: dict) -> str:
    """SHA-256 (64 hex digits) of the point's full configuration and `POINT_SCHEMA`."""
    missing = [k for k in POINT_FIELDS if k not in point]
    if missing:
        raise ConfigError(f"point_key: the point lacks {missing}; build points with expand_grid")
    return _digest("point", {"point": {k: point[k] for k in POINT_FIELDS}})


def dense_spec(point: dict) -> dict:
    """The settings of a point's dense baseline: points that share them share the baseline."""
    return {k: point[k] for k in _DENSE_FIELDS}


def dense_key(point: dict) -> str:
    """SHA-256 of the dense baseline's settings (model, dataset, split, training, seed)."""
    return _digest("dense", {"dense": dense_spec(point)})
