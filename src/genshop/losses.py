"""GAN objectives as pure functions of critic logits.

Posts: "RSGAN：对抗模型中的'图灵测试'思想" (RSGAN: the Turing-test idea in adversarial models),
Scientific Spaces, kexue.fm archives/6110, for the relativistic losses; "f-GAN简介：GAN模型的生产
车间" (f-GAN introduction: a production workshop for GANs), archives/6016, for the f-GAN losses.
RaSGAN / RaLSGAN / RaHinge follow Jolicoeur-Martineau, "The relativistic discriminator",
arXiv 1807.00734 (not covered by Su's post); WGAN-GP follows Gulrajani et al. 2017.

Conventions. r = C(x_r) are the critic's logits on a real batch, f = C(G(z)) on a fake batch, σ the
logistic sigmoid, E a batch mean. Real samples score high. Both players *minimise* their loss:
`d_loss(r, f)` for the critic, `g_loss(r, f)` for the generator; both take both sides because
relativistic losses need the real logits in the G loss. Everything is written with softplus,
softplus(x) = log(1 + eˣ) = −log σ(−x), so logits of ±50 give finite values and gradients:
    −log σ(x) = softplus(−x),   −log(1 − σ(x)) = softplus(x).

RSGAN (6110): the critic minimises −E log σ(T(x_r) − T(x_f)) over pairs (i-th real with i-th fake);
the generator minimises E h(T(x_f) − T(x_r)) with h(t) = −log σ(t). At the optimum
T* = log(p/q) + const, and the G objective becomes D_f(p(x_f)q(x_r) ‖ p(x_r)q(x_f)), f = h∘log.

f-GAN (6016): with V the critic's pre-activation and T = g_f(V), the critic maximises the
variational bound E_P[g_f(V)] − E_Q[f*(g_f(V))] ≤ D_f(P‖Q) (`divergences.variational_bound`);
the saddle-point generator minimises the same bound; the default generator loss −E_Q[g_f(V)] is
Nowozin et al.'s non-saturating heuristic, a deviation from the post.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genshop import divergences
from genshop.errors import BadInputError, UnknownNameError
from genshop.registry import Registry

LossFn = Callable[[Tensor, Tensor], Tensor]
WGAN_GP_WEIGHT = 10.0


@dataclass(frozen=True)
class GanLoss:
    """A pair of GAN objectives on logits, both minimised; scalar tensors out.

    `g_uses_real`: the G loss's value depends on the real logits (relativistic and saddle f-GAN
    losses), so a training step must evaluate the critic on real data for the G step too.
    `gp_weight`: weight λ of the WGAN-GP penalty λ·E(‖∇C(x̂)‖ − 1)² that the step functions of
    `genshop.steps` add to the critic loss (0 = none).
    """

    name: str
    _d: LossFn
    _g: LossFn
    g_uses_real: bool = False
    gp_weight: float = 0.0

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """The critic's loss (without the gradient penalty, which needs the critic itself)."""
        return self._d(*_logits(real_out, fake_out))

    def g_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """The generator's loss."""
        return self._g(*_logits(real_out, fake_out))

    @property
    def d_formula(self) -> str:
        return _first_line(self._d)

    @property
    def g_formula(self) -> str:
        return _first_line(self._g)


def _first_line(fn: Callable) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0]


