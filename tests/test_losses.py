"""GAN losses: golden values from NumPy hand formulas, gradient signs and shapes, relativistic
averages on the right side, saturating vs non-saturating, stability at ±50, the gradient penalty
and the R1 penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import lambertw

from genshop import divergences, losses
from genshop.errors import BadInputError, UnknownNameError
from genshop.nets import PackedCritic

# torchgan's fixture (tests/torchgan/test_losses.py), read as logits.
DX = np.array([1.3, 2.9, 8.4, 6.3])
DGZ = np.array([4.8, 1.2, -3.5, 5.9])


def sig(x):
    return 1 / (1 + np.exp(-x))


def hinge(x):
    return np.maximum(0.0, x)


# (d_loss, g_loss) by the textbook formulas, written directly with log, σ and max.
GOLDEN = {
    "sgan": lambda r, f: (-np.mean(np.log(sig(r))) - np.mean(np.log(1 - sig(f))),
                          np.mean(np.log(1 - sig(f)))),
    "nsgan": lambda r, f: (-np.mean(np.log(sig(r))) - np.mean(np.log(1 - sig(f))),
                           -np.mean(np.log(sig(f)))),
    "lsgan": lambda r, f: (0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f**2),
                           0.5 * np.mean((f - 1) ** 2)),
    "hinge": lambda r, f: (np.mean(hinge(1 - r)) + np.mean(hinge(1 + f)), -np.mean(f)),
    "wgan": lambda r, f: (np.mean(f) - np.mean(r), -np.mean(f)),
    "rsgan": lambda r, f: (-np.mean(np.log(sig(r - f))), -np.mean(np.log(sig(f - r)))),
    "rasgan": lambda r, f: (
        -np.mean(np.log(sig(r - f.mean()))) - np.mean(np.log(1 - sig(f - r.mean()))),
        -np.mean(np.log(sig(f - r.mean()))) - np.mean(np.log(1 - sig(r - f.mean())))),
    "ralsgan": lambda r, f: (
        np.mean((r - f.mean() - 1) ** 2) + np.mean((f - r.mean() + 1) ** 2),
        np.mean((f - r.mean() - 1) ** 2) + np.mean((r - f.mean() + 1) ** 2)),
    "rahinge": lambda r, f: (
        np.mean(hinge(1 - (r - f.mean()))) + np.mean(hinge(1 + (f - r.mean()))),
        np.mean(hinge(1 - (f - r.mean()))) + np.mean(hinge(1 + (r - f.mean())))),
}

# Su's table (post 6016) and the f-GAN paper's GAN row: (activation g_f, conjugate f*).
FGAN_TABLE = {
    "tv": (lambda v: 0.5 * np.tanh(v), lambda t: t),
    "kl": (lambda v: v, lambda t: np.exp(t - 1)),
    "reverse_kl": (lambda v: -np.exp(v), lambda t: -1 - np.log(-t)),
    "pearson": (lambda v: 1 - np.exp(v), lambda t: 2 - 2 * np.sqrt(1 - t)),
    "neyman": (lambda v: np.exp(v) - 2, lambda t: t**2 / 4 + t),
    "hellinger": (lambda v: 1 - np.exp(v), lambda t: t / (1 - t)),
    "jeffrey": (lambda v: v, lambda t: (lambda w: w + 1 / w + t - 2)(
        np.real(lambertw(np.exp(1 - t))))),
    "js": (lambda v: 0.5 * np.log(2) - 0.5 * np.log(1 + np.exp(-v)),
           lambda t: -0.5 * np.log(2 - np.exp(2 * t))),
    "gan": (lambda v: -np.log(1 + np.exp(-v)), lambda t: -np.log(1 - np.exp(t))),
}


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def both(loss, r, f) -> tuple[float, float]:
    return float(loss.d_loss(t64(r), t64(f))), float(loss.g_loss(t64(r), t64(f)))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_values_on_the_torchgan_fixture(name):
    want = GOLDEN[name](DX, DGZ)
    assert both(losses.get_loss(name), DX, DGZ) == pytest.approx(want, abs=1e-6, rel=1e-6)


def test_published_torchgan_values():
    """torchgan's own expected numbers for its fixture (5 decimals)."""
    expect = {"lsgan": (19.76125, 7.3425007), "wgan": (-2.625, -2.1)}
    for name, want in expect.items():
        assert both(losses.get_loss(name), DX, DGZ) == pytest.approx(want, abs=1e-5)
    assert both(losses.get_loss("sgan"), DX, DGZ)[0] == pytest.approx(3.1251488, abs=1e-6)
    assert both(losses.get_loss("nsgan"), DX, DGZ)[1] == pytest.approx(0.9509911, abs=1e-6)


