"""The results as tables: one tidy row per finished point (every setting, every metric), and a summary
with the mean and standard deviation of each metric across seeds.

Files written to the results directory: ``results.csv`` and ``summary.csv`` (always),
``results.json`` (rows, summary and failures), and ``results.parquet`` / ``summary.parquet`` when
pandas and pyarrow are installed.

Example:
    >>> rows = [{"method": "magnitude", "seed": s, "accuracy": a} for s, a in [(0, 0.9), (1, 0.8)]]
    >>> s = summarize_rows(rows, group_by=["method"], metrics=["accuracy"])[0]
    >>> s["n"], round(s["accuracy_mean"], 3), round(s["accuracy_std"], 4)
    (2, 0.85, 0.0707)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np

from ..io.atomic import atomic_writer
from .config import METRICS, POINT_FIELDS
from .store import _atomic_write, _json_default

__all__ = ["point_rows", "summarize_rows", "write_tables", "GROUP_FIELDS"]

# Settings a summary row groups by: everything that defines a point except its seed.
GROUP_FIELDS = tuple(f for f in POINT_FIELDS if f != "seed")


def _cell(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def point_rows(store, keys) -> list[dict]:
    """Tidy rows of the finished points among `keys` (in that order): the point's settings, its metrics,
    measured latencies and speedups per timed batch size (when timed), and provenance."""
    rows = []
    for key in keys:
        rec = store.point(key)
        if rec is None:
            continue
        row = {"key": key}
        row.update({k: _cell(rec["point"].get(k)) for k in POINT_FIELDS})
        metrics = rec["metrics"]
        row.update({m: metrics[m] for m in METRICS if m in metrics})
        row.update({m: v for m, v in sorted(metrics.items()) if m not in row})
        timing = store.timing(key)
        if timing is not None:
            for b, t in sorted(timing["batches"].items(), key=lambda kv: int(kv[0])):
                row[f"measured_speedup_b{b}"] = t["speedup"]
                row[f"dense_latency_us_b{b}"] = t["dense_s"] * 1e6
                row[f"compiled_latency_us_b{b}"] = t["compiled_s"] * 1e6
        row["formats"] = ",".join(layer["format"] for layer in rec.get("layers", []))
        info = rec.get("info", {})
        row.update(seconds=info.get("seconds"), host=info.get("host"),
                   sparsenet_version=info.get("sparsenet_version"), run=rec.get("run"))
        rows.append(row)
    return rows


def _number(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))


def summarize_rows(rows, *, group_by=GROUP_FIELDS, metrics=None) -> list[dict]:
    """Mean and sample standard deviation (ddof=1; None with a single value) of each metric over the rows
    that share every `group_by` field (by default every setting but the seed), in first-seen order.

    A summary row holds the group's fields, "n" (rows in the group), "seeds" and, per metric m present,
    "m_mean" and "m_std". Non-numeric or missing values are left out of a metric's statistics.
    """
    if metrics is None:
        metrics = [m for m in METRICS if any(m in r for r in rows)]
        metrics += sorted({k for r in rows for k in r if k.startswith("measured_speedup_b")} - set(metrics))
    group_by = [g for g in group_by if any(g in r for r in rows)]
    groups = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r.get(g), default=str) for g in group_by), []).append(r)
    out = []
    for members in groups.values():
        s = {g: members[0].get(g) for g in group_by}
        s["n"] = len(members)
        s["seeds"] = ",".join(str(m.get("seed")) for m in members)
        for m in metrics:
            values = np.array([float(r[m]) for r in members if _number(r.get(m))], dtype=np.float64)
            s[f"{m}_mean"] = float(values.mean()) if values.size else None
            s[f"{m}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
        out.append(s)
    return out


def _csv(rows) -> bytes:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue().encode()


def _parquet(rows, path) -> bool:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        return False
    with atomic_writer(path) as f:
        pd.DataFrame(rows).to_parquet(f, index=False)
    return True


def _select(summary, metrics):
    """The summary's rows restricted to the group fields and the statistics of `metrics`."""
    keep = {f"{m}_{s}" for m in metrics for s in ("mean", "std")}
    return [{k: v for k, v in r.items() if k in GROUP_FIELDS or k in ("n", "seeds") or k in keep} for r in summary]


def write_tables(store, keys, *, metrics=None, failures=()) -> dict:
    """Write the tables of the points `keys` to the store's directory; returns {"rows", "summary",
    "files": {name: path}}. `metrics` restricts the columns of the summary files (default: every
    metric); the returned summary always holds every metric."""
    rows = point_rows(store, keys)
    summary = summarize_rows(rows)
    files = {}
    for name, table in (("results", rows), ("summary", _select(summary, metrics) if metrics else summary)):
        path = os.path.join(store.root, f"{name}.csv")
        _atomic_write(path, _csv(table))
        files[f"{name}.csv"] = path
        pq = os.path.join(store.root, f"{name}.parquet")
        if table and _parquet(table, pq):
            files[f"{name}.parquet"] = pq
    path = os.path.join(store.root, "results.json")
    blob = {"rows": rows, "summary": summary,
            "failures": [{k: f.get(k) for k in ("key", "point", "error", "attempts")} for f in failures]}
    _atomic_write(path, json.dumps(blob, indent=1, default=_json_default).encode())
    files["results.json"] = path
    return {"rows": rows, "summary": summary, "files": files}
