"""PacGAN packing (Lin et al. 2018) and the R1 penalty (Mescheder et al. 2018) of the GAN family."""

import json

import pytest
import torch
from conftest import assert_same_models, straight_and_resumed
from torch import nn

from genshop import steps
from genshop.data import get_dataset
from genshop.engine import train
from genshop.errors import BadInputError
from genshop.families import StepInput
from genshop.families.gan import GanConfig, GanFamily, build_nets
from genshop.losses import get_loss, r1_penalty
from genshop.nets import Critic, PackedCritic, mlp_pair

RING = get_dataset("ring8")


def linear_critic(in_features: int, weight: list[float]) -> Critic:
    layer = nn.Linear(in_features, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(0.3)
    return Critic(layer)


@pytest.mark.parametrize("loss_name", ["nsgan", "rasgan", "hinge", "fgan-kl"])
def test_packed_losses_equal_the_losses_over_packs(loss_name):
    """Mean over repeated logits = mean over packs: values and D gradients match the inner net."""
    torch.manual_seed(0)
    _, inner = mlp_pair(2, 16, 2, data_dim=2 * 4)
    D, loss = PackedCritic(inner, 4), get_loss(loss_name)
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    packed = loss.d_loss(*steps.critic_outputs(D, real, fake))
    direct = loss.d_loss(inner(real.reshape(8, 8)), inner(fake.reshape(8, 8)))
    assert packed.item() == pytest.approx(direct.item(), rel=1e-6)
    g_packed = torch.autograd.grad(packed, list(inner.parameters()))
    g_direct = torch.autograd.grad(direct, list(inner.parameters()))
    for a, b in zip(g_packed, g_direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert max(g.abs().max().item() for g in g_direct) > 1e-3


def test_fused_step_stays_exact_with_a_packed_critic():
    torch.manual_seed(1)
    G, _ = mlp_pair(2, 16, 2)
    _, inner = mlp_pair(2, 16, 2, data_dim=4)
    gap = steps.gradient_gap(G, PackedCritic(inner, 2), get_loss("rsgan"), torch.randn(16, 2),
                             torch.randn(16, 2))
    assert gap["d_grad"] < 1e-6 and gap["g_grad"] < 1e-6 and gap["value"] < 1e-6


@pytest.mark.parametrize("pack", [1, 3])
def test_r1_of_a_linear_critic_is_half_w_squared(pack):
    """D(x) = w·x + b has ∇ₓD = w for every sample or pack: ½·‖w‖² whatever the batch."""
    w = [0.5, -1.0, 2.0, 0.0, 1.5, 1.0][: 2 * pack]
    D = linear_critic(2 * pack, w)
    D = PackedCritic(D, pack) if pack > 1 else D
    value = r1_penalty(D, torch.randn(6 * pack, 2), pack=pack)
    assert value.item() == pytest.approx(0.5 * sum(v * v for v in w), rel=1e-6)


@pytest.mark.parametrize("update", ["alternating", "fused"])
def test_lazy_r1_weighs_every_kth_critic_update_by_k_gamma(update):
    """The family's steps equal the steps called by hand with r1 = k·γ on updates 0, k, 2k, …
    and 0 between (bit for bit), and differ from R1 on every update."""
    def family(r1_every: int) -> GanFamily:
        torch.manual_seed(0)
        config = GanConfig(width=8, depth=1, batch_size=16, threads=1, r1=0.5,
                           r1_every=r1_every, update=update, lr_d=1e-2, lr_g=1e-2)
        return GanFamily(config, RING, torch.device("cpu"))

    lazy, by_hand, eager = family(3), family(3), family(1)
    opts = by_hand.optimizers()
    for t in range(5):
        real = RING.sample(16, torch.Generator().manual_seed(t))
        for net in (lazy, eager):
            net.train_step(StepInput(real, torch.Generator().manual_seed(100 + t)))
        noise = StepInput(real, torch.Generator().manual_seed(100 + t))
        weight = 1.5 if t % 3 == 0 else 0.0
        if update == "fused":
            steps.fused_step(by_hand.G, by_hand.D, by_hand.loss, opts["opt"], real,
                             noise.normal(2), r1=weight)
        else:
            steps.alternating_step(by_hand.G, by_hand.D, by_hand.loss, opts["opt_d"],
                                   opts["opt_g"], real, noise.normal(2), noise.normal(2),
                                   r1=weight)
    for p, q in zip(lazy.D.parameters(), by_hand.D.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, e) for p, e in zip(lazy.D.parameters(),
                                                    eager.D.parameters(), strict=True))


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_family_trains_with_pack_and_r1_and_logs_the_penalty(tmp_path, step):
    config = GanConfig(width=8, depth=1, batch_size=32, steps=5, log_every=5, sample_every=0,
                       threads=1, pack=4, r1=1.0, update=step, out=str(tmp_path))
    train(config, progress=False)
    record = (tmp_path / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"r1": ' in record and '"step": 5' in record
    _, D = build_nets(config, RING)
    assert isinstance(D, PackedCritic) and D.inner.body[0].in_features == 8


def test_pack_must_divide_the_batch(tmp_path):
    config = GanConfig(width=8, depth=1, batch_size=30, steps=2, pack=4, sample_every=0,
                       threads=1, out=str(tmp_path))
    with pytest.raises(BadInputError, match="--batch-size 30 must be a multiple of --pack 4"):
        train(config, progress=False)
    with pytest.raises(BadInputError, match="multiple of 4, got 6"):  # any other batch
        PackedCritic(linear_critic(8, [1.0] * 8), 4)(torch.zeros(6, 2))


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_resume_with_lazy_r1_equals_a_straight_run(tmp_path, step):
    options = {"width": 8, "depth": 1, "batch_size": 32, "log_every": 1, "sample_every": 0,
               "threads": 1, "r1": 1.0, "r1_every": 4, "update": step}
    assert_same_models(*straight_and_resumed(tmp_path, GanConfig, 10, 5, **options))
    logged = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 11))
    straight = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    drop_rate = [{k: v for k, v in r.items() if k != "it_per_s"} for r in logged]
    assert drop_rate == [{k: v for k, v in r.items() if k != "it_per_s"} for r in straight]
    assert all("r1" in r for r in logged)  # the latest penalty, also right after the resume