@pytest.mark.parametrize("div", sorted(FGAN_TABLE))
def test_fgan_golden_values_from_the_conjugate_table(div):
    act, conj = FGAN_TABLE[div]
    rng = np.random.default_rng(3)
    r, f = rng.normal(0, 1.5, 6), rng.normal(0, 1.5, 6)
    bound = np.mean(act(r)) - np.mean(conj(act(f)))
    plain, saddle = losses.get_loss(f"fgan-{div}"), losses.get_loss(f"fgan-{div}", saddle=True)
    assert both(plain, r, f) == pytest.approx((-bound, -np.mean(act(f))), abs=1e-6, rel=1e-6)
    assert both(saddle, r, f) == pytest.approx((-bound, bound), abs=1e-6, rel=1e-6)
    assert saddle.g_uses_real and not plain.g_uses_real


def test_fgan_alpha_divergence_is_reachable():
    # α = 2 is neyman/2: g_f(v) = −1 + e^v, f*(t) = ((1 + t)² − 1)/2.
    r, f = np.array([0.3, -1.0, 0.8]), np.array([-0.2, 0.5, 1.1])
    act, conj = (lambda v: -1 + np.exp(v)), (lambda t: ((1 + t) ** 2 - 1) / 2)
    bound = np.mean(act(r)) - np.mean(conj(act(f)))
    assert both(losses.get_loss("fgan-alpha:2"), r, f)[0] == pytest.approx(-bound, abs=1e-9)


def test_fgan_loss_of_a_user_divergence():
    # f = u log u through from_generator: g_f(v) = v, f*(t) = e^(t−1) (a numerical conjugate).
    mine = divergences.from_generator(lambda u: u * torch.log(u), name="mine")
    r, f = np.array([0.3, -1.0, 0.8, 2.0]), np.array([-0.2, 0.5, 1.1, -3.0])
    bound = np.mean(r) - np.mean(np.exp(f - 1))
    plain, saddle = losses.fgan_loss(mine), losses.fgan_loss(mine, saddle=True)
    assert both(plain, r, f) == pytest.approx((-bound, -np.mean(f)), abs=1e-9)
    assert both(saddle, r, f) == pytest.approx((-bound, bound), abs=1e-9)
    assert (plain.name, plain.g_uses_real, saddle.g_uses_real) == ("fgan-mine", False, True)
    # α = 2 built directly is neyman/2, as 'fgan-alpha:2' is by name.
    act, conj = (lambda v: -1 + np.exp(v)), (lambda t: ((1 + t) ** 2 - 1) / 2)
    alpha = losses.fgan_loss(divergences.alpha_divergence(2.0), saddle=True)
    want = np.mean(act(r)) - np.mean(conj(act(f)))
    assert both(alpha, r, f) == pytest.approx((-want, want), abs=1e-9)
    assert alpha.name == losses.get_loss("fgan-alpha:2").name == "fgan-alpha:2"


def test_fgan_reductions_js_and_hellinger():
    """Post 6016: JS is the GAN objective ×½ + log 2; Hellinger is 2 − E_p e^D − E_q e^−D."""
    r, f = DX / 4, DGZ / 4
    js = -both(losses.get_loss("fgan-js"), r, f)[0]
    gan = 0.5 * (np.mean(np.log(sig(r))) + np.mean(np.log(1 - sig(f)))) + np.log(2)
    assert js == pytest.approx(gan, abs=1e-12)
    hel = -both(losses.get_loss("fgan-hellinger"), r, f)[0]
    # activation T = 1 − e^V, so the critic V scores real samples low
    assert hel == pytest.approx(2 - np.mean(np.exp(r)) - np.mean(np.exp(-f)), abs=1e-12)


def test_fgan_gan_row_is_the_standard_gan():
    gan, ns = losses.get_loss("fgan-gan"), losses.get_loss("nsgan")
    assert both(gan, DX, DGZ) == pytest.approx(both(ns, DX, DGZ), abs=1e-12)


