"""The Gaussian bottleneck (kexue.fm 6181; Alemi et al. 2017): the rate against the closed form
½Σ(μ² + σ² − 1 − log σ²) and its reduction (summed over latent dimensions, averaged over the
batch), a Monte-Carlo estimate of the KL, the pathwise gradients of z = μ + σ·ε, eval mode
z = μ, the log σ² clamp and one-line errors."""

import math

import pytest
import torch

from genshop.bottleneck import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    GaussianBottleneck,
    GaussianEncoder,
    gaussian_rate,
    log_normal,
    reparameterise,
)
from genshop.errors import BadInputError

MU = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
LOGVAR = torch.tensor([[0.0, math.log(2.0)], [-1.0, 0.0]], dtype=torch.float64)
# row 1: ½[(1 + 1 − 1 − 0) + (0 + 2 − 1 − log 2)] = 1 − ½ log 2; row 2: ½[(e⁻¹ − 1 + 1) + 4]
RATE = ((1 - 0.5 * math.log(2.0)) + 0.5 * (math.exp(-1.0) + 4.0)) / 2


def identity_bottleneck(dim: int) -> GaussianBottleneck:
    """A bottleneck whose (μ, log σ²) are its input h = [μ, log σ²]."""
    b = GaussianBottleneck(2 * dim, dim).double()
    with torch.no_grad():
        b.head.weight.copy_(torch.eye(2 * dim))
        b.head.bias.zero_()
    return b


def test_rate_is_the_closed_form_summed_over_dims_averaged_over_batch():
    b = identity_bottleneck(2)
    _, rate = b(torch.cat([MU, LOGVAR], 1))
    torch.testing.assert_close(rate, torch.tensor(RATE, dtype=torch.float64), rtol=1e-14, atol=0)
    torch.testing.assert_close(gaussian_rate(MU, LOGVAR), rate, rtol=1e-14, atol=0)
    # a batch of copies has the same rate; the same dimensions twice have twice the rate
    torch.testing.assert_close(gaussian_rate(MU.repeat(3, 1), LOGVAR.repeat(3, 1)), rate)
    torch.testing.assert_close(gaussian_rate(MU.repeat(1, 2), LOGVAR.repeat(1, 2)), 2 * rate)


def test_rate_matches_a_monte_carlo_kl():
    b = identity_bottleneck(2).train()
    h = torch.cat([MU, LOGVAR], 1).repeat(50_000, 1)  # 50,000 draws per row
    z, rate = b(h, generator=torch.Generator().manual_seed(0))
    log_ratio = log_normal(z, h[:, :2], h[:, 2:]) - log_normal(z)  # log p(z|x) − log N(z; 0, I)
    estimate, stderr = log_ratio.mean(), log_ratio.std() / math.sqrt(len(log_ratio))
    assert abs(estimate - rate) < 4 * stderr and stderr < 0.01


def test_log_normal_matches_torch_distributions():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu, logvar = z.flip(0), z.roll(1, 0)
    want = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal(z, mu, logvar), want, rtol=1e-13, atol=1e-13)


def test_sample_is_mu_plus_sigma_eps_with_its_pathwise_gradients():
    mu = MU.clone().requires_grad_()
    logvar = LOGVAR.clone().requires_grad_()
    eps = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    z = reparameterise(mu, logvar, eps)
    torch.testing.assert_close(z, MU + (LOGVAR / 2).exp() * eps, rtol=0, atol=0)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(MU))
    torch.testing.assert_close(logvar.grad, 0.5 * (LOGVAR / 2).exp() * eps)


def test_pathwise_gradient_of_a_monte_carlo_mean_is_unbiased():
    """∂/∂μ E z² = 2μ and ∂/∂(log σ²) E z² = σ² for E z² = μ² + σ²."""
    mu = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([math.log(0.3)], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(200_000, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    reparameterise(mu, logvar, eps).square().mean().backward()
    assert abs(mu.grad.item() - 1.4) < 0.01 and abs(logvar.grad.item() - 0.3) < 0.01


def test_rate_gradient_is_the_closed_form():
    """∂rate/∂μ = μ/B, ∂rate/∂(log σ²) = (σ² − 1)/(2B)."""
    mu, logvar = MU.clone().requires_grad_(), LOGVAR.clone().requires_grad_()
    gaussian_rate(mu, logvar).backward()
    torch.testing.assert_close(mu.grad, MU / 2)
    torch.testing.assert_close(logvar.grad, (LOGVAR.exp() - 1) / 4)


def test_eval_mode_returns_the_mean_and_training_draws_from_the_generator():
    b = identity_bottleneck(2)
    h = torch.cat([MU, LOGVAR], 1)
    z_eval, rate_eval = b.eval()(h)
    assert torch.equal(z_eval, MU)
    z_a, rate = b.train()(h, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(z_a, MU + (LOGVAR / 2).exp() * eps, rtol=0, atol=0)
    assert torch.equal(rate, rate_eval) and not torch.equal(z_a, MU)
    z_b, _ = b(h, eps=torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(z_b, MU)


def test_logvar_is_clamped_and_the_rate_stays_finite():
    b = identity_bottleneck(1)
    mu, logvar = b.moments(torch.tensor([[0.0, 500.0], [0.0, -500.0]], dtype=torch.float64))
    assert logvar.tolist() == [[LOGVAR_MAX], [LOGVAR_MIN]] and mu.tolist() == [[0.0], [0.0]]
    want = 0.5 * ((math.exp(LOGVAR_MAX) - 1 - LOGVAR_MAX) + (math.exp(LOGVAR_MIN) - 1 - LOGVAR_MIN))
    torch.testing.assert_close(gaussian_rate(mu, logvar).item(), want / 2, rtol=1e-12, atol=0)


def test_encoder_flattens_images_and_shapes():
    enc = GaussianEncoder(784, 8, 2, 3).eval()
    z, rate = enc(torch.rand(4, 1, 28, 28))
    mu, _ = enc.moments(torch.rand(4, 784))
    assert z.shape == mu.shape == (4, 3) and rate.shape == () and rate.item() >= 0


@pytest.mark.parametrize("make", [lambda: GaussianBottleneck(4, 0),
                                  lambda: GaussianBottleneck(0, 2),
                                  lambda: GaussianEncoder(784, 8, 0, 2)])
def test_bad_sizes_fail_in_one_line(make):
    with pytest.raises(BadInputError) as err:
        make()
    assert "\n" not in str(err.value) and ">= 1" in str(err.value)
