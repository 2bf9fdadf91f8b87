"""f-divergences and their variational estimates.

Post: "f-GAN简介：GAN模型的生产车间" (f-GAN introduction: a production workshop for GANs),
Scientific Spaces, kexue.fm archives/6016; table rows also from Nowozin, Cseke & Tomioka,
"f-GAN", NeurIPS 2016.

Equations implemented:
    D_f(P‖Q) = ∫ q(x) f(p(x)/q(x)) dx,  f convex on (0, ∞), f(1) = 0;
    f*(t) = sup_u {t·u − f(u)}  (convex conjugate; Su's g), dom f* = f'((0, ∞));
    D_f(P‖Q) = max_T E_P[T(x)] − E_Q[f*(T(x))],  T*(x) = f'(p(x)/q(x));
    T = g_f(V) with an activation g_f mapping ℝ into dom f*.

Every divergence is defined by f and f*, never by its name. Naming follows Su's table: "pearson" is
f(u) = (1−u)²/u, i.e. ∫(q−p)²/p, and "neyman" is f(u) = (u−1)², i.e. ∫(p−q)²/q (the f-GAN
paper swaps the two names); "js" is the true Jensen–Shannon divergence (the paper's row gives
2·JSD); "gan" is the paper's row with f(1) = −log 4, the one documented exception to f(1) = 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genshop.errors import BadInputError, GenshopError, UnknownNameError
from genshop.registry import Registry

TensorFn = Callable[[Tensor], Tensor]
INF = math.inf


@dataclass(frozen=True)
class FDivergence:
    """One f-divergence: f, its derivative, its conjugate f* and an output activation g_f.

    `domain` is the open interval dom f* = f'((0, ∞)) that `activation` maps ℝ into (in floating
    point the activation may reach an endpoint for large |v|; `conjugate_of_activation` stays
    finite there). `conjugate_of_activation(v)` is f*(g_f(v)) in a fused, overflow-safe form.
    """

    name: str
    integral: str
    f_formula: str
    conjugate_formula: str
    activation_formula: str
    domain: tuple[float, float]
    _f: TensorFn
    _f_prime: TensorFn
    _conjugate: TensorFn
    _activation: TensorFn
    _conjugate_of_activation: TensorFn
    f_at_one: float = 0.0  # only the paper's "gan" row has f(1) = −log 4

    def f(self, u: Tensor) -> Tensor:
        return self._f(u)

    def f_prime(self, u: Tensor) -> Tensor:
        """f'(u); the optimal critic is T*(x) = f'(p(x)/q(x))."""
        return self._f_prime(u)

    def conjugate(self, t: Tensor) -> Tensor:
        """f*(t) = sup_u {t·u − f(u)} for t inside `domain`."""
        return self._conjugate(t)

    def activation(self, v: Tensor) -> Tensor:
        """g_f(v): maps a critic's unconstrained output into dom f*."""
        return self._activation(v)

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        """f*(g_f(v)), computed without forming g_f(v) where that would lose precision."""
        return self._conjugate_of_activation(v)

    @staticmethod
    def from_generator(f: TensorFn, name: str = "custom") -> FDivergence:
        """The divergence of a user's convex f with f(1) = 0: see the module's `from_generator`."""
        return from_generator(f, name)


def variational_bound(div: FDivergence, v_p: Tensor, v_q: Tensor) -> Tensor:
    """E_P[g_f(V)] − E_Q[f*(g_f(V))] from critic pre-activations V on P- and Q-samples.

    A lower bound on D_f(P‖Q) for any critic, equal to it at g_f(V) = f'(p/q). Returns a scalar
    tensor that carries gradients to `v_p` and `v_q`.
    """
    return div.activation(v_p).mean() - div.conjugate_of_activation(v_q).mean()


# --- Lambert W ------------------------------------------------------------------------------

