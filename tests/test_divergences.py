"""The f-divergence catalog, user generators and the variational estimator (post 6016)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from genshop import divergences as D
from genshop.errors import BadInputError, GenshopError, UnknownNameError

ALL = [*D.names(), "alpha:0.5", "alpha:2", "alpha:-1", "alpha:3"]
F64 = torch.float64


def interior_t(div: D.FDivergence) -> torch.Tensor:
    """Points of dom f*: f'(u) for u over four decades (and a grid for tv, whose f' is a step)."""
    if div.name == "tv":
        return torch.linspace(-0.45, 0.45, 19, dtype=F64)
    return div.f_prime(torch.logspace(-2, 2, 41, dtype=F64))


def test_names_cover_the_required_catalog():
    assert set(D.names()) >= {"tv", "kl", "reverse_kl", "pearson", "neyman", "hellinger",
                              "jeffrey", "js", "gan"}


def test_unknown_and_malformed_names_fail_with_the_choices():
    with pytest.raises(UnknownNameError, match=r"choose one of: .*kl.*alpha:<a>|alpha:<a>.*kl"):
        D.get("kld")
    for bad in ("alpha:0", "alpha:1", "alpha:1.0", "alpha:nan", "alpha:inf", "alpha:half"):
        with pytest.raises(GenshopError, match="alpha"):
            D.get(bad)


def test_lambert_w0_matches_scipy():
    z = torch.tensor([-1 / math.e + 1e-12, -0.3, -0.1, -1e-8, 0.0, 1e-12, 0.2, 1.0, math.e,
                      10.0, 1e3, 1e8, 1e100, 1e300], dtype=F64)
    expected = torch.tensor(special.lambertw(z.numpy()).real)
    torch.testing.assert_close(D.lambert_w0(z), expected, rtol=1e-12, atol=1e-10)
    assert torch.isnan(D.lambert_w0(torch.tensor([-0.5], dtype=F64))).all()


@pytest.mark.parametrize("name", ALL)
def test_f_at_one_is_zero_except_gan(name):
    value = float(D.get(name).f(torch.ones((), dtype=F64)))
    assert value == pytest.approx(-math.log(4) if name == "gan" else 0.0, abs=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_f_prime_is_the_derivative_of_f(name):
    div = D.get(name)
    u = torch.logspace(-2, 2, 57, dtype=F64).requires_grad_(True)
    (grad,) = torch.autograd.grad(div.f(u).sum(), u)
    torch.testing.assert_close(div.f_prime(u.detach()), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_conjugate_is_the_sup_of_tu_minus_f(name):
    div = D.get(name)
    u = torch.logspace(-5, 5, 200_001, dtype=F64)
    t = interior_t(div)
    brute = (t[:, None] * u[None] - div.f(u)[None]).amax(1)
    torch.testing.assert_close(div.conjugate(t), brute, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_fenchel_young_inequality_and_equality(name):
    div = D.get(name)
    u = torch.logspace(-3, 3, 61, dtype=F64)
    t = interior_t(div)
    gap = div.f(u)[:, None] + div.conjugate(t)[None] - u[:, None] * t[None]
    assert gap.min() >= -1e-9 * (1 + gap.abs().max())
    t_star = div.f_prime(u)
    equality = div.f(u) + div.conjugate(t_star) - u * t_star
    torch.testing.assert_close(equality, torch.zeros_like(u), rtol=0, atol=1e-9 * (1 + u.max()))


@pytest.mark.parametrize("name", ALL)
def test_activation_maps_into_dom_conjugate(name):
    div = D.get(name)
    lo, hi = div.domain
    for dtype in (torch.float32, F64):
        v = torch.linspace(-50, 50, 1001, dtype=dtype)
        g = div.activation(v)
        assert ((g >= lo) & (g <= hi)).all(), "outside the closure of dom f*"
    v = torch.linspace(-5, 5, 101, dtype=F64)
    g = div.activation(v)
    assert ((g > lo) & (g < hi)).all(), "not strictly inside dom f* for moderate v"
    assert g.diff().abs().min() > 0, "the activation must be strictly monotone"


@pytest.mark.parametrize("name", ALL)
def test_fused_conjugate_of_activation_is_exact_and_finite(name):
    div = D.get(name)
    v = torch.linspace(-8, 8, 161, dtype=F64)
    torch.testing.assert_close(div.conjugate_of_activation(v), div.conjugate(div.activation(v)),
                               rtol=1e-9, atol=1e-9)
    extreme = torch.tensor([-50.0, 50.0], dtype=F64)
    assert torch.isfinite(div.conjugate_of_activation(extreme)).all()
    v32 = torch.linspace(-50, 50, 201)
    reference = div.conjugate_of_activation(v32.double()).float()  # inf only where it must be
    torch.testing.assert_close(div.conjugate_of_activation(v32), reference, rtol=1e-5, atol=1e-5)


def test_naive_composition_breaks_where_the_fused_form_does_not():
    hellinger = D.get("hellinger")
    v = torch.tensor([-50.0])
    assert torch.isinf(hellinger.conjugate(hellinger.activation(v))).all()
    assert float(hellinger.conjugate_of_activation(v)) == pytest.approx(math.exp(50) - 1, rel=1e-6)


def test_alpha_family_contains_scaled_named_divergences():
    u = torch.logspace(-2, 2, 21, dtype=F64)
    pairs = [("alpha:0.5", "hellinger", 2.0), ("alpha:2", "neyman", 0.5),
             ("alpha:-1", "pearson", 0.5)]
    for alpha, named, scale in pairs:
        torch.testing.assert_close(D.get(alpha).f(u), scale * D.get(named).f(u))


def test_variational_bound_reduces_to_the_posts_js_and_hellinger_forms():
    gen = torch.Generator().manual_seed(0)
    v_p, v_q = torch.randn(100, generator=gen, dtype=F64), torch.randn(80, generator=gen, dtype=F64)
    js = D.variational_bound(D.get("js"), v_p, v_q)
    original_gan = torch.log(torch.sigmoid(v_p)).mean() + torch.log(1 - torch.sigmoid(v_q)).mean()
    torch.testing.assert_close(js, 0.5 * original_gan + math.log(2))
    hellinger = D.variational_bound(D.get("hellinger"), v_p, v_q)
    torch.testing.assert_close(hellinger, 2 - v_p.exp().mean() - (-v_q).exp().mean())


def test_variational_bound_is_a_differentiable_scalar():
    v_p = torch.zeros(5, requires_grad=True)
    v_q = torch.zeros(4, requires_grad=True)
    bound = D.variational_bound(D.get("kl"), v_p, v_q)
    bound.backward()
    assert bound.shape == ()
    torch.testing.assert_close(v_p.grad, torch.full((5,), 1 / 5))
    torch.testing.assert_close(v_q.grad, torch.full((4,), -math.exp(-1) / 4))


def discrete_pq(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(7, generator=gen, dtype=F64) + 0.1
    q = torch.rand(7, generator=gen, dtype=F64) + 0.1
    return p / p.sum(), q / q.sum()


@pytest.mark.parametrize("name", [n for n in ALL if n != "tv"])
def test_free_critic_optimum_is_f_prime_of_ratio_and_gives_the_divergence(name):
    div = D.get(name)
    p, q = discrete_pq(1)
    exact = float((q * div.f(p / q)).sum())
    value, t_star = D.free_critic_optimum(div, p, q)
    assert value == pytest.approx(exact, rel=1e-8, abs=1e-10)
    torch.testing.assert_close(t_star, div.f_prime(p / q), rtol=1e-5, atol=1e-6)


def test_tv_free_critic_approaches_half_sign():
    div = D.get("tv")
    p, q = discrete_pq(2)
    value, t_star = D.free_critic_optimum(div, p, q)
    assert value == pytest.approx(0.5 * float((p - q).abs().sum()), abs=1e-6)
    torch.testing.assert_close(t_star, 0.5 * torch.sign(p - q), rtol=0, atol=1e-5)


def test_gan_divergence_is_twice_js_minus_log4():
    p, q = discrete_pq(3)
    gan, js = D.get("gan"), D.get("js")
    torch.testing.assert_close((q * gan.f(p / q)).sum(), 2 * (q * js.f(p / q)).sum() - math.log(4))


# --- user generators --------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*D.names(), "alpha:3"])
def test_generator_derives_the_closed_form_conjugate(name):
    div = D.get(name)
    shift = math.log(4) if name == "gan" else 0.0  # the gan row has f(1) = -log 4
    user = D.from_generator(lambda u: div.f(u) + shift, name=f"my-{name}")
    assert user.domain == pytest.approx(div.domain, abs=1e-9)
    t = interior_t(div)
    torch.testing.assert_close(user.conjugate(t), div.conjugate(t) - shift, rtol=1e-9, atol=1e-9)
    u = torch.logspace(-2, 2, 9, dtype=F64)
    torch.testing.assert_close(user.f_prime(u), div.f_prime(u))
    g = user.activation(torch.linspace(-30, 30, 61, dtype=F64))
    assert ((g >= div.domain[0]) & (g <= div.domain[1])).all()


def test_generator_conjugate_has_the_envelope_gradient():
    user = D.FDivergence.from_generator(lambda u: torch.xlogy(u, u))
    t = torch.tensor([-1.0, 0.0, 2.0], dtype=F64, requires_grad=True)
    user.conjugate(t).sum().backward()
    torch.testing.assert_close(t.grad, torch.exp(t.detach() - 1))  # (f*)'(t) = u*(t)


def test_generator_activation_for_each_domain_shape():
    shapes = {  # f -> (domain, activation at v = 0)
        "tv": (lambda u: 0.5 * (u - 1).abs(), (-0.5, 0.5), 0.0),
        "neyman": (lambda u: (u - 1) ** 2, (-2.0, math.inf), -2 + math.log(2)),
        "hellinger": (lambda u: (u.sqrt() - 1) ** 2, (-math.inf, 1.0), 1 - math.log(2)),
        "kl": (lambda u: torch.xlogy(u, u), (-math.inf, math.inf), 0.0),
    }
    for f, domain, at_zero in shapes.values():
        user = D.from_generator(f)
        assert user.domain == pytest.approx(domain)
        assert float(user.activation(torch.zeros((), dtype=F64))) == pytest.approx(at_zero)


@pytest.mark.parametrize("f, message", [
    (lambda u: u**2, "f\\(1\\) = 1"),
    (lambda u: -torch.xlogy(u, u), "not convex"),
    (lambda u: torch.sin(u - 1), "not convex"),
    (lambda u: (u - 1) ** 2 / (u > 0.01), "finite"),
])
def test_generator_rejects_a_bad_f(f, message):
    with pytest.raises(BadInputError, match=message):
        D.from_generator(f, name="bad")


# --- the estimator ----------------------------------------------------------------------------

MIXTURE = ([0.5, 0.5], [-1.5, 1.5], [0.8, 0.8])
WIDE = ([1.0], [0.0], [1.5])
CASES = {  # p and q as (weights, means, sds); reverse_kl and pearson need p heavier-tailed than q
    ("kl", "gaussians"): (([1.0], [0.0], [1.0]), ([1.0], [1.0], [1.0])),
    ("reverse_kl", "gaussians"): (([1.0], [0.0], [1.0]), ([1.0], [1.0], [1.0])),
    ("hellinger", "gaussians"): (([1.0], [0.0], [1.0]), ([1.0], [1.0], [1.0])),
    ("js", "gaussians"): (([1.0], [0.0], [1.0]), ([1.0], [1.0], [1.0])),
    ("pearson", "gaussians"): (([1.0], [0.0], [1.0]), ([1.0], [1.0], [0.8])),
    ("kl", "mixture"): (MIXTURE, WIDE),
    ("hellinger", "mixture"): (MIXTURE, WIDE),
    ("js", "mixture"): (MIXTURE, WIDE),
    ("reverse_kl", "mixture"): (WIDE, MIXTURE),
    ("pearson", "mixture"): (WIDE, MIXTURE),
}
N_SAMPLES = 20_000


def mixture_pdf(spec):
    weights, means, sds = spec
    return lambda x: sum(w * stats.norm.pdf(x, m, s) for w, m, s in zip(weights, means, sds,
                                                                        strict=True))


def mixture_sample(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    weights, means, sds = spec
    k = rng.choice(len(weights), size=n, p=weights)
    return rng.normal(np.array(means)[k], np.array(sds)[k])


def exact_and_standard_error(div: D.FDivergence, p_spec, q_spec) -> tuple[float, float]:
    """D_f by quadrature, and the standard error of the optimal-critic bound at N_SAMPLES."""
    p, q = mixture_pdf(p_spec), mixture_pdf(q_spec)

    def scalar(fn, x):
        return float(fn(torch.tensor(p(x) / q(x), dtype=F64)))

    def moment(density, fn, k):
        return integrate.quad(lambda x: density(x) * scalar(fn, x) ** k, -15, 15, limit=200)[0]

    def conjugate_of_optimal(u):
        return div.conjugate(div.f_prime(u))

    exact = integrate.quad(lambda x: q(x) * scalar(div.f, x), -15, 15, limit=200)[0]
    var_p = moment(p, div.f_prime, 2) - moment(p, div.f_prime, 1) ** 2
    var_q = moment(q, conjugate_of_optimal, 2) - moment(q, conjugate_of_optimal, 1) ** 2
    return exact, math.sqrt((var_p + var_q) / N_SAMPLES)


@pytest.mark.parametrize("name, case", list(CASES))
def test_estimate_approaches_the_exact_divergence_from_below(name, case):
    div = D.get(name)
    p_spec, q_spec = CASES[name, case]
    rng = np.random.default_rng(0)
    x_p, x_q = mixture_sample(p_spec, N_SAMPLES, rng), mixture_sample(q_spec, N_SAMPLES, rng)
    exact, std_err = exact_and_standard_error(div, p_spec, q_spec)
    value = D.estimate(div, x_p, x_q, seed=0)
    # Held-out critics give a lower bound in expectation; above it only by sampling noise, which
    # at the best critic has standard error std_err (three of them allowed).
    assert 0.95 * exact <= value <= exact + 3 * std_err


def test_estimate_validates_its_inputs():
    good = np.zeros(10)
    with pytest.raises(BadInputError, match="x_p"):
        D.estimate("kl", np.zeros((10, 2, 2)), good)
    with pytest.raises(BadInputError, match="x_q"):
        D.estimate("kl", good, np.array([0.0, 1.0, math.nan, 2.0, 3.0]))
    with pytest.raises(BadInputError, match="x_q"):
        D.estimate("kl", good, ["a", "b"])
    with pytest.raises(BadInputError, match="same dimension"):
        D.estimate("kl", np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(UnknownNameError):
        D.estimate("nope", good, good)


@pytest.fixture
def restore_default_dtype():
    before = torch.get_default_dtype()
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_estimate_takes_float32_and_float64_inputs_under_either_default_dtype(
        default, restore_default_dtype):
    rng = np.random.default_rng(1)
    x_p = rng.normal(0.0, 1.0, (400, 2)).astype(np.float32)
    x_q = rng.normal(1.0, 1.0, (400, 2)).astype(np.float32)
    reference = D.estimate("kl", x_p, x_q, steps=40)  # float32 inputs, float32 default
    torch.set_default_dtype(default)
    values = [D.estimate("kl", p, q, steps=40) for p, q in (
        (x_p, x_q), (x_p.astype(np.float64), x_q.astype(np.float64)),
        (torch.from_numpy(x_p), torch.from_numpy(x_q)),
        (torch.from_numpy(x_p).double(), torch.from_numpy(x_q).double()))]
    # The estimator works in float32 whatever the inputs and the default: the same samples give
    # the same number (KL = 1 here, up to the noise of 200 held-out samples a side).
    assert values == pytest.approx([reference] * 4, rel=1e-6)
    assert 0.5 < reference < 1.5
