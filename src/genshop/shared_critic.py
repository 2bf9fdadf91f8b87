"""One critic call serving several terms of a GAN step, where that is exact.

Post: "巧断梯度：单个loss实现GAN模型" (a GAN with a single loss via stop-gradient), kexue.fm
archives/6387; `genshop.steps` gives the steps in their plain form and calls this module to
arrange their critic calls. The one idea: a critic that treats each sample alone is a fixed
function of each row, so one call can serve what several calls would compute, forward and
backward:

- forward, on batches: D(cat[a, b]) = cat[D(a), D(b)] (`critic_outputs` of `genshop.steps`) when
  no layer couples the samples or changes between calls (`is_per_sample`);
- backward, on gradients: backward through D is linear in the gradient u at its output, and
  row i of the input receives J_iᵀu_i (J_i = ∂D(x_i)/∂x_i). So one forward y = D(x) on
  x = G(z) can stand in for both D(x_ng) and D_ng(x) of the single-loss step
  (`shared_outputs`): let only u_D = ∂L_D/∂y into D, so its parameters get exactly ∇L_D, and
  multiply the J_iᵀu_D,i arriving at x, row by row, by u_G,i / u_D,i (u_G = ∂L_G/∂y), which
  turns it into G's J_iᵀu_G,i. Rows where u_D,i vanishes (a hinge critic beyond its margin) get
  J_iᵀu_G,i from a backward of D seeded with u_G,i instead. The step then runs one critic
  forward on the fakes, one G forward and one backward, with the plain step's gradients to
  rounding.

A critic whose output rows depend on several input rows is (or holds) a `nets.PackedCritic`:
"auto" does not share its forward on G(z), and `critic_calls="shared"` recomputes every row's
gradient for G. The steps look at the critic's modules on every step (`critic_traits`), so they
follow its training flags and the layers, buffers and parametrizations added to it; nothing is
kept between steps and nothing is registered with torch.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from genshop.nets import PackedCritic

# layers that couple the samples of a batch through its statistics ...
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
# ... and layers that draw random numbers in training mode
RANDOM_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout, nn.RReLU)
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d)


def is_stateful(m: nn.Module) -> bool:
    """True when module `m` itself (its children aside) may make D(cat[a, b]) differ from
    cat[D(a), D(b)], or two calls of D differ from one another.

    - BatchNorm using batch statistics: in training mode, or without running statistics;
    - in training mode: dropout, RReLU, attention with dropout, and any module holding buffers
      of its own, whose values a call may change (BatchNorm's running statistics, the power
      iteration vectors of spectral norm in both its versions, `parametrizations.spectral_norm`
      and the hook-based `nn.utils.spectral_norm`).

    The rule is conservative: a stateless module with a constant buffer counts as stateful,
    which costs the steps speed, never exactness.
    """
    if isinstance(m, BATCH_NORMS):
        return m.training or m.running_mean is None
    if not m.training:
        return False
    if isinstance(m, RANDOM_LAYERS):
        return True
    if isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
        return True
    return next(m.buffers(recurse=False), None) is not None


def is_per_sample(D: nn.Module) -> bool:
    """True when no module of D is stateful (`is_stateful`): D is then a fixed function applied
    to each sample alone, D(cat[a, b]) = cat[D(a), D(b)], and one call may serve both batches.

    Custom layers that mix samples or draw random numbers without holding buffers are not
    detected: put such a critic in a module with a dropout layer, or keep it in eval mode.
    """
    return not any(map(is_stateful, D.modules()))


class CriticTraits(NamedTuple):
    per_sample: bool  # no stateful module (`is_per_sample`)
    rows_independent: bool  # no module is a `nets.PackedCritic`
    convolutional: bool  # has a convolution layer: compute-bound, see `shared_outputs`

    @property
    def shareable(self) -> bool:
        """What `critic_calls="auto"` shares: per-sample critics with independent rows."""
        return self.per_sample and self.rows_independent


def critic_traits(D: nn.Module) -> CriticTraits:
    """What the steps need to know of D, from its modules as they are now: `is_per_sample`;
    rows independent unless a module is a `nets.PackedCritic`; convolutional if a module is a
    convolution."""
    modules = tuple(D.modules())
    return CriticTraits(not any(map(is_stateful, modules)),
                        not any(isinstance(m, PackedCritic) for m in modules),
                        any(isinstance(m, CONVOLUTIONS) for m in modules))


class GradientLink:
    """Carries, within one backward, the row ratios u_G,i / u_D,i from the critic's output on
    x = G(z) (`set`) to its input (`rescale`, applied to the gradient arriving at x).

    Holds D and x (detached) to recompute the rows that have no ratio: those where |u_D,i| is
    below √(smallest normal number), and all rows when the critic gives more than one number a
    sample or its rows are not independent.
    """

    def __init__(self, D: nn.Module, x: Tensor, rows_independent: bool):
        self.D, self.x, self.redo_all = D, x, not rows_independent
        self.row_shape = (-1,) + (1,) * (x.dim() - 1)  # a ratio per row, broadcast over a row
        self.ratio: Tensor | None = None
        self.redo: Tensor | None = None  # indices of the rows to recompute; None: none
        self.u_g: Tensor | None = None

    def set(self, u_g: Tensor, u_d: Tensor) -> None:
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

    def rescale(self, grad: Tensor) -> Tensor:
        """J_iᵀu_D,i arriving at row i of x → J_iᵀu_G,i: rescaled, or on rows without a ratio
        recomputed by a backward of D(x_i) seeded with u_G,i (which reaches x only)."""
        grad = grad * self.ratio.view(self.row_shape)
        if self.redo is not None:
            grad[self.redo] = input_gradient(self.D, self.x[self.redo], self.u_g[self.redo])
        return grad


@functools.cache
def _tiny(dtype: torch.dtype) -> float:
    """√(smallest normal number) of `dtype`: below it a ratio u_G / u_D may overflow."""
    return torch.finfo(dtype).tiny ** 0.5


def input_gradient(D: nn.Module, x: Tensor, seed: Tensor) -> Tensor:
    """(∂D(x)/∂x)ᵀ·seed, without touching the gradients of D's parameters."""
    with torch.enable_grad():
        x_leaf = x.detach().requires_grad_()
        return torch.autograd.grad(D(x_leaf), x_leaf, seed)[0]