def _w_of_exp(x: Tensor, iterations: int = 40) -> Tensor:
    """W0(e^x) for real x: solve e^s + s = x for s = log W by Newton, return e^s.

    h(s) = e^s + s − x is increasing and convex, and the start s0 = x (x < 1) or log x (x ≥ 1) is
    never left of the root, so Newton decreases monotonically to it without overflow.
    """
    x64 = x.double()
    s = torch.where(x64 < 1, x64, torch.log(x64.clamp(min=1.0)))
    for _ in range(iterations):
        s = s - (torch.exp(s) + s - x64) / (torch.exp(s) + 1)
    return torch.exp(s).to(x.dtype)


def lambert_w0(z: Tensor, iterations: int = 40) -> Tensor:
    """Principal branch W0(z) of the Lambert W function (w·e^w = z) for z ≥ −1/e.

    z > 0 goes through `_w_of_exp(log z)`; z ≤ 0 uses Halley's iteration from the branch-point
    series w ≈ −1 + p − p²/3 + 11p³/72, p = √(2(ez + 1)). NaN below −1/e.
    """
    z64 = z.double()
    positive = z64 > 0
    w_pos = _w_of_exp(torch.log(torch.where(positive, z64, torch.ones_like(z64))))
    p = torch.sqrt((2 * (math.e * z64 + 1)).clamp(min=0))
    w = -1 + p - p**2 / 3 + 11 * p**3 / 72
    for _ in range(iterations):
        ew = torch.exp(w)
        r = w * ew - z64
        step = r / (ew * (w + 1) - (w + 2) * r / (2 * w + 2))
        w = torch.where(w > -1, w - torch.nan_to_num(step, nan=0.0), w)
    w = torch.where(z64 < -1 / math.e, torch.full_like(w, math.nan), w)
    return torch.where(positive, w_pos, w).to(z.dtype)


def _jeffrey_conjugate(t: Tensor) -> Tensor:
    # w = W(e^{1−t}); w·e^w = e^{1−t} gives 1/w = e^{w + t − 1}.
    w = _w_of_exp(1 - t)
    return w + torch.exp(w + t - 1) + t - 2


# --- the catalog ----------------------------------------------------------------------------

CATALOG: Registry[FDivergence] = Registry("divergence")


def _add(*args) -> None:
    div = FDivergence(*args)
    CATALOG.add(div.name, div)


_HALF_LOG2 = 0.5 * math.log(2)

_add("tv", "½∫|p−q|", "½|u−1|", "t", "½·tanh(v)", (-0.5, 0.5),
     lambda u: 0.5 * (u - 1).abs(),
     lambda u: 0.5 * torch.sign(u - 1),
     lambda t: t.clone(),
     lambda v: 0.5 * torch.tanh(v),
     lambda v: 0.5 * torch.tanh(v))
_add("kl", "∫p log(p/q)", "u log u", "exp(t−1)", "v", (-INF, INF),
     lambda u: torch.xlogy(u, u),
     lambda u: torch.log(u) + 1,
     lambda t: torch.exp(t - 1),
     lambda v: v.clone(),
     lambda v: torch.exp(v - 1))
_add("reverse_kl", "∫q log(q/p)", "−log u", "−1 − log(−t)", "−exp(v)", (-INF, 0.0),
     lambda u: -torch.log(u),
     lambda u: -1 / u,
     lambda t: -1 - torch.log(-t),
     lambda v: -torch.exp(v),
     lambda v: -1 - v)
_add("pearson", "∫(q−p)²/p", "(1−u)²/u", "2 − 2√(1−t)", "1 − exp(v)", (-INF, 1.0),
     lambda u: (1 - u) ** 2 / u,
     lambda u: 1 - u**-2,
     lambda t: 2 - 2 * torch.sqrt(1 - t),
     lambda v: 1 - torch.exp(v),
     lambda v: 2 - 2 * torch.exp(0.5 * v))
_add("neyman", "∫(p−q)²/q", "(u−1)²", "t²/4 + t", "exp(v) − 2", (-2.0, INF),
     lambda u: (u - 1) ** 2,
     lambda u: 2 * (u - 1),
     lambda t: t**2 / 4 + t,
     lambda v: torch.exp(v) - 2,
     lambda v: torch.exp(2 * v - math.log(4)) - 1)
