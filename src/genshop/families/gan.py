"""The GAN family: any loss of `genshop.losses`, the alternating or the fused single-loss step.

Posts: "f-GAN: a production workshop for GANs" (kexue.fm archive 6016) and "RSGAN: the Turing
test in GANs" (6110) for the losses; "A GAN with a single loss via stop-gradient" (6387) for the
fused step L = L_D(D, G_ng) + [L_G(D_ng, G) − stop_gradient(L_G(D_ng, G))] of
`genshop.steps.fused_step`, whose λ is the ratio lr_g / lr_d (`genshop.steps.fused_optimizer`).
The alternating step draws independent noise for its D and G halves; the fused step uses one z.

Two loss-independent options for the 2-D mode benchmark, both published remedies:

* `pack` = m (PacGAN, Lin, Khetan, Fanti & Oh, NeurIPS 2018): the critic judges m samples at
  once, D: (x₁, …, x_m) ∈ ℝ^{m·d} → ℝ, all real or all fake; images are packed along the
  channels, m·C×H×W, as PacDCGAN does. `PackedCritic` groups each batch of N samples (in the
  order given) into N/m packs and returns N/m logits, so every loss and both steps run
  unchanged; a pack of fakes whose samples sit on one mode is easy to tell from a pack of m
  independent real samples, which penalises mode collapse.
* `r1` = γ (Mescheder, Geiger & Nowozin, ICML 2018, "Which training methods for GANs do actually
  converge?"): the zero-centred penalty (γ/2)·E_{x ~ data} ‖∇ₓD(x)‖² on real data is a term of
  the critic's loss (`genshop.losses.r1_penalty`, the steps' `r1=` weight), for any loss and
  either update rule. `r1_every` = k applies it lazily, k·γ on every k-th critic update (Karras
  et al. 2020, StyleGAN2, Sec. 3.1), which keeps its average weight at a quarter of the cost at
  k = 4; the updates are counted by Adam's own state, so the schedule survives a resume.

`d_steps` = k runs k critic updates per generator update (alternating step only), each on its
own real batch and noise: the schedule of WGAN-GP (Gulrajani et al. 2017 use k = 5). The engine
hands over k batches at once (`batches_per_step`), so resume and data-parallel runs stay exact.

Images (`mnist`, `stacked-mnist`, IDX files, image folders) train the DCGAN pair of
`genshop.nets.dcgan_pair` for their C×H×W (H, W multiples of 4), its nets in the channels-last
memory format (NHWC activations, the layout of oneDNN's CPU convolutions); the engine draws
image grids as snapshots and keeps the EMA generator the run samples from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genshop import steps
from genshop.config import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, RunConfig, option
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, adam, register
from genshop.losses import get_loss
from genshop.nets import PackedCritic, dcgan_pair, dcgan_shape, mlp_pair


@dataclass
class GanConfig(RunConfig):
    """A GAN: a loss of `genshop.losses`, an update rule of `genshop.steps`, nets of
    `genshop.nets`."""

    loss: str = option("nsgan", "GAN loss name (see genshop.losses, e.g. nsgan, rasgan, "
                                "fgan-kl)")
    update: str = option("alternating", "update rule: alternating (D, then G against the new "
                                        "D) or fused (the single-loss step: both from one "
                                        "backward)", ("alternating", "fused"))
    lr_g: float = option(1e-4, "generator learning rate (Adam)", valid=POSITIVE)
    lr_d: float = option(1e-4, "critic learning rate (Adam)", valid=POSITIVE)
    beta1: float = option(0.5, "Adam β1", valid=FRACTION)
    beta2: float = option(0.999, "Adam β2", valid=FRACTION)
    latent_dim: int = option(2, "dimension of the latent z ~ N(0, I)", valid=AT_LEAST_1)
    width: int = option(128, "hidden units (MLP) or base channels (DCGAN)",
                        valid=AT_LEAST_1)
    depth: int = option(3, "hidden layers of the MLPs", valid=AT_LEAST_1)
    activation: str = option("relu", "MLP activation", ("relu", "leaky_relu"))
    batch_norm: bool = option(False, "BatchNorm in the generator MLP / the DCGAN critic")
    spectral_norm: bool = option(False, "spectral norm on the DCGAN critic's layers")
    d_steps: int = option(1, "critic updates per generator update, each on a fresh real batch "
                              "(alternating update only; WGAN-GP is usually run with 5)",
                          valid=AT_LEAST_1)
    pack: int = option(1, "PacGAN packing: the critic judges this many samples concatenated "
                          "(images along the channels; 1 = off; the batch must be a multiple)",
                       valid=AT_LEAST_1)
    r1: float = option(0.0, "weight γ of the R1 penalty (γ/2)·E‖∇ₓD(x)‖² on real data added to "
                            "the critic's loss (Mescheder et al. 2018; 0 = off)",
                       valid=AT_LEAST_0)
    r1_every: int = option(1, "apply the R1 penalty on every k-th critic update only, weighted "
                              "k·γ (lazy regularisation of StyleGAN2)", valid=AT_LEAST_1)


# Recipes: data set -> overrides of the options the user did not set; how each was chosen, with
# the sweeps behind it, is in docs/results.md ("The 2-D mode benchmark") and docs/images.md.
RECIPES: dict[str, dict[str, Any]] = {
    "ring8": {"latent_dim": 2, "width": 128, "depth": 3, "batch_size": 256, "lr_g": 1e-3,
              "lr_d": 1e-3, "r1": 0.1, "r1_every": 4, "ema": 0.999, "steps": 7000},
    "grid25": {"latent_dim": 2, "width": 128, "depth": 3, "batch_size": 256, "lr_g": 1e-3,
               "lr_d": 1e-3, "r1": 0.1, "r1_every": 4, "ema": 0.999, "steps": 9000},
    "mnist": {"latent_dim": 64, "width": 32, "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4,
              "beta1": 0.0, "beta2": 0.9, "spectral_norm": True, "ema": 0.995,
              "steps": 10000},
    "stacked-mnist": {"latent_dim": 64, "width": 32, "batch_size": 64, "lr_g": 8e-4,
                      "lr_d": 8e-4, "beta1": 0.0, "beta2": 0.9, "spectral_norm": True,
                      "ema": 0.995, "steps": 36000},
}
# The fused step moves both nets from one point (simultaneous): on the ring a generator at half
# the critic's rate (two time-scales) keeps every mode; on the grid it costs HQ share, so the
# grid keeps equal rates.
FUSED_RECIPES: dict[str, dict[str, Any]] = {"ring8": {"lr_g": 5e-4}}


def build_nets(config: GanConfig, dataset) -> tuple[nn.Module, nn.Module]:
    """MLPs for point data (critic packed when `pack` > 1), the DCGAN pair for C×H×W images
    (`GanFamily.check` refuses other data)."""
    if dataset.kind == "points":
        d = dataset.shape[0]
        G, D = mlp_pair(config.latent_dim, config.width, config.depth, d, config.activation,
                        config.batch_norm)
        if config.pack > 1:
            _, inner = mlp_pair(config.latent_dim, config.width, config.depth, d * config.pack,
                                config.activation)
            D = PackedCritic(inner, config.pack)
        return G, D
    c, h, w = dcgan_shape(dataset.shape)
    G, D = dcgan_pair(config.latent_dim, config.width, config.spectral_norm, config.batch_norm,
                      (c, h, w))
    if config.pack > 1:
        _, inner = dcgan_pair(config.latent_dim, config.width, config.spectral_norm,
                              config.batch_norm, (c * config.pack, h, w))
        D = PackedCritic(inner, config.pack)
    return G, D


def adam_steps(opt: torch.optim.Optimizer) -> int:
    """Steps `opt` has taken, read from Adam's own state (so it survives a resume)."""
    first = opt.param_groups[0]["params"][0]
    return int(opt.state[first]["step"]) if first in opt.state else 0


