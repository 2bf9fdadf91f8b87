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

Critic calls (`critic_calls`) are arranged as:
- "separate": D(x_r) and D(G_ng(z)) [one call on the concatenation when the critic treats
  samples independently, see `is_per_sample`], then the gradient penalty's D(x̂) if the loss has
  one, then D_ng(G(z)); for any critic. The G loss reuses the real logits D(x_r) with their
  gradient stopped.
- "shared" (the default for per-sample critics): one critic forward on G(z) serves both terms.
  Backward through D is linear in the gradient u at its output, and input row i receives J_iᵀu_i.
  So the output side lets only u_D = ∂L_D/∂D(G(z)) into D (D's parameters get exactly ∇L_D) and
  keeps u_G = ∂L_G/∂D(G(z)); the input side rescales each arriving J_iᵀu_D,i by u_G,i / u_D,i into
  G's J_iᵀu_G,i. Rows where u_D,i vanishes (a hinge critic beyond its margin) get J_iᵀu_G,i from
  a backward seeded with u_G,i instead (`_shared_terms`: those rows recomputed, or, for a
  convolutional critic with most rows beyond, a second chain over a kept graph). Same
  gradients as "separate", to rounding, with one critic forward, one G forward and one
  backward: the post's saving in full.
"""

from __future__ import annotations

import copy
import functools
import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

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
    return _critic_traits(D).per_sample


class _CriticTraits(NamedTuple):
    per_sample: bool  # see is_per_sample
    rows_independent: bool  # no module declares `row_independent = False` on its class
    convolutional: bool  # has a convolution layer


def _critic_traits(D: nn.Module) -> _CriticTraits:
    """What the steps need to know of D, in one walk over its modules (it runs every step).

    Rows are independent unless a module's class declares `row_independent = False` (as
    `families.gan.PackedCritic` does: a pack's logit depends on m samples). What a module's class
    says is looked up once per class (`_class_traits`); per module the walk reads only its
    training flag and, if it has any, its forward pre-hooks.
    """
    per_sample = rows_independent = True
    convolutional = False
    stack = [D]
    while stack:  # nn.Module.modules() without its names and memo: 4× faster on small nets
        m = stack.pop()
        if m is None:  # an empty slot (`module.name = None`), which modules() skips too
            continue
        stack.extend(m._modules.values())
        stateful, independent, conv = _class_traits(type(m))
        if m.training and (stateful or (m._forward_pre_hooks and _spectral_hook(m))):
            per_sample = False
        rows_independent &= independent
        convolutional |= conv
    return _CriticTraits(per_sample, rows_independent, convolutional)


_CLASS_TRAITS: weakref.WeakKeyDictionary[type, tuple[bool, bool, bool]] = \
    weakref.WeakKeyDictionary()  # weak: parametrize makes a class per spectral-normed module


def _class_traits(cls: type) -> tuple[bool, bool, bool]:
    """(stateful in training mode, rows independent, convolutional) for modules of class `cls`.

    Stateful: BatchNorm, dropout, or the parametrization of `parametrizations.spectral_norm`.
    """
    traits = _CLASS_TRAITS.get(cls)
    if traits is None:
        stateful = issubclass(cls, (*_BATCH_COUPLED_OR_RANDOM, _SpectralNormParametrization))
        traits = _CLASS_TRAITS[cls] = (stateful, getattr(cls, "row_independent", True),
                                       issubclass(cls, nn.modules.conv._ConvNd))
    return traits


def _spectral_hook(m: nn.Module) -> bool:
    """A layer under the older hook version, `nn.utils.spectral_norm`."""
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


def critic_outputs(D: nn.Module, real: Tensor, fake: Tensor, *,
                   per_sample: bool | None = None) -> tuple[Tensor, Tensor]:
    """(D(real), D(fake)), from one call on the concatenation when `is_per_sample(D)` (or
    `per_sample`, when the caller has looked already)."""
    if not (is_per_sample(D) if per_sample is None else per_sample):
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


class _GradientLink:
    """Carries, within one backward, the row ratios u_G,i / u_D,i from the critic's output on
    x = G(z) (set by `_SplitSeeds`) to its input (`rescale`, a gradient hook on G(z)).

    Holds D and x (detached) to recompute the rows that have no ratio (all of them unless
    `rows_independent`: then an output row may depend on several input rows).
    """

    def __init__(self, D: nn.Module, x: Tensor, rows_independent: bool):
        self.D, self.x, self.redo_all = D, x, not rows_independent
        self.row_shape = (-1,) + (1,) * (x.dim() - 1)  # a ratio per row, broadcast over a row
        self.ratio: Tensor | None = None
        self.redo: Tensor | None = None  # indices of the rows to recompute; None: none
        self.u_g: Tensor | None = None

    def set(self, u_g: Tensor, u_d: Tensor) -> None:
        """Ratios where |u_D,i| > √(smallest normal float) and D gives one number a sample."""
        n, self.redo, self.u_g = u_d.shape[0], None, None
        if self.redo_all or u_d.numel() != n:
            self.ratio, self.redo, self.u_g = torch.zeros_like(u_d), torch.arange(n), u_g
            return
        tiny = _tiny(u_d.dtype)
        if torch.linalg.vector_norm(u_d, -math.inf).item() > tiny:  # min_i |u_D,i|
            self.ratio = u_g / u_d
            return
        valid = u_d.abs() > tiny
        self.ratio = torch.where(valid, u_g, 0) / torch.where(valid, u_d, 1)
        self.redo, self.u_g = (~valid).reshape(n).nonzero().reshape(-1), u_g

    def mostly_rescaled(self) -> bool:
        """At most half the rows lack a ratio: recomputing those rows (a forward and a backward
        of that many) costs less than a second backward chain over all of them."""
        return self.redo is None or 2 * self.redo.numel() <= self.ratio.shape[0]

    def scale(self, grad: Tensor) -> Tensor:
        """Row i of `grad` times u_G,i / u_D,i (0 on rows without a ratio)."""
        return grad * self.ratio.view(self.row_shape)

    def rescale(self, grad: Tensor) -> Tensor:
        """J_iᵀu_D,i arriving at row i of x → J_iᵀu_G,i: rescaled, or on rows without a ratio
        recomputed by a backward of D(x_i) seeded with u_G,i (which reaches x only)."""
        grad = self.scale(grad)
        if self.redo is not None:
            grad[self.redo] = _input_gradient(self.D, self.x[self.redo], self.u_g[self.redo])
        return grad


@functools.cache
def _tiny(dtype: torch.dtype) -> float:
    """√(smallest normal number) of `dtype`: below it a ratio u_G / u_D may overflow."""
    return torch.finfo(dtype).tiny ** 0.5


class _SplitSeeds(torch.autograd.Function):
    """D(cat[x_r, x]) → (y_r, y_D, y_G): the real rows' logits and two copies of the fake rows'.
    Backward passes the gradients at y_r and y_D (u_D) on into the critic and leaves u_G (at y_G)
    in the link as a row ratio. (One autograd node where two slices would record two.)"""

    @staticmethod
    def forward(ctx, y: Tensor, n: int, link: _GradientLink) -> tuple[Tensor, Tensor, Tensor]:
        ctx.link = link
        return y[:n], y[n:], y[n:]

    @staticmethod
    def backward(ctx, u_r: Tensor, u_d: Tensor, u_g: Tensor):
        ctx.link.set(u_g, u_d)
        return torch.cat([u_r, u_d]), None, None


class _NestedSharedCall(torch.autograd.Function):
    """(y_D, y_G) = D(x) computed once on a graph of its own and returned twice: gradients
    reaching y_D (u_D) go to D's parameters only, those reaching y_G (u_G) go to x only.

    Backward, by the rows that have a ratio (`_GradientLink`):
    - all or most: one chain over the kept inner graph seeded with u_D gives the parameter
      gradient and J_iᵀu_D,i, rescaled to J_iᵀu_G,i; the few rows without a ratio recomputed;
    - fewer than half: a parameter chain seeded with u_D and an input chain seeded with u_G,
      both over the kept graph (no forward is recomputed);
    - none because u_D is zero (a hinge critic with every fake beyond its margin): the input
      chain alone, as a zero seed gives the parameters a zero gradient.
    The inner graph lives as long as the outer one, which may be run twice.
    """

    @staticmethod
    def forward(ctx, D: nn.Module, link: _GradientLink, x: Tensor,
                *params: Tensor) -> tuple[Tensor, Tensor]:
        x_leaf = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            y = D(x_leaf)
        ctx.graph = (y, x_leaf, params, link)
        out = y.detach()
        return out, out.clone()

    @staticmethod
    def backward(ctx, u_d: Tensor, u_g: Tensor):
        y, x_leaf, params, link = ctx.graph
        link.set(u_g, u_d)
        # an all-zero seed (a hinge critic with every fake row beyond its margin) gives zero
        # parameter gradients: skip that chain; u_D has no zero where every row has a ratio
        want_params = bool(params) and (link.redo is None or bool(u_d.any()))
        want_x = x_leaf.requires_grad
        if want_params and want_x and link.mostly_rescaled():
            *grad_params, grad_x = torch.autograd.grad(y, [*params, x_leaf], u_d,
                                                       retain_graph=True, materialize_grads=True)
            return (None, None, link.rescale(grad_x), *grad_params)
        grad_params = (torch.autograd.grad(y, params, u_d, retain_graph=True,
                                           materialize_grads=True)
                       if want_params else (None,) * len(params))
        grad_x = (torch.autograd.grad(y, x_leaf, u_g, retain_graph=True)[0]
                  if want_x else None)
        return (None, None, grad_x, *grad_params)


def _input_gradient(D: nn.Module, x: Tensor, seed: Tensor) -> Tensor:
    """(∂D(x)/∂x)ᵀ·seed, without touching the gradients of D's parameters."""
    with torch.enable_grad():
        x_leaf = x.detach().requires_grad_()
        return torch.autograd.grad(D(x_leaf), x_leaf, seed)[0]


CRITIC_CALLS = ("auto", "separate", "shared")


def critic_calls_for(D: nn.Module) -> str:
    """What `critic_calls="auto"` picks for D: "shared" for a per-sample critic (`is_per_sample`)
    whose output rows each depend on one input row (`_critic_traits`), else "separate"."""
    return _auto_calls(_critic_traits(D))


def _auto_calls(traits: _CriticTraits) -> str:
    return "shared" if traits.per_sample and traits.rows_independent else "separate"


def _terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor, *,
           frozen_critic: bool, per_sample: bool | None = None) -> _Terms:
    """L_D(D, G_ng) and L_G from one G forward, critic calls in the order the module gives.

    `frozen_critic`: L_G = L_G(D_ng, G) with stopped real logits; else L_G(D, G).
    `per_sample`: `is_per_sample(D)` if known (see `critic_outputs`).
    """
    fake = G(z)
    fake_ng = fake.detach()
    d_real, d_fake_ng = critic_outputs(D, real, fake_ng, per_sample=per_sample)
    d_loss, penalty = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng)
    if frozen_critic:
        with parameters_frozen(D):
            g_loss = loss.g_loss(d_real.detach(), D(fake))
    else:
        g_loss = loss.g_loss(d_real, D(fake))
    return _Terms(d_loss, g_loss, d_real, d_fake_ng, penalty)


