"""Generator/critic pairs shared by every family: MLPs for 2-D data, DCGAN-style nets for 28×28.

The GAN posts of *Scientific Spaces* — "f-GAN: a production workshop for GANs" (kexue.fm archive
6016), "RSGAN: the Turing test in GANs" (6110) and "A GAN with a single loss via stop-gradient"
(6387) — all train a generator G: z ∈ ℝᵏ → x and a critic D: x → ℝ (one logit per sample). Models
hold no training logic (the engine and `genshop.steps` do).

* `mlp_pair`: G = Linear(k→w) · act · [BN] … Linear(w→2), D = Linear(2→w) · act … Linear(w→1).
* `dcgan_pair` (Radford et al. 2016): G = Linear(k → c·7·7) · BN · ReLU, ConvT(4, stride 2) to
  14×14 · BN · ReLU, ConvT(4, stride 2) to 28×28 · sigmoid, so pixels lie in [0, 1];
  D = Conv(4, stride 2) · LeakyReLU(0.2) → 14×14 → 7×7 → Linear → 1 logit. Spectral norm
  (Miyato et al. 2018) divides each critic weight by its largest singular value σ(W), estimated by
  power iteration, so every layer of D is (about) 1-Lipschitz.

Every generator has `latent_dim` and `sample_latent(n, generator)` (z ~ N(0, I)); every critic
returns a flat (N,) tensor of logits.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

ACTIVATIONS = {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def _activation(name: str) -> nn.Module:
    from genshop.errors import UnknownNameError

    if name not in ACTIVATIONS:
        raise UnknownNameError("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def _mlp(sizes: list[int], activation: str, batch_norm: bool) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, activation (and BN) after all but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """z (N, latent_dim) → x; wraps a body net and knows its latent size."""

    def __init__(self, body: nn.Module, latent_dim: int):
        super().__init__()
        self.body, self.latent_dim = body, latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.body(z)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator).to(device)


class Critic(nn.Module):
    """x → one logit per sample, shape (N,)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).reshape(x.shape[0])


def mlp_pair(latent_dim: int = 2, width: int = 128, depth: int = 3, data_dim: int = 2,
             activation: str = "relu", batch_norm: bool = False) -> tuple[Generator, Critic]:
    """(G, D) MLPs with `depth` hidden layers of `width` units; BN (if asked) in G only."""
    hidden = [width] * depth
    G = Generator(_mlp([latent_dim, *hidden, data_dim], activation, batch_norm), latent_dim)
    D = Critic(_mlp([data_dim, *hidden, 1], activation, batch_norm=False))
    return G, D


def _dcgan_generator(latent_dim: int, width: int) -> Generator:
    c = 2 * width
    body = nn.Sequential(
        nn.Linear(latent_dim, c * 7 * 7), nn.BatchNorm1d(c * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (c, 7, 7)),
        nn.ConvTranspose2d(c, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1), nn.Sigmoid(),
    )
    return Generator(body, latent_dim)


def _dcgan_critic(width: int, spectral: bool, batch_norm: bool) -> Critic:
    wrap = spectral_norm if spectral else (lambda m: m)
    layers: list[nn.Module] = [wrap(nn.Conv2d(1, width, 4, stride=2, padding=1)),
                               nn.LeakyReLU(0.2),
                               wrap(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1))]
    if batch_norm:
        layers.append(nn.BatchNorm2d(2 * width))
    layers += [nn.LeakyReLU(0.2), nn.Flatten(), wrap(nn.Linear(2 * width * 7 * 7, 1))]
    return Critic(nn.Sequential(*layers))


def dcgan_pair(latent_dim: int = 64, width: int = 64, spectral_norm: bool = False,
               batch_norm: bool = False) -> tuple[Generator, Critic]:
    """(G, D) for 1×28×28 images in [0, 1]; `spectral_norm` / `batch_norm` apply to D."""
    return _dcgan_generator(latent_dim, width), _dcgan_critic(width, spectral_norm, batch_norm)