@register
class GanFamily(Family):
    name = "gan"
    description = "GAN with any genshop loss and the alternating or fused single-loss step"
    config_class = GanConfig
    recipes = RECIPES

    @classmethod
    def recipe(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The data set's recipe, and for the fused update its `FUSED_RECIPES` part."""
        data = options.get("data", GanConfig.data)
        fused = options.get("update", GanConfig.update) == "fused"
        return {**RECIPES.get(data, {}), **(FUSED_RECIPES.get(data, {}) if fused else {})}

    @classmethod
    def recipe_labels(cls) -> dict[str, dict[str, Any]]:
        return {**RECIPES, **{f"{d} --update fused": r for d, r in FUSED_RECIPES.items()}}

    @classmethod
    def check(cls, config: GanConfig, dataset) -> None:
        get_loss(config.loss)
        if config.batch_size % config.pack:
            raise BadInputError(f"--batch-size {config.batch_size} must be a multiple of "
                                f"--pack {config.pack} (the critic judges packs of that size)")
        if config.d_steps > 1 and config.update == "fused":
            raise BadInputError("--d-steps > 1 needs --update alternating: the fused step "
                                "updates D and G together, once each")
        if dataset.kind == "images":
            dcgan_shape(dataset.shape)
        elif dataset.kind != "points":
            raise BadInputError(f"the GAN family has nets for points and images, not for "
                                f"{dataset.kind} of shape {tuple(dataset.shape)}")

    def __init__(self, config: GanConfig, dataset, device: torch.device):
        self.check(config, dataset)
        self.config = config
        self.loss = get_loss(config.loss)
        G, D = build_nets(config, dataset)
        if dataset.kind == "images":  # NHWC activations: ~10-20 % faster convolutions on CPU
            G, D = (m.to(memory_format=torch.channels_last) for m in (G, D))
        self.G, self.D = G.to(device), D.to(device)
        betas = (config.beta1, config.beta2)
        if config.update == "fused":
            self._opts = {"opt": steps.fused_optimizer(self.G, self.D, adam, config.lr_d,
                                                       config.lr_g, betas=betas)}
        else:
            self._opts = {"opt_d": adam(self.D.parameters(), config.lr_d, betas=betas),
                          "opt_g": adam(self.G.parameters(), config.lr_g, betas=betas)}
        self._r1_last = math.nan  # the latest R1 penalty, logged between lazy updates

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._opts

    def train_step(self, inp: StepInput) -> dict[str, float]:
        out = self._step(inp)
        if self.config.r1 > 0:
            self._r1_last = out.get("r1", self._r1_last)
            if math.isfinite(self._r1_last):
                out["r1"] = self._r1_last
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"r1_last": self._r1_last}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._r1_last = float(state.get("r1_last", math.nan))

    def _r1_weight(self) -> float:
        """k·γ on every k-th update of the optimiser that holds D (k = r1_every), else 0."""
        cfg = self.config
        critic_opt = self._opts.get("opt", self._opts.get("opt_d"))
        if cfg.r1 <= 0 or adam_steps(critic_opt) % cfg.r1_every:
            return 0.0
        return cfg.r1_every * cfg.r1

    def cost_period(self) -> int:
        """Lazy R1 costs extra on every `r1_every`-th critic update."""
        return self.config.r1_every if self.config.r1 > 0 else 1

    def batches_per_step(self) -> int:
        return self.config.d_steps

    def _step(self, inp: StepInput) -> dict[str, float]:
        k = self.G.latent_dim
        if self.config.update == "fused":
            return steps.fused_step(self.G, self.D, self.loss, self._opts["opt"], inp.x,
                                    inp.normal(k), r1=self._r1_weight())
        *extra, last = inp.split(self.config.d_steps)
        for critic_input in extra:  # the first d_steps − 1 critic updates
            steps.critic_step(self.G, self.D, self.loss, self._opts["opt_d"], critic_input.x,
                              critic_input.normal(k), r1=self._r1_weight())
        return steps.alternating_step(self.G, self.D, self.loss, self._opts["opt_d"],
                                      self._opts["opt_g"], last.x, last.normal(k),
                                      last.normal(k), r1=self._r1_weight())

    def model(self) -> nn.Module:
        return self.G

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.sample_latent(n, generator))
