"""Tour section `gan_losses`: the GAN loss zoo and the single-loss step.

Posts: f-GAN (kexue.fm archives/6016), RSGAN (archives/6110), and "a GAN with a single loss via
stop-gradient" (archives/6387). Measures, in this run:
- every loss of `genshop.losses` on torchgan's fixture logits;
- |∇ fused − ∇ separate| for every loss with plain, BatchNorm and dropout critics in float64, and
  the post's subtraction construction, exact with BatchNorm and broken with dropout;
- the post's λ under SGD, RMSprop and Adam against per-group learning rates;
- the JS and Hellinger reductions of f-GAN;
- RSGAN on discrete distributions: the optimal relativistic critic T* (L-BFGS) against
  log(p/q), and the G objective at T* against D_f(p(x_f)q(x_r) ‖ p(x_r)q(x_f)), f = h∘log;
- a quick interleaved timing of the fused and alternating steps (the reference measurement is
  `benchmarks/fused_vs_alternating.py`).
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from genshop import divergences, losses, steps
from genshop.claims import Verdict
from genshop.nets import mlp_pair
from genshop.report import save_figure
from genshop.timing import StepRunner, time_interleaved
from genshop.tour import SectionContext, SectionResult, Table, section

REAL_LOGITS = (1.3, 2.9, 8.4, 6.3)  # torchgan's loss-test fixture, read as logits
FAKE_LOGITS = (4.8, 1.2, -3.5, 5.9)
CRITIC_KINDS = ("plain", "batchnorm", "dropout")
EXACT = 1e-10


def _holds(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def loss_table() -> Table:
    r = torch.tensor(REAL_LOGITS, dtype=torch.float64)
    f = torch.tensor(FAKE_LOGITS, dtype=torch.float64)
    rows = []
    for name in [*losses.names(), "fgan-alpha:0.5"]:
        loss = losses.get_loss(name)
        rows.append([name, loss.d_formula, loss.g_formula, loss.d_loss(r, f).item(),
                     loss.g_loss(r, f).item()])
    return Table("Every loss on torchgan's fixture logits", ["loss", "critic loss",
                                                             "generator loss", "L_D", "L_G"],
                 rows, note=f"real logits {list(REAL_LOGITS)}, fake logits {list(FAKE_LOGITS)}; "
                 "E = batch mean; both players minimise. f-GAN rows: V is the pre-activation, "
                 "g_f the output activation, f* the conjugate.")


# --- single-loss gradients -------------------------------------------------------------------

def toy_pair(kind: str, seed: int) -> tuple[nn.Module, nn.Module]:
    """A small float64 G (with BatchNorm) and a critic that is plain, has BatchNorm or dropout."""
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    extra = {"plain": [], "batchnorm": [nn.BatchNorm1d(16)], "dropout": [nn.Dropout(0.3)]}[kind]
    D = nn.Sequential(nn.Linear(2, 16), *extra, nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return G.double(), D.double()


def toy_batch(seed: int, n: int = 16) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, generator=gen, dtype=torch.float64) + 1,
            torch.randn(n, 3, generator=gen, dtype=torch.float64))


def fused_variants() -> dict[str, tuple[str, steps.SingleLoss]]:
    """Label -> (critic kind, single-loss construction) for the gradient check."""
    separate = functools.partial(steps.fused_loss, critic_calls="separate")
    return {"plain, one shared critic call (auto)": ("plain", steps.fused_loss),
            "plain, separate critic calls": ("plain", separate),
            "batchnorm": ("batchnorm", steps.fused_loss), "dropout": ("dropout", steps.fused_loss)}


def single_loss_checks() -> tuple[Table, dict[str, Verdict]]:
    real, z = toy_batch(0)
    names = losses.names()
    fused = {}
    for label, (kind, construction) in fused_variants().items():
        gaps = [steps.gradient_gap(*toy_pair(kind, 1), losses.get_loss(name), real, z,
                                   construction=construction, seed=2) for name in names]
        fused[label] = {k: max(g[k] for g in gaps) for k in gaps[0]}
    hinge = losses.get_loss("hinge")
    post = {kind: steps.gradient_gap(*toy_pair(kind, 1), hinge, real, z,
                                     construction=steps.subtraction_loss, seed=2)
            for kind in CRITIC_KINDS}
    rows = [[f"fused_loss (all {len(names)} losses)", label, gap["d_grad"], gap["g_grad"],
             gap["value"]] for label, gap in fused.items()]
    rows += [["post's subtraction (hinge)", kind, post[kind]["d_grad"], post[kind]["g_grad"],
              post[kind]["value"]] for kind in CRITIC_KINDS]
    table = Table("Single loss vs two losses: largest gradient and value gaps (float64)",
                  ["construction", "critic", "max |Δ∇_D|", "max |Δ∇_G|", "|value − L_D|"], rows,
                  note="fused_loss stops the gradient on the critic's parameters for the G term; "
                  "the post subtracts L_G(D, G_ng), which needs two identical critic calls.")
    worst = max(max(g["d_grad"], g["g_grad"]) for g in fused.values())
    post_exact = max(post["batchnorm"]["d_grad"], post["batchnorm"]["g_grad"])
    leak = post["dropout"]["d_grad"]
    grads_ok = worst < EXACT and post_exact < EXACT and leak > 1e-6
    worst_value = max(g["value"] for g in fused.values())
    return table, {
        "single-loss-gradients": Verdict(_holds(grads_ok), (
            f"fused loss vs separate losses over {len(names)} losses and plain (with one shared "
            f"and with separate critic calls), BatchNorm and dropout critics: max gradient gap "
            f"{worst:.1e}; the post's subtraction form: {post_exact:.1e} with BatchNorm, but a "
            f"D-gradient leak of {leak:.3g} with dropout (the functional form fixes it)")),
        "single-loss-value": Verdict(_holds(worst_value < 1e-12), (
            f"largest |fused value − L_D| over all losses and critics: {worst_value:.1e} "
            f"(the post's form with dropout: {post['dropout']['value']:.3g})")),
    }


# --- λ against optimisers ---------------------------------------------------------------------

def g_update(lam: float, optimizer: type[torch.optim.Optimizer], lr_g: float) -> Tensor:
    """G's first update with G's gradient multiplied by λ (the post's λ) and G's learning rate."""
    G, D = toy_pair("plain", 3)
    real, z = toy_batch(3)
    opt = steps.fused_optimizer(G, D, optimizer, lr_d=1e-3, lr_g=lr_g)
    before = torch.cat([p.detach().flatten() for p in G.parameters()])
    steps.fused_loss(G, D, losses.get_loss("hinge"), real, z).backward()
    for p in G.parameters():
        p.grad.mul_(lam)
    opt.step()
    return torch.cat([p.detach().flatten() for p in G.parameters()]) - before


def update_ratio(a: Tensor, b: Tensor) -> float:
    mask = a.abs() > 1e-9
    return (b[mask] / a[mask]).median().item()


def lambda_check() -> tuple[Table, Verdict]:
    rows, ratios = [], {}
    for name, opt in (("SGD", torch.optim.SGD), ("RMSprop", torch.optim.RMSprop),
                      ("Adam", torch.optim.Adam)):
        base = g_update(1.0, opt, 1e-3)
        ratios[name] = (update_ratio(base, g_update(2.0, opt, 1e-3)),
                        update_ratio(base, g_update(1.0, opt, 2e-3)))
        rows.append([name, *ratios[name]])
    table = Table("G's first update relative to λ = 1", ["optimiser", "λ = 2 (post)",
                                                         "lr_g × 2 (param group)"], rows,
                  note="median over G's parameters of Δθ(variant) / Δθ(λ = 1, same lr).")
    sgd, rms, adam = ratios["SGD"][0], ratios["RMSprop"][0], ratios["Adam"][0]
    groups = [r[1] for r in ratios.values()]
    ok = (abs(sgd - 2) < 1e-6 and abs(rms - 1) < 1e-3 and abs(adam - 1) < 1e-3
          and all(abs(g - 2) < 1e-3 for g in groups))
    return table, Verdict(_holds(ok), (
        f"λ = 2 scales G's update by {sgd:.4f} under SGD, {rms:.4f} under RMSprop and "
        f"{adam:.4f} under Adam; doubling G's param-group learning rate scales it by "
        f"{', '.join(f'{g:.4f}' for g in groups)} (SGD, RMSprop, Adam)"))


# --- f-GAN reductions -------------------------------------------------------------------------

def fgan_reductions() -> Verdict:
    gen = torch.Generator().manual_seed(4)
    v_p, v_q = torch.randn(2, 1000, generator=gen, dtype=torch.float64) * 2
    js = -losses.get_loss("fgan-js").d_loss(v_p, v_q).item()
    gan = 0.5 * (F.logsigmoid(v_p).mean() + F.logsigmoid(-v_q).mean()).item() + math.log(2)
    hel = -losses.get_loss("fgan-hellinger").d_loss(v_p, v_q).item()
    hand = 2 - v_p.exp().mean().item() - (-v_q).exp().mean().item()
    ok = abs(js - gan) < 1e-12 and abs(hel - hand) < 1e-12
    return Verdict(_holds(ok), (
        f"on 1000 random logits: |JS bound − (½(E_p log σ(D) + E_q log(1 − σ(D))) + log 2)| = "
        f"{abs(js - gan):.1e}; |Hellinger bound − (2 − E_p e^D − E_q e^−D)| = "
        f"{abs(hel - hand):.1e} (critic D = pre-activation V, activation 1 − e^V)"))


# --- RSGAN on discrete distributions ----------------------------------------------------------

P_COUNTS = (1, 2, 3, 4, 10)  # p and q on 5 points, as counts out of 20
Q_COUNTS = (6, 5, 4, 3, 2)
H_CHOICES: dict[str, Callable[[Tensor], Tensor]] = {
    "−log σ(t) (RSGAN)": lambda t: F.softplus(-t),
    "−t": lambda t: -t,
    "log(1 − σ(t))": lambda t: -F.softplus(t),
}


def pair_indices() -> tuple[Tensor, Tensor]:
    """Every (x_r, x_f) pair with multiplicity 20·p(x_r) · 20·q(x_f): batch means are E_{p×q}."""
    idx_p = torch.repeat_interleave(torch.arange(5), torch.tensor(P_COUNTS))
    idx_q = torch.repeat_interleave(torch.arange(5), torch.tensor(Q_COUNTS))
    return idx_p.repeat_interleave(len(idx_q)), idx_q.repeat(len(idx_p))


def optimal_relativistic_critic() -> tuple[Tensor, float]:
    """argmin_T −E_{x_r~p, x_f~q} log σ(T(x_r) − T(x_f)) over a free vector T, and the largest
    |gradient| left at it."""
    ir, jf = pair_indices()
    rsgan = losses.get_loss("rsgan")

    def critic_loss(T: Tensor) -> Tensor:
        return rsgan.d_loss(T[ir], T[jf])

    T = divergences.minimise_free_critic(critic_loss, len(P_COUNTS), tolerance_grad=1e-14,
                                         tolerance_change=1e-16)
    (grad,) = torch.autograd.grad(critic_loss(T.requires_grad_(True)), T)
    return T.detach(), grad.abs().max().item()


def rsgan_checks() -> tuple[Table, dict[str, Verdict]]:
    p = torch.tensor(P_COUNTS, dtype=torch.float64) / 20
    q = torch.tensor(Q_COUNTS, dtype=torch.float64) / 20
    T, grad = optimal_relativistic_critic()
    offset = T - torch.log(p / q)
    spread = (offset.max() - offset.min()).item()
    ir, jf = pair_indices()
    # P = p(x_f)q(x_r) (swapped), Q = p(x_r)q(x_f) on the pair grid (rows x_r, columns x_f)
    Q = p[:, None] * q[None, :]
    P = p[None, :] * q[:, None]
    rows, gaps = [], []
    for label, h in H_CHOICES.items():
        objective = h(T[jf] - T[ir]).mean().item()
        divergence = (Q * h(torch.log(P / Q))).sum().item()  # f(t) = h(log t)
        rows.append([label, objective, divergence, abs(objective - divergence)])
        gaps.append(abs(objective - divergence))
    rsgan_g = losses.get_loss("rsgan").g_loss(T[ir], T[jf]).item()
    rows.append(["losses.get_loss('rsgan').g_loss", rsgan_g, rows[0][2], abs(rsgan_g - rows[0][2])])
    gaps.append(abs(rsgan_g - rows[0][2]))
    table = Table("RSGAN at the optimal relativistic critic (p, q on 5 points)",
                  ["h", "E h(T*(x_f) − T*(x_r))", "D_f(p(x_f)q(x_r) ‖ p(x_r)q(x_f))", "gap"],
                  rows, note=f"p = {[c / 20 for c in P_COUNTS]}, q = {[c / 20 for c in Q_COUNTS]}; "
                  f"T* by L-BFGS (final |gradient| {grad:.1e}); T* − log(p/q) = "
                  f"{[round(v, 6) for v in offset.tolist()]}.")
    return table, {
        "rsgan-optimum": Verdict(_holds(spread < 1e-6), (
            f"L-BFGS on the relativistic critic loss over 5 points: T* − log(p/q) spans "
            f"{spread:.1e} (constant {offset.mean().item():.4f}; final |gradient| {grad:.1e})")),
        "rsgan-divergence": Verdict(_holds(max(gaps) < 1e-6), (
            f"G objective at T* vs D_f(p(x_f)q(x_r) ‖ p(x_r)q(x_f)), f = h∘log: largest gap "
            f"{max(gaps):.1e} over h = −log σ (value {rows[0][1]:.6f}), −t and log(1 − σ)")),
    }


# --- timing (shared with benchmarks/fused_vs_alternating.py) ----------------------------------

def step_runners(G: nn.Module, D: nn.Module, loss: losses.GanLoss, real: Tensor, *,
                 lr: float = 2e-4, seed: int = 0,
                 critic_calls: str = "auto") -> dict[str, StepRunner]:
    """A fused and an alternating step, each on its own copy of (G, D) and its own Adam.

    Adam(lr, betas (0.5, 0.999), one-kernel update) for both; fixed latent batches (z for the
    fused step and the D step, a second z for the G step), so the two differ only in the step.
    `critic_calls` is passed to `steps.fused_step`.
    """
    gen = torch.Generator().manual_seed(seed)
    z_d, z_g = (torch.randn(real.shape[0], G.latent_dim, generator=gen) for _ in range(2))
    adam = {"betas": (0.5, 0.999), "fused": True}
    Gf, Df = copy.deepcopy(G), copy.deepcopy(D)
    opt = steps.fused_optimizer(Gf, Df, torch.optim.Adam, lr_d=lr, lr_g=lr, **adam)
    Ga, Da = copy.deepcopy(G), copy.deepcopy(D)
    opt_d, opt_g = (torch.optim.Adam(net.parameters(), lr=lr, **adam) for net in (Da, Ga))
    return {
        "fused": StepRunner(lambda: steps.fused_step(Gf, Df, loss, opt, real, z_d,
                                                     critic_calls=critic_calls),
                            (Gf, Df)),
        "alternating": StepRunner(lambda: steps.alternating_step(Ga, Da, loss, opt_d, opt_g, real,
                                                                 z_d, z_g), (Ga, Da)),
    }


def quick_speed(rounds: int = 9, calls_per_round: int = 15) -> tuple[Table, Verdict]:
    torch.manual_seed(0)
    G, D = mlp_pair()
    real = torch.randn(64, 2)
    times = time_interleaved(step_runners(G, D, losses.get_loss("hinge"), real), rounds,
                             calls_per_round)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["alternating"] / med["fused"]
    table = Table("Quick timing: one training iteration, 2-D MLP pair, batch 64, hinge loss",
                  ["step", "median ms", "min ms"],
                  [[name, 1e3 * med[name], 1e3 * min(t)] for name, t in times.items()],
                  note=f"{rounds} interleaved rounds of {calls_per_round} steps, 1 thread, Adam. "
                  "A quick measurement; benchmarks/fused_vs_alternating.py is the reference.")
    return table, Verdict(_holds(ratio > 1), (
        f"quick measurement (2-D MLP pair, batch 64, 1 thread, medians of {rounds} interleaved "
        f"rounds): fused {1e3 * med['fused']:.2f} ms vs alternating "
        f"{1e3 * med['alternating']:.2f} ms per iteration, ratio {ratio:.2f}; the reference is "
        "benchmarks/fused_vs_alternating.py"))


# --- figure -----------------------------------------------------------------------------------

def loss_curves(ctx: SectionContext) -> Path:
    v = torch.linspace(-6, 6, 241, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for name in losses.LOSSES:
        loss = losses.get_loss(name)
        d = [loss.d_loss(zero, x.reshape(1)).item() for x in v]
        g = [loss.g_loss(zero, x.reshape(1)).item() for x in v]
        style = "--" if loss.g_uses_real else "-"  # relativistic losses dashed
        axes[0].plot(v, d, style, label=name)
        axes[1].plot(v, g, style, label=name)
    for ax, who in zip(axes, ("critic loss L_D", "generator loss L_G"), strict=True):
        ax.set_xlabel("fake logit C(G(z)) (real logit fixed at 0, batch of one)")
        ax.set_ylabel(who)
        ax.set_ylim(-7, 12)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle("Losses as a function of one fake logit")
    return save_figure(fig, ctx.path("loss_curves.png"))


@section("gan_losses", "GAN losses (f-GAN, RSGAN) and the single-loss step", order=30)
def run(ctx: SectionContext) -> SectionResult:
    start = time.perf_counter()
    grads_table, grad_verdicts = single_loss_checks()
    lam_table, lam_verdict = lambda_check()
    rs_table, rs_verdicts = rsgan_checks()
    speed_table, speed_verdict = quick_speed()
    claims = {**grad_verdicts, "single-loss-lambda": lam_verdict,
              "fgan-reductions": fgan_reductions(), **rs_verdicts,
              "single-loss-speed": speed_verdict}
    return SectionResult(
        summary=("Every loss of genshop.losses on one set of logits; the single-loss (fused) GAN "
                 "step checked against the two-loss step; λ against optimisers; the f-GAN "
                 "reductions; RSGAN's optimal critic and divergence on discrete distributions."),
        tables=[loss_table(), grads_table, lam_table, rs_table, speed_table],
        figures=[loss_curves(ctx)],
        claims=claims,
        metrics={"seconds": round(time.perf_counter() - start, 2),
                 **{k: v.status for k, v in claims.items()}},
    )

