"""The training engine: exact resume, EMA, divergence stop, Ctrl-C, atomic checkpoints, DDP."""

import functools
import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genshop import checkpoint
from genshop.config import from_dict, read_config_json
from genshop.data import get_dataset
from genshop.engine import CHECKPOINT, configure, train
from genshop.errors import DataError, TrainingDiverged
from genshop.families import StepInput
from genshop.families.gan import GanConfig, GanFamily
from genshop.plots import image_grid
from genshop.schedules import lr_factor

TINY = {"width": 8, "depth": 1, "batch_size": 32, "log_every": 5, "sample_every": 0,
        "checkpoint_every": 1000, "threads": 1}


def tiny(out: Path, **options) -> GanConfig:
    return GanConfig(**{**TINY, "out": str(out), **options})


def load_state(run: Path) -> dict:
    return checkpoint.load(run / CHECKPOINT)


def assert_states_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_states_equal(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_states_equal(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_resumed_run_equals_straight_run_bitwise(tmp_path, step):
    options = {"update": step, "loss": "rasgan", "ema": 0.9}
    run = functools.partial(train, progress=False, evaluate=sample_mean)
    run(tiny(tmp_path / "straight", steps=100, **options))
    run(tiny(tmp_path / "split", steps=50, **options))
    assert load_state(tmp_path / "split")["step"] == 50
    run(tiny(tmp_path / "split", steps=100, **options), resume=True)
    a, b = load_state(tmp_path / "straight"), load_state(tmp_path / "split")
    assert a["step"] == b["step"] == 100
    for key in ("models", "optimizers", "ema", "rng"):
        assert_states_equal(a[key], b[key])
    metrics = [[{k: v for k, v in json.loads(ln).items() if k != "it_per_s"}
                for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("straight", "split")]
    assert metrics[0] == metrics[1] and [m["step"] for m in metrics[0]] == list(range(5, 101, 5))
    assert len({m["sample_mean"] for m in metrics[0]}) == 20  # evaluated at every logged step
    train(tiny(tmp_path / "plain", steps=100, **options), progress=False)
    assert_states_equal(load_state(tmp_path / "plain")["models"], a["models"])  # eval is inert


def sample_mean(step: int, net: torch.nn.Module) -> dict[str, float]:
    """An evaluation hook: draws from its own generator, so training's RNG stays untouched."""
    assert not net.training and not torch.is_grad_enabled()
    z = torch.randn(64, net.latent_dim, generator=torch.Generator().manual_seed(step))
    return {"sample_mean": net(z).mean().item()}


def test_a_different_seed_gives_a_different_run(tmp_path):
    train(tiny(tmp_path / "a", steps=3), progress=False)
    train(tiny(tmp_path / "b", steps=3, seed=1), progress=False)
    wa, wb = (load_state(tmp_path / r)["models"]["G"] for r in "ab")
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ema_is_the_decayed_average_of_the_weights(tmp_path):
    decay = 0.75
    config = tiny(tmp_path / "r", steps=2, ema=decay, lr_g=1e-2)
    torch.manual_seed(config.seed)  # the engine seeds the global RNG, then builds the nets
    theta0 = GanFamily(config, get_dataset("ring8"), torch.device("cpu")).G.state_dict()
    train(tiny(tmp_path / "r1", steps=1, ema=decay, lr_g=1e-2), progress=False)
    theta1 = load_state(tmp_path / "r1")["models"]["G"]
    train(config, progress=False)
    state = load_state(tmp_path / "r")
    theta2, ema = state["models"]["G"], state["ema"]
    for k in theta0:
        expected = decay * (decay * theta0[k] + (1 - decay) * theta1[k]) + (1 - decay) * theta2[k]
        torch.testing.assert_close(ema[k], expected, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(ema[k], theta2[k])


class NanAtStep7(GanFamily):
    name = "nan-at-7"

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def train_step(self, inp):
        losses = super().train_step(inp)
        self.calls += 1
        return {**losses, "d_loss": float("nan")} if self.calls == 7 else losses


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"d_loss = nan at step 7.*step 5"):
        train(tiny(tmp_path / "r", steps=20, checkpoint_every=5), progress=False,
              family=NanAtStep7)
    assert load_state(tmp_path / "r")["step"] == 5


class InterruptAtStep4(GanFamily):
    name = "interrupt-at-4"

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def train_step(self, inp):
        self.calls += 1
        if self.calls == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return super().train_step(inp)


def test_ctrl_c_checkpoints_and_returns(tmp_path):
    # A handler of our own, not the one the suite started with: that may be SIG_IGN (a
    # background job, nohup), under which Ctrl-C rightly does nothing.
    def previous(signum, frame):
        raise AssertionError("SIGINT reached the handler in place before the run")

    started_with = signal.signal(signal.SIGINT, previous)
    try:
        result = train(tiny(tmp_path / "r", steps=50), progress=False, family=InterruptAtStep4)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, started_with)
    assert result.interrupted and result.step == 4
    assert load_state(tmp_path / "r")["step"] == 4
    assert after is previous


@pytest.fixture
def ctrl_c_stops():
    """SIGINT handled as in a foreground program, also when the suite started with it ignored
    (a background job), so the engine's Ctrl-C handling is in force; the handler is restored."""
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, started_with)


def test_interrupted_cosine_run_resumes_on_the_same_schedule(tmp_path, ctrl_c_stops):
    def config(out):
        return tiny(out, steps=12, lr_schedule="cosine", update="fused")

    assert train(config(tmp_path / "cut"), progress=False, family=InterruptAtStep4).step == 4
    train(config(tmp_path / "cut"), resume=True, progress=False)
    train(config(tmp_path / "straight"), progress=False)
    cut, straight = load_state(tmp_path / "cut"), load_state(tmp_path / "straight")
    for key in ("models", "optimizers", "rng"):
        assert_states_equal(cut[key], straight[key])


def test_atomic_save_and_corrupt_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic({"x": torch.arange(3)}, path)
    checkpoint.save_atomic({"x": torch.arange(4)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(checkpoint.load(path)["x"], torch.arange(4))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="corrupt"):
        checkpoint.load(path)
    with pytest.raises(DataError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    checkpoint.save_atomic(checkpoint.rng_states(gen), tmp_path / "r.pt")
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    checkpoint.restore_rng_states(checkpoint.load(tmp_path / "r.pt"), gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])


@pytest.mark.parametrize("step", [["--update", "fused"],
                                  ["--update", "alternating", "--d-steps", "2"]],
                         ids=["fused", "alternating-2-critic-steps"])
def test_two_process_run_matches_one_process_run(tmp_path, step):
    """torchrun with 2 gloo processes, half of each global batch each, equals one process."""
    options = ["--loss", "nsgan", *step, "--steps", "8", "--width", "8",
               "--depth", "1", "--batch-size", "32", "--threads", "1", "--sample-every", "0",
               "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "genshop", "train", "gan", *options,
           "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = read_config_json(tmp_path / "ddp")
    del saved["family"]
    same = from_dict(GanConfig, {**saved, "out": str(tmp_path / "one")})  # the recipe included
    train(same, progress=False)
    ddp, one = load_state(tmp_path / "ddp"), load_state(tmp_path / "one")
    torch.manual_seed(0)
    init = GanFamily(same, get_dataset("ring8"), torch.device("cpu"))
    for net in ("G", "D"):
        for k, v in one["models"][net].items():
            torch.testing.assert_close(ddp["models"][net][k], v, rtol=1e-5, atol=1e-6)
            assert not torch.allclose(v, init.modules()[net].state_dict()[k])  # it trained


class FakeImages:
    name, kind, shape = "fake-images", "images", (1, 28, 28)


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_gan_family_trains_dcgan_nets_on_images(step):
    torch.manual_seed(0)
    config = GanConfig(update=step, latent_dim=4, width=4, spectral_norm=True, lr_d=1e-2)
    family = GanFamily(config, FakeImages(), torch.device("cpu"))
    before = [p.clone() for p in family.D.parameters()]
    losses = family.train_step(StepInput(torch.rand(6, 1, 28, 28), torch.Generator()))
    assert set(losses) >= {"d_loss", "g_loss"}
    assert any(not torch.equal(a, b) for a, b in zip(before, family.D.parameters(), strict=True))
    x = family.sample(family.G.eval(), 5)
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_image_grid_tiles_eight_a_row():
    x = torch.zeros(10, 1, 2, 3)
    x[9] = 1  # the tenth image: row 1, column 1
    grid = image_grid(x)
    assert grid.shape == (4, 24)
    assert grid[2:4, 3:6].min() == 1 and grid.sum() == 6


def test_lr_factor_constant_cosine_and_linear():
    assert [lr_factor("constant", k, 10) for k in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 9, 10) == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))
    assert [lr_factor("linear", k, 8) for k in (0, 2, 7)] == [1.0, 0.75, 0.125]


def test_cosine_schedule_sets_every_group_from_its_initial_rate(tmp_path):
    train(tiny(tmp_path, steps=8, update="fused", lr_d=2e-3, lr_g=1e-3,
                          lr_schedule="cosine"), progress=False)
    groups = load_state(tmp_path)["optimizers"]["opt"]["param_groups"]
    last = lr_factor("cosine", 7, 8)  # the rate used by the 8th (last) step
    assert [g["initial_lr"] for g in groups] == [2e-3, 1e-3]
    assert [g["lr"] for g in groups] == pytest.approx([2e-3 * last, 1e-3 * last], rel=1e-12)


def test_samples_figure_draws_points_over_the_data_and_images_as_a_grid():
    from genshop.plots import samples_figure

    points, data = torch.randn(50, 3), torch.randn(20, 3)
    ax = samples_figure(points, "p", reference=data).axes[0]
    grey, red = ax.collections
    np.testing.assert_array_equal(grey.get_offsets(), data[:, :2].numpy())
    np.testing.assert_array_equal(red.get_offsets(), points[:, :2].numpy())
    images = torch.rand(70, 1, 4, 5)
    ax = samples_figure(images, "i").axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), image_grid(images[:64]))
    assert ax.get_title() == "i"