def _shared_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor,
                  traits: _CriticTraits) -> _Terms:
    """critic_calls="shared": one critic forward on G(z) serves L_D and L_G.

    Only u_D = ∂L_D/∂D(G(z)) reaches D's parameters, so they get ∇L_D; the J_iᵀu_D,i arriving
    at G(z) are turned into G's J_iᵀu_G,i (`_GradientLink`). Two ways, by the critic's cost:
    - no convolution (small, overhead-bound critics): one call D(cat[x_r, G(z)]) in the outer
      graph, `_SplitSeeds` at its output and a gradient hook on G(z); rows without a ratio are
      recomputed.
    - convolutional (compute-bound): D(x_r) on its own, so the real images need no input
      gradient, and `_NestedSharedCall` on G(z), which recomputes rows without a ratio only
      when they are few, and otherwise runs a second backward chain over its kept graph.
    """
    fake = G(z)
    fake_ng = fake.detach()
    link = _GradientLink(D, fake_ng, traits.rows_independent)
    if traits.convolutional:
        params = (p for p in D.parameters() if p.requires_grad)
        d_real, (d_fake_ng, d_fake) = D(real), _NestedSharedCall.apply(D, link, fake, *params)
    else:
        if fake.requires_grad:
            fake.register_hook(link.rescale)
        n = real.shape[0]
        out = D(torch.cat([real, fake]))
        d_real, d_fake_ng, d_fake = _SplitSeeds.apply(out, n, link)
    d_loss, penalty = critic_loss(D, loss, real, fake_ng, d_real, d_fake_ng)
    return _Terms(d_loss, loss.g_loss(d_real.detach(), d_fake), d_real, d_fake_ng, penalty)