class _SplitSeeds(torch.autograd.Function):
    """D(cat[x_r, x]) → (y_r, y_D, y_G): the real rows' outputs and two copies of the fake rows'.
    Backward passes the gradients at y_r and y_D (u_D) on into the critic and leaves u_G (at
    y_G) in the link."""

    @staticmethod
    def forward(ctx, y: Tensor, n: int, link: GradientLink) -> tuple[Tensor, Tensor, Tensor]:
        ctx.link = link
        return y[:n], y[n:], y[n:]

    @staticmethod
    def backward(ctx, u_r: Tensor, u_d: Tensor, u_g: Tensor):
        ctx.link.set(u_g, u_d)
        return torch.cat([u_r, u_d]), None, None


class _NestedSharedCall(torch.autograd.Function):
    """(y_D, y_G) = D(x) computed once on a graph of its own and returned twice: gradients
    reaching y_D (u_D) go to D's parameters only, those reaching y_G (u_G) go to x only.

    Backward, by the rows that have a ratio (`GradientLink`):
    - all or most: one chain over the kept inner graph seeded with u_D gives the parameter
      gradients and J_iᵀu_D,i, rescaled to J_iᵀu_G,i; the few rows without a ratio recomputed;
    - fewer than half: a parameter chain seeded with u_D and an input chain seeded with u_G,
      both over the kept graph (no forward is recomputed);
    - none because u_D is zero (a hinge critic with every fake beyond its margin): the input
      chain alone, as a zero seed gives the parameters a zero gradient.
    The inner graph lives as long as the outer one, which may be run twice.
    """

    @staticmethod
    def forward(ctx, D: nn.Module, link: GradientLink, x: Tensor,
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


def shared_outputs(D: nn.Module, real: Tensor, fake: Tensor,
                   traits: CriticTraits | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(D(x_r), D(x_ng), D_ng(x)) for x = `fake` = G(z), from one critic forward on x: the
    gradient reaching the second output goes to D's parameters only, the gradient reaching the
    third to x only, as if they came from two calls (one on stop_gradient(x), one with D's
    parameters frozen).

    Two arrangements, by the critic's cost (`traits.convolutional`; either is exact):
    - small, overhead-bound critics: one call D(cat[x_r, x]) in the outer graph, split by
      `_SplitSeeds` at its output, `GradientLink.rescale` as a gradient hook on x;
    - convolutional, compute-bound critics: D(x_r) on its own, so the real images need no input
      gradient, and `_NestedSharedCall` on x, which recomputes rows without a ratio only when
      they are few and otherwise runs a second backward chain over its kept graph.
    """
    traits = traits or critic_traits(D)
    link = GradientLink(D, fake.detach(), traits.rows_independent)
    if traits.convolutional:
        params = (p for p in D.parameters() if p.requires_grad)
        return D(real), *_NestedSharedCall.apply(D, link, fake, *params)
    if fake.requires_grad:
        fake.register_hook(link.rescale)
    return _SplitSeeds.apply(D(torch.cat([real, fake])), real.shape[0], link)
