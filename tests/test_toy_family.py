"""A family defined outside the library (tests/toy_family.py) trains, resumes, scores, passes over
its whole data set and starts from a parent run through the contract alone."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from contract import check_family
from toy_family import NAME, ROWS, ToyFamily

from genshop import checkpoint, configure, load_run, train
from genshop.data import get_dataset
from genshop.errors import BadInputError
from genshop.families import FAMILIES
from genshop.runs import CHECKPOINT

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def registered():
    FAMILIES.add(NAME, ToyFamily)
    yield
    FAMILIES.remove(NAME)


def toy(out: Path, **options):
    return configure(NAME, **{"data": "ring8", "log_every": 5, "checkpoint_every": 10**6,
                              "sample_every": 0, "out": str(out), **options})


def state(run: Path) -> dict:
    return checkpoint.load(run / CHECKPOINT)


def test_the_toy_family_keeps_the_contract(tmp_path, capsys):
    run = check_family(NAME, {"data": "ring8", "pass_every": 2, "log_every": 2}, tmp_path, capsys)
    assert run.family.name == NAME and run.step == 6 and not run.has_sampler


def test_it_learns_the_labels_and_its_passes_track_it(tmp_path):
    before = load_run_at(tmp_path / "short", steps=1)
    run = train(toy(tmp_path / "long", steps=300, pass_every=100), progress=False)
    assert before["accuracy"] < 0.9 <= 0.97 <= run.test_scores()["accuracy"]
    lines = read_lines(tmp_path / "long")
    first, last = lines[0]["misclassified"], lines[-1]["misclassified"]  # passes at 0 and 200
    assert first > 5 * max(last, 1)


def load_run_at(out: Path, steps: int) -> dict:
    train(toy(out, steps=steps), progress=False)
    return load_run(out).test_scores()


def read_lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_pass_sees_every_row_and_draws_from_its_own_generator(tmp_path):
    torch.manual_seed(0)  # the engine seeds the global RNG, then builds the family
    initial = ToyFamily(toy(tmp_path / "x"), get_dataset("ring8"), torch.device("cpu")).net
    train(toy(tmp_path / "a", steps=5, pass_every=5), progress=False)  # one pass, at step 0
    margins = state(tmp_path / "a")["family_state"]["margins"]
    chosen = ~margins.isnan()
    assert margins.shape == (ROWS,) and abs(int(chosen.sum()) - ROWS / 10) < 4 * math.sqrt(180)
    rows = get_dataset("ring8").training_data(seed=0, size=ROWS)
    x, y = rows.x, rows.y
    with torch.no_grad():
        logp = F.log_softmax(initial(x[chosen]), 1)
    true = logp.gather(1, y[chosen, None])[:, 0]
    other = logp.scatter(1, y[chosen, None], float("-inf")).amax(1)
    torch.testing.assert_close(margins[chosen], true - other, rtol=0, atol=0)
    train(toy(tmp_path / "b", steps=5, pass_every=5), progress=False)
    train(toy(tmp_path / "c", steps=5, pass_every=5, seed=1), progress=False)
    same, other_seed = (state(tmp_path / r)["family_state"]["margins"] for r in "bc")
    assert torch.equal(same.isnan(), margins.isnan())
    assert not torch.equal(other_seed.isnan(), margins.isnan())


TWO_PROCESSES = """
import sys
sys.path.insert(0, {tests!r})
from toy_family import NAME, ToyFamily
from genshop import configure, train
from genshop.families import FAMILIES
FAMILIES.add(NAME, ToyFamily)
train(configure(NAME, data="ring8", steps=12, pass_every=4, batch_size=32, log_every=4,
                sample_every=0, out=sys.argv[1]), progress=False)
"""


def test_two_processes_pass_over_the_data_as_one_does(tmp_path):
    script = tmp_path / "toy_ddp.py"
    script.write_text(TWO_PROCESSES.format(tests=str(TESTS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", str(script), str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    train(toy(tmp_path / "one", steps=12, pass_every=4, batch_size=32, log_every=4),
          progress=False)
    two, one = state(tmp_path / "ddp"), state(tmp_path / "one")
    a, b = two["family_state"]["margins"], one["family_state"]["margins"]  # the pass at step 8
    assert torch.equal(a.isnan(), b.isnan()) and int((~b.isnan()).sum()) > 100
    torch.testing.assert_close(a[~a.isnan()], b[~b.isnan()], rtol=1e-5, atol=1e-6)
    for k, v in one["models"]["net"].items():
        torch.testing.assert_close(two["models"]["net"][k], v, rtol=1e-5, atol=1e-6)


def test_a_run_starts_from_its_parent_and_checks_it_on_resume(tmp_path):
    train(toy(tmp_path / "parent", steps=50), progress=False)
    parent = state(tmp_path / "parent")["models"]["net"]
    child = toy(tmp_path / "child", steps=2, lr=1e-12, init_from=str(tmp_path / "parent"))
    train(child, progress=False)
    scratch = train(toy(tmp_path / "scratch", steps=2, lr=1e-12), progress=False)
    started = state(tmp_path / "child")
    for k, v in parent.items():
        torch.testing.assert_close(started["models"]["net"][k], v, rtol=0, atol=1e-9)
        assert (scratch.net.state_dict()[k] - v).abs().max() > 1e-2
    assert started["parent"]["run_dir"] == str((tmp_path / "parent").resolve())
    train(toy(tmp_path / "parent", steps=60), resume=True, progress=False)  # it changes
    with pytest.raises(BadInputError, match="changed since") as err:
        train(toy(tmp_path / "child", steps=4, lr=1e-12, init_from=str(tmp_path / "parent")),
              resume=True, progress=False)
    assert "\n" not in str(err.value)


def test_a_parent_must_be_a_trained_run_of_a_family_it_may_start_from(tmp_path):
    with pytest.raises(BadInputError, match="no trained run"):
        train(toy(tmp_path / "c1", steps=2, init_from=str(tmp_path / "nothing")), progress=False)
    train(configure("flow", data="ring8", steps=2, blocks=1, hidden=4, sample_every=0,
                    out=str(tmp_path / "flow")), progress=False)
    with pytest.raises(BadInputError, match="is a flow run"):
        train(toy(tmp_path / "c2", steps=2, init_from=str(tmp_path / "flow")), progress=False)