class CountingFamily(GanFamily):
    name = "counting"

    def train_step(self, inp):
        super().train_step(inp)
        self.calls = getattr(self, "calls", 0) + 1
        return {"v": float(self.calls)}


def test_metrics_lines_hold_means_over_their_window_also_across_a_resume(tmp_path, ctrl_c_stops):
    train(tiny(tmp_path / "w", steps=10, log_every=5), progress=False, family=CountingFamily)
    logged = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["v"]) for r in logged] == [(5, 3.0), (10, 8.0)]  # means of 1-5, 6-10
    straight = [{k: v for k, v in r.items() if k != "it_per_s"} for r in
                _metrics(train, tiny(tmp_path / "a", steps=12, log_every=5))]
    cut = train(tiny(tmp_path / "b", steps=12, log_every=5), progress=False,
                family=InterruptAtStep4)  # Ctrl-C in the middle of the first window
    assert cut.interrupted and cut.step == 4
    resumed = _metrics(train, tiny(tmp_path / "b", steps=12, log_every=5), resume=True)
    assert straight == [{k: v for k, v in r.items() if k != "it_per_s"} for r in resumed]


def _metrics(fn, config, **options):
    fn(config, progress=False, **options)
    lines = (Path(config.out) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_flow_logs_a_held_out_nll_from_its_own_generator(tmp_path):
    config = configure("flow", steps=4, blocks=1, hidden=8, batch_size=32, log_every=2,
                       sample_every=0, out=str(tmp_path / "f"))
    torch.manual_seed(3)
    run = train(config, progress=False)
    logged = [json.loads(x) for x in (tmp_path / "f" / "metrics.jsonl").read_text().splitlines()]
    points = get_dataset("ring8").sample(2048, torch.Generator().manual_seed(config.seed + 1))
    with torch.no_grad():
        assert logged[-1]["held_out_nll"] == pytest.approx(run.net.nll(points).item(), rel=1e-6)
