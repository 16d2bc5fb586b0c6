"""Atomic, durable saves: the mode open() would give, no lost old file, no stray temporaries."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sparsenet as sn
from sparsenet.io.atomic import TEMP_SUFFIX, atomic_writer, remove_stale_temporaries


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_mode_the_umask_allows(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        with atomic_writer(tmp_path / "m.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.bin").st_mode & 0o777 == expected


def test_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with atomic_writer(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.stat(path).st_mode & 0o777 == 0o640


def test_durable_rename_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_writer(tmp_path / "m.bin") as f:
        f.write(b"x")
    assert len(synced) == 2
    assert synced[0].endswith(TEMP_SUFFIX) and synced[1] == os.path.realpath(tmp_path)


def test_error_inside_the_block_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and _hidden(tmp_path) == []


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    from sparsenet.io.atomic import _host

    path, host = tmp_path / "m.bin", _host()
    dead = tmp_path / f".m.bin.{host}.{_dead_pid()}.0123abcd{TEMP_SUFFIX}"
    live = tmp_path / f".m.bin.{host}.{os.getppid()}.0123abcd{TEMP_SUFFIX}"  # a save in flight elsewhere
    remote = tmp_path / f".m.bin.{'0' * 8 if host != '0' * 8 else '1' * 8}.{_dead_pid()}.0123abcd{TEMP_SUFFIX}"
    other = tmp_path / f".other.bin.{host}.{_dead_pid()}.0123abcd{TEMP_SUFFIX}"  # another target's
    for p in (dead, live, remote, other):
        p.write_bytes(b"half")
    with atomic_writer(path) as f:
        f.write(b"x")
    assert _hidden(tmp_path) == sorted([live.name, remote.name, other.name])  # another host's pid means nothing
    assert remove_stale_temporaries(tmp_path / "other.bin") == [str(other)]


def test_a_symbolic_link_is_followed(tmp_path):
    real = tmp_path / "run3.bin"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = tmp_path / "latest.bin"
    link.symlink_to(real.name)
    with atomic_writer(link) as f:
        f.write(b"new")
    assert link.is_symlink() and real.read_bytes() == b"new" and os.stat(real).st_mode & 0o777 == 0o640


_SAVER = """
import sys, numpy as np, sparsenet as sn
from sparsenet.nn import Linear, Sequential
m = Sequential(Linear(1024, int(sys.argv[2]), seed=1))
m.input_shape = (1024,)
print("ready", flush=True)
while True:
    sn.save_model(m, sys.argv[1])
"""


def _kill_during_saves(tmp_path, kills, width):
    path = tmp_path / "m.safetensors"
    first = sn.nn.Sequential(sn.nn.Linear(1024, width, seed=1))
    first.input_shape = (1024,)
    sn.save_model(first, path)
    rng = random.Random(0)
    for _ in range(kills):
        p = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(width)], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        p.send_signal(signal.SIGKILL)
        p.wait()
        sn.load(path)  # the old (or a complete new) file, never a broken one
        assert len(_hidden(tmp_path)) <= 1  # at most the killed save's temporary
    sn.save_model(first, path)
    assert _hidden(tmp_path) == []
    assert np.array_equal(sn.load(path)[0].weight.to_dense(), first[0].weight.to_dense())


def test_killed_saves_never_break_the_file_nor_pile_up_temporaries(tmp_path):
    _kill_during_saves(tmp_path, kills=6, width=1024)  # 4 MB model


@pytest.mark.slow
def test_forty_killed_saves_of_a_16_mb_model(tmp_path):
    _kill_during_saves(tmp_path, kills=40, width=4096)
