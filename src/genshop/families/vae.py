"""The vae family: the VAE (Kingma & Welling, arXiv 1312.6114) and the β-VAE (Higgins et al.,
ICLR 2017) on binarised MNIST, one family with the option `beta`.

Post: "From variational autoencoders and the information bottleneck to the normal distribution: on
the importance of forgetting" (kexue.fm archive 6181): the VAE minimises, up to a constant,

    E_x [ E_{z~p(z|x)} [−log q(x|z)] + KL(p(z|x) ‖ N(0, I)) ],

the VIB loss with the label equal to the input. genshop's model: the MLP `GaussianEncoder`
(`genshop.bottleneck`: x → ReLU layers of `width` → μ, log σ² of `latent_dim` dimensions) and an
MLP decoder z → ReLU layers of `width` → 784 logits of a Bernoulli likelihood per pixel. Each step
minimises, on a batch of B digits with one ε per digit,

    L = distortion + β·rate,
    distortion = (1/B) Σ_b Σ_pixels BCE(logit_bp, x_bp)   (−log q(x|z), nats per digit),
    rate       = (1/B) Σ_b ½ Σ_d (μ² + σ² − 1 − log σ²)     (KL to N(0, I), nats per digit),

so both terms are sums over one digit's pixels or latent dimensions averaged over the batch, and
β = 1 gives −ELBO in nats per digit (a batch mean, so the engine's averaged data-parallel
gradient is exact). β > 1 is the β-VAE; β = 0 an autoencoder with noise.

Binarisation: static, a fixed threshold, pixel > 0.5 → 1 (the convention of pythae's MNIST
table); every digit of the train and test split is binarised once, the same in every run.

`sample(net, n)` decodes z ~ N(0, I) to the Bernoulli means sigmoid(logits), N×1×28×28 in [0, 1].
`evaluate` logs −ELBO, distortion and rate (β = 1 whatever the run's β) of 500 fixed test digits
(every 4th of the 2,000) with one ε each from a generator of fixed seed. `importance_nll(net, x,
k)` is the importance-weighted estimate of −log p(x) (Burda et al., arXiv 1509.00519),

    −log p̂(x) = −log (1/k) Σ_j q(x|z_j) N(z_j; 0, I) / p(z_j|x),   z_j ~ p(z|x),

averaged over the digits, with the standard error of that mean over digits; it is an upper bound
of −log p(x) in expectation that tightens as k grows, and −ELBO's one-sample estimate at k = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genshop.bottleneck import (
    GaussianEncoder,
    gaussian_rate,
    log_normal,
    relu_mlp,
    reparameterise,
    standard_normal,
)
from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, RunConfig, option
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, adam, register, require_digits

THRESHOLD = 0.5  # static binarisation: pixel > 0.5 → 1
HELD_OUT_STRIDE, HELD_OUT_SEED = 4, 0  # every 4th test digit (500), one fixed ε each
CHUNK_ROWS = 2**14  # decoder rows (digits × samples) per pass of `importance_nll` (≈ 150 MB)


def binarise(x: Tensor) -> Tensor:
    """Pixels in [0, 1] → {0, 1} by the fixed threshold 0.5."""
    return (x > THRESHOLD).to(x.dtype)


@dataclass
class VaeConfig(RunConfig):
    """An MLP VAE with a Bernoulli decoder on binarised MNIST, loss distortion + β·rate."""

    data: str = option("mnist", "the digits it learns: mnist (the 8,000 train-split digits, "
                                "binarised at 0.5)", ("mnist",))
    beta: float = option(1.0, "weight β of the rate (KL to N(0, I)); 1 is the VAE, > 1 the "
                              "β-VAE", valid=AT_LEAST_0)
    latent_dim: int = option(16, "latent dimensions", valid=AT_LEAST_1)
    width: int = option(512, "units of each hidden layer of encoder and decoder",
                        valid=AT_LEAST_1)
    depth: int = option(1, "hidden layers of encoder and of decoder", valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate", valid=POSITIVE)


RECIPES = {"mnist": {"batch_size": 100, "lr": 1e-3, "steps": 1600, "log_every": 80,
                     "sample_every": 1000, "checkpoint_every": 1000}}


class Vae(nn.Module):
    """Encoder x → (μ, log σ²) and Bernoulli decoder z → logits, one module (so an EMA copy
    averages both)."""

    def __init__(self, shape: tuple[int, ...], latent_dim: int, width: int, depth: int):
        super().__init__()
        self.shape, self.latent_dim = tuple(shape), latent_dim
        pixels = math.prod(shape)
        self.encoder = GaussianEncoder(pixels, width, depth, latent_dim)
        self.decoder = nn.Sequential(relu_mlp([latent_dim] + [width] * depth),
                                     nn.Linear(width, pixels))

    def logits(self, z: Tensor) -> Tensor:
        """Bernoulli logits (…, *shape) of q(x|z) for z (…, latent_dim)."""
        return self.decoder(z).unflatten(-1, self.shape)

    def forward(self, z: Tensor) -> Tensor:
        """The Bernoulli means sigmoid(logits) in [0, 1]."""
        return torch.sigmoid(self.logits(z))


def distortion(net: Vae, x: Tensor, z: Tensor) -> Tensor:
    """−log q(x|z) of each digit, summed over pixels (nats): (B,), or (B, k) for z (B, k, d)."""
    logits = net.logits(z)
    target = x.unsqueeze(1).expand_as(logits) if z.dim() == 3 else x
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce.flatten(z.dim() - 1).sum(-1)


class Terms(NamedTuple):
    """The loss's two batch means (nats per digit) and the loss distortion + β·rate."""

    distortion: Tensor
    rate: Tensor
    loss: Tensor


