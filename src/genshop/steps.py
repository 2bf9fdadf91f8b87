"""GAN update steps: the alternating step and the single-loss step.

Post: "巧断梯度：单个loss实现GAN模型" (Clever gradient stopping: a GAN with a single loss),
Scientific Spaces, kexue.fm archives/6387. A GAN usually takes two steps: D on its loss L_D, then
G on its loss L_G. The post builds one scalar, handed to one optimiser over both nets, whose
gradient is ∇L_D for D and ∇L_G for G. With G_ng(z) = stop_gradient(G(z)):

    L = L_D(D, G_ng) + λ·[L_G(D, G) − L_G(D, G_ng)].

∇L(D, G_ng) = (∇_D L, 0), so the bracket has the gradient (0, ∇_G L_G) and the value 0. Its
D-gradient cancels only when the two critic calls in it compute the same function: a critic
with dropout draws two masks and the cancellation breaks (`subtraction_loss` keeps the post's
form to show it). This module stops the gradient on the critic's *parameters* instead, with D_ng
the critic whose parameters autograd treats as constants (`parameters_frozen`):

    L = L_D(D, G_ng) + L_G(D_ng, G) − stop_gradient(L_G(D_ng, G)).

Only G receives the gradient of the G term, the value is L_D's (what the post logs), and each
critic call happens once, in the order of the two-loss step (`separate_losses`), so dropout
masks, BatchNorm batch statistics and running averages are those of the two-loss step for any
critic. The single-loss step, in the order it runs (`fused_terms`):

1. x = G(z) once, and x_ng = stop_gradient(x);
2. D(x_r) and D(x_ng), one call on cat[x_r, x_ng] when D treats samples alone (`is_per_sample`,
   whose rule lives in `genshop.shared_critic`);
3. L_D = d_loss(D(x_r), D(x_ng)), plus λ_gp·GP(D; x_r, x_ng) if the loss has a gradient
   penalty (`losses.gradient_penalty`), plus r1·R1(D; x_r) when the step is given `r1`
   (`losses.r1_penalty`, over packs of m samples for a `nets.PackedCritic` of `pack` m);
4. L_G = g_loss(stop_gradient(D(x_r)), D_ng(x));
5. one backward of L_D + L_G − stop_gradient(L_G) (`fused_loss`), or the same backward started
   from the two roots L_D and L_G at once (`fused_step`), then one optimiser step.

The post's λ is replaced by per-group learning rates (`fused_optimizer`): λ scales G's step under
SGD, but RMSprop and Adam divide a gradient's scale away.

Per-sample critics can save the second critic forward on x: `genshop.shared_critic` serves steps
2 and 4 with one forward on x and gives the same gradients to rounding; `critic_calls="auto"`
(the default of `fused_loss` and `fused_step`) uses it where it applies. (`fused_*` names the
single-loss step: it fuses the two steps into one.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genshop import shared_critic
from genshop.errors import BadInputError
from genshop.losses import GanLoss, gradient_penalty, r1_penalty
from genshop.nets import PackedCritic
from genshop.shared_critic import is_per_sample


@contextmanager
def parameters_frozen(module: nn.Module) -> Iterator[None]:
    """D_ng: calls inside record no gradient path to `module`'s parameters (they act as
    constants), while gradients still flow through the module to its inputs.

    Equivalent to `torch.func.functional_call` with detached parameters, without the
    re-parametrisation cost; buffers (BatchNorm running statistics) update as usual.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def critic_outputs(D: nn.Module, real: Tensor, fake: Tensor, *,
                   per_sample: bool | None = None) -> tuple[Tensor, Tensor]:
    """(D(real), D(fake)), from one call on the concatenation when `is_per_sample(D)` (or
    `per_sample`, when the caller has looked already)."""
    if not (is_per_sample(D) if per_sample is None else per_sample):
        return D(real), D(fake)
    out = D(torch.cat([real, fake]))
    return out[: real.shape[0]], out[real.shape[0]:]


