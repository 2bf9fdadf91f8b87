"""The family contract as one check that any family's test runs (in the spirit of diffusers' model
tester mixin): a family passes by being registered and handing over a few-step config.

`check_family(name, options, tmp_path, capsys) -> Run` (the straight run, rebuilt by `load_run`):
- a run of `steps` steps writes a run directory that `genshop.load_run` rebuilds at that step;
- a run that crashes after its checkpoint at step `cut` and is resumed equals the straight run bit
  for bit (models, optimisers, EMA, the family's own state, every RNG state, the metrics lines);
  it runs for the same `steps`, so a learning-rate schedule spans the same run;
- a bad option fails in one line, from Python (`BadInputError`) and from the command line
  (exit 2, one line on stderr, no traceback);
- a generative family's `load_run(d).sample(n)` has the documented shape and dtype, lies in
  [0, 1] for images, is finite and repeats under a seed; a supervised family's run refuses to
  sample in one line and `genshop.metrics.evaluate_run` reports its held-out scores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from genshop import checkpoint, configure, load_run, train
from genshop.cli import main
from genshop.errors import BadInputError
from genshop.metrics import evaluate_run
from genshop.runs import CHECKPOINT, EVAL, METRICS


def assert_states_equal(a, b, where: str = "") -> None:
    """Nested checkpoint values equal exactly (tensors bit for bit; NaN equals NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_states_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_states_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


class Crash(Exception):
    pass


def crash_after(step: int):
    """An evaluation hook that crashes the run at its first logged step beyond `step`."""
    def evaluate(at: int, net) -> dict:
        if at > step:
            raise Crash
        return {}
    return evaluate


def metric_lines(run_dir: Path) -> list[dict]:
    lines = (run_dir / METRICS).read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "it_per_s"} for x in lines]


def check_family(name: str, options: dict, tmp_path: Path, capsys, steps: int = 6,
                 cut: int = 3):
    """Run the checks of the module docstring; returns the straight run as `load_run` rebuilds
    it."""
    def config(out: str, every: int = 10**6):
        return configure(name, **{"sample_every": 0, **options, "checkpoint_every": every,
                                  "steps": steps, "out": str(tmp_path / out)})

    straight = train(config("straight"), progress=False)
    assert straight.step == steps and not straight.interrupted
    with pytest.raises(Crash):
        train(config("resumed", every=cut), progress=False, evaluate=crash_after(cut))
    assert checkpoint.load(tmp_path / "resumed" / CHECKPOINT)["step"] == cut
    train(config("resumed", every=cut), resume=True, progress=False)
    a, b = (checkpoint.load(tmp_path / r / CHECKPOINT) for r in ("straight", "resumed"))
    for key in ("step", "models", "optimizers", "ema", "family_state", "rng", "rows"):
        assert_states_equal(a[key], b[key], key)
    assert metric_lines(tmp_path / "straight") == metric_lines(tmp_path / "resumed")

    _check_bad_options(name, options, tmp_path, capsys)
    run = load_run(tmp_path / "straight")
    assert not run.net.training
    if run.has_sampler:
        _check_samples(run)
    else:
        with pytest.raises(BadInputError, match="no sampler") as err:
            run.sample(4)
        assert "\n" not in str(err.value)
        record = evaluate_run(tmp_path / "straight")  # what `genshop eval` writes
        scores = record["scores"]
        assert scores == run.test_scores() and record["protocol"]["split"] == "test"
        assert scores and all(math.isfinite(v) for v in scores.values())
        assert all(0 <= v <= 1 for k, v in scores.items() if "accuracy" in k)
        assert json.loads((tmp_path / "straight" / EVAL).read_text()) == record
    return run


def _check_bad_options(name: str, options: dict, tmp_path: Path, capsys) -> None:
    for bad in ({"steps": 0}, {"no_such_option": 1}):
        with pytest.raises(BadInputError) as err:
            configure(name, **{**options, **bad, "out": str(tmp_path / "bad")})
        assert "\n" not in str(err.value)
    capsys.readouterr()
    assert main(["train", name, "--steps", "0", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--steps" in err and "Traceback" not in err


def _check_samples(run) -> None:
    x = run.sample(7, seed=3)
    assert x.dtype == torch.float32 and x.shape == (7, *run.dataset.shape)
    assert torch.isfinite(x).all() and torch.equal(x, run.sample(7, seed=3))
    if run.dataset.kind == "images":
        assert x.min() >= 0 and x.max() <= 1