def grads(fn, r, f):
    rt, ft = t64(r).requires_grad_(), t64(f).requires_grad_()
    return [g.numpy() for g in torch.autograd.grad(fn(rt, ft), (rt, ft), materialize_grads=True)]


def test_saturating_and_non_saturating_differ_in_value_and_gradient():
    s, ns = losses.get_loss("sgan"), losses.get_loss("nsgan")
    f = np.array([-50.0, -5.0, 0.0, 5.0])
    r = np.zeros(4)
    assert both(s, r, f)[1] != pytest.approx(both(ns, r, f)[1], abs=1e-3)
    _, gs = grads(s.g_loss, r, f)
    _, gns = grads(ns.g_loss, r, f)
    np.testing.assert_allclose(gs, -sig(f) / 4, rtol=1e-12, atol=0)
    np.testing.assert_allclose(gns, -sig(-f) / 4, rtol=1e-12, atol=0)
    # A sample the critic rejects (logit −50) gives the saturating G no gradient, the other ~−¼.
    assert abs(gs[0]) < 1e-20 and gns[0] == pytest.approx(-0.25, rel=1e-12)


@pytest.mark.parametrize("name", losses.names())
def test_gradient_signs(name):
    """Raising the critic's T on real lowers L_D, on fake raises L_D and lowers L_G."""
    loss = losses.get_loss(name)
    act = divergences.get(name[5:]).activation if name.startswith("fgan-") else (lambda v: v)
    r, f = np.array([0.1, 0.3, -0.2, 0.25]), np.array([0.1, 0.2, 0.15, 0.3])
    slope_r = grads(lambda a, b: act(a).sum(), r, f)[0]  # dT/dV on each side
    slope_f = grads(lambda a, b: act(b).sum(), r, f)[1]
    d_r, d_f = grads(loss.d_loss, r, f)
    _, g_f = grads(loss.g_loss, r, f)
    assert np.all(d_r * slope_r < 0) and np.all(d_f * slope_f > 0) and np.all(g_f * slope_f < 0)


RELATIVISTIC = ["rsgan", "rasgan", "ralsgan", "rahinge"]


@pytest.mark.parametrize("name", losses.names())
def test_g_loss_depends_on_real_logits_exactly_when_flagged(name):
    loss = losses.get_loss(name)
    rng = np.random.default_rng(1)
    r, f = rng.normal(size=8), rng.normal(size=8)
    r2 = r - 2 + rng.normal(size=8)  # far enough to change which hinge terms are active
    moved = both(loss, r2, f)[1] - both(loss, r, f)[1]
    moved_grad = np.abs(grads(loss.g_loss, r2, f)[1] - grads(loss.g_loss, r, f)[1]).max()
    assert loss.g_uses_real == (name in RELATIVISTIC)
    if name in RELATIVISTIC:
        assert abs(moved) > 1e-3 and moved_grad > 1e-3
    else:
        assert moved == 0 and moved_grad == 0