@dataclass
class Terms:
    """The quantities of one step: the critic loss L_D (with its penalties), the G loss L_G,
    the critic's outputs on the real and on the fake batch, and the unweighted penalties
    (None where not computed)."""

    d_loss: Tensor
    g_loss: Tensor | None
    d_real: Tensor
    d_fake: Tensor
    gp: Tensor | None = None
    r1: Tensor | None = None


def critic_loss(D: nn.Module, loss: GanLoss, real: Tensor, fake_ng: Tensor, d_real: Tensor,
                d_fake: Tensor, *, r1: float = 0.0) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(L_D + λ_gp·GP + r1·R1, GP, R1): the critic loss with the loss's gradient penalty
    (`losses.gradient_penalty`, when `loss.gp_weight` > 0) and the R1 penalty
    (`losses.r1_penalty` on `real`, when `r1` > 0, over the packs of a `nets.PackedCritic`);
    GP and R1 are None when not computed."""
    d_loss = loss.d_loss(d_real, d_fake)
    gp = r1_value = None
    if loss.gp_weight:
        gp = gradient_penalty(D, real, fake_ng)
        d_loss = d_loss + loss.gp_weight * gp
    if r1:
        r1_value = r1_penalty(D, real, pack=D.pack if isinstance(D, PackedCritic) else 1)
        d_loss = d_loss + r1 * r1_value
    return d_loss, gp, r1_value


def _terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
           frozen_critic: bool, shared: shared_critic.CriticTraits | None = None,
           per_sample: bool | None = None, r1: float = 0.0) -> Terms:
    """L_D(D, G_ng) and L_G from one G forward (steps 1–4 of the module docstring).

    `frozen_critic`: L_G = L_G(D_ng, G) with the real logits' gradient stopped (the single-loss
    step); else L_G(D, G) (the two-loss reference). `shared`: the critic's traits, to take the
    three critic outputs from one forward on G(z) (`shared_critic.shared_outputs`) instead of
    steps 2 and 4. `per_sample`: `is_per_sample(D)` if known.
    """
    fake = G(z)
    fake_ng = fake.detach()
    if shared is not None:
        d_real, d_fake_ng, d_fake = shared_critic.shared_outputs(D, real, fake, shared)
    else:
        d_real, d_fake_ng = critic_outputs(D, real, fake_ng, per_sample=per_sample)
    d_loss, gp, r1_value = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng, r1=r1)
    if shared is not None:
        g_loss = loss.g_loss(d_real.detach(), d_fake)
    elif frozen_critic:
        with parameters_frozen(D):
            g_loss = loss.g_loss(d_real.detach(), D(fake))
    else:
        g_loss = loss.g_loss(d_real, D(fake))
    return Terms(d_loss, g_loss, d_real, d_fake_ng, gp, r1_value)


CRITIC_CALLS = ("auto", "separate", "shared")


def fused_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
                critic_calls: str = "auto", r1: float = 0.0) -> Terms:
    """The terms of the single-loss step, critic calls arranged by `critic_calls`:

    - "separate": the plain form of the module docstring, for any critic;
    - "shared": one critic forward on G(z) serves L_D and L_G (`genshop.shared_critic`), for
      critics without stateful layers (`is_per_sample`);
    - "auto": "shared" for per-sample critics whose rows are independent, else "separate".
    """
    if critic_calls not in CRITIC_CALLS:
        raise BadInputError(f"unknown critic_calls {critic_calls!r}; choose one of "
                            f"{', '.join(CRITIC_CALLS)}")
    if critic_calls == "separate":
        return _terms(G, D, loss, real, z, frozen_critic=True, r1=r1)
    traits = shared_critic.critic_traits(D)
    if critic_calls == "shared" and not traits.per_sample:
        raise BadInputError("critic_calls='shared' needs a critic without BatchNorm, dropout "
                            "or spectral norm in training mode (see steps.is_per_sample); "
                            "leave it at 'auto' to choose automatically")
    shared = traits if critic_calls == "shared" or traits.shareable else None
    return _terms(G, D, loss, real, z, frozen_critic=True, shared=shared,
                  per_sample=traits.per_sample, r1=r1)


def zero_valued(x: Tensor) -> Tensor:
    """x − stop_gradient(x): exactly 0 in value, the gradient of x."""
    return x - x.detach()


def separate_losses(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
                    r1: float = 0.0) -> tuple[Tensor, Tensor]:
    """(L_D(D, G_ng), L_G(D, G)) from one G forward: the two-loss reference.

    Use ∇_D of the first and ∇_G of the second (the second also reaches D's parameters).
    L_D includes the loss's gradient penalty and, with `r1` > 0, r1 times the R1 penalty.
    """
    t = _terms(G, D, loss, real, z, frozen_critic=False, r1=r1)
    return t.d_loss, t.g_loss


def fused_loss(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
               critic_calls: str = "auto", r1: float = 0.0) -> Tensor:
    """L = L_D(D, G_ng) + L_G(D_ng, G) − stop_gradient(L_G(D_ng, G)), from one G forward.

    One backward leaves ∇_D L_D in D's parameters and ∇_G L_G in G's, as `separate_losses` for
    any critic (BatchNorm, dropout, spectral norm, gradient penalty, R1); the value is L_D's.
    `critic_calls` arranges the critic calls (`fused_terms`); the gradients are the same either
    way, to rounding. `r1` > 0 adds r1 times the R1 penalty to L_D.
    """
    t = fused_terms(G, D, loss, real, z, critic_calls=critic_calls, r1=r1)
    return t.d_loss + zero_valued(t.g_loss)


def subtraction_loss(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor,
                     z: Tensor) -> Tensor:
    """The post's construction L = L_D(D, G_ng) + L_G(D, G) − L_G(D, G_ng), with λ = 1.

    Exact for deterministic critics; with dropout the two critic calls on the fake batch draw
    different masks, so the bracket is not zero and leaks gradient into D. Kept for comparison.
    """
    t = _terms(G, D, loss, real, z, frozen_critic=False)
    return t.d_loss + t.g_loss - loss.g_loss(t.d_real, t.d_fake)


SingleLoss = Callable[[nn.Module, nn.Module, GanLoss, Tensor, Tensor], Tensor]


def gradient_gap(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor,
                 construction: SingleLoss = fused_loss, seed: int = 0) -> dict[str, float]:
    """How far one backward of `construction` is from the two-loss gradients.

    Runs `separate_losses` and `construction` on deep copies of G and D with the global RNG
    seeded to `seed` before each (same dropout masks and penalty points), leaving the caller's
    nets and RNG untouched. Returns max |Δ∇_D| (vs ∇_D L_D), max |Δ∇_G| (vs ∇_G L_G) and
    |value − L_D| as d_grad, g_grad, value.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
        d_loss, g_loss = separate_losses(G1, D1, loss, real, z)
        ref_d = _grads(d_loss, D1, retain_graph=True)
        ref_g = _grads(g_loss, G1)
        torch.manual_seed(seed)
        G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
        total = construction(G2, D2, loss, real, z)
        got_d, got_g = _grads(total, D2, retain_graph=True), _grads(total, G2)
    return {"d_grad": _max_abs_diff(got_d, ref_d), "g_grad": _max_abs_diff(got_g, ref_g),
            "value": abs((total - d_loss).item())}


def _grads(value: Tensor, net: nn.Module, retain_graph: bool = False) -> list[Tensor]:
    return list(torch.autograd.grad(value, list(net.parameters()), retain_graph=retain_graph,
                                    materialize_grads=True))


def _max_abs_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def fused_optimizer(G: nn.Module, D: nn.Module, optimizer: type[torch.optim.Optimizer],
                    lr_d: float, lr_g: float, **options) -> torch.optim.Optimizer:
    """One optimiser over both nets for the single-loss step: D's parameters, then G's; one
    parameter group when lr_d == lr_g (one update call instead of two), else a group each.

    Per-group learning rates replace the post's λ: under SGD, λ·∇_G is the same as lr_g = λ·lr;
    under RMSprop and Adam the update is invariant to the gradient's scale, so only lr_g changes
    G's step size.
    """
    if lr_d == lr_g:
        return optimizer([*D.parameters(), *G.parameters()], lr=lr_d, **options)
    return optimizer([{"params": list(D.parameters()), "lr": lr_d},
                      {"params": list(G.parameters()), "lr": lr_g}], **options)


@torch.no_grad()
def summary(t: Terms) -> dict[str, float]:
    """A step's logged numbers: d_loss (the critic loss minimised, penalties included), g_loss
    (where there is one), d_real and d_fake (mean critic outputs), and gp and r1 (unweighted)
    where computed."""
    out = {"d_loss": t.d_loss.item()}
    if t.g_loss is not None:
        out["g_loss"] = t.g_loss.item()
    out["d_real"], out["d_fake"] = t.d_real.mean().item(), t.d_fake.mean().item()
    if t.gp is not None:
        out["gp"] = t.gp.item()
    if t.r1 is not None:
        out["r1"] = t.r1.item()
    return out


def _critic_update(G: nn.Module, D: nn.Module, loss: GanLoss, opt_d: torch.optim.Optimizer,
                   real: Tensor, z: Tensor, r1: float) -> Terms:
    with torch.no_grad():
        fake = G(z)
    d_real, d_fake = critic_outputs(D, real, fake)
    d_loss, gp, r1_value = critic_loss(D, loss, real, fake, d_real, d_fake, r1=r1)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return Terms(d_loss, None, d_real, d_fake, gp, r1_value)


def critic_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt_d: torch.optim.Optimizer,
                real: Tensor, z: Tensor, *, r1: float = 0.0) -> dict[str, float]:
    """One D update on (real, G(z)), G(z) without autograd, minimising L_D (with the loss's
    gradient penalty, and r1 times the R1 penalty when `r1` > 0). Returns d_loss, d_real,
    d_fake, and gp and r1 where computed."""
    return summary(_critic_update(G, D, loss, opt_d, real, z, r1))


