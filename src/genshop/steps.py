"""GAN update steps: the usual alternating step and the single-loss (fused) step.

Post: "巧断梯度：单个loss实现GAN模型" (Clever gradient stopping: a GAN with a single loss),
Scientific Spaces, kexue.fm archives/6387. The post builds one scalar whose gradient is the D-loss
gradient for D and the G-loss gradient for G, with G_ng(z) = stop_gradient(G(z)):

    L = L_D(D, G_ng) + λ·[L_G(D, G) − L_G(D, G_ng)].

The bracket is zero in value, and its D-gradient cancels — but only when both critic calls compute
the same function: a stochastic critic (dropout) draws two different masks and the cancellation
breaks (`subtraction_loss` keeps the post's form to show it). `fused_loss` gets the same gradients
exactly for any critic by stopping the gradient on the critic's *parameters* instead:

    L = L_D(D, G_ng) + [L_G(D_ng, G) − stop_gradient(L_G(D_ng, G))],

where D_ng is the critic with its parameters excluded from autograd. The bracket is again zero in
value (so L equals the D loss, as the post notes for logging), only G gets its gradient, and every
critic call happens once, in the same order as in `separate_losses`, so dropout masks, BatchNorm
batch statistics and running averages are the same. λ is replaced by per-group learning rates
(`fused_optimizer`): λ scales G's learning rate under SGD, but RMSprop and Adam divide it away.

Critic calls (`critic_calls`) are arranged as: "separate", D(x_r) and D(G_ng(z)) [one call on
the concatenation when the critic treats samples independently, see `is_per_sample`], then the
gradient penalty's D(x̂) if the loss has one, then D_ng(G(z)); any critic. The G loss reuses the
real logits D(x_r) with their gradient stopped. For per-sample critics two arrangements with
fewer calls give the same gradients to rounding:
- "batched" (default for MLP critics): the post's own bracket L_G(D, G) − L_G(D, G_ng), with
  D(cat[x_r, G_ng(z), G(z)]) in one call; the bracket's D-gradient cancels because both rows
  pass through the same deterministic function.
- "shared" (default for convolutional critics): one forward D(G(z)) for both terms. Backward
  through D is linear in the gradient u at its output, and input row i receives J_iᵀu_i: one
  backward chain seeded with u_D = ∂L_D/∂D(G(z)) gives D's parameter gradient and J_iᵀu_D,i,
  which rescaled row by row by u_G,i / u_D,i is G's input gradient J_iᵀu_G,i. Where some u_D,i
  vanishes (hinge losses beyond the margin) a second chain seeded with u_G gives it instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import _SpectralNorm as _SpectralNormParametrization
from torch.nn.utils.spectral_norm import SpectralNorm as _SpectralNormHook

from genshop.errors import BadInputError
from genshop.losses import GanLoss, gradient_penalty

_BATCH_COUPLED_OR_RANDOM = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd,
                            nn.AlphaDropout, nn.FeatureAlphaDropout)


def is_per_sample(D: nn.Module) -> bool:
    """True when no BatchNorm, dropout or spectral-norm layer of D is in training mode.

    Then D is a fixed function applied to each sample alone, D(cat[a, b]) = cat[D(a), D(b)], and
    one call may serve both batches. Spectral norm counts as stateful: in training mode every call
    runs a power iteration that changes the weight the next call uses. Custom layers that mix
    samples or draw random numbers are not detected: put such a critic in a module that contains
    a dropout or BatchNorm layer, or keep it out of training mode.
    """
    return not any(m.training and (isinstance(m, _BATCH_COUPLED_OR_RANDOM) or _spectral(m))
                   for m in D.modules())


def _spectral(m: nn.Module) -> bool:
    """A layer under `nn.utils.parametrizations.spectral_norm` or the older hook version."""
    if isinstance(m, _SpectralNormParametrization):
        return True
    return any(isinstance(h, _SpectralNormHook) for h in m._forward_pre_hooks.values())


@contextmanager
def parameters_frozen(module: nn.Module) -> Iterator[None]:
    """Calls inside record no gradient path to `module`'s parameters (they act as constants).

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


