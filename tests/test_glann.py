"""GLANN (`genshop.families.glann`): a glo parent is required; its generator is copied bit for bit
and stays frozen; the data pass matches every code to its exact nearest mapped pool sample; the
loss is eq. (1); samples are G(T(e)) images in [0, 1]."""

from pathlib import Path

import pytest
import torch
from test_contract import few_steps

from genshop import checkpoint, configure, load_run, train
from genshop.cli import main
from genshop.data import Examples, get_dataset
from genshop.errors import BadInputError
from genshop.families import DataPass, StepInput
from genshop.families.glann import GlannFamily, parent_codes
from genshop.runs import CHECKPOINT


@pytest.fixture
def options(tmp_path, monkeypatch) -> dict:
    """The contract's few-step glann options, with a tiny glo parent trained on fake digits."""
    return few_steps("glann", tmp_path, monkeypatch)


def glann(tmp_path: Path, out: str, **options):
    return configure("glann", **{"sample_every": 0, "checkpoint_every": 10**6, **options,
                                 "out": str(tmp_path / out)})


def family(options: dict, tmp_path: Path) -> GlannFamily:
    config = glann(tmp_path, "x", **options)
    torch.manual_seed(0)
    return GlannFamily(config, get_dataset(config.data), torch.device("cpu"))


def test_it_needs_the_init_from_of_a_glo_run(tmp_path, options, capsys):
    with pytest.raises(BadInputError, match="--init-from RUN_DIR") as err:
        train(glann(tmp_path, "a", steps=2), progress=False)
    assert "\n" not in str(err.value)
    capsys.readouterr()
    assert main(["train", "glann", "--steps", "2", "--out", str(tmp_path / "b")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--init-from" in lines[0] and "Traceback" not in lines[0]
    train(configure("flow", data="ring8", steps=2, blocks=1, hidden=4, sample_every=0,
                    out=str(tmp_path / "flow")), progress=False)
    with pytest.raises(BadInputError, match="is a flow run") as err:
        train(glann(tmp_path, "c", steps=2, init_from=str(tmp_path / "flow")), progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(BadInputError, match="--data ring8 differs") as err:
        train(glann(tmp_path, "d", **{**options, "data": "ring8", "steps": 2}), progress=False)
    assert "\n" not in str(err.value)


def generator_part(state: dict) -> dict:
    return {k.removeprefix("generator."): v for k, v in state.items()
            if k.startswith("generator.")}


def test_the_generator_is_the_parents_bit_for_bit_and_stays_frozen(tmp_path, options):
    parent = checkpoint.load(Path(options["init_from"]) / CHECKPOINT)
    delivered = parent["ema"]  # the parent kept an EMA copy: the generator GLO samples with
    assert any(not torch.equal(v, parent["models"]["net"][k]) for k, v in delivered.items()
               if k.startswith("generator.") and v.is_floating_point())
    run = train(glann(tmp_path, "run", **{**options, "steps": 8, "lr": 0.05}), progress=False)
    child = checkpoint.load(tmp_path / "run" / CHECKPOINT)
    want = generator_part(delivered)
    for state in (child["models"]["net"], child["ema"]):
        got = generator_part(state)
        assert got.keys() == want.keys() and any("running_mean" in k for k in got)
        for k, v in want.items():
            assert torch.equal(got[k], v), k
    start = family(options, tmp_path).net.mapper.state_dict()
    moved = run.family.net.mapper.state_dict()
    assert all((moved[k] - v).abs().max() > 1e-3 for k, v in start.items())
    net = run.family.net.train()
    assert net.mapper.training and not net.generator.training
    assert not any(p.requires_grad for p in net.generator.parameters())
    optimised = {id(p) for g in run.family.opt.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in net.mapper.parameters()}


def test_the_data_pass_matches_every_code_to_its_nearest_mapped_sample(tmp_path, options):
    glann_family = family(options, tmp_path)
    codes = parent_codes(glann_family.config)
    work = DataPass(Examples(codes), step=0, generator=torch.Generator().manual_seed(5))
    glann_family.data_pass(work)
    pool = torch.randn(2 * len(codes), 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mapped = glann_family.net.mapper(pool)
    d2 = torch.tensor([[float(((c - t) ** 2).sum()) for t in mapped] for c in codes])
    best = d2.argmin(1)
    assert len(best.unique()) > 5  # codes spread over the pool, not one sample
    torch.testing.assert_close(glann_family.matched, pool[best], rtol=0, atol=0)
    assert glann_family.pool_distance == pytest.approx(float(d2.min(1).values.mean()), rel=1e-5)


def test_the_loss_is_the_mean_squared_distance_to_the_matched_samples(tmp_path, options):
    glann_family = family(options, tmp_path)
    codes = parent_codes(glann_family.config)
    glann_family.data_pass(DataPass(Examples(codes), 0, torch.Generator().manual_seed(1)))
    index = torch.tensor([3, 0, 17, 3, 39])
    with torch.no_grad():
        mapped = glann_family.net.mapper(glann_family.matched[index]).tolist()
    rows = codes[index].tolist()
    hand = sum(sum((c - t) ** 2 for c, t in zip(row, m, strict=True))
               for row, m in zip(rows, mapped, strict=True)) / len(index)
    losses = glann_family.train_step(StepInput(codes[index], torch.Generator(), index=index))
    assert losses["loss"] == pytest.approx(hand, rel=1e-5) and hand > 1e-3
    assert losses["pool_distance"] == glann_family.pool_distance


def test_samples_are_the_generator_of_the_mapped_noise_in_the_unit_range(tmp_path, options):
    train(glann(tmp_path, "run", **{**options, "steps": 4}), progress=False)
    run = load_run(tmp_path / "run")
    x = run.sample(16, seed=2)
    assert x.shape == (16, 1, 28, 28) and x.min() >= 0 and x.max() <= 1 and x.std() > 1e-3
    e = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(x, run.net.generator(run.net.mapper(e)), rtol=0, atol=0)
