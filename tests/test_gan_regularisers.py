"""PacGAN packing (Lin et al. 2018) and the R1 penalty (Mescheder et al. 2018) of the GAN family."""

import json

import pytest
import torch
from torch import nn

from genshop import steps
from genshop.config import GanConfig
from genshop.data import get_dataset
from genshop.engine import train
from genshop.errors import BadInputError
from genshop.families.gan import GanFamily, PackedCritic, R1Penalty, build_nets
from genshop.losses import get_loss
from genshop.nets import Critic, mlp_pair

RING = get_dataset("ring8")


def linear_critic(in_features: int, weight: list[float]) -> Critic:
    layer = nn.Linear(in_features, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(0.3)
    return Critic(layer)


def test_packed_critic_gives_each_pack_one_logit_repeated_per_sample():
    inner = linear_critic(4, [1.0, 2.0, 3.0, 4.0])
    D = PackedCritic(inner, pack=2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, -1.0]])
    # packs (1, 0, 0, 1) and (2, 0, 0, -1): 1 + 4 + 0.3 and 2 − 4 + 0.3
    assert D(x).tolist() == pytest.approx([5.3, 5.3, -1.7, -1.7])
    with pytest.raises(BadInputError, match="multiple of 2"):
        D(x[:3])


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
def test_r1_of_a_linear_critic_is_half_gamma_w_squared(pack):
    """D(x) = w·x + b has ∇ₓD = w for every sample or pack: (γ/2)·‖w‖² whatever the batch."""
    w = [0.5, -1.0, 2.0, 0.0, 1.5, 1.0][: 2 * pack]
    D = linear_critic(2 * pack, w)
    D = PackedCritic(D, pack) if pack > 1 else D
    value = R1Penalty(D, gamma=4.0).penalty(torch.randn(6 * pack, 2))
    assert value.item() == pytest.approx(2.0 * sum(v * v for v in w), rel=1e-6)


def test_r1_hook_adds_the_penalty_gradient_before_the_step():
    torch.manual_seed(2)
    _, D = mlp_pair(2, 16, 2)
    real = torch.randn(64, 2)
    r1 = R1Penalty(D, gamma=10.0)
    params = list(D.parameters())
    expected = torch.autograd.grad(D(real).mean() + r1.penalty(real), params,
                                   allow_unused=True, materialize_grads=True)
    opt = torch.optim.SGD(params, lr=0.0)
    opt.register_step_pre_hook(r1)
    r1.real = real
    opt.zero_grad()
    D(real).mean().backward()
    opt.step()
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    assert r1.last == pytest.approx(r1.penalty(real).item(), rel=1e-5) and r1.last > 0


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_family_trains_with_pack_and_r1_and_logs_the_penalty(tmp_path, step):
    config = GanConfig(width=8, depth=1, batch_size=32, steps=5, log_every=5, sample_every=0,
                       threads=1, pack=4, r1=1.0, step=step, out=str(tmp_path))
    train(GanFamily, config, progress=False)
    record = (tmp_path / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"r1": ' in record and '"step": 5' in record
    _, D = build_nets(config, RING)
    assert isinstance(D, PackedCritic) and D.inner.body[0].in_features == 8


def test_pack_must_divide_the_batch(tmp_path):
    config = GanConfig(width=8, depth=1, batch_size=30, steps=2, pack=4, sample_every=0,
                       threads=1, out=str(tmp_path))
    with pytest.raises(BadInputError, match="--batch-size 30 must be a multiple of --pack 4"):
        train(GanFamily, config, progress=False)
    with pytest.raises(BadInputError, match="multiple of 4, got 6"):  # any other batch
        PackedCritic(linear_critic(8, [1.0] * 8), 4)(torch.zeros(6, 2))


def test_lazy_r1_adds_k_times_the_gradient_on_every_kth_step_only():
    torch.manual_seed(3)
    _, D = mlp_pair(2, 16, 2)
    real = torch.randn(32, 2)
    params = list(D.parameters())
    full = torch.autograd.grad(R1Penalty(D, 1.0).penalty(real), params, allow_unused=True,
                               materialize_grads=True)
    opt = torch.optim.Adam(params, lr=0.0)
    lazy = R1Penalty(D, 1.0, every=3)
    lazy.real = real
    opt.register_step_pre_hook(lazy)
    added = []
    for _ in range(4):
        opt.zero_grad()
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        added.append([p.grad.clone() for p in params])
    for step, grads in enumerate(added):
        factor = 3.0 if step % 3 == 0 else 0.0
        for g, f in zip(grads, full, strict=True):
            torch.testing.assert_close(g, factor * f, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("step", ["alternating", "fused"])
def test_resume_with_lazy_r1_equals_a_straight_run(tmp_path, step):
    options = {"width": 8, "depth": 1, "batch_size": 32, "log_every": 1, "sample_every": 0,
               "threads": 1, "r1": 1.0, "r1_every": 4, "step": step}
    train(GanFamily, GanConfig(**options, steps=10, out=str(tmp_path / "a")), progress=False)
    train(GanFamily, GanConfig(**options, steps=5, out=str(tmp_path / "b")), progress=False)
    train(GanFamily, GanConfig(**options, steps=10, out=str(tmp_path / "b")), resume=True,
          progress=False)
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=False) for r in "ab")
    for net in ("G", "D"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), (net, k)
    logged = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 11))
    assert "r1" not in logged[5] and "r1" in logged[8]  # resumed at step 5; R1 ran at step 9
