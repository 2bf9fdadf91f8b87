"""Fit one Gaussian to a mixture by f-GAN, and compare with the exact D_f minimiser.

Post: "f-GAN简介：GAN模型的生产车间" (f-GAN introduction), Scientific Spaces, kexue.fm
archives/6016; experiment of Nowozin, Cseke & Tomioka, "f-GAN", NeurIPS 2016, Sec. 4.1.

The model Q_θ = N(μ, σ²) is reparameterised as x = μ + e^s·z, z ~ N(0, 1) (`GaussianGenerator`).
f-GAN solves the saddle
    min_θ max_V  E_P[g_f(V(x))] − E_{Q_θ}[f*(g_f(V(x)))]
by alternating Adam steps (critic ascends, generator descends the same bound): the saddle f-GAN
loss of `losses.fgan_loss` and `steps.alternating_step`, one noise batch per step. The exact answer
    (μ*, σ*) = argmin_θ D_f(P‖Q_θ),  D_f = ∫ q_θ f(p/q_θ) dx,
comes from Simpson quadrature on a grid and Nelder–Mead from several starts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor, nn

from genshop import divergences, losses
from genshop.steps import alternating_step

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianMixture1D:
    weights: tuple[float, ...]
    means: tuple[float, ...]
    sds: tuple[float, ...]

    def log_pdf(self, x: Tensor) -> Tensor:
        w, m, s = (torch.tensor(v, dtype=x.dtype) for v in (self.weights, self.means, self.sds))
        z = (x[..., None] - m) / s
        return torch.logsumexp(torch.log(w) - 0.5 * z**2 - torch.log(s) - LOG_SQRT_2PI, dim=-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(torch.tensor(self.weights), n, replacement=True, generator=generator)
        noise = torch.randn(n, generator=generator)
        return torch.tensor(self.means)[k] + torch.tensor(self.sds)[k] * noise


# Two well-separated modes of unequal weight: a mass-covering fit (KL) must sit between them with a
# broad σ, a mode-seeking fit (reverse KL) lands on the heavier mode at x = -1 with σ ≈ 0.5.
TARGET = GaussianMixture1D(weights=(0.8, 0.2), means=(-1.0, 2.0), sds=(0.5, 0.5))
GRID = torch.linspace(-16.0, 16.0, 3201, dtype=torch.float64)
SIGMA_RANGE = (0.1, 4.0)  # the exact search keeps σ here so the grid holds all of Q's mass


def gaussian_log_pdf(x: Tensor, mu: float, sigma: float) -> Tensor:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - LOG_SQRT_2PI


@functools.cache
def _log_pdf_on_grid(target: GaussianMixture1D) -> Tensor:
    return target.log_pdf(GRID)


def divergence_to_gaussian(div: divergences.FDivergence, target: GaussianMixture1D, mu: float,
                           sigma: float) -> float:
    """D_f(P‖N(μ, σ²)) by quadrature on GRID."""
    return divergences.divergence_on_grid(div, _log_pdf_on_grid(target),
                                          gaussian_log_pdf(GRID, mu, sigma), GRID)


@functools.cache
def exact_fit(div: divergences.FDivergence,
              target: GaussianMixture1D = TARGET) -> tuple[float, float]:
    """argmin over (μ, σ) of D_f(P‖N(μ, σ²)): Nelder–Mead on (μ, log σ) started on every mode
    (σ = its sd) and at the mixture's mean and sd; the best end point wins."""
    lo, hi = (math.log(s) for s in SIGMA_RANGE)

    def objective(theta: np.ndarray) -> float:
        if not lo <= theta[1] <= hi:
            return math.inf
        value = divergence_to_gaussian(div, target, float(theta[0]), math.exp(theta[1]))
        return value if math.isfinite(value) else math.inf

    mean = float(np.dot(target.weights, target.means))
    sd = math.sqrt(float(np.dot(target.weights, np.square(target.means) + np.square(target.sds)))
                   - mean**2)
    starts = [*((m, math.log(s)) for m, s in zip(target.means, target.sds, strict=True)),
              (mean, math.log(sd))]
    best = min((minimize(objective, np.array(s), method="Nelder-Mead",
                         options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 1000})
                for s in starts), key=lambda r: r.fun)
    return float(best.x[0]), math.exp(float(best.x[1]))


@dataclass(frozen=True)
class FganFit:
    mu: float
    sigma: float
    trace: list[tuple[float, float]]  # (μ, σ) every 50 steps