_add("hellinger", "∫(√p−√q)²", "(√u−1)²", "t/(1−t)", "1 − exp(v)", (-INF, 1.0),
     lambda u: (torch.sqrt(u) - 1) ** 2,
     lambda u: 1 - u**-0.5,
     lambda t: t / (1 - t),
     lambda v: 1 - torch.exp(v),
     lambda v: torch.expm1(-v))
_add("jeffrey", "∫(p−q) log(p/q)", "(u−1) log u", "W(e^{1−t}) + 1/W(e^{1−t}) + t − 2", "v",
     (-INF, INF),
     lambda u: (u - 1) * torch.log(u),
     lambda u: torch.log(u) + 1 - 1 / u,
     _jeffrey_conjugate,
     lambda v: v.clone(),
     _jeffrey_conjugate)
_add("js", "½∫[p log(2p/(p+q)) + q log(2q/(p+q))]", "½[u log u − (u+1) log((1+u)/2)]",
     "−½ log(2 − exp(2t))", "½ log 2 − ½ log(1 + exp(−v))", (-INF, _HALF_LOG2),
     lambda u: 0.5 * (torch.xlogy(u, u) - (u + 1) * torch.log((1 + u) / 2)),
     lambda u: 0.5 * torch.log(2 * u / (1 + u)),
     lambda t: -0.5 * torch.log(2 - torch.exp(2 * t)),
     lambda v: _HALF_LOG2 - 0.5 * F.softplus(-v),
     lambda v: 0.5 * F.softplus(v) - _HALF_LOG2)
_add("gan", "∫p log(2p/(p+q)) + q log(2q/(p+q)) − log 4", "u log u − (u+1) log(u+1)",
     "−log(1 − exp(t))", "−log(1 + exp(−v))", (-INF, 0.0),
     lambda u: torch.xlogy(u, u) - (u + 1) * torch.log1p(u),
     lambda u: torch.log(u / (1 + u)),
     lambda t: -torch.log(-torch.expm1(t)),
     lambda v: -F.softplus(-v),
     lambda v: F.softplus(v),
     -math.log(4))


def alpha_divergence(alpha: float) -> FDivergence:
    """Amari's α-divergence, f(u) = (u^α − 1 − α(u−1)) / (α(α−1)) for α ∉ {0, 1}.

    f'(u) = (u^{α−1} − 1)/(α−1); with b = 1/(1−α) and s = 1 + (α−1)t > 0,
    f*(t) = (s^{α/(α−1)} − 1)/α on dom f* = (b, ∞) for α > 1 and (−∞, b) for α < 1;
    g_f(v) = b + sign(α−1)·e^v, so s = |α−1|·e^v and
    f*(g_f(v)) = (e^{α/(α−1)·(log|α−1| + v)} − 1)/α.
    α = 2 gives neyman/2, α = ½ gives 2·hellinger, α = −1 gives pearson/2.
    """
    a = float(alpha)
    if not math.isfinite(a) or a in (0.0, 1.0):
        raise BadInputError(f"alpha-divergence needs a finite alpha other than 0 and 1, got {a}; "
                            "use 'kl' or 'reverse_kl' for the limits alpha -> 1 and alpha -> 0")
    b, sign, power = 1 / (1 - a), math.copysign(1.0, a - 1), a / (a - 1)
    log_gap, log_abs_a, sign_a = math.log(abs(a - 1)), math.log(abs(a)), math.copysign(1.0, a)
    domain = (b, INF) if a > 1 else (-INF, b)
    return FDivergence(
        f"alpha:{a:g}", f"α-divergence, α = {a:g}",
        f"(u^{a:g} − 1 − {a:g}(u−1)) / ({a * (a - 1):g})",
        f"((1 + {a - 1:g}t)^{power:.4g} − 1)/{a:g}", f"{b:.4g} {'+' if a > 1 else '−'} exp(v)",
        domain,
        lambda u: (u**a - 1 - a * (u - 1)) / (a * (a - 1)),
        lambda u: (u ** (a - 1) - 1) / (a - 1),
        lambda t: ((1 + (a - 1) * t) ** power - 1) / a,
        lambda v: b + sign * torch.exp(v),
        lambda v: sign_a * torch.exp(power * (log_gap + v) - log_abs_a) - 1 / a,
    )


