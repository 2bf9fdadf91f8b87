"""`genshop eval RUN_DIR` (`genshop.metrics.evaluate_run`): scores of a tiny trained image run
(fake digits, a fake classifier) equal score_images of the run's own samples, are saved with
their protocol in eval.json and shown on the run's page; a supervised run reports its accuracy on
the test split; runs that are neither, and bad -n, are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
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


def test_eval_of_a_supervised_run_reports_its_test_split_scores(fake_mnist, tmp_path,
                                                                 capsys):
    from genshop.metrics import evaluate_run

    out = tmp_path / "clf"
    config = genshop.configure("classifier", steps=3, batch_size=16, augment=False,
                               out=str(out))
    genshop.train(config, progress=False)
    record = evaluate_run(out, n=150, seed=4)  # a supervised run draws no samples
    run = genshop.load_run(out)
    images, labels = run.dataset.split("test")
    with torch.no_grad():
        by_hand = (run.net(images).argmax(dim=1) == labels).double().mean().item()
    assert record["scores"] == {"accuracy": pytest.approx(by_hand, abs=1e-12)}
    assert 0 < record["scores"]["accuracy"] < 1  # three steps: better than nothing, not perfect
    assert record["protocol"] == {"split": "test", "data": "mnist", "step": 3, "ema": 0.0}
    assert json.loads((out / "eval.json").read_text()) == record
    assert record["run_dir"] == str(out) and record["step"] == 3
    assert cli.main(["eval", str(out)]) == 0  # the command prints and pages the same record
    printed = capsys.readouterr().out
    assert f"{by_hand:.4g}" in printed and "the test split of mnist, net at step 3" in printed
    page = (out / "index.html").read_text()
    assert "Scores (genshop eval, step 3)" in page and "the test split of mnist" in page


def test_eval_of_a_run_with_neither_sampler_nor_test_scores_is_a_one_line_error(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from genshop.errors import BadInputError
    from genshop.metrics import runs

    stub = SimpleNamespace(run_dir=tmp_path, has_sampler=False, test_scores=lambda: {},
                           family=SimpleNamespace(name="tagger"), step=1, config=None)
    monkeypatch.setattr(runs, "load_run", lambda run_dir: stub)
    with pytest.raises(BadInputError, match="tagger run with neither an image sampler") as err:
        runs.evaluate_run(tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "eval.json").exists()


def test_the_protocol_note_names_what_was_scored():
    from genshop.metrics.runs import protocol_note

    assert protocol_note({"split": "test", "data": "mnist", "step": 3, "ema": 0.0}) == (
        "the test split of mnist, net at step 3")
    assert protocol_note({"split": "test", "data": "mnist", "step": 3, "ema": 0.9}).endswith(
        ", EMA 0.9")
    image = {"n_samples": 1500, "sample_seed": 2, "step": 7, "n_reference": 2000,
             "reference": "mnist-test", "extractor": "digit-cnn", "extractor_sha256": "ab" * 32,
             "note": "not Inception"}
    assert protocol_note(image) == ("1,500 samples (seed 2) at step 7 against 2,000 images of "
                                    "mnist-test; features of digit-cnn (sha256 abababababab…); "
                                    "not Inception")