def _fused_terms(G: nn.Module, D: nn.Module, loss: GanLoss, real: Tensor, z: Tensor,
                 critic_calls: str) -> _Terms:
    if critic_calls not in CRITIC_CALLS:
        raise BadInputError(f"unknown critic_calls {critic_calls!r}; choose one of "
                            f"{', '.join(CRITIC_CALLS)}")
    traits = _critic_traits(D)
    if critic_calls == "auto":
        critic_calls = _auto_calls(traits)
    elif critic_calls == "shared" and not traits.per_sample:
        raise BadInputError("critic_calls='shared' needs a critic without BatchNorm, dropout "
                            "or spectral norm in training mode (see steps.is_per_sample); "
                            "leave it at 'auto' to choose automatically")
    if critic_calls == "shared":
        return _shared_terms(G, D, loss, real, z, traits)
    return _terms(G, D, loss, real, z, frozen_critic=True, per_sample=traits.per_sample)


def _single_loss(t: _Terms) -> Tensor:
    """L_D + [L_G − stop_gradient(L_G)]: the value is L_D's, the gradients both."""
    return t.d_loss + _zero_valued(t.g_loss)


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
    G(z)) or, for per-sample critics, "shared" (one critic forward on G(z), `_shared_terms`);
    "auto" picks by `critic_calls_for(D)`. The gradients are the same either way, to rounding.
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
    """One optimiser over both nets: D's parameters, then G's; one parameter group when
    lr_d == lr_g (one update call instead of two), else a group each.

    Per-group learning rates replace the post's λ: under SGD, λ·∇_G is the same as lr_g = λ·lr;
    under RMSprop and Adam the update is invariant to the gradient's scale, so only lr_g changes
    G's step size.
    """
    if lr_d == lr_g:
        return optimizer([*D.parameters(), *G.parameters()], lr=lr_d, **options)
    return optimizer([{"params": list(D.parameters()), "lr": lr_d},
                      {"params": list(G.parameters()), "lr": lr_g}], **options)


@torch.no_grad()
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

    The backward starts from L_D and L_G as two roots of one pass: the seeds (1 each) and the
    gradients of `fused_loss`'s L_D + [L_G − stop_gradient(L_G)], without recording the bracket.

    Simultaneous: D and G both move from gradients taken at the same point (G against the old D),
    with one noise batch z, one G forward and one backward. Returns the same keys as
    `alternating_step` (g_loss is the G loss's value, not the zero-valued fused term).
    """
    t = _fused_terms(G, D, loss, real, z, critic_calls)
    opt.zero_grad(set_to_none=True)
    torch.autograd.backward([x for x in (t.d_loss, t.g_loss) if x.requires_grad])
    opt.step()
    return _summary(t.d_loss, t.g_loss, t.d_real, t.d_fake, t.penalty)
