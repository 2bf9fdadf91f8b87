"""The IMLE family: implicit maximum likelihood estimation, a generator trained without a critic.

Post: "a brief introduction to the non-adversarial generative model GLANN" (kexue.fm 6394), after
Li & Malik, "Implicit Maximum Likelihood Estimation" (arXiv 1809.09087). For training points
x_1 … x_N and a pool of M = m·N samples G(z_1) … G(z_M), every *data point* is matched to its
nearest sample and pulls it closer:

    j*(i) = argmin_j ‖x_i − G(z_j)‖²,      L = (1/B) Σ_{i ∈ batch} ‖x_i − G(z_{j*(i)})‖²

(squared distance summed over the features of a point or image, mean over the batch). The
matching is a pass over the whole training set (`Family.data_pass`) every `rematch_every`
steps: the pool's latents are drawn from the pass's generator (the same on every process), each
process matches its share of the data points by exact nearest-neighbour search
(`genshop.neighbours.nearest`, the pool generated in eval mode and without autograd) and the
matched latents are gathered, so every data point keeps a latent between passes (checkpointed).
Because every data point is matched, no mode of the data can lose all its samples.

`--match samples` is the other direction, that of the post's Keras script: every generated
sample of a batch is pulled towards its nearest training point,
L = (1/B) Σ_j min_i ‖x_i − G(z_j)‖², which lets data modes that no sample is near go unmatched
(mode dropping). It is kept to show the difference (`docs/glann.md`).

Data: `data_size` training points (0: all of the data set's training set); points (MLP
generator) or C×H×W images in [0, 1] (the DCGAN generator of `genshop.nets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, RunConfig, option
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import DataPass, Family, StepInput, adam, inference, register
from genshop.neighbours import nearest
from genshop.nets import dcgan_pair, dcgan_shape, mlp_pair

POOL_CHUNK = 4096  # pool samples generated per forward pass
MATCHES = ("data", "samples")


@dataclass
class ImleConfig(RunConfig):
    """IMLE (module docstring): a generator, a pool of m·N samples, a matching every K steps."""

    latent_dim: int = option(8, "dimension of the latent z ~ N(0, I)", valid=AT_LEAST_1)
    width: int = option(128, "hidden units (MLP) or base channels (DCGAN)", valid=AT_LEAST_1)
    depth: int = option(3, "hidden layers of the MLP generator", valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate", valid=POSITIVE)
    pool_factor: int = option(10, "m: the pool holds m samples per training point",
                              valid=AT_LEAST_1)
    rematch_every: int = option(50, "steps between matchings of every training point",
                                valid=AT_LEAST_1)
    data_size: int = option(2000, "training points used (0: the whole training set)",
                            valid=AT_LEAST_0)
    match: str = option("data", "data: every training point pulls its nearest sample (IMLE); "
                                "samples: every sample is pulled to its nearest training point "
                                "(the other direction, which drops modes)", MATCHES)


# First recipes for the 2-D mixtures (one seed each; docs/glann.md): a 2-D latent matched every 10
# steps kept 6 of 8 ring modes where an 8-D latent matched every 50 kept 3.
RECIPES: dict[str, dict[str, Any]] = {
    "ring8": {"steps": 3000, "batch_size": 256, "ema": 0.99, "latent_dim": 2,
              "rematch_every": 10},
    "grid25": {"steps": 3000, "batch_size": 256, "ema": 0.99, "latent_dim": 2,
               "rematch_every": 10},
}


def build_generator(config: ImleConfig, dataset) -> nn.Module:
    if dataset.kind == "points":
        return mlp_pair(config.latent_dim, config.width, config.depth, dataset.shape[0])[0]
    return dcgan_pair(config.latent_dim, config.width, shape=dcgan_shape(dataset.shape))[0]


def generate(G: nn.Module, z: Tensor) -> Tensor:
    """G(z) in eval mode, in chunks, the mode restored."""
    with inference(G):
        return torch.cat([G(c) for c in z.split(POOL_CHUNK)])


def match_pool(work: DataPass, G: nn.Module, latent_dim: int,
               pool_factor: int) -> tuple[Tensor, float]:
    """IMLE's matching: a pool of pool_factor·N latents from the pass's generator, G of them in
    eval mode, and for every training row the latent of its nearest pool sample (this process's
    rows searched, every row's gathered), with the mean squared distance to it."""
    device = work.data.x.device
    pool_z = torch.randn(len(work.data) * pool_factor, latent_dim,
                         generator=work.generator).to(device)
    index, d2 = nearest(work.rows().x, generate(G, pool_z))
    return work.gather(pool_z[index[:, 0]]), float(work.gather(d2[:, 0]).mean())


@register
class ImleFamily(Family):
    name = "imle"
    description = "IMLE: every training point pulls its nearest generated sample (no critic)"
    config_class = ImleConfig
    recipes = RECIPES

    @classmethod
    def check(cls, config: ImleConfig, dataset) -> None:
        if dataset.kind == "images":
            dcgan_shape(dataset.shape)
        elif dataset.kind != "points":
            raise BadInputError(f"the IMLE family models points or images, not {dataset.kind}")

    @classmethod
    def training_data(cls, config: ImleConfig, dataset) -> Examples:
        return dataset.training_data(seed=config.seed, size=config.data_size or None)

    def __init__(self, config: ImleConfig, dataset, device: torch.device):
        self.config = config
        self.G = build_generator(config, dataset).to(device)
        self.opt = adam(self.G.parameters(), lr=config.lr)
        self.data = self.training_data(config, dataset).x.to(device)
        self.matched = torch.zeros(len(self.data), config.latent_dim, device=device)
        self.pool_distance = float("nan")  # mean squared distance to the matched sample

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def data_pass_every(self) -> int:
        return self.config.rematch_every if self.config.match == "data" else 0

    def data_pass(self, work: DataPass) -> None:
        """Match every training point to its nearest sample of a fresh pool (module docstring)."""
        self.matched, self.pool_distance = match_pool(work, self.G, self.config.latent_dim,
                                                      self.config.pool_factor)

    def train_step(self, inp: StepInput) -> dict[str, float]:
        if self.config.match == "data":
            target, fake = inp.x, self.G(self.matched[inp.index])
        else:
            fake = self.G(inp.normal(self.config.latent_dim))
            with torch.no_grad():
                target = self.data[nearest(fake.detach(), self.data)[0][:, 0]]
        loss = (fake - target).flatten(1).pow(2).sum(1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.config.match == "samples":
            return {"loss": loss.item()}
        return {"loss": loss.item(), "pool_distance": self.pool_distance}

    def model(self) -> nn.Module:
        return self.G

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.sample_latent(n, generator))

    def extra_state(self) -> dict[str, Any]:
        return {"matched": self.matched, "pool_distance": self.pool_distance}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.matched, self.pool_distance = state["matched"], float(state["pool_distance"])