def names() -> list[str]:
    """The named divergences of the catalog (the α-family is reached as 'alpha:<a>')."""
    return CATALOG.names()


def get(name: str) -> FDivergence:
    """The divergence called `name`: a catalog name, or 'alpha:<a>' for Amari's α-divergence."""
    if name.startswith("alpha:"):
        text = name.removeprefix("alpha:")
        try:
            alpha = float(text)
        except ValueError:
            raise GenshopError(f"alpha-divergence needs a number after 'alpha:', got {text!r}; "
                               "e.g. 'alpha:0.5'") from None
        return alpha_divergence(alpha)
    if name not in CATALOG:
        raise UnknownNameError("divergence", name, [*CATALOG.names(), "alpha:<a>"])
    return CATALOG.get(name)


# --- divergences from a user's generator f --------------------------------------------------

_CHECK_GRID = torch.logspace(-3, 3, 601, dtype=torch.float64)
_LOG_U_BRACKET = 40.0  # the conjugate's maximiser u* = (f')^{-1}(t) is searched in [e^-40, e^40]


def _autograd_derivative(f: TensorFn) -> TensorFn:
    def f_prime(u: Tensor) -> Tensor:
        with torch.enable_grad():
            x = u.detach().double().requires_grad_(True)
            (grad,) = torch.autograd.grad(f(x).sum(), x)
        return grad.to(u.dtype)

    return f_prime


def _check_generator(f: TensorFn, name: str) -> None:
    """Reject f unless f(1) = 0 and f is finite and convex (secant slopes non-decreasing)."""
    with torch.no_grad():
        at_one = float(f(torch.ones((), dtype=torch.float64)))
        values = f(_CHECK_GRID)
    if not math.isfinite(at_one) or abs(at_one) > 1e-9:
        raise BadInputError(f"generator f of divergence {name!r} has f(1) = {at_one:.6g}; an "
                            "f-divergence needs f(1) = 0: subtract the constant f(1)")
    if values.shape != _CHECK_GRID.shape or not torch.isfinite(values).all():
        raise BadInputError(f"generator f of divergence {name!r} must map u > 0 elementwise to "
                            "finite values (checked on u in [1e-3, 1e3])")
    slopes = torch.diff(values) / torch.diff(_CHECK_GRID)
    drops = torch.diff(slopes) < -1e-9 * (1 + slopes[:-1].abs())
    if drops.any():
        where = float(_CHECK_GRID[1:-1][drops][0])
        raise BadInputError(f"generator f of divergence {name!r} is not convex: its slope "
                            f"decreases near u = {where:.4g}; an f-divergence needs a convex f")


def _limit(f_prime: TensorFn, exponents: tuple[float, ...]) -> float:
    """lim f'(u) along u = 10^e: finite when successive changes shrink geometrically to ~0."""
    vals = [float(f_prime(torch.tensor(10.0**e, dtype=torch.float64))) for e in exponents]
    steps = [b - a for a, b in itertools.pairwise(vals)]
    if not all(map(math.isfinite, vals)) or abs(steps[2]) > max(1e-3 * abs(steps[0]),
                                                                1e-12 * (1 + abs(vals[3]))):
        return math.copysign(INF, vals[3] - vals[0])
    curvature = steps[2] - steps[1]
    limit = vals[3] - steps[2] ** 2 / curvature if curvature != 0 else vals[3]  # Aitken's Δ²
    return round(limit, 12)  # f' in float64 near u = 10^±16 is good to about 1e-12


def _activation_onto(lo: float, hi: float) -> tuple[TensorFn, str]:
    if math.isinf(lo) and math.isinf(hi):
        return (lambda v: v.clone()), "v"
    if math.isinf(hi):
        return (lambda v: lo + F.softplus(v)), f"{lo:.4g} + softplus(v)"
    if math.isinf(lo):
        return (lambda v: hi - F.softplus(-v)), f"{hi:.4g} − softplus(−v)"
    return (lambda v: lo + (hi - lo) * torch.sigmoid(v)), f"{lo:.4g} + {hi - lo:.4g}·σ(v)"


