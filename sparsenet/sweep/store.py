"""The results store: one directory on disk, one JSON file per finished point, written atomically.

Layout of a results directory::

    sweep.json              the study last run here (for reference; results are keyed, not listed)
    points/<key>.json       a finished point: its configuration, metrics and provenance
    failures/<key>.json     a point that failed: error, traceback, attempts (removed once it succeeds)
    dense/<dkey>.json       a dense baseline's metrics, shared by the points with the same settings
    models/<dkey>.safetensors  the dense baseline; models/<key>.safetensors: a point's compiled model (.npz: 0.1)
    timings/<key>.json      the serial latency phase's measurements of a point
    log.jsonl               append-only event log: one line per record written (the audit trail)
    lock.json               the driver using the directory (pid, host), removed when it exits

Every file is written to a temporary name in its directory and renamed over its target
(`sparsenet.io.atomic.atomic_writer`), so a reader, or a sweep killed at any instant, sees either the whole record or none:
a killed sweep loses at most the points in flight. Only the driver process writes here; workers
return records, so the directory only needs to be on storage the driver can write.
"""

from __future__ import annotations

import json
import os
import socket
import time

from ..errors import SparsenetError
from ..io.atomic import TEMP_SUFFIX, atomic_writer, pid_alive

__all__ = ["ResultStore"]

_DIRS = ("points", "failures", "dense", "models", "timings")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _atomic_write(path: str, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def _read_json(path: str):
    """The parsed file, or None when it is missing or unreadable (it is then recomputed)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


class ResultStore:
    """A results directory (created if needed). Records are dicts keyed by 64-hex-digit hashes.

    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.write_point({"key": "ab" * 32, "metrics": {"accuracy": 0.9}})
    >>> store.has_point("ab" * 32), store.point("ab" * 32)["metrics"]["accuracy"]
    (True, 0.9)
    """

    def __init__(self, root):
        self.root = os.path.abspath(os.fspath(root))
        try:
            for d in _DIRS:
                os.makedirs(os.path.join(self.root, d), exist_ok=True)
        except OSError as e:
            raise SparsenetError(f"results directory {self.root!r}: cannot create it ({e.strerror or e})") from None
        self._locked = False

    def __repr__(self):
        return f"ResultStore({self.root!r})"

    # -- paths -------------------------------------------------------------------------------------
    def _path(self, kind: str, key: str, ext: str = ".json") -> str:
        if not isinstance(key, str) or not key or os.sep in key or key.startswith("."):
            raise SparsenetError(f"results store: invalid record key {key!r}")
        return os.path.join(self.root, kind, key + ext)

    def model_path(self, key: str) -> str:
        """Where a model file is stored: a point's compiled model, or a dense baseline (by its key)."""
        path = self._path("models", key, ".safetensors")
        legacy = self._path("models", key, ".npz")  # written by sparsenet 0.1; still loads
        return legacy if not os.path.exists(path) and os.path.exists(legacy) else path

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a writer that was killed before its rename (never a finished record).
        Called by `lock` once this process holds the directory: no live writer can own one then."""
        for d in ("", *_DIRS):
            folder = os.path.join(self.root, d)
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith((".tmp", TEMP_SUFFIX)):
                    try:
                        os.remove(os.path.join(folder, name))
                    except OSError:
                        pass

    # -- records -----------------------------------------------------------------------------------
    def _write(self, kind: str, record: dict) -> None:
        data = json.dumps(record, indent=1, sort_keys=True, default=_json_default, allow_nan=True).encode()
        _atomic_write(self._path(kind, record["key"]), data)

    def _keys(self, kind: str) -> list[str]:
        return sorted(n[:-5] for n in os.listdir(os.path.join(self.root, kind))
                      if n.endswith(".json") and not n.startswith("."))

    def has_point(self, key: str) -> bool:
        return self.point(key) is not None

    def point(self, key: str) -> dict | None:
        return _read_json(self._path("points", key))

    def write_point(self, record: dict) -> None:
        """Store a finished point (atomically) and clear any failure recorded for it before."""
        self._write("points", record)
        self.log("point", record["key"])
        try:
            os.remove(self._path("failures", record["key"]))
        except FileNotFoundError:
            pass

    def failure(self, key: str) -> dict | None:
        return _read_json(self._path("failures", key))

    def write_failure(self, record: dict) -> None:
        self._write("failures", record)
        self.log("failure", record["key"], error=record.get("error"))

    def dense(self, key: str) -> dict | None:
        """A dense baseline's record, if both it and its model file are stored."""
        rec = _read_json(self._path("dense", key))
        return rec if rec is not None and os.path.exists(self.model_path(key)) else None

    def write_dense(self, record: dict, model_file: bytes) -> None:
        """Store a dense baseline: the model file first, then the record that says it is complete."""
        _atomic_write(self.model_path(record["key"]), model_file)
        self._write("dense", record)
        self.log("dense", record["key"])

    def write_model(self, key: str, model_file: bytes) -> None:
        _atomic_write(self.model_path(key), model_file)

    def timing(self, key: str) -> dict | None:
        return _read_json(self._path("timings", key))

    def write_timing(self, record: dict) -> None:
        self._write("timings", record)
        self.log("timing", record["key"])

    def load_all(self) -> dict:
        """Every stored record: {"points", "failures", "dense", "timings"}: {key: record}."""
        out = {}
        for kind in ("points", "failures", "dense", "timings"):
            recs = {k: _read_json(self._path(kind, k)) for k in self._keys(kind)}
            out[kind] = {k: r for k, r in recs.items() if r is not None}
        return out

    def write_sweep(self, info: dict) -> None:
        _atomic_write(os.path.join(self.root, "sweep.json"),
                      json.dumps(info, indent=1, sort_keys=True, default=_json_default).encode())

    # -- the event log -----------------------------------------------------------------------------
    def log(self, event: str, key: str, **extra) -> None:
        """Append one line to log.jsonl (one write call, so lines from a killed driver stay whole or
        are cut only at the end, where `events` skips them)."""
        line = json.dumps({"event": event, "key": key, "time": time.time(), "pid": os.getpid(), **extra},
                          default=_json_default) + "\n"
        fd = os.open(os.path.join(self.root, "log.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict]:
        """The event log's entries in order (a line cut by a kill is skipped)."""
        try:
            with open(os.path.join(self.root, "log.jsonl"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    # -- one driver at a time ------------------------------------------------------------------------
    def lock(self) -> None:
        """Claim the directory for this process; a lock left by a dead process on this host is taken over.

        Raises SparsenetError when another live sweep (or one on another host) holds it.
        """
        path = os.path.join(self.root, "lock.json")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = _read_json(path) or {}
                pid, host = other.get("pid"), other.get("host")
                if host == me["host"] and isinstance(pid, int) and (pid == me["pid"] or not pid_alive(pid)):
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                    continue
                raise SparsenetError(f"results directory {self.root!r} is in use by process {pid} on host "
                                     f"{host!r}; if that sweep is no longer running, delete {path!r}") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            self._remove_stale_temporaries()
            return
        raise SparsenetError(f"results directory {self.root!r}: could not take the lock {path!r}")

    def unlock(self) -> None:
        if self._locked:
            try:
                os.remove(os.path.join(self.root, "lock.json"))
            except FileNotFoundError:
                pass
            self._locked = False
