"""The GAN family: any loss of `genshop.losses`, the alternating or the fused single-loss step.

Posts: "f-GAN: a production workshop for GANs" (kexue.fm archive 6016) and "RSGAN: the Turing
test in GANs" (6110) for the losses; "A GAN with a single loss via stop-gradient" (6387) for the
fused step L = L_D(D, G_ng) + [L_G(D_ng, G) − stop_gradient(L_G(D_ng, G))] of
`genshop.steps.fused_step`, whose λ is the ratio lr_g / lr_d (`genshop.steps.fused_optimizer`).
The alternating step draws independent noise for its D and G halves; the fused step uses one z.

Two loss-independent options for the 2-D mode benchmark, both published remedies:

* `pack` = m (PacGAN, Lin, Khetan, Fanti & Oh, NeurIPS 2018): the critic judges m samples at
  once, D: (x₁, …, x_m) ∈ ℝ^{m·d} → ℝ, all real or all fake. `PackedCritic` groups each batch
  of N points (in the order given) into N/m packs and returns N/m logits, so every loss and both
  steps run unchanged; a pack of fakes whose points sit on one mode is easy to tell from a pack of
  m independent real points, which penalises mode collapse.
* `r1` = γ (Mescheder, Geiger & Nowozin, ICML 2018, "Which training methods for GANs do actually
  converge?"): the zero-centred penalty (γ/2)·E_{x ~ data} ‖∇ₓD(x)‖² on real data is added to
  the critic's loss, for any loss and either step, by `R1Penalty`: a step pre-hook on the
  optimiser holding D adds ∇_D of the penalty (at the same D as the loss gradient) to D's
  gradient, so `genshop.steps` stays as it is. `r1_every` = k applies it lazily, k·γ on every
  k-th step (Karras et al. 2020, StyleGAN2), for about a quarter of the cost at k = 4.

`d_steps` = k runs k critic updates per generator update (alternating step only), each on its
own real batch and noise: the schedule of WGAN-GP (Gulrajani et al. 2017 use k = 5). The engine
hands over k batches at once (`real_batches`), so resume and data-parallel runs stay exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from genshop import steps
from genshop.config import RECIPES, GanConfig
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, adam, register
from genshop.losses import get_loss
from genshop.nets import dcgan_pair, mlp_pair


class PackedCritic(nn.Module):
    """PacGAN packing: D(x₁, …, x_m) on m consecutive samples concatenated, one logit a pack.

    `inner` maps (N/m, m·d) → (N/m,) logits; the batch size N must be a multiple of m. Each
    pack's logit is repeated for its m samples, so the output is (N,) as for any critic and the
    losses (batch means) and both steps of `genshop.steps` run unchanged: a mean over the N
    repeated logits is the mean over the N/m packs. Real and fake batches of equal size N (also
    when concatenated, as `genshop.steps.critic_outputs` does) never share a pack. Under WGAN-GP
    the gradient norm stays per point (`losses.gradient_penalty` takes each sample's norm).
    """

    row_independent = False  # a logit depends on m samples: see steps._critic_traits

    def __init__(self, inner: nn.Module, pack: int):
        super().__init__()
        self.inner, self.pack = inner, pack

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.pack:
            raise BadInputError(f"a packed critic (pack = {self.pack}) needs batches that are a "
                                f"multiple of {self.pack}, got {x.shape[0]}; change "
                                "--batch-size or --pack")
        logits = self.inner(x.reshape(x.shape[0] // self.pack, -1))
        return logits.repeat_interleave(self.pack)


def build_nets(config: GanConfig, dataset) -> tuple[nn.Module, nn.Module]:
    """MLPs for point data (critic packed when `pack` > 1), DCGAN-style nets for 1×28×28."""
    if dataset.kind == "points":
        d = dataset.shape[0]
        G, D = mlp_pair(config.latent_dim, config.width, config.depth, d, config.activation,
                        config.batch_norm)
        if config.pack > 1:
            _, inner = mlp_pair(config.latent_dim, config.width, config.depth, d * config.pack,
                                config.activation)
            D = PackedCritic(inner, config.pack)
        return G, D
    if config.pack > 1:
        raise BadInputError("--pack is implemented for the 2-D point critics only")
    if dataset.kind == "images" and tuple(dataset.shape) == (1, 28, 28):
        return dcgan_pair(config.latent_dim, config.width, config.spectral_norm,
                          config.batch_norm)
    raise BadInputError(f"the GAN family has nets for 2-D points and 1×28×28 images, not for "
                        f"{dataset.kind} of shape {tuple(dataset.shape)}")


class R1Penalty:
    """Adds ∇_D of (γ/2)·E‖∇ₓD(x)‖² on the current real batch to D's gradients before a step.

    Registered as a step pre-hook on the optimiser that holds D, so the penalty's gradient is
    taken at the same critic as the loss gradient (as if it were added to the D loss). The mean
    is over the critic's outputs: per sample, or per pack under `PackedCritic`. With `every` = k
    > 1 it is lazy (StyleGAN2, Karras et al. 2020, Sec. 3.1): only on every k-th step (counted by
    Adam's state), with k·γ, which keeps its average weight and saves most of its cost.
    """

    def __init__(self, D: nn.Module, gamma: float, every: int = 1):
        self.D, self.gamma, self.every = D, gamma, every
        self.pack = getattr(D, "pack", 1)  # samples per critic logit
        self.real: Tensor | None = None
        self.last = math.nan

    def penalty(self, real: Tensor) -> Tensor:
        """(γ/2)·mean over the critic's N/m logits of ‖∇D‖² (the gradient of the mean is
        (m/N)·∇ of each logit, hence the factor N/m on the sum of squares)."""
        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x).mean(), x, create_graph=True)
        return 0.5 * self.gamma * grad.pow(2).sum() * (x.shape[0] / self.pack)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.real is None or adam_steps(optimizer) % self.every:
            return
        params = [p for p in self.D.parameters() if p.requires_grad]
        value = self.penalty(self.real)
        grads = torch.autograd.grad(self.every * value, params, allow_unused=True,
                                    materialize_grads=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        self.last = value.item()


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

    def __init__(self, config: GanConfig, dataset, device: torch.device):
        if config.pack < 1 or config.r1_every < 1 or config.r1 < 0 or config.d_steps < 1:
            raise BadInputError(f"need pack >= 1, r1_every >= 1, r1 >= 0 and d_steps >= 1, got "
                                f"pack = {config.pack}, r1_every = {config.r1_every}, r1 = "
                                f"{config.r1}, d_steps = {config.d_steps}")
        if config.batch_size % config.pack:
            raise BadInputError(f"--batch-size {config.batch_size} must be a multiple of "
                                f"--pack {config.pack} (the critic judges packs of that size)")
        if config.d_steps > 1 and config.step == "fused":
            raise BadInputError("--d-steps > 1 needs --step alternating: the fused step updates "
                                "D and G together, once each")
        self.config = config
        self.loss = get_loss(config.loss)
        G, D = build_nets(config, dataset)
        self.G, self.D = G.to(device), D.to(device)
        betas = (config.beta1, config.beta2)
        if config.step == "fused":
            self._opts = {"opt": steps.fused_optimizer(self.G, self.D, adam, config.lr_d,
                                                       config.lr_g, betas=betas)}
        else:
            self._opts = {"opt_d": adam(self.D.parameters(), config.lr_d, betas=betas),
                          "opt_g": adam(self.G.parameters(), config.lr_g, betas=betas)}
        self._r1 = R1Penalty(self.D, config.r1, config.r1_every) if config.r1 > 0 else None
        if self._r1:
            self._opts.get("opt", self._opts.get("opt_d")).register_step_pre_hook(self._r1)

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._opts

    def train_step(self, inp: StepInput) -> dict[str, float]:
        if self._r1 is None:
            return self._step(inp)
        self._r1.real = inp.real
        out = self._step(inp)
        if math.isfinite(self._r1.last):  # the latest penalty (none yet right after a resume)
            out["r1"] = self._r1.last
        return out

    def real_batches(self) -> int:
        return self.config.d_steps

    def _step(self, inp: StepInput) -> dict[str, float]:
        k = self.G.latent_dim
        if self.config.step == "fused":
            return steps.fused_step(self.G, self.D, self.loss, self._opts["opt"], inp.real,
                                    inp.normal(k))
        *extra, last = (StepInput(real, inp.generator, inp.rank, inp.world_size)
                        for real in inp.real.chunk(self.config.d_steps))
        for critic_input in extra:  # the first d_steps − 1 critic updates
            if self._r1:
                self._r1.real = critic_input.real
            steps.critic_step(self.G, self.D, self.loss, self._opts["opt_d"], critic_input.real,
                              critic_input.normal(k))
        if self._r1:
            self._r1.real = last.real
        return steps.alternating_step(self.G, self.D, self.loss, self._opts["opt_d"],
                                      self._opts["opt_g"], last.real, last.normal(k),
                                      last.normal(k))

    def sampler(self) -> nn.Module:
        return self.G

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.sample_latent(n, generator))