def critic_outputs(D: nn.Module, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """(D(real), D(fake)), from one call on the concatenation when `is_per_sample(D)`."""
    if not is_per_sample(D):
        return D(real), D(fake)
    out = D(torch.cat([real, fake]))
    return out[: real.shape[0]], out[real.shape[0]:]


def critic_loss(D: nn.Module, loss: GanLoss, real: Tensor, fake_ng: Tensor, d_real: Tensor,
                d_fake: Tensor) -> tuple[Tensor, Tensor | None]:
    """(L_D + λ·GP, GP): the critic loss with the loss's gradient penalty, if it has one."""
    d_loss = loss.d_loss(d_real, d_fake)
    if not loss.gp_weight:
        return d_loss, None
    penalty = gradient_penalty(D, real, fake_ng)
    return d_loss + loss.gp_weight * penalty, penalty


@dataclass
class _Terms:
    d_loss: Tensor
    g_loss: Tensor
    d_real: Tensor
    d_fake: Tensor
    penalty: Tensor | None
    g_term: Tensor | None = None  # what carries G's gradient, when not g_loss itself


class _SplitGradientCall(torch.autograd.Function):
    """y = D(x) computed once and returned twice: gradients reaching the first copy (u_D) go to
    D's parameters only, gradients reaching the second (u_G) go to x only.

    Equal to (D(x.detach()), D_ng(x)) for a per-sample deterministic critic, with one critic
    forward instead of two. Backward is linear in the gradient seeding it, and for a critic
    whose output row i depends on input row i alone, row i of the input gradient is J_iᵀu_i:
    so when D gives one number a sample and no u_D,i (nearly) vanishes, one chain seeded with
    u_D yields the parameter gradient and J_iᵀu_D,i, rescaled to J_iᵀu_G,i. Otherwise (hinge
    losses beyond their margin, packed critics) the parameter chain and the input chain run
    separately.
    """

    @staticmethod
    def forward(ctx, D: nn.Module, rows_independent: bool, x: Tensor,
                *params: Tensor) -> tuple[Tensor, Tensor]:
        x_leaf = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            y = D(x_leaf)
        ctx.graph = (y, x_leaf, params, rows_independent)
        out = y.detach()
        return out, out.clone()

    @staticmethod
    def backward(ctx, grad_params_side: Tensor, grad_input_side: Tensor):
        y, x_leaf, params, rows_independent = ctx.graph  # kept while the outer graph is
        ratio = (_row_ratio(grad_input_side, grad_params_side, x_leaf.dim())
                 if rows_independent and x_leaf.requires_grad and params else None)
        if ratio is not None:
            *grad_params, grad_x = torch.autograd.grad(y, [*params, x_leaf], grad_params_side,
                                                       retain_graph=True, materialize_grads=True)
            return (None, None, grad_x * ratio, *grad_params)
        grad_params = torch.autograd.grad(y, params, grad_params_side, retain_graph=True,
                                          materialize_grads=True) if params else ()
        grad_x = (torch.autograd.grad(y, x_leaf, grad_input_side, retain_graph=True)[0]
                  if x_leaf.requires_grad else None)
        return (None, None, grad_x, *grad_params)


def _row_ratio(u_g: Tensor, u_d: Tensor, dim: int) -> Tensor | None:
    """u_G,i / u_D,i shaped to scale the rows of a `dim`-dimensional input, or None unless each
    sample has one output and every |u_D,i| exceeds √(smallest normal float)."""
    n = u_d.shape[0] if u_d.dim() else 0
    if u_d.numel() != n or not bool((u_d.abs() > torch.finfo(u_d.dtype).tiny ** 0.5).all()):
        return None
    return (u_g / u_d).reshape(n, *([1] * (dim - 1)))


def _rows_independent(D: nn.Module) -> bool:
    """No module of D declares `row_independent = False` (as `families.gan.PackedCritic` does:
    a pack's logit depends on m samples)."""
    return all(getattr(m, "row_independent", True) for m in D.modules())


CRITIC_CALLS = ("auto", "separate", "batched", "shared")


def critic_calls_for(D: nn.Module) -> str:
    """What `critic_calls="auto"` picks for D: "separate" unless D is per-sample
    (`is_per_sample`), then "shared" for a critic with a convolution layer, else "batched".

    In benchmarks/fused_vs_alternating.py (batch 64, CPU) "shared" pays for the 28×28 DCGAN
    critic, whose convolutions dominate the time, and "batched" for the small 2-D MLP critic,
    whose time is mostly per-operation overhead.
    """
    if not is_per_sample(D):
        return "separate"
    return ("shared" if any(isinstance(m, nn.modules.conv._ConvNd) for m in D.modules())
            else "batched")


def _terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
           frozen_critic: bool) -> _Terms:
    """L_D(D, G_ng) and L_G from one G forward, critic calls in the order the module gives.

    `frozen_critic`: L_G = L_G(D_ng, G) with stopped real logits; else L_G(D, G).
    """
    fake = G(z)
    fake_ng = fake.detach()
    d_real, d_fake_ng = critic_outputs(D, real, fake_ng)
    d_loss, penalty = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng)
    if frozen_critic:
        with parameters_frozen(D):
            g_loss = loss.g_loss(d_real.detach(), D(fake))
    else:
        g_loss = loss.g_loss(d_real, D(fake))
    return _Terms(d_loss, g_loss, d_real, d_fake_ng, penalty)


