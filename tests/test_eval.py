"""`genshop eval RUN_DIR`: scores of a tiny trained image run (fake digits, a fake classifier)
equal score_images of the run's own samples, are saved with their protocol in eval.json and
shown on the run's page; runs that are not on images, and bad -n, are one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import FAKE_EXTRACTOR_SHA256

import genshop
from genshop import cli
from genshop.metrics import images as metrics


def train(tmp_path, data: str, steps: int = 5) -> str:
    out = str(tmp_path / f"run-{data}")
    argv = ["train", "gan", "--data", data, "--latent-dim", "4", "--width", "4",
            "--batch-size", "8", "--steps", str(steps), "--ema", "0.5", "--sample-every", "0",
            "--quiet", "--out", out]
    assert cli.main(argv) == 0
    return out


def test_eval_saves_the_scores_of_the_runs_own_samples_with_their_protocol(
        fake_mnist, tmp_path, capsys):
    run_dir = train(tmp_path, "mnist")
    capsys.readouterr()
    assert cli.main(["eval", run_dir, "-n", "150"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "run-mnist" / "eval.json").read_text())
    expected = metrics.score_images(genshop.load_run(run_dir).sample(150, seed=0))
    expected_protocol = expected.pop("protocol")
    assert record["scores"] == pytest.approx(expected, rel=1e-12)
    assert set(record["scores"]) >= {"fid", "kid", "precision", "recall", "coverage",
                                     "classes_found"} and "modes" not in record["scores"]
    p = record["protocol"]
    assert p == {**expected_protocol, "sample_seed": 0, "step": 5, "ema": 0.5}
    assert p["n_samples"] == 150 and p["n_reference"] == 60
    assert p["extractor_sha256"] == FAKE_EXTRACTOR_SHA256
    assert f"{record['scores']['fid']:.4g}" in printed and "eval.json" in printed
    page = (tmp_path / "run-mnist" / "index.html").read_text()
    assert "Scores (genshop eval, step 5)" in page and "150 samples (seed 0)" in page
    assert not list((tmp_path / "run-mnist").glob(".*.tmp"))


def test_eval_draws_fixed_samples_per_seed(fake_mnist, tmp_path):
    run_dir = train(tmp_path, "mnist")
    scores = []
    for seed in (0, 0, 1):
        assert cli.main(["eval", run_dir, "-n", "120", "--seed", str(seed)]) == 0
        scores.append(json.loads((tmp_path / "run-mnist" / "eval.json").read_text()))
    assert scores[0] == scores[1]
    assert scores[2]["scores"]["kid"] != scores[0]["scores"]["kid"]
    assert scores[2]["protocol"]["sample_seed"] == 1


def test_eval_of_a_stacked_mnist_run_counts_modes_of_1000(fake_mnist, tmp_path):
    run_dir = train(tmp_path, "stacked-mnist", steps=3)
    assert cli.main(["eval", run_dir, "-n", "130"]) == 0
    record = json.loads((tmp_path / "run-stacked-mnist" / "eval.json").read_text())
    s = record["scores"]
    assert 1 <= s["modes"] <= 130 and s["kl"] >= 0 and 1 <= s["vendi"] <= 130
    assert record["protocol"]["reference"] == "stacked-mnist-test"
    assert record["protocol"]["n_reference"] == 200


def test_eval_of_a_2d_run_is_a_one_line_error(tmp_path, capsys):
    out = str(tmp_path / "ring")
    assert cli.main(["train", "gan", "--data", "ring8", "--steps", "2", "--width", "8",
                     "--quiet", "--out", out]) == 0
    capsys.readouterr()
    assert cli.main(["eval", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not on images" in err and "bench modes" in err
    assert not (tmp_path / "ring" / "eval.json").exists()


@pytest.mark.parametrize("argv, message", [(["-n", "99"], "between 100 and 100,000"),
                                           (["-n", "100001"], "between 100 and 100,000")])
def test_eval_refuses_bad_sample_counts_in_one_line(argv, message, tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_eval_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