class GaussianGenerator(nn.Module):
    """G(z) = μ + e^s·z: noise z ~ N(0, 1) of shape (B, 1) to samples of N(μ, σ²), σ = e^s;
    starts at N(0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(()))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def forward(self, z: Tensor) -> Tensor:
        return self.mu + self.log_sigma.exp() * z

    def mean_and_sd(self) -> tuple[float, float]:
        return float(self.mu.detach()), float(self.log_sigma.detach().exp())


def fgan_fit(div: divergences.FDivergence, target: GaussianMixture1D = TARGET, *,
             steps: int = 800, seed: int = 0, batch: int = 256, hidden: int = 32,
             lr_critic: float = 5e-3, lr_generator: float = 1e-2) -> FganFit:
    """f-GAN saddle training of N(μ, σ²) against `target`; returns the mean of the generator's
    (μ, σ) over the last quarter of the steps (the iterates circle the saddle point)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = divergences.mlp_critic(1, hidden)
    generator = GaussianGenerator()
    loss = losses.fgan_loss(div, saddle=True)
    opt_c = torch.optim.Adam(critic.parameters(), lr=lr_critic, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_generator, betas=(0.5, 0.999))
    tail, trace = [], []
    for step in range(steps):
        real = target.sample(batch, gen)[:, None]
        z = torch.randn(batch, 1, generator=gen)
        alternating_step(generator, critic, loss, opt_c, opt_g, real, z, z)
        now = generator.mean_and_sd()
        if step % 50 == 0:
            trace.append(now)
        if step >= steps - steps // 4:
            tail.append(now)
    mu_mean, sigma_mean = np.mean(tail, axis=0)
    return FganFit(float(mu_mean), float(sigma_mean), trace)


MU_TOLERANCE = 0.15  # |μ − μ*| allowed, in units of x (the modes are 3 apart)
SIGMA_TOLERANCE = 0.15  # |σ − σ*| / σ* allowed


@dataclass(frozen=True)
class FitRow:
    divergence: str
    mu: float
    sigma: float
    mu_exact: float
    sigma_exact: float
    d_fgan: float
    d_exact: float

    @property
    def on_target(self) -> bool:
        return (abs(self.mu - self.mu_exact) <= MU_TOLERANCE
                and abs(self.sigma - self.sigma_exact) <= SIGMA_TOLERANCE * self.sigma_exact)

    def cells(self) -> list:
        return [self.divergence, round(self.mu, 3), round(self.sigma, 3), round(self.mu_exact, 3),
                round(self.sigma_exact, 3), round(self.d_fgan, 4), round(self.d_exact, 4),
                "yes" if self.on_target else "no"]


COLUMNS = ["divergence", "f-GAN mu", "f-GAN sigma", "exact mu*", "exact sigma*",
           "D_f at f-GAN", "D_f at exact", "within tolerance"]


def compare(name: str, *, steps: int = 800, seed: int = 0,
            target: GaussianMixture1D = TARGET) -> FitRow:
    """One row of the experiment: the f-GAN fit, the exact minimiser and D_f at both."""
    div = divergences.get(name)
    fit = fgan_fit(div, target, steps=steps, seed=seed)
    mu_star, sigma_star = exact_fit(div, target)
    return FitRow(name, fit.mu, fit.sigma, mu_star, sigma_star,
                  divergence_to_gaussian(div, target, fit.mu, fit.sigma),
                  divergence_to_gaussian(div, target, mu_star, sigma_star))


def cross_table(rows: list[FitRow], target: GaussianMixture1D = TARGET) -> list[list[float]]:
    """D_j(P‖Q_i): row j measures with divergence j the f-GAN fit Q_i trained with divergence i
    (Nowozin et al. 2016, Table 4). Each fit should be the best under its own divergence."""
    return [[divergence_to_gaussian(divergences.get(j.divergence), target, i.mu, i.sigma)
             for i in rows] for j in rows]


TIE = 1e-4  # relative: a diagonal entry this close to its row's minimum counts as the minimum


def diagonal_is_row_minimum(table: list[list[float]]) -> list[bool]:
    return [row[k] <= min(row) * (1 + TIE) for k, row in enumerate(table)]


def mode_behaviour(rows: list[FitRow], target: GaussianMixture1D = TARGET) -> dict[str, bool]:
    """KL covers both modes (μ strictly between them, σ > twice a component's sd); reverse KL
    locks onto the heavier mode (|μ − mode| < 0.2, σ < 1.4 × its sd). Measured on f-GAN fits."""
    by_name = {r.divergence: r for r in rows}
    heavy = int(np.argmax(target.weights))
    behaviour = {}
    if "kl" in by_name:
        kl = by_name["kl"]
        behaviour["kl covers both modes"] = (min(target.means) < kl.mu < max(target.means)
                                             and kl.sigma > 2 * max(target.sds))
    if "reverse_kl" in by_name:
        rkl = by_name["reverse_kl"]
        behaviour["reverse_kl locks onto one mode"] = (
            abs(rkl.mu - target.means[heavy]) < 0.2 and rkl.sigma < 1.4 * target.sds[heavy])
    return behaviour