def _shared_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor) -> _Terms:
    """critic_calls="shared": D(x_r), then one forward on G(z) for both terms through
    `_SplitGradientCall`."""
    fake = G(z)
    fake_ng = fake.detach()
    d_real = D(real)
    d_fake_ng, d_fake = _SplitGradientCall.apply(
        D, _rows_independent(D), fake, *(p for p in D.parameters() if p.requires_grad))
    d_loss, penalty = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng)
    return _Terms(d_loss, loss.g_loss(d_real.detach(), d_fake), d_real, d_fake_ng, penalty)


def _batched_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor,
                   z: Tensor) -> _Terms:
    """critic_calls="batched": the post's bracket L_G(D, G) − L_G(D, G_ng) in one critic call.

    D(cat[x_r, G_ng(z), G(z)]) on a per-sample critic: the G_ng(z) and G(z) rows are equal and
    pass through the same function, so the two G terms' parameter gradients cancel (to rounding,
    ~1e-16 relative in float64) and G's gradient comes from the G(z) rows; L_D reads the G_ng(z)
    rows. One critic call on 3 batches instead of one on 2 and one on 1.
    """
    fake = G(z)
    fake_ng = fake.detach()
    n, m = real.shape[0], fake.shape[0]
    d_real, d_fake_ng, d_fake = D(torch.cat([real, fake_ng, fake])).split([n, m, m])
    d_loss, penalty = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng)
    real_ng = d_real.detach()
    g_loss = loss.g_loss(real_ng, d_fake)
    return _Terms(d_loss, g_loss, d_real, d_fake_ng, penalty,
                  g_term=g_loss - loss.g_loss(real_ng, d_fake_ng))


def _fused_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor,
                 critic_calls: str) -> _Terms:
    if critic_calls not in CRITIC_CALLS:
        raise BadInputError(f"unknown critic_calls {critic_calls!r}; choose one of "
                            f"{', '.join(CRITIC_CALLS)}")
    calls = critic_calls_for(D) if critic_calls == "auto" else critic_calls
    if critic_calls != "auto" and calls != "separate" and not is_per_sample(D):
        raise BadInputError(f"critic_calls={calls!r} needs a critic without BatchNorm, dropout "
                            "or spectral norm in training mode (see steps.is_per_sample); "
                            "leave it at 'auto' to choose automatically")
    if calls == "shared":
        return _shared_terms(G, D, loss, real, z)
    if calls == "batched":
        return _batched_terms(G, D, loss, real, z)
    return _terms(G, D, loss, real, z, frozen_critic=True)


def _single_loss(t: _Terms) -> Tensor:
    """L_D + [g − stop_gradient(g)], g the G term: the value is L_D's, the gradients both."""
    return t.d_loss + _zero_valued(t.g_loss if t.g_term is None else t.g_term)


def _zero_valued(x: Tensor) -> Tensor:
    """x − stop_gradient(x): exactly 0 in value, the gradient of x."""
    return x - x.detach()