def _numerical_conjugate(f: TensorFn, f_prime: TensorFn, iterations: int = 64) -> TensorFn:
    """f*(t) = t·u* − f(u*) with f'(u*) = t, u* found by bisection on log u in float64.

    f' is non-decreasing, so the bracket [e^-40, e^40] holds the root for every t strictly inside
    dom f*; outside it the bracket end is returned (the sup over the bracket). u* is detached:
    by the envelope theorem d f*/dt = u*, which is what autograd then gives.
    """
    def conjugate(t: Tensor) -> Tensor:
        t64 = t.detach().double()
        lo = torch.full_like(t64, -_LOG_U_BRACKET)
        hi = torch.full_like(t64, _LOG_U_BRACKET)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = f_prime(torch.exp(mid)) < t64
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        u_star = torch.exp((lo + hi) / 2)
        with torch.no_grad():
            f_star = f(u_star)
        return (t * u_star.to(t.dtype) - f_star.to(t.dtype))

    return conjugate


def from_generator(f: TensorFn, name: str = "custom") -> FDivergence:
    """An f-divergence from a user's convex f with f(1) = 0 (a torch function of u > 0).

    f' comes from autograd, f* from a bracketed 1-D solve of f'(u) = t (`_numerical_conjugate`),
    dom f* = (lim_{u→0+} f'(u), lim_{u→∞} f'(u)) from f' at u = 10^∓4 … 10^∓16, and g_f maps ℝ onto
    it: v on ℝ, a + softplus(v) on (a, ∞), b − softplus(−v) on (−∞, b), a + (b−a)σ(v) on (a, b).
    Raises BadInputError when f(1) ≠ 0 or f is not convex on u ∈ [1e-3, 1e3].
    """
    _check_generator(f, name)
    f_prime = _autograd_derivative(f)
    lo = _limit(f_prime, (-4, -8, -12, -16))
    hi = _limit(f_prime, (4, 8, 12, 16))
    activation, activation_formula = _activation_onto(lo, hi)
    conjugate = _numerical_conjugate(f, f_prime)
    return FDivergence(name, "∫q f(p/q)", "user f", "sup_u tu − f(u) (numerical)",
                       activation_formula, (lo, hi), f, f_prime, conjugate, activation,
                       lambda v: conjugate(activation(v)))


# --- variational estimate from samples ------------------------------------------------------

def _as_samples(x, arg: str) -> Tensor:
    """Samples as a float32 (N, d) tensor; (N,) means d = 1."""
    try:
        t = torch.as_tensor(x, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise BadInputError(f"{arg} must be an array of numbers of shape (N,) or (N, d): "
                            f"{err}") from None
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] < 4 or t.shape[1] < 1:
        raise BadInputError(f"{arg} must have shape (N,) or (N, d) with N >= 4 samples, "
                            f"got shape {tuple(torch.as_tensor(x).shape)}")
    if not torch.isfinite(t).all():
        raise BadInputError(f"{arg} holds NaN or infinite values; drop or fix those samples")
    return t