def _ra_wrong_side(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The paper's first-version RaSGAN D loss: its fake term is BCE(mean(C(x_f)) − C(x_r), 0),
    the same as its real term, so the fake logits enter only through their mean."""
    return 2 * torch.nn.functional.softplus(f.mean() - r).mean()


@pytest.mark.parametrize("name", ["rasgan", "ralsgan", "rahinge"])
def test_ra_averages_sit_on_the_other_side(name):
    """∂L/∂f_i varies with f_i in the correct form; the wrong-side form makes it constant."""
    rng = np.random.default_rng(2)
    r, f = rng.normal(size=16), rng.normal(0, 2, size=16)
    loss = losses.get_loss(name)
    for fn in (loss.d_loss, loss.g_loss):
        dr, df = grads(fn, r, f)
        assert np.ptp(df) > 1e-3 and np.ptp(dr) > 1e-3
    assert np.ptp(grads(_ra_wrong_side, r, f)[1]) < 1e-12  # the check can fail


def test_rsgan_pairs_samples_and_rejects_unequal_batches():
    r, f = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    loss = losses.get_loss("rsgan")
    assert both(loss, r, f)[0] == pytest.approx(-np.mean(np.log(sig(r - f))), abs=1e-12)
    assert both(loss, r, f[::-1].copy())[0] != pytest.approx(both(loss, r, f)[0], abs=1e-3)
    with pytest.raises(BadInputError, match="equal batch sizes"):
        loss.d_loss(t64([1.0, 2.0]), t64([1.0]))


def test_column_outputs_equal_flat_outputs():
    for name in losses.names():
        loss = losses.get_loss(name)
        col = loss.d_loss(t64(DX[:, None] / 4), t64(DGZ[:, None] / 4))
        assert float(col) == pytest.approx(both(loss, DX / 4, DGZ / 4)[0], abs=1e-12)


def softplus_np(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_stable_at_plus_minus_50_in_float32(name):
    r = torch.tensor([50.0, -50.0, 50.0, -50.0], requires_grad=True)
    f = torch.tensor([-50.0, 50.0, 50.0, -50.0], requires_grad=True)
    loss = losses.get_loss(name)
    for fn in (loss.d_loss, loss.g_loss):
        value = fn(r, f)
        gr, gf = torch.autograd.grad(value, (r, f), materialize_grads=True)
        assert torch.isfinite(value) and torch.isfinite(gr).all() and torch.isfinite(gf).all()
    r64, f64 = r.detach().double().numpy(), f.detach().double().numpy()
    want = STABLE_GOLDEN[name](r64, f64) if name in STABLE_GOLDEN else GOLDEN[name](r64, f64)
    assert both(loss, r64, f64) == pytest.approx(want, rel=1e-6, abs=1e-4)


# log σ(±50) overflows in the hand formulas above, so these use a stable NumPy softplus.
STABLE_GOLDEN = {
    "sgan": lambda r, f: (np.mean(softplus_np(-r)) + np.mean(softplus_np(f)),
                          -np.mean(softplus_np(f))),
    "nsgan": lambda r, f: (np.mean(softplus_np(-r)) + np.mean(softplus_np(f)),
                           np.mean(softplus_np(-f))),
    "rsgan": lambda r, f: (np.mean(softplus_np(f - r)), np.mean(softplus_np(r - f))),
    "rasgan": lambda r, f: (
        np.mean(softplus_np(f.mean() - r)) + np.mean(softplus_np(f - r.mean())),
        np.mean(softplus_np(r.mean() - f)) + np.mean(softplus_np(r - f.mean()))),
}


@pytest.mark.parametrize("name", [n for n in losses.names() if n.startswith("fgan-")])
def test_fgan_stable_at_plus_minus_50_in_float64(name):
    """f-GAN losses grow like their conjugate (neyman: e^{2V}), so ±50 is checked in float64."""
    r = t64([50.0, -50.0, 0.0]).requires_grad_()
    f = t64([-50.0, 50.0, 0.0]).requires_grad_()
    for saddle in (False, True):
        loss = losses.get_loss(name, saddle=saddle)
        for fn in (loss.d_loss, loss.g_loss):
            value = fn(r, f)
            gr, gf = torch.autograd.grad(value, (r, f), materialize_grads=True)
            assert torch.isfinite(value) and torch.isfinite(gr).all() and torch.isfinite(gf).all()


def test_names_and_errors():
    names = losses.names()
    assert names[:9] == ["sgan", "nsgan", "lsgan", "hinge", "wgan", "rsgan", "rasgan",
                         "ralsgan", "rahinge"]
    assert {f"fgan-{d}" for d in divergences.names()} <= set(names)
    with pytest.raises(UnknownNameError) as info:
        losses.get_loss("rsgam")
    assert "rsgan" in str(info.value) and "fgan-kl" in str(info.value)
    assert "fgan-alpha:<a>" in str(info.value)
    with pytest.raises(UnknownNameError, match="unknown loss 'fgan-nope'"):
        losses.get_loss("fgan-nope")
    with pytest.raises(BadInputError, match="saddle"):
        losses.get_loss("hinge", saddle=True)
    with pytest.raises(BadInputError, match="unknown option"):
        losses.get_loss("hinge", lr=1)
    with pytest.raises(BadInputError, match="gp_weight"):
        losses.get_loss("wgan", gp_weight=-1.0)
    assert losses.get_loss("wgan").gp_weight == 10.0 and losses.get_loss("sgan").gp_weight == 0
    assert losses.get_loss("rsgan", gp_weight=5).gp_weight == 5.0


def test_every_loss_documents_its_formulas():
    for name in losses.names():
        loss = losses.get_loss(name)
        assert loss.d_formula.startswith("L_D =") and loss.g_formula.startswith("L_G =")


class Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(t64(w))

    def forward(self, x):
        return x.flatten(1) @ self.w


class HalfSquaredNorm(torch.nn.Module):
    def forward(self, x):
        return 0.5 * (x.flatten(1) ** 2).sum(1)


def test_gradient_penalty_of_a_linear_critic():
    """∇C = w everywhere, so the penalty is (‖w‖ − 1)², and d/dw = 2(‖w‖ − 1)·w/‖w‖."""
    w = np.array([0.6, -2.0, 1.5, 0.25])
    D = Linear(w)
    real = torch.randn(5, 2, 2, dtype=torch.float64)
    fake = torch.randn(5, 2, 2, dtype=torch.float64)
    gp = losses.gradient_penalty(D, real, fake)
    norm = np.linalg.norm(w)
    assert float(gp.detach()) == pytest.approx((norm - 1) ** 2, rel=1e-12)
    (dw,) = torch.autograd.grad(gp, D.w)
    np.testing.assert_allclose(dw.numpy(), 2 * (norm - 1) * w / norm, rtol=1e-12)


def test_gradient_penalty_interpolates_per_sample():
    """C(x) = ½‖x‖² has ∇C(x̂) = x̂; ε comes from the same seeded generator."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    gp = losses.gradient_penalty(HalfSquaredNorm(), t64(real), t64(fake),
                                 generator=torch.Generator().manual_seed(7))
    eps = torch.rand(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x_hat = eps.numpy() * real + (1 - eps.numpy()) * fake
    want = np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
    assert float(gp.detach()) == pytest.approx(want, rel=1e-12)
    assert not math.isclose(want, np.mean((np.linalg.norm(real, axis=1) - 1) ** 2))
    with pytest.raises(BadInputError, match="one shape"):
        losses.gradient_penalty(HalfSquaredNorm(), t64(real), t64(fake[:3]))


class Cubic(torch.nn.Module):
    """C(x) = Σ_j a_j·x_j³: ∇C(x) = 3·a·x², a gradient that varies from sample to sample."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(t64(a))

    def forward(self, x):
        return (x.flatten(1) ** 3) @ self.a


def test_r1_of_a_linear_critic_is_half_the_squared_weight_norm():
    """∇ₓC = w for every sample: ½‖w‖² whatever the batch; d/dw = w."""
    w = np.array([0.6, -2.0, 1.5, 0.25])
    D = Linear(w)
    r1 = losses.r1_penalty(D, torch.randn(7, 2, 2, dtype=torch.float64))
    assert float(r1.detach()) == pytest.approx(0.5 * w @ w, rel=1e-12)
    (dw,) = torch.autograd.grad(r1, D.w)
    np.testing.assert_allclose(dw.numpy(), w, rtol=1e-12)
    flat = losses.r1_penalty(Linear(np.zeros(4)), torch.randn(3, 4, dtype=torch.float64))
    assert float(flat.detach()) == 0.0


@pytest.mark.parametrize("pack", [1, 3])
def test_r1_is_half_the_mean_squared_gradient_norm_over_samples_or_packs(pack):
    """½·(1/K)·Σ_k ‖∇C(pack_k)‖² over the K = N/m logits, computed by hand with NumPy; with
    `pack` = m a packed critic is averaged over its packs, not over its N repeated logits."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=2 * pack)
    real = rng.normal(size=(4 * pack, 2))
    D = Cubic(a) if pack == 1 else PackedCritic(Cubic(a), pack)
    packs = real.reshape(4, 2 * pack)
    want = 0.5 * np.mean(np.sum((3 * a * packs**2) ** 2, axis=1))
    r1 = losses.r1_penalty(D, t64(real), pack=pack)
    assert float(r1.detach()) == pytest.approx(want, rel=1e-12)
    # d/da_j of ½·mean_k Σ_j (3 a_j x_kj²)² = mean_k 9·a_j·x_kj⁴
    (da,) = torch.autograd.grad(r1, D.a if pack == 1 else D.inner.a)
    np.testing.assert_allclose(da.numpy(), np.mean(9 * a * packs**4, axis=0), rtol=1e-12)
    if pack > 1:  # with pack = 1 the same critic counts m times its packs
        per_logit = losses.r1_penalty(D, t64(real))
        assert float(per_logit.detach()) == pytest.approx(pack * want, rel=1e-12)
