"""Generator/critic pairs shared by every family: MLPs for 2-D data, DCGAN-style nets for images.

The GAN posts of *Scientific Spaces* — "f-GAN: a production workshop for GANs" (kexue.fm archive
6016), "RSGAN: the Turing test in GANs" (6110) and "A GAN with a single loss via stop-gradient"
(6387) — all train a generator G: z ∈ ℝᵏ → x and a critic D: x → ℝ (one logit per sample). Models
hold no training logic (the engine and `genshop.steps` do).

* `mlp_pair`: G = Linear(k→w) · act · [BN] … Linear(w→2), D = Linear(2→w) · act … Linear(w→1).
* `dcgan_pair` (Radford et al. 2016) for C×H×W images, H and W multiples of 4 (C = 1 for MNIST,
  3 for Stacked MNIST), with w = `width`: G = Linear(k → 2w·(H/4)·(W/4)) · BN · ReLU,
  ConvT(2w → w, 4, stride 2) to H/2 × W/2 · BN · ReLU, ConvT(w → C, 4, stride 2) to H × W · sigmoid,
  so pixels lie in [0, 1]; D = Conv(C → w, 4, stride 2) · LeakyReLU(0.2) → Conv(w → 2w) [· BN]
  · LeakyReLU(0.2) → Linear(2w·(H/4)·(W/4) → 1), one logit. Spectral norm (Miyato et al. 2018)
  divides each critic weight by its largest singular value σ(W), estimated by power iteration, so
  every layer of D is (about) 1-Lipschitz. Multiply-adds of one image's forward pass:
  G = k·2w·HW/16 + 2w²·HW + 4w·C·HW, D = 4w·C·HW + 2w²·HW + 2w·HW/16 (each stride-2 4×4
  convolution, plain or transposed, joins 4 input positions per output position); at w = 64
  and 28×28 that is ≈ 27 MFLOP for G and D together (`benchmarks/image_speed.py` counts them).
* `PackedCritic` (PacGAN, Lin, Khetan, Fanti & Oh, NeurIPS 2018): D(x₁, …, x_m), one logit for m
  consecutive samples concatenated (points along their coordinates, images along their channels),
  repeated for each of the m samples; its `pack` property is m.

Every generator has `latent_dim` and `sample_latent(n, generator)` (z ~ N(0, I)); every critic
returns a flat (N,) tensor of logits.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genshop.errors import BadInputError, UnknownNameError

ACTIVATIONS = {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def _activation(name: str) -> nn.Module:
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


def dcgan_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """`shape` as (C, H, W) if the DCGAN pair can take it (3-D, H and W multiples of 4), else a
    BadInputError that says what fits."""
    if len(shape) != 3 or min(shape) < 1 or shape[1] % 4 or shape[2] % 4:
        raise BadInputError(f"the DCGAN pair takes C×H×W images with H and W multiples of 4 "
                            f"(e.g. 1×28×28, 3×28×28, 3×32×32), not {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _dcgan_generator(latent_dim: int, width: int, shape: tuple[int, int, int]) -> Generator:
    c, (channels, h, w) = 2 * width, shape
    body = nn.Sequential(
        nn.Linear(latent_dim, c * (h // 4) * (w // 4)), nn.BatchNorm1d(c * (h // 4) * (w // 4)),
        nn.ReLU(), nn.Unflatten(1, (c, h // 4, w // 4)),
        nn.ConvTranspose2d(c, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid(),
    )
    return Generator(body, latent_dim)


def _dcgan_critic(width: int, spectral: bool, batch_norm: bool,
                  shape: tuple[int, int, int]) -> Critic:
    wrap = spectral_norm if spectral else (lambda m: m)
    channels, h, w = shape
    layers: list[nn.Module] = [wrap(nn.Conv2d(channels, width, 4, stride=2, padding=1)),
                               nn.LeakyReLU(0.2),
                               wrap(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1))]
    if batch_norm:
        layers.append(nn.BatchNorm2d(2 * width))
    layers += [nn.LeakyReLU(0.2), nn.Flatten(),
               wrap(nn.Linear(2 * width * (h // 4) * (w // 4), 1))]
    return Critic(nn.Sequential(*layers))


def dcgan_pair(latent_dim: int = 64, width: int = 64, spectral_norm: bool = False,
               batch_norm: bool = False,
               shape: tuple[int, ...] = (1, 28, 28)) -> tuple[Generator, Critic]:
    """(G, D) for C×H×W images in [0, 1] (`shape`, H and W multiples of 4);
    `spectral_norm` / `batch_norm` apply to D."""
    shape = dcgan_shape(shape)
    return (_dcgan_generator(latent_dim, width, shape),
            _dcgan_critic(width, spectral_norm, batch_norm, shape))


class PackedCritic(nn.Module):
    """PacGAN packing: D(x₁, …, x_m) on m consecutive samples concatenated, one logit a pack.

    `inner` maps (N/m, m·d) → (N/m,) logits for points, (N/m, m·C, H, W) → (N/m,) for images
    (sample k of a pack is channels k·C … k·C + C − 1); the batch size N must be a multiple of
    m. Each pack's logit is repeated for its m samples, so the output is (N,) as for any critic
    and the losses (batch means) run unchanged: a mean over the N repeated logits is the mean
    over the N/m packs. Real and fake batches of equal size N (also when concatenated, as
    `genshop.steps.critic_outputs` does) never share a pack. Under WGAN-GP the gradient norm stays
    per point (`losses.gradient_penalty` takes each sample's norm).

    An output row depends on the m rows of its pack, not on its own row alone: `genshop.steps`
    reads `pack` to take the R1 penalty over packs (`losses.r1_penalty`), and
    `genshop.shared_critic` recomputes every row's gradient for G rather than rescale it.
    """

    def __init__(self, inner: nn.Module, pack: int):
        super().__init__()
        self.inner, self._pack = inner, pack

    @property
    def pack(self) -> int:
        """m, the samples each logit judges; fixed, as `inner` takes m samples' features."""
        return self._pack

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.pack:
            raise BadInputError(f"a packed critic (pack = {self.pack}) needs batches that are a "
                                f"multiple of {self.pack}, got {x.shape[0]}; change "
                                "--batch-size or --pack")
        logits = self.inner(x.reshape(x.shape[0] // self.pack, -1, *x.shape[2:]))
        return logits.repeat_interleave(self.pack)
