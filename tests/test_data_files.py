"""Your own points as a data set: `--data path.npy` (genshop.data.files)."""

import numpy as np
import pytest
import torch

from genshop.cli import main
from genshop.data import get_dataset
from genshop.errors import DataError
from genshop.runs import load_run


def save(path, array):
    np.save(path, array)
    return str(path)


def test_points_file_is_a_data_set_of_its_rows(tmp_path):
    rows = np.arange(30, dtype=np.float64).reshape(10, 3)
    data = get_dataset(save(tmp_path / "p.npy", rows))
    assert data.kind == "points" and data.shape == (3,)
    assert torch.equal(data.training_set(), torch.tensor(rows, dtype=torch.float32))
    assert torch.equal(data.training_set(size=4), data.training_set()[:4])
    drawn = data.sample(500, torch.Generator().manual_seed(0))
    assert drawn.shape == (500, 3) and drawn.dtype == torch.float32
    assert set(drawn[:, 0].tolist()) == set(rows[:, 0].tolist())  # every row, nothing else
    assert torch.equal(drawn, data.sample(500, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros(5), r"shape \(N, d\) with N >= 2 points and d >= 2 dimensions, got shape \(5,\)"),
    (np.zeros((5, 1)), r"got shape \(5, 1\)"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, np.inf]]),
     "2 rows with NaN, infinite values or values beyond float32"),
    (np.array([["a", "b"], ["c", "d"]]), "must hold real numbers, got dtype <U1"),
])
def test_bad_points_files_say_what_is_wrong(tmp_path, array, message):
    with pytest.raises(DataError, match=message):
        get_dataset(save(tmp_path / "bad.npy", array))


def test_missing_and_pickled_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no points file"):
        get_dataset(str(tmp_path / "none.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"is a damaged or non-numeric \.npy file"):
        get_dataset(str(tmp_path / "obj.npy"))


def test_train_on_a_points_file_then_load_and_resume_from_elsewhere(tmp_path, monkeypatch):
    points = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    (tmp_path / "work").mkdir()
    save(tmp_path / "work" / "mine.npy", points)
    monkeypatch.chdir(tmp_path / "work")
    small = ["--width", "8", "--depth", "1", "--batch-size", "16", "--threads", "1",
             "--sample-every", "0", "--quiet", "--data", "mine.npy", "--out", "../run"]
    assert main(["train", "gan", *small, "--steps", "3"]) == 0
    assert main(["train", "gan", *small, "--steps", "5", "--resume"]) == 0
    monkeypatch.chdir(tmp_path)
    run = load_run(tmp_path / "run")
    assert run.config.data == str(tmp_path / "work" / "mine.npy") and run.step == 5
    assert run.sample(7).shape == (7, 3)