def alternating_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt_d: torch.optim.Optimizer,
                     opt_g: torch.optim.Optimizer, real: Tensor, z_d: Tensor, z_g: Tensor, *,
                     r1: float = 0.0) -> dict[str, float]:
    """One D step on (real, G(z_d)), then one G step on G(z_g) against the *updated* D.

    The D step is `critic_step` (with `r1`). D's parameters are frozen during the G step.
    Relativistic and saddle f-GAN G losses re-evaluate D(real) with the updated D. Returns
    `summary`'s keys: d_loss, g_loss, d_real and d_fake of the D step, gp and r1 where computed.
    """
    t = _critic_update(G, D, loss, opt_d, real, z_d, r1)
    fake = G(z_g)
    with parameters_frozen(D):
        real_for_g = D(real) if loss.g_uses_real else t.d_real.detach()
        t.g_loss = loss.g_loss(real_for_g, D(fake))
    opt_g.zero_grad(set_to_none=True)
    t.g_loss.backward()
    opt_g.step()
    return summary(t)


def fused_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt: torch.optim.Optimizer,
               real: Tensor, z: Tensor, *, critic_calls: str = "auto",
               r1: float = 0.0) -> dict[str, float]:
    """The single-loss step: one backward and one step of `opt` (see `fused_optimizer`).

    The backward starts from the two roots L_D and L_G, seeded with 1 each: the gradients of
    `fused_loss`'s L_D + L_G − stop_gradient(L_G), without recording the subtraction.
    Simultaneous: D and G both move from gradients taken at the same point (G against the old
    D), with one noise batch z, one G forward and one backward. `r1` > 0 adds r1 times the R1
    penalty to L_D. Returns `summary`'s keys, as `alternating_step` (g_loss is the G loss's
    value, not the zero-valued term of `fused_loss`).
    """
    t = fused_terms(G, D, loss, real, z, critic_calls=critic_calls, r1=r1)
    opt.zero_grad(set_to_none=True)
    torch.autograd.backward([x for x in (t.d_loss, t.g_loss) if x.requires_grad])
    opt.step()
    return summary(t)