def mlp_critic(dim: int, hidden: int, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The critic V: ℝ^dim → ℝ, two SiLU hidden layers (in `dtype`, else the default dtype)."""
    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden, dtype=dtype), torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden, dtype=dtype), torch.nn.SiLU(),
        torch.nn.Linear(hidden, 1, dtype=dtype),
    )


def _fit_critic(div: FDivergence, x_p: Tensor, x_q: Tensor, steps: int, hidden: int,
                lr: float, batch: int, gen: torch.Generator) -> torch.nn.Module:
    """Maximise the variational bound over an MLP critic V by minibatch Adam, in x_p's dtype."""
    critic = mlp_critic(x_p.shape[1], hidden, dtype=x_p.dtype)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    for _ in range(steps):
        i_p = torch.randint(len(x_p), (min(batch, len(x_p)),), generator=gen)
        i_q = torch.randint(len(x_q), (min(batch, len(x_q)),), generator=gen)
        loss = -variational_bound(div, critic(x_p[i_p]).squeeze(1), critic(x_q[i_q]).squeeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return critic


def estimate(div: FDivergence | str, x_p, x_q, *, steps: int = 400, seed: int = 0,
             hidden: int = 16, lr: float = 1e-2, batch: int = 2048) -> float:
    """Variational lower bound on D_f(P‖Q) from samples: max_V E_P[g_f(V)] − E_Q[f*(g_f(V))].

    Each sample set is split in two halves A and B (after a seeded shuffle); a critic trained on A
    is evaluated on B and one trained on B on A, and the two held-out bounds are averaged. Every
    critic's held-out value is an unbiased estimate of a lower bound of D_f, so the result does not
    overfit upwards. Inputs are standardised by the pooled mean and scale (D_f is invariant under
    an invertible map applied to both samples). Critics train in float32 whatever the inputs' and
    the default dtype; the held-out bounds are summed in float64. The critic's own Adam loop
    (`_fit_critic`) is part of the estimator: the bound is close to D_f only at a trained critic.
    """
    div = get(div) if isinstance(div, str) else div
    p, q = _as_samples(x_p, "x_p"), _as_samples(x_q, "x_q")
    if p.shape[1] != q.shape[1]:
        raise BadInputError(f"x_p and x_q must have the same dimension, got {p.shape[1]} and "
                            f"{q.shape[1]}")
    gen = torch.Generator().manual_seed(seed)
    both = torch.cat([p, q])
    mean, scale = both.mean(0), both.std(0).clamp(min=1e-8)
    p = ((p - mean) / scale)[torch.randperm(len(p), generator=gen)]
    q = ((q - mean) / scale)[torch.randperm(len(q), generator=gen)]
    halves_p, halves_q = p.chunk(2), q.chunk(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bounds = []
        for fit, held in ((0, 1), (1, 0)):
            critic = _fit_critic(div, halves_p[fit], halves_q[fit], steps, hidden, lr, batch, gen)
            with torch.no_grad():
                v_p = critic(halves_p[held]).double()
                v_q = critic(halves_q[held]).double()
                bounds.append(float(variational_bound(div, v_p, v_q)))
    return sum(bounds) / 2


# --- live checks of a divergence (the `divergences` command and tour section) ---------------

def interior_points(div: FDivergence) -> Tensor:
    """Points t of dom f*: f'(u) for u over four decades (a grid for a step-function f')."""
    t = div.f_prime(torch.logspace(-2, 2, 41, dtype=torch.float64))
    if t.unique().numel() < 10:
        lo, hi = div.domain
        t = torch.linspace(0.9 * lo + 0.1 * hi, 0.1 * lo + 0.9 * hi, 19, dtype=torch.float64)
    return t


def minimise_free_critic(loss: TensorFn, size: int, *, tolerance_grad: float = 1e-13,
                         tolerance_change: float = 1e-15) -> Tensor:
    """argmin_V loss(V) over a free critic: one float64 value V(x) per point x of a discrete
    problem, no network in between, so the optimum can be set against its closed form.

    L-BFGS from V = 0 with a strong-Wolfe line search, up to 500 iterations. Returns V, detached.
    """
    v = torch.zeros(size, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v], lr=1, max_iter=500, tolerance_grad=tolerance_grad,
                            tolerance_change=tolerance_change, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = loss(v)
        value.backward()
        return value

    opt.step(closure)
    return v.detach()


def free_critic_optimum(div: FDivergence, p: Tensor, q: Tensor) -> tuple[float, Tensor]:
    """max over a free vector V of Σ p·g_f(V) − Σ q·f*(g_f(V)) for discrete p, q.

    Returns the maximum and T = g_f(V) at it; the post's claim is T* = f'(p/q), value D_f(P‖Q).
    """
    p, q = p.double(), q.double()

    def negative_bound(v: Tensor) -> Tensor:
        return -(p * div.activation(v)).sum() + (q * div.conjugate_of_activation(v)).sum()

    v = minimise_free_critic(negative_bound, len(p))
    return -float(negative_bound(v)), div.activation(v)


@dataclass(frozen=True)
class CheckResult:
    check: str
    worst: float  # the largest violation measured
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.worst <= self.tolerance


def check(div: FDivergence) -> list[CheckResult]:
    """Measure the table's claims for one divergence in float64.

    f(1) = f_at_one; f* equals a brute-force sup_u tu − f(u) over u ∈ [1e-5, 1e5]; Fenchel–Young
    f(u) + f*(t) ≥ ut with equality at t = f'(u); g_f(v) ∈ closure of dom f* and f*(g_f(v)) finite
    for v ∈ [−50, 50]; on a discrete pair p, q the free critic maximum equals D_f with
    T* = f'(p/q).
    """
    f64 = torch.float64
    u = torch.logspace(-5, 5, 100_001, dtype=f64)
    t = interior_points(div)
    conj = div.conjugate(t)
    brute = (t[:, None] * u[None] - div.f(u)[None]).amax(1)
    grid_u = torch.logspace(-3, 3, 61, dtype=f64)
    gap = div.f(grid_u)[:, None] + conj[None] - grid_u[:, None] * t[None]
    tangent = div.f_prime(grid_u)
    equality = div.f(grid_u) + div.conjugate(tangent) - grid_u * tangent
    v = torch.linspace(-50, 50, 1001, dtype=f64)
    g = div.activation(v)
    lo, hi = div.domain
    outside = torch.clamp(lo - g, min=0) + torch.clamp(g - hi, min=0)
    finite = torch.isfinite(div.conjugate_of_activation(v)).all()
    p = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.2, 0.3], dtype=f64)
    q = torch.tensor([0.25, 0.2, 0.1, 0.1, 0.3, 0.05], dtype=f64)
    best, t_star = free_critic_optimum(div, p, q)
    exact = float((q * div.f(p / q)).sum())
    scale = 1 + float(conj.abs().max())
    return [
        CheckResult("f(1)", abs(float(div.f(torch.ones((), dtype=f64))) - div.f_at_one), 1e-12),
        CheckResult("f* = sup_u tu - f(u)", float((conj - brute).abs().max()), 1e-5 * scale),
        CheckResult("Fenchel-Young", max(float(-gap.min()), float(equality.abs().max())),
                    1e-6 * scale),
        CheckResult("g_f(R) in dom f*", float(outside.max()) if finite else INF, 0.0),
        CheckResult("free critic: max = D_f", abs(best - exact), 1e-7 * (1 + abs(exact))),
        CheckResult("free critic: T* = f'(p/q)",
                    float((t_star - div.f_prime(p / q)).abs().max()), 1e-4),
    ]


def divergence_on_grid(div: FDivergence, log_p: Tensor, log_q: Tensor, x: Tensor) -> float:
    """D_f(P‖Q) = ∫ q f(p/q) dx by Simpson's rule on the uniform grid x, from log-densities.

    Where p > q, q·f(p/q) is written as p·f(u)/u (u = p/q, clamped to e^±700), so mass of P where
    Q underflows still counts (an infinite D_f comes out as inf, not NaN); points where both
    densities are below e^-700 add 0. Beyond the clamp the value is a lower estimate.
    """
    # Here, not at the top: scipy.integrate takes ~0.5 s to import, and this module is imported
    # (through genshop.losses) by every training command, which never integrates on a grid.
    from scipy.integrate import simpson

    log_u = log_p - log_q
    u = torch.exp(log_u.clamp(-700, 700))
    f_u = div.f(u)
    integrand = torch.where(log_u <= 0, torch.exp(log_q) * f_u, torch.exp(log_p) * (f_u / u))
    integrand = torch.where(torch.maximum(log_p, log_q) < -700, 0.0, integrand)
    return float(simpson(integrand.double().numpy(), x=x.double().numpy()))
