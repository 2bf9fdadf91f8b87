"""The Gaussian bottleneck shared by the VAE, the β-VAE and the variational information bottleneck.

Post: "From variational autoencoders and the information bottleneck to the normal distribution: on
the importance of forgetting" (kexue.fm archive 6181), after Kingma & Welling (arXiv 1312.6114)
and Alemi et al., "Deep variational information bottleneck" (arXiv 1612.00410). Both models are
one recipe: a mean/variance encoder p(z|x) = N(μ(x), diag σ²(x)) sampled by the
reparameterisation z = μ + σ·ε, ε ~ N(0, I), plus the penalty KL(p(z|x) ‖ N(0, I)), the
variational upper bound of the information I(X; Z) that passes through z:

    I(X; Z) = E_x KL(p(z|x) ‖ q(z)) − KL(p(z) ‖ q(z)) ≤ E_x KL(p(z|x) ‖ q(z)),  q = N(0, I).

`GaussianBottleneck(in_features, dim)` maps features h to (μ, log σ²) by one linear layer and
returns `(z, rate)` with

    rate = (1/B) Σ_b ½ Σ_d (μ_bd² + σ_bd² − 1 − log σ_bd²)   (nats per example),

the closed-form KL **summed over the latent dimensions and averaged over the batch** — the same
number as the post's batch mean per dimension summed over dimensions. A reconstruction or
cross-entropy term beside it must have the same reduction (summed over what one example's
likelihood covers, averaged over the batch), else β silently changes meaning.

log σ² is clamped to [LOGVAR_MIN, LOGVAR_MAX] = [−20, 10] (σ from 4.5e−5 to 148) so that σ² and
the KL stay finite in float32; outside that range its gradient is zero.

In training mode z is the reparameterised sample; in eval mode z = μ, the VIB layer of the post
(Keras `in_train_phase`), so a classifier predicts from the posterior mean. The rate is the same
in both modes. ε comes from `eps` when given (the engine's shared noise), else from `generator`
(drawn on the generator's device, then moved to μ's), else from the global RNG.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from genshop.errors import BadInputError

LOGVAR_MIN, LOGVAR_MAX = -20.0, 10.0
LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) of each row, summed over the last dimension: (B,), nats."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)


def gaussian_rate(mu: Tensor, logvar: Tensor) -> Tensor:
    """The rate: `gaussian_kl` averaged over the batch (nats per example), a scalar."""
    return gaussian_kl(mu, logvar).mean()


def log_normal(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; μ, diag σ²) of each row, summed over the last dimension (nats)."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + logvar + (z - mu).square() / logvar.exp()).sum(-1)


def reparameterise(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = μ + σ·ε, differentiable in μ and log σ²."""
    return mu + (0.5 * logvar).exp() * eps


def standard_normal(shape: torch.Size | tuple[int, ...], like: Tensor,
                    generator: torch.Generator | None = None) -> Tensor:
    """N(0, I) noise of `shape` with `like`'s dtype and device, from `generator` (on its own
    device) or the global RNG."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like)


def relu_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers between consecutive `sizes`, each followed by a ReLU."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def check_sizes(**sizes: int) -> None:
    """A one-line BadInputError unless every named size is an int ≥ 1."""
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadInputError(f"{name} must be an integer >= 1, got {n!r}")


class GaussianBottleneck(nn.Module):
    """h (B, in_features) → (z (B, dim), rate): see the module docstring."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        check_sizes(in_features=in_features, dim=dim)
        self.dim = dim
        self.head = nn.Linear(in_features, 2 * dim)

    def moments(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of p(z|h), log σ² clamped to [LOGVAR_MIN, LOGVAR_MAX]."""
        mu, logvar = self.head(h).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def forward(self, h: Tensor, eps: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.moments(h)
        if not self.training:
            return mu, gaussian_rate(mu, logvar)
        eps = standard_normal(mu.shape, mu, generator) if eps is None else eps
        return reparameterise(mu, logvar, eps), gaussian_rate(mu, logvar)


class GaussianEncoder(nn.Module):
    """x (B, …) → flattened → ReLU MLP of `depth` layers of `width` → GaussianBottleneck(dim):
    the encoder of the VAE and of VIB (Alemi et al.'s permutation-invariant MLP)."""

    def __init__(self, in_features: int, width: int, depth: int, dim: int):
        super().__init__()
        check_sizes(in_features=in_features, width=width, depth=depth, dim=dim)
        self.body = relu_mlp([in_features] + [width] * depth)
        self.bottleneck = GaussianBottleneck(width, dim)

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.bottleneck.moments(self.body(x.flatten(1)))

    def forward(self, x: Tensor, eps: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return self.bottleneck(self.body(x.flatten(1)), eps, generator)