def vae_terms(net: Vae, x: Tensor, eps: Tensor, beta: float = 1.0) -> Terms:
    """The terms of L = distortion + β·rate on binary digits x, one noise row of eps per digit."""
    mu, logvar = net.encoder.moments(x)
    d = distortion(net, x, reparameterise(mu, logvar, eps)).mean()
    r = gaussian_rate(mu, logvar)
    return Terms(d, r, d + beta * r)


def log_weights(net: Vae, x: Tensor, eps: Tensor) -> Tensor:
    """log q(x|z_j) + log N(z_j; 0, I) − log p(z_j|x) for z_j = μ + σ·ε_j: (B, k) for eps
    (B, k, latent_dim)."""
    mu, logvar = (t.unsqueeze(1) for t in net.encoder.moments(x))
    z = reparameterise(mu, logvar, eps)
    return -distortion(net, x, z) + log_normal(z) - log_normal(z, mu, logvar)


class Estimate(NamedTuple):
    """A mean over digits and the standard error of that mean (nats)."""

    mean: float
    stderr: float


@torch.no_grad()
def importance_nll(net: Vae, x: Tensor, k: int,
                   generator: torch.Generator | None = None) -> Estimate:
    """The importance-weighted −log p(x) with k samples per digit of the binary digits x (module
    docstring), computed in chunks of at most CHUNK_ROWS decoder rows, so memory stays bounded
    for any k (time grows with k·len(x))."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInputError(f"the importance-sample count k must be an integer >= 1, got {k!r}")
    per_chunk = max(1, CHUNK_ROWS // k)
    nll = []
    for rows in x.split(per_chunk):
        logw = torch.cat([log_weights(net, rows, standard_normal(
            (len(rows), len(cols), net.latent_dim), rows, generator))
            for cols in torch.arange(k).split(CHUNK_ROWS)], dim=1)
        nll.append(math.log(k) - torch.logsumexp(logw.double(), dim=1))
    return _mean_and_stderr(torch.cat(nll))


def _mean_and_stderr(values: Tensor) -> Estimate:
    stderr = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return Estimate(values.mean().item(), stderr)


def binary_test_split(dataset) -> Tensor:
    """The 2,000 binarised test digits."""
    return binarise(dataset.split("test")[0])


@register
class VaeFamily(Family):
    name = "vae"
    description = "VAE and β-VAE (option beta): MLP encoder and Bernoulli decoder, binarised MNIST"
    config_class = VaeConfig
    recipes = RECIPES

    @classmethod
    def check(cls, config: VaeConfig, dataset) -> None:
        require_digits(dataset, cls.name)

    @classmethod
    def training_data(cls, config: VaeConfig, dataset) -> Examples:
        """The binarised train split with its labels (the permutation is the engine's)."""
        images, labels = dataset.split("train")
        return Examples(binarise(images), labels)

    def __init__(self, config: VaeConfig, dataset, device: torch.device):
        self.check(config, dataset)
        self.net = Vae(dataset.shape, config.latent_dim, config.width, config.depth).to(device)
        self.opt = adam(self.net.parameters(), lr=config.lr)
        self.beta = config.beta
        self.held_out = binary_test_split(dataset)[::HELD_OUT_STRIDE].to(device)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        terms = vae_terms(self.net, inp.x, inp.normal(self.net.latent_dim), self.beta)
        self.opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.opt.step()
        return {"loss": terms.loss.item(), "distortion": terms.distortion.item(),
                "rate": terms.rate.item()}

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """−ELBO (β = 1), distortion and rate of the fixed held-out test digits."""
        g = torch.Generator().manual_seed(HELD_OUT_SEED)
        eps = standard_normal((len(self.held_out), net.latent_dim), self.held_out, g)
        terms = vae_terms(net, self.held_out, eps)
        return {"held_out_nelbo": terms.loss.item(), "held_out_distortion":
                terms.distortion.item(), "held_out_rate": terms.rate.item()}

    def model(self) -> nn.Module:
        return self.net

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n Bernoulli means of decoded z ~ N(0, I), N×1×28×28 in [0, 1]."""
        weight = next(net.parameters())
        return net(standard_normal((n, net.latent_dim), weight, generator))
