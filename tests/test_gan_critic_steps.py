"""Several critic updates per generator update (`--d-steps`, the WGAN-GP schedule)."""


import pytest
import torch
from conftest import assert_same_models, straight_and_resumed

from genshop import steps
from genshop.data import get_dataset
from genshop.errors import BadInputError
from genshop.families import StepInput
from genshop.families.gan import GanConfig, GanFamily

RING = get_dataset("ring8")


def family(**options) -> GanFamily:
    torch.manual_seed(0)
    config = GanConfig(width=8, depth=1, batch_size=16, threads=1, loss="wgan", **options)
    return GanFamily(config, RING, torch.device("cpu"))


@pytest.mark.parametrize("r1", [0.0, 1.0])
def test_d_steps_updates_the_critic_on_each_fresh_batch_then_both_nets(r1):
    net = family(d_steps=3, r1=r1)
    assert net.batches_per_step() == 3
    ref = family(d_steps=3, r1=r1)  # the same initial weights
    real = RING.sample(48, torch.Generator().manual_seed(1))
    torch.manual_seed(5)  # the gradient penalty's interpolation points
    out = net.train_step(StepInput(real, torch.Generator().manual_seed(2)))
    torch.manual_seed(5)

    # by hand: critic updates on points 0-15 and 16-31, then the usual step on 32-47
    noise = torch.Generator().manual_seed(2)
    opt_d, opt_g = ref.optimizers()["opt_d"], ref.optimizers()["opt_g"]
    for chunk in (real[:16], real[16:32]):  # R1 (r1_every = 1) on every critic update
        steps.critic_step(ref.G, ref.D, ref.loss, opt_d, chunk, torch.randn(16, 2, generator=noise),
                          r1=r1)
    expected = steps.alternating_step(ref.G, ref.D, ref.loss, opt_d, opt_g, real[32:],
                                      torch.randn(16, 2, generator=noise),
                                      torch.randn(16, 2, generator=noise), r1=r1)
    assert out["d_loss"] == expected["d_loss"] and out["g_loss"] == expected["g_loss"]
    for a, b in ((net.G, ref.G), (net.D, ref.D)):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)
    assert int(opt_d.state[next(iter(ref.D.parameters()))]["step"]) == 3  # 3 critic updates


def test_d_steps_of_one_is_the_plain_alternating_step():
    net, ref = family(d_steps=1), family()
    real = RING.sample(16, torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    a = net.train_step(StepInput(real, torch.Generator().manual_seed(2)))
    torch.manual_seed(5)
    noise = torch.Generator().manual_seed(2)
    z_d, z_g = torch.randn(16, 2, generator=noise), torch.randn(16, 2, generator=noise)
    b = steps.alternating_step(ref.G, ref.D, ref.loss, ref.optimizers()["opt_d"],
                               ref.optimizers()["opt_g"], real, z_d, z_g)
    assert a == b


def test_d_steps_needs_the_alternating_step_and_a_positive_count():
    with pytest.raises(BadInputError, match="--d-steps > 1 needs --update alternating"):
        family(d_steps=2, update="fused")
    with pytest.raises(BadInputError, match=r"option d_steps \(--d-steps\) must be >= 1, got 0"):
        family(d_steps=0)


def test_engine_draws_d_steps_batches_and_resumes_exactly(tmp_path):
    options = {"width": 8, "depth": 1, "batch_size": 16, "threads": 1, "log_every": 1,
               "sample_every": 0, "loss": "wgan", "d_steps": 3}
    a, b = straight_and_resumed(tmp_path, GanConfig, 6, 3, **options)
    assert_same_models(a, b)
    assert a["optimizers"]["opt_d"]["state"][0]["step"] == 18  # 6 steps × 3 critic updates
