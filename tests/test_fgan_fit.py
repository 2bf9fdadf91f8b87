"""The "fit a Gaussian to a mixture" experiment and the `divergences` / `fgan-fit` commands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from genshop import cli, divergences, fgan_fit

F64 = torch.float64


def target_pdf(x: float) -> float:
    t = fgan_fit.TARGET
    return sum(w * stats.norm.pdf(x, m, s) for w, m, s in zip(t.weights, t.means, t.sds,
                                                                strict=True))


def test_mixture_density_and_samples():
    x = torch.linspace(-5, 5, 41, dtype=F64)
    expected = torch.tensor([target_pdf(float(v)) for v in x], dtype=F64)
    torch.testing.assert_close(fgan_fit.TARGET.log_pdf(x).exp(), expected, rtol=1e-12, atol=1e-15)
    s = fgan_fit.TARGET.sample(100_000, torch.Generator().manual_seed(0)).double()
    assert float(s.mean()) == pytest.approx(-0.4, abs=0.015)  # 0.8·(−1) + 0.2·2
    assert float(s.std()) == pytest.approx(1.3, abs=0.015)  # sqrt(1.85 − 0.16)


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "hellinger", "jeffrey"])
def test_grid_divergence_matches_adaptive_quadrature(name):
    div = divergences.get(name)
    mu, sigma = 0.3, 1.1

    def integrand(x):
        p, q = target_pdf(x), stats.norm.pdf(x, mu, sigma)
        return q * float(div.f(torch.tensor(p / q, dtype=F64)))

    expected = integrate.quad(integrand, -12, 12, limit=200, points=[-1, 2])[0]
    got = fgan_fit.divergence_to_gaussian(div, fgan_fit.TARGET, mu, sigma)
    assert got == pytest.approx(expected, rel=1e-7)


def test_grid_divergence_where_q_underflows():
    # KL(N(0,1) || N(0, 0.1^2)) = log(0.1) + 1/(2·0.01) − 1/2. Past |x| ≈ 3.8, p/q > e^700 is
    # clamped: that tail (P-mass 1.5e-4) is under-counted, so the value is a slight lower estimate.
    x = torch.linspace(-15, 15, 30001, dtype=F64)
    log_p = fgan_fit.gaussian_log_pdf(x, 0.0, 1.0)
    log_q = fgan_fit.gaussian_log_pdf(x, 0.0, 0.1)
    expected = math.log(0.1) + 50 - 0.5
    kl = divergences.divergence_on_grid(divergences.get("kl"), log_p, log_q, x)
    assert expected * (1 - 1e-3) <= kl <= expected
    # neyman, ∫(p−q)²/q, diverges when var q < var p / 2: the grid value must not be small or NaN.
    assert divergences.divergence_on_grid(divergences.get("neyman"), log_p, log_q, x) > 1e100


def test_exact_kl_fit_is_moment_matching():
    mu, sigma = fgan_fit.exact_fit(divergences.get("kl"))
    assert mu == pytest.approx(-0.4, abs=2e-3)
    assert sigma == pytest.approx(1.3, abs=2e-3)


def test_exact_reverse_kl_fit_sits_on_the_heavy_mode():
    mu, sigma = fgan_fit.exact_fit(divergences.get("reverse_kl"))
    assert mu == pytest.approx(-1.0, abs=0.01)
    assert sigma == pytest.approx(0.5, abs=0.01)


def test_fgan_kl_covers_and_reverse_kl_locks_onto_a_mode():
    rows = [fgan_fit.compare(name, steps=600, seed=0) for name in ("kl", "reverse_kl")]
    for row in rows:
        assert row.on_target, row
        assert row.d_exact <= row.d_fgan <= row.d_exact + 0.01
    assert fgan_fit.mode_behaviour(rows) == {"kl covers both modes": True,
                                      "reverse_kl locks onto one mode": True}


def test_gaussian_generator_maps_noise_to_its_gaussian():
    g = fgan_fit.GaussianGenerator()
    with torch.no_grad():
        g.mu.fill_(0.5)
        g.log_sigma.fill_(math.log(2.0))
    z = torch.tensor([[-1.0], [0.0], [1.5]])
    torch.testing.assert_close(g(z), torch.tensor([[-1.5], [0.5], [3.5]]))
    assert g.mean_and_sd() == pytest.approx((0.5, 2.0), abs=1e-6)
    assert [n for n, _ in g.named_parameters()] == ["mu", "log_sigma"]


def test_fgan_fit_of_a_user_divergence_lands_on_its_exact_fit():
    # f = u log u through from_generator (numerical conjugate): the KL fit, moments (-0.4, 1.3).
    mine = divergences.from_generator(lambda u: u * torch.log(u), name="mine")
    fit = fgan_fit.fgan_fit(mine, steps=600, seed=0)
    # after step 0: Adam moves each of (μ, log σ) by its learning rate, 1e-2
    assert fit.trace[0] == pytest.approx((0.01, math.exp(-0.01)), abs=1e-5)
    assert fit.mu == pytest.approx(-0.4, abs=0.02)
    assert fit.sigma == pytest.approx(1.3, rel=0.02)


def test_fgan_fit_command_prints_a_row_and_writes_a_plot(tmp_path, capsys):
    assert cli.main(["fgan-fit", "--divergence", "js", "--steps", "100", "--out",
                     str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("divergence | f-GAN mu") and out[1].startswith("js | ")
    assert (tmp_path / "fgan-fit-js.png").stat().st_size > 5000


def test_fgan_fit_command_rejects_an_unknown_divergence(capsys):
    assert cli.main(["fgan-fit", "--divergence", "kld"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown divergence 'kld'" in err[0] and "reverse_kl" in err[0]


def test_divergences_command_prints_the_checked_catalog(capsys):
    assert cli.main(["divergences", "kl", "alpha:0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["name", "D_f"]
    assert lines[1].startswith("kl ") and lines[1].rstrip().endswith("6/6")
    assert lines[2].startswith("alpha:0.5 ") and lines[2].rstrip().endswith("6/6")
    assert np.all(["exp(t−1)" in lines[1]])


def exact_row(name: str) -> fgan_fit.FitRow:
    mu, sigma = fgan_fit.exact_fit(divergences.get(name))
    return fgan_fit.FitRow(name, mu, sigma, mu, sigma, 0.0, 0.0)


def test_cross_table_of_exact_fits_has_each_fit_best_under_its_own_divergence():
    rows = [exact_row(n) for n in ("kl", "reverse_kl", "js")]
    table = fgan_fit.cross_table(rows)
    assert fgan_fit.diagonal_is_row_minimum(table) == [True, True, True]
    kl_at_kl_fit = fgan_fit.divergence_to_gaussian(divergences.get("kl"), fgan_fit.TARGET,
                                                   rows[0].mu, rows[0].sigma)
    assert table[0][0] == kl_at_kl_fit and table[0][1] > 2 * kl_at_kl_fit
    swapped = [row[::-1] for row in table]  # column order reversed: the kl row's min moves
    assert fgan_fit.diagonal_is_row_minimum(swapped)[0] is False
