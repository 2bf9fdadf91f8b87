"""Image GANs: the DCGAN pair for 1 and 3 channels (shapes, FLOPs against the closed form), the
compute budget of the image benchmarks (FLOP counts against FlopCounterMode, against a plain
dispatch-mode count inside torch.autograd.grad, and the post's 12 : 9 net passes; any family's
step), training on Stacked MNIST (snapshots, exact resume), and `bench images` / `bench stacked`
end to end on tiny settings with fake digits and a fake classifier."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_models, straight_and_resumed
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from genshop import cli
from genshop.engine import configure
from genshop.errors import BadInputError
from genshop.experiments import Result, Row, Setting, gan, gan_grid
from genshop.experiments import images as bench
from genshop.experiments.budget import (
    budget_steps,
    count_flops,
    plan_budget,
    step_flops,
)
from genshop.experiments.stacked import STACKED, on_target
from genshop.families import StepInput
from genshop.families.gan import GanConfig, GanFamily
from genshop.nets import dcgan_pair

TINY = {"latent_dim": 4, "width": 4, "batch_size": 8, "ema": 0.9}


# -- the DCGAN pair -----------------------------------------------------------------------------

def dcgan_forward_flops(k: int, w: int, c: int, h: int, width: int) -> int:
    """2 × multiply-adds of one image through G then D (nets.py docstring)."""
    hw = h * width
    g = k * 2 * w * hw // 16 + 2 * w * w * hw + 4 * w * c * hw
    d = 4 * w * c * hw + 2 * w * w * hw + 2 * w * hw // 16
    return 2 * (g + d)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (3, 32, 32), (1, 16, 24)])
def test_dcgan_pair_maps_latents_to_images_of_any_channels_and_size(shape):
    torch.manual_seed(0)
    G, D = dcgan_pair(latent_dim=8, width=4, shape=shape)
    x = G(10 * G.sample_latent(6))  # large latents push the sigmoid towards its ends
    assert x.shape == (6, *shape) and x.min() >= 0 and x.max() <= 1 and x.max() - x.min() > 0.5
    assert D(x).shape == (6,)
    first = next(m for m in D.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.shape == (4, shape[0], 4, 4)
    flops = count_flops(lambda: D(G(G.sample_latent(5))))
    assert flops == 5 * dcgan_forward_flops(8, 4, *shape)


@pytest.mark.parametrize("shape", [(1, 30, 28), (28, 28), (3, 28, 26)])
def test_dcgan_pair_refuses_sizes_it_cannot_halve_twice(shape):
    with pytest.raises(BadInputError, match="multiples of 4"):
        dcgan_pair(shape=shape)

    class Odd:
        name, kind = "odd", "images"

    Odd.shape = shape
    with pytest.raises(BadInputError, match="multiples of 4"):
        GanFamily.check(GanConfig(), Odd())


def test_the_gan_family_trains_three_channel_images_with_channels_last_nets():
    class Stacks:
        name, kind, shape = "stacks", "images", (3, 28, 28)

    torch.manual_seed(0)
    family = GanFamily(GanConfig(latent_dim=4, width=4, update="fused"), Stacks(),
                       torch.device("cpu"))
    conv = next(m for m in family.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    before = [p.clone() for p in family.G.parameters()]
    family.train_step(StepInput(torch.rand(6, 3, 28, 28), torch.Generator().manual_seed(0)))
    assert all(not torch.equal(a, b) for a, b in zip(before, family.G.parameters(),
                                                       strict=True))
    x = family.sample(family.G.eval(), 5)
    assert x.shape == (5, 3, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_a_packed_image_critic_judges_consecutive_samples_stacked_along_the_channels():
    class Stacks:
        name, kind, shape = "stacks", "images", (3, 28, 28)

    torch.manual_seed(0)
    family = GanFamily(GanConfig(latent_dim=4, width=4, pack=2, batch_size=6), Stacks(),
                       torch.device("cpu"))
    inner = family.D.inner
    first = next(m for m in inner.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6
    x = torch.rand(6, 3, 28, 28)
    by_hand = inner(torch.cat([x[0::2], x[1::2]], dim=1))  # pack k = samples 2k, 2k + 1
    assert torch.allclose(family.D(x), by_hand.repeat_interleave(2), atol=1e-6)
    losses = family.train_step(StepInput(torch.rand(6, 3, 28, 28), torch.Generator()))
    assert set(losses) >= {"d_loss", "g_loss"}
    with pytest.raises(BadInputError, match="multiple of --pack 2"):
        GanFamily.check(GanConfig(pack=2, batch_size=5), Stacks())


# -- the compute budget -------------------------------------------------------------------------

def one_step(config: GanConfig, shape=(1, 28, 28)):
    class Images:
        name, kind = "images", "images"

    Images.shape = shape
    torch.manual_seed(0)
    family = GanFamily(config, Images(), torch.device("cpu"))
    real = torch.rand(config.batch_size * config.d_steps, *shape)
    return lambda: family.train_step(StepInput(real, torch.Generator().manual_seed(0)))


def test_flop_count_equals_flop_counter_mode_where_that_runs():
    step = one_step(GanConfig(latent_dim=8, width=4, batch_size=6))
    with FlopCounterMode(display=False) as counter:
        step()
    step = one_step(GanConfig(latent_dim=8, width=4, batch_size=6))
    assert count_flops(step) == counter.get_total_flops() > 0


class PlainFlopCount(TorchDispatchMode):
    """An independent count: every op with a formula in torch's registry, no module tracking."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


