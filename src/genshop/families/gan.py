"""The GAN family: any loss of `genshop.losses`, the alternating or the fused single-loss step.

Posts: "f-GAN: a production workshop for GANs" (kexue.fm archive 6016) and "RSGAN: the Turing
test in GANs" (6110) for the losses; "A GAN with a single loss via stop-gradient" (6387) for the
fused step L = L_D(D, G_ng) + [L_G(D_ng, G) − stop_gradient(L_G(D_ng, G))] of
`genshop.steps.fused_step`, whose λ is the ratio lr_g / lr_d (`genshop.steps.fused_optimizer`).
The alternating step draws independent noise for its D and G halves; the fused step uses one z.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genshop import steps
from genshop.config import RECIPES, GanConfig
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, register
from genshop.losses import get_loss
from genshop.nets import dcgan_pair, mlp_pair


def build_nets(config: GanConfig, dataset) -> tuple[nn.Module, nn.Module]:
    """MLPs for point data, DCGAN-style nets for 1×28×28 images."""
    if dataset.kind == "points":
        return mlp_pair(config.latent_dim, config.width, config.depth, dataset.shape[0],
                        config.activation, config.batch_norm)
    if dataset.kind == "images" and tuple(dataset.shape) == (1, 28, 28):
        return dcgan_pair(config.latent_dim, config.width, config.spectral_norm,
                          config.batch_norm)
    raise BadInputError(f"the GAN family has nets for 2-D points and 1×28×28 images, not for "
                        f"{dataset.kind} of shape {tuple(dataset.shape)}")


@register
class GanFamily(Family):
    name = "gan"
    description = "GAN with any genshop loss and the alternating or fused single-loss step"
    config_class = GanConfig
    recipes = RECIPES

    def __init__(self, config: GanConfig, dataset, device: torch.device):
        self.config = config
        self.loss = get_loss(config.loss)
        G, D = build_nets(config, dataset)
        self.G, self.D = G.to(device), D.to(device)
        adam = {"betas": (config.beta1, config.beta2)}
        if config.step == "fused":
            self._opts = {"opt": steps.fused_optimizer(self.G, self.D, torch.optim.Adam,
                                                       config.lr_d, config.lr_g, **adam)}
        else:
            self._opts = {"opt_d": torch.optim.Adam(self.D.parameters(), config.lr_d, **adam),
                          "opt_g": torch.optim.Adam(self.G.parameters(), config.lr_g, **adam)}

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._opts

    def train_step(self, inp: StepInput) -> dict[str, float]:
        k = self.G.latent_dim
        if self.config.step == "fused":
            return steps.fused_step(self.G, self.D, self.loss, self._opts["opt"], inp.real,
                                    inp.normal(k))
        return steps.alternating_step(self.G, self.D, self.loss, self._opts["opt_d"],
                                      self._opts["opt_g"], inp.real, inp.normal(k),
                                      inp.normal(k))

    def sampler(self) -> nn.Module:
        return self.G

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.sample_latent(n, generator))
