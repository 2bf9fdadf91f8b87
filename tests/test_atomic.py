"""Atomic writes (genshop.atomic) and the checkpoint and cache writers built on them."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from genshop import atomic, checkpoint
from genshop.data import fetch


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_writes_the_bytes_with_the_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a.bin"
    assert atomic.write_atomic(path, lambda f: f.write(b"first")) == path
    assert path.read_bytes() == b"first" and mode_of(path) == 0o644
    atomic.write_atomic(str(path), lambda f: f.write(b"second"), mode=0o600)
    assert path.read_bytes() == b"second" and mode_of(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_an_error_inside_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic.write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with pytest.raises(KeyboardInterrupt):  # not only Exception: an interrupt cleans up too
        atomic.write_atomic(tmp_path / "b.bin", lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic.write_atomic(tmp_path / "no" / "a.bin", lambda f: f.write(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_text_and_json_round_trip(tmp_path):
    text = tmp_path / "t.txt"
    atomic.write_text_atomic(text, "f-GAN: ∫ q f(p/q)\n")
    assert text.read_text(encoding="utf-8") == "f-GAN: ∫ q f(p/q)\n" and mode_of(text) == 0o644
    doc = {"family": "gan", "steps": 3, "lr": 2e-4, "betas": [0.5, 0.999]}
    path = atomic.write_json_atomic(tmp_path / "config.json", doc)
    assert json.loads(path.read_text()) == doc and path.read_text().endswith("}\n")
    with pytest.raises(TypeError):  # not JSON: the old file stays, nothing else appears
        atomic.write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text()) == doc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "t.txt"]


class Unsaveable:
    def __reduce__(self):
        raise RuntimeError("cannot be saved")


def test_checkpoints_are_0644_and_a_failed_save_keeps_the_previous_one(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic({"x": torch.arange(3)}, path)
    assert mode_of(path) == 0o644
    with pytest.raises(RuntimeError, match="cannot be saved"):  # torch.save fails half-way
        checkpoint.save_atomic({"x": torch.arange(4), "bad": Unsaveable()}, path)
    assert torch.equal(checkpoint.load(path)["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_cached_arrays_are_written_atomically_into_a_new_folder(tmp_path):
    path = tmp_path / "cache" / "digits.npz"
    fetch.save_npz_atomic(path, images=np.arange(6, dtype=np.uint8).reshape(2, 3))
    with np.load(path) as saved:
        assert saved["images"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert mode_of(path) == 0o644 and [p.name for p in path.parent.iterdir()] == ["digits.npz"]