@pytest.mark.parametrize("options", [
    {"loss": "wgan"}, {"r1": 1.0}, {"update": "fused"}, {"update": "fused", "loss": "wgan"},
    {"update": "fused", "r1": 1.0}, {"update": "fused", "loss": "rsgan"},
    {"update": "fused", "spectral_norm": True}, {"d_steps": 2, "loss": "rasgan"},
    {"pack": 2, "loss": "wgan", "update": "fused"}])
def test_flop_count_inside_autograd_grad_equals_a_plain_dispatch_count(options):
    # WGAN-GP, R1 and the fused step call torch.autograd.grad, where FlopCounterMode's module
    # tracker fails
    config = GanConfig(latent_dim=8, width=4, batch_size=6, **options)
    with PlainFlopCount() as plain:
        one_step(config)()
    counted = count_flops(one_step(config))
    assert counted == plain.total > 0
    assert counted != count_flops(one_step(GanConfig(latent_dim=8, width=8, batch_size=6,
                                                     **options)))


def test_step_flops_follow_the_net_pass_count_of_each_update():
    # Per layer, a backward costs its forward twice: once for the input gradient, once for the
    # weights. With G, D the forward FLOPs of the nets on one batch and G', D' those without
    # their first layer (z and the real images need no input gradient):
    #   alternating = D step (G fwd; D fwd, weight and input bwd on real and fake rows)
    #               + G step (G fwd; D fwd and input bwd; G weight and input bwd)
    #               = 3G + G' + 6D + 2D',
    #   fused       = G fwd; D fwd on real and fake; D weight bwd on both, input bwd on the real
    #                 rows without the first layer, on all fake rows; G bwd
    #               = 2G + G' + 5D + D'.
    # With negligible first layers that is post 6387's 12 against 9 net passes.
    k, w, n, hw = 8, 4, 6, 28 * 28
    g_first, d_first = 2 * n * k * 2 * w * hw // 16, 2 * n * 4 * w * hw
    g = g_first + 2 * n * (2 * w * w * hw + 4 * w * hw)
    d = d_first + 2 * n * (2 * w * w * hw + 2 * w * hw // 16)
    options = {"latent_dim": k, "width": w, "batch_size": n, "loss": "hinge"}
    alt = count_flops(one_step(GanConfig(**options)))
    fused = count_flops(one_step(GanConfig(**options, update="fused")))
    assert alt == 3 * g + (g - g_first) + 6 * d + 2 * (d - d_first)
    assert fused == 2 * g + (g - g_first) + 5 * d + (d - d_first)
    # relativistic G losses also re-evaluate D(real) with the updated D in the G step
    rs_alt = count_flops(one_step(GanConfig(**{**options, "loss": "rsgan"})))
    assert rs_alt == alt + d


def test_budget_gives_every_row_the_reference_rows_flops(fake_mnist):
    base = {**TINY, "batch_size": 16, "spectral_norm": False}  # the recipe's SN: see below
    rows = gan_grid(["nsgan", "wgan"], ["alternating", "fused"])
    budget = plan_budget("mnist", rows, bench.REFERENCE, base, 30)
    ref = budget.flops
    assert budget.per_row[gan("nsgan", "alternating")] == (30, ref)
    # counted at 8 rows and scaled to 16: equal to a count of one whole step at 16 rows
    nets = {"latent_dim": 4, "width": 4, "batch_size": 16}
    alt16 = count_flops(one_step(GanConfig(**nets)))
    fused16 = count_flops(one_step(GanConfig(**nets, update="fused")))
    fused = gan("nsgan", "fused")
    assert ref == alt16 and budget.per_row[fused] == (round(30 * alt16 / fused16), fused16)
    assert budget.per_row[fused][0] == 39  # tiny nets: 9.6 units, not 9, to 12
    # spectral norm in training mode keeps the fused step from sharing one critic forward
    sn = plan_budget("mnist", [fused], bench.REFERENCE, {**base, "spectral_norm": True}, 30)
    assert sn.flops == ref and budget.per_row[fused][1] < sn.per_row[fused][1] < ref
    wgan_steps, wgan_flops = budget.per_row[gan("wgan", "alternating")]
    assert wgan_flops > ref and wgan_steps == round(30 * ref / wgan_flops) < 30
    assert budget.as_json()["rows"]["wgan/alternating"] == {"steps": wgan_steps,
                                                            "flops_per_step": wgan_flops}
    config = gan("nsgan", "alternating").config("mnist", 0, ".", base)
    assert step_flops(config) == step_flops(config, batch=4)
    assert budget_steps(3000, 4.0, 3.0) == 4000
    assert budget_steps(1, 1.0, 100.0) == 1


def test_lazy_r1_counts_at_its_mean_cost(fake_mnist):
    row = gan("nsgan", "alternating")
    plain = row.config("mnist", 0, ".", TINY)
    every = row.config("mnist", 0, ".", {**TINY, "r1": 1.0})
    lazy = row.config("mnist", 0, ".", {**TINY, "r1": 1.0, "r1_every": 4})
    f0, f1, f4 = (step_flops(c) for c in (plain, every, lazy))
    assert f1 > f0 and f4 == pytest.approx(f0 + (f1 - f0) / 4)


def test_step_flops_count_any_familys_step_and_budget_its_row():
    from genshop.data import get_dataset
    from genshop.families.flow import FlowFamily

    small = {"batch_size": 16, "blocks": 2, "hidden": 8}
    config = Setting("flow").config("ring8", 0, ".", small)
    torch.manual_seed(0)
    family = FlowFamily(config, get_dataset("ring8"), torch.device("cpu"))
    points = torch.randn(16, 2)
    direct = count_flops(lambda: family.train_step(StepInput(points, torch.Generator())))
    assert step_flops(config) == step_flops(config, batch=4) == direct > 0
    bigger = Setting("flow").config("ring8", 0, ".", {**small, "hidden": 16})
    assert step_flops(bigger) > direct
    rows = [gan("nsgan", "fused"), Setting("flow")]
    budget = plan_budget("ring8", rows, bench.REFERENCE, {**small, "width": 8}, 100)
    assert budget.per_row[Setting("flow")] == (round(100 * budget.flops / direct), direct)
    assert set(budget.as_json()["rows"]) == {"nsgan/fused", "flow"}


# -- training on Stacked MNIST ------------------------------------------------------------------

def test_train_gan_on_stacked_mnist_from_the_command_line(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "gan", "--data", "stacked-mnist", "--loss", "hinge", "--update", "fused",
            "--latent-dim", "4", "--width", "4", "--batch-size", "8", "--steps", "4",
            "--sample-every", "2", "--ema", "0.5", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    shots = sorted(p.name for p in (out / "samples").glob("*.png"))
    assert shots == ["step_0000002.png", "step_0000004.png"]
    import genshop

    x = genshop.load_run(out).sample(7, seed=1)
    assert x.shape == (7, 3, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, genshop.load_run(out).sample(7, seed=1))


def test_a_resumed_stacked_mnist_run_equals_a_straight_one(fake_mnist, tmp_path):
    a, b = straight_and_resumed(tmp_path, GanConfig, 6, 3, data="stacked-mnist", **TINY,
                                update="alternating", loss="rsgan", sample_every=0)
    assert_same_models(a, b)
    for k, v in a["ema"].items():
        assert torch.equal(v, b["ema"][k])


def test_recipes_exist_for_mnist_and_stacked_mnist():
    for data in ("mnist", "stacked-mnist"):
        config = configure("gan", data=data, out="x")
        assert config.latent_dim > 2 and config.ema > 0 and config.batch_size == 64
        for update in ("alternating", "fused"):
            assert configure("gan", data=data, update=update, out="x").steps > 1000


# -- the benchmarks end to end ------------------------------------------------------------------

def test_bench_images_end_to_end_and_resumed(fake_mnist, tmp_path, capsys):
    argv = ["bench", "images", "--losses", "nsgan", "--steps", "10", "--seeds", "1",
            "--samples", "100", "--out", str(tmp_path / "b")] + [
        f"--set={k}={v}" for k, v in TINY.items()]
    assert cli.main(argv) == 0
    (folder,) = (tmp_path / "b").iterdir()
    results = json.loads((folder / "results.json").read_text())
    runs = {r["update"]: r for r in results["runs"]}
    budget = results["budget"]["rows"]
    ref, fused = (budget[f"nsgan/{u}"]["flops_per_step"] for u in ("alternating", "fused"))
    assert runs["alternating"]["steps"] == 10 and fused < ref  # the recipe: spectral norm
    assert runs["fused"]["steps"] == budget["nsgan/fused"]["steps"] == round(10 * ref / fused)
    assert runs["fused"]["steps"] == 11
    for update, r in runs.items():
        record = json.loads((folder / "runs" / f"nsgan-{update}-s0" / "eval.json").read_text())
        assert record["scores"]["fid"] == r["scores"]["fid"] >= 0
        assert record["protocol"]["n_samples"] == 100 and record["step"] == r["steps"]
        assert 0 <= r["scores"]["precision"] <= 1 and 1 <= r["scores"]["classes_found"] <= 10
    page = (folder / "index.html").read_text()
    assert "Lucic et al. 2018" in page and "samples.png" in page and "single-loss" in page
    assert (folder / "samples.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "nsgan      fused       seed 0: 11 steps, FID" in out
    ckpt = folder / "runs" / "nsgan-fused-s0" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert cli.main([*argv, "--resume", str(folder)]) == 0  # reused, not retrained
    assert ckpt.stat().st_mtime_ns == stamp
    again = json.loads((folder / "results.json").read_text())
    assert again["runs"] == results["runs"]


def test_bench_stacked_end_to_end(fake_mnist, tmp_path, capsys):
    argv = ["bench", "stacked", "--losses", "hinge", "--updates", "alternating", "--steps",
            "2", "--seeds", "2", "--samples", "120", "--out", str(tmp_path / "b")] + [
        f"--set={k}={v}" for k, v in TINY.items()]
    assert cli.main(argv) == 0
    (folder,) = (tmp_path / "b").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert [(r["loss"], r["seed"]) for r in results["runs"]] == [("hinge", 0), ("hinge", 1)]
    for r in results["runs"]:
        s = r["scores"]
        assert 1 <= s["modes"] <= 120 and s["kl"] >= 0 and 1 <= s["vendi"] <= 1000
    assert results["protocol"]["reference"] == "stacked-mnist-test"
    page = (folder / "index.html").read_text()
    assert "PacDCGAN2" in page and "<td>0.06 ± 0.003</td>" in page and "Target" in page
    markdown = (folder / "tables.md").read_text()
    assert "| PacDCGAN2 | 1000.0 ± 0.00 | 0.06 ± 0.003 |" in markdown
    assert markdown.count("\n### ") == page.count("<h3>")
    assert "seeds on target" in capsys.readouterr().out


def test_on_target_needs_every_mode_and_a_small_kl():
    def run(modes, kl):
        return Result(gan("x", "alternating"), 0, 1, {"modes": modes, "kl": kl}, 1.0, False)

    row = Row(gan("x", "alternating"), [run(1000, 0.05), run(1000, 0.07), run(999, 0.01)])
    assert on_target(row) == 1
    assert STACKED.rank_key(row) > STACKED.rank_key(Row(gan("y", "fused"), [run(1000, 0.07)]))
    diverged = Row(gan("z", "fused"), [Result(gan("z", "fused"), 0, 1, {}, 1.0, True)])
    assert on_target(diverged) == 0 and row.mean_se("kl")[0] == pytest.approx(0.13 / 3)
    assert bench.format_cell(diverged.mean_se("kl"), bench.Metric("kl", "KL", 3)) == "—"


def test_bench_rejects_modes_only_options_and_a_steps_override(capsys, tmp_path):
    for extra, message in [(["--best", "1"], "--best is for bench modes only"),
                           (["--data", "ring8"], "--data is for bench modes only"),
                           (["--set", "steps=5"], "--steps, not --set steps")]:
        assert cli.main(["bench", "images", *extra, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_tour_section_trains_scores_and_draws(fake_mnist, tmp_path, monkeypatch):
    from genshop.sections import images as section
    from genshop.tour import SectionContext

    monkeypatch.setattr(section, "QUICK", {**TINY, "steps": 3})
    monkeypatch.setattr(section, "SAMPLES", 100)
    ctx = SectionContext("images", tmp_path / "images")
    ctx.out_dir.mkdir()
    result = section.images_section(ctx)
    (table,) = result.tables
    assert table.rows[0][:4] == ["nsgan", "alternating", 1, 3]
    assert result.figures[0].is_file() and (tmp_path / "images" / "run" / "eval.json").is_file()
    real, fake = result.metrics["real_train_fid"], result.metrics["run"]["fid"]
    assert 0 <= real < fake and f"FID {fake:.2f} (real train digits {real:.2f})" in result.summary