def separate_losses(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor,
                    z: Tensor) -> tuple[Tensor, Tensor]:
    """(L_D(D, G_ng), L_G(D, G)) from one G forward: the two-loss reference.

    Use ∇_D of the first and ∇_G of the second (the second also reaches D's parameters).
    """
    t = _terms(G, D, loss, real, z, frozen_critic=False)
    return t.d_loss, t.g_loss


def fused_loss(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
               critic_calls: str = "auto") -> Tensor:
    """L = L_D(D, G_ng) + [L_G(D_ng, G) − stop_gradient(L_G(D_ng, G))], one G forward.

    One backward leaves ∇_D L_D in D's parameters and ∇_G L_G in G's, exactly as
    `separate_losses` for any critic (BatchNorm, dropout, gradient penalty); the value is L_D.
    `critic_calls` arranges the critic calls: "separate" (D on [x_r, G_ng(z)], then D_ng on
    G(z)), and for per-sample critics "batched" (`_batched_terms`) or "shared" (one forward on
    G(z), `_SplitGradientCall`); "auto" picks by `critic_calls_for(D)`. The gradients are the
    same each way, to rounding.
    """
    return _single_loss(_fused_terms(G, D, loss, real, z, critic_calls))


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
    """One optimiser over both nets with per-group learning rates (D group first, then G).

    This replaces the post's λ: under SGD, λ·∇_G is the same as lr_g = λ·lr; under RMSprop and
    Adam the update is invariant to the gradient's scale, so only lr_g changes G's step size.
    """
    return optimizer([{"params": list(D.parameters()), "lr": lr_d},
                      {"params": list(G.parameters()), "lr": lr_g}], **options)


def _summary(d_loss: Tensor, g_loss: Tensor, d_real: Tensor, d_fake: Tensor,
             penalty: Tensor | None) -> dict[str, float]:
    out = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_real": d_real.mean().item(),
           "d_fake": d_fake.mean().item()}
    if penalty is not None:
        out["gp"] = penalty.item()
    return out


def critic_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt_d: torch.optim.Optimizer,
                real: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One D update on (real, G(z)), G(z) without autograd: (d_loss, d_real, d_fake, gp)."""
    with torch.no_grad():
        fake = G(z)
    d_real, d_fake = critic_outputs(D, real, fake)
    d_loss, penalty = critic_loss(D, loss, real, fake, d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return d_loss, d_real, d_fake, penalty


def alternating_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt_d: torch.optim.Optimizer,
                     opt_g: torch.optim.Optimizer, real: Tensor, z_d: Tensor,
                     z_g: Tensor) -> dict[str, float]:
    """One D step on (real, G(z_d)), then one G step on G(z_g) against the *updated* D.

    G(z_d) runs without autograd; D's parameters are frozen during the G step. Relativistic and
    saddle f-GAN G losses re-evaluate D(real) with the updated D. Returns d_loss (with the
    penalty), g_loss, d_real and d_fake (mean logits of the D step) and gp when the loss has one.
    """
    d_loss, d_real, d_fake, penalty = critic_step(G, D, loss, opt_d, real, z_d)
    fake = G(z_g)
    with parameters_frozen(D):
        real_for_g = D(real) if loss.g_uses_real else d_real.detach()
        g_loss = loss.g_loss(real_for_g, D(fake))
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return _summary(d_loss, g_loss, d_real, d_fake, penalty)


def fused_step(G: nn.Module, D: nn.Module, loss: GanLoss, opt: torch.optim.Optimizer,
               real: Tensor, z: Tensor, *, critic_calls: str = "auto") -> dict[str, float]:
    """One backward of `fused_loss` and one step of `opt` (see `fused_optimizer`) over both nets.

    Simultaneous: D and G both move from gradients taken at the same point (G against the old D),
    with one noise batch z, one G forward and one backward. Returns the same keys as
    `alternating_step` (g_loss is the G loss's value, not the zero-valued fused term).
    """
    t = _fused_terms(G, D, loss, real, z, critic_calls)
    opt.zero_grad(set_to_none=True)
    _single_loss(t).backward()
    opt.step()
    return _summary(t.d_loss, t.g_loss, t.d_real, t.d_fake, t.penalty)