def _logits(real_out: Tensor, fake_out: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten (B,) / (B, 1) / (B, …) critic outputs to 1-D (1-D ones as they are: a reshape
    would still record a view and its backward node, a measurable cost on the 2-D nets)."""
    return _flat(real_out), _flat(fake_out)


def _flat(x: Tensor) -> Tensor:
    return x if x.dim() == 1 else x.reshape(-1)


def _paired(r: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    if r.shape != f.shape:
        raise BadInputError(f"RSGAN pairs the i-th real with the i-th fake logit; got {r.numel()} "
                            f"real and {f.numel()} fake logits: use equal batch sizes")
    return r, f


# --- standard losses --------------------------------------------------------------------------

def _sgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = −E log σ(r) − E log(1 − σ(f)) = E softplus(−r) + E softplus(f)"""
    return F.softplus(-r).mean() + F.softplus(f).mean()


def _sgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = E log(1 − σ(f)) = −E softplus(f)   (saturating minimax)"""
    return -F.softplus(f).mean()


def _nsgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = −E log σ(f) = E softplus(−f)   (non-saturating)"""
    return F.softplus(-f).mean()


def _lsgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = ½E(r − 1)² + ½E f²"""
    return 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean()


def _lsgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = ½E(f − 1)²"""
    return 0.5 * ((f - 1) ** 2).mean()


def _hinge_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = E max(0, 1 − r) + E max(0, 1 + f)"""
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def _critic_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = −E f"""
    return -f.mean()


def _wgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = E f − E r   (+ λ·E(‖∇C(x̂)‖₂ − 1)², x̂ = εx_r + (1−ε)x_f, added by the step)"""
    return f.mean() - r.mean()


# --- relativistic losses (6110; Ra* from arXiv 1807.00734) -----------------------------------

def _rsgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = −E log σ(r_i − f_i) = E softplus(f_i − r_i)   (i-th real paired with i-th fake)"""
    r, f = _paired(r, f)
    return F.softplus(f - r).mean()


def _rsgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = −E log σ(f_i − r_i) = E softplus(r_i − f_i)   (h = −log σ; needs the real logits)"""
    r, f = _paired(r, f)
    return F.softplus(r - f).mean()


def _rasgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = E_r softplus(−(r − E f)) + E_f softplus(f − E r)   (minus the other side's mean)"""
    return F.softplus(f.mean() - r).mean() + F.softplus(f - r.mean()).mean()


def _rasgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = E_f softplus(−(f − E r)) + E_r softplus(r − E f)   (roles of real and fake swapped)"""
    return F.softplus(r.mean() - f).mean() + F.softplus(r - f.mean()).mean()


def _ralsgan_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = E_r (r − E f − 1)² + E_f (f − E r + 1)²"""
    return ((r - f.mean() - 1) ** 2).mean() + ((f - r.mean() + 1) ** 2).mean()


def _ralsgan_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = E_f (f − E r − 1)² + E_r (r − E f + 1)²"""
    return ((f - r.mean() - 1) ** 2).mean() + ((r - f.mean() + 1) ** 2).mean()


def _rahinge_d(r: Tensor, f: Tensor) -> Tensor:
    """L_D = E_r max(0, 1 − (r − E f)) + E_f max(0, 1 + (f − E r))"""
    return F.relu(1 - (r - f.mean())).mean() + F.relu(1 + (f - r.mean())).mean()


def _rahinge_g(r: Tensor, f: Tensor) -> Tensor:
    """L_G = E_f max(0, 1 − (f − E r)) + E_r max(0, 1 + (r − E f))"""
    return F.relu(1 - (f - r.mean())).mean() + F.relu(1 + (r - f.mean())).mean()


LOSSES: Registry[GanLoss] = Registry("loss")
LOSSES.add("sgan", GanLoss("sgan", _sgan_d, _sgan_g))
LOSSES.add("nsgan", GanLoss("nsgan", _sgan_d, _nsgan_g))
LOSSES.add("lsgan", GanLoss("lsgan", _lsgan_d, _lsgan_g))
LOSSES.add("hinge", GanLoss("hinge", _hinge_d, _critic_g))
LOSSES.add("wgan", GanLoss("wgan", _wgan_d, _critic_g, gp_weight=WGAN_GP_WEIGHT))
LOSSES.add("rsgan", GanLoss("rsgan", _rsgan_d, _rsgan_g, g_uses_real=True))
LOSSES.add("rasgan", GanLoss("rasgan", _rasgan_d, _rasgan_g, g_uses_real=True))
LOSSES.add("ralsgan", GanLoss("ralsgan", _ralsgan_d, _ralsgan_g, g_uses_real=True))
LOSSES.add("rahinge", GanLoss("rahinge", _rahinge_d, _rahinge_g, g_uses_real=True))


# --- f-GAN losses (6016) -----------------------------------------------------------------------

FGAN_PREFIX = "fgan-"


def fgan_loss(div: divergences.FDivergence, *, saddle: bool = False) -> GanLoss:
    """The f-GAN loss 'fgan-<div.name>' of any `FDivergence` (a catalog entry,
    `divergences.alpha_divergence(a)` or your own `divergences.from_generator(f)`), on
    pre-activations V: the critic maximises E_P[g_f(V)] − E_Q[f*(g_f(V))]; `saddle` as in
    `get_loss`."""

    def d_loss(r: Tensor, f: Tensor) -> Tensor:
        """L_D = −(E_r g_f(r) − E_f f*(g_f(f)))   (minus the variational bound on D_f(P‖Q))"""
        return -divergences.variational_bound(div, r, f)

    def g_saddle(r: Tensor, f: Tensor) -> Tensor:
        """L_G = E_r g_f(r) − E_f f*(g_f(f))   (saddle point: G minimises the bound)"""
        return divergences.variational_bound(div, r, f)

    def g_heuristic(r: Tensor, f: Tensor) -> Tensor:
        """L_G = −E_f g_f(f)   (Nowozin et al.'s heuristic, a deviation from the post)"""
        return -div.activation(f).mean()

    return GanLoss(FGAN_PREFIX + div.name, d_loss, g_saddle if saddle else g_heuristic,
                   g_uses_real=saddle)


def _fgan_loss_named(name: str, saddle: bool) -> GanLoss:
    try:
        div = divergences.get(name.removeprefix(FGAN_PREFIX))
    except UnknownNameError:
        raise UnknownNameError("loss", name, _choices()) from None
    return fgan_loss(div, saddle=saddle)


def names() -> list[str]:
    """Every loss name: the fixed losses, then 'fgan-<d>' for each catalog divergence.

    Amari's α-divergences are reached as 'fgan-alpha:<a>' (e.g. 'fgan-alpha:0.5').
    """
    return [*LOSSES.names(), *(FGAN_PREFIX + d for d in divergences.names())]


def _choices() -> list[str]:
    return [*names(), f"{FGAN_PREFIX}alpha:<a>"]


def get_loss(name: str, *, gp_weight: float | None = None, saddle: bool = False,
             **unknown: Any) -> GanLoss:
    """The loss called `name` (see `names()`).

    `gp_weight` sets the WGAN-GP penalty weight for any loss (default 10 for 'wgan', else 0);
    `saddle=True` (f-GAN only) makes G minimise the variational bound itself instead of the
    default non-saturating heuristic. Raises UnknownNameError listing the valid names.
    """
    if unknown:
        raise BadInputError(f"unknown option(s) {sorted(unknown)} for loss {name!r}; the options "
                            "are gp_weight (any loss) and saddle (fgan-* losses)")
    if name.startswith(FGAN_PREFIX):
        loss = _fgan_loss_named(name, saddle)
    elif name in LOSSES:
        if saddle:
            raise BadInputError(f"saddle=True applies to fgan-* losses only, not to {name!r}")
        loss = LOSSES.get(name)
    else:
        raise UnknownNameError("loss", name, _choices())
    if gp_weight is not None:
        if not gp_weight >= 0:
            raise BadInputError(f"gp_weight must be a number >= 0, got {gp_weight!r}")
        loss = replace(loss, gp_weight=float(gp_weight))
    return loss


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty E_x̂ (‖∇_x̂ C(x̂)‖₂ − 1)², x̂ = ε·x_r + (1 − ε)·x_f, ε ~ U[0, 1] per sample.

    The norm is over all non-batch dimensions. The graph is kept (create_graph), so the result
    carries gradients to D's parameters. `fake` should be detached from the generator.
    """
    if real.shape != fake.shape:
        raise BadInputError(f"gradient_penalty needs real and fake batches of one shape, got "
                            f"{tuple(real.shape)} and {tuple(fake.shape)}")
    eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype,
                     device=real.device, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1) ** 2).mean()


def r1_penalty(D: nn.Module, real: Tensor, pack: int = 1) -> Tensor:
    """R1 penalty ½·E‖∇ₓD(x)‖² on real data (Mescheder, Geiger & Nowozin, ICML 2018, "Which
    training methods for GANs do actually converge?"), the mean over the critic's logits.

    The steps of `genshop.steps` add γ times it to the critic loss (their `r1=` weight), which is
    the paper's (γ/2)·E‖∇ₓD(x)‖². A critic with one logit per sample (`pack` = 1) averages over
    the N samples. A critic that judges `pack` = m samples concatenated and returns its N/m
    logits each repeated m times (PacGAN, `nets.PackedCritic`) is averaged over the N/m packs, of
    the norm of a pack logit's gradient with respect to its m samples. Computed as ∇ₓ of the
    mean output, g = (m/N)·∇ₓD per pack, so ‖g‖²·N/m is that mean. The graph is kept
    (create_graph), so the result carries gradients to D's parameters.
    """
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).mean(), x, create_graph=True)
    return 0.5 * grad.pow(2).sum() * (x.shape[0] / pack)
