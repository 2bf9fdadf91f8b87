"""Tour section `rsgan_speed`: does RSGAN reach a given sample quality in fewer steps than SGAN?

Post: "RSGAN: the Turing test in GANs" (kexue.fm archives/6110), which reports that the
relativistic loss L_G = E softplus(D(x_r) − D(G(z))) trains faster than the standard GAN (SGAN, in
its usual non-saturating form L_G = E softplus(−D(G(z)))). Measured here on the 8-Gaussian ring at
the data set's GAN recipe (`genshop.families.gan.RECIPES`) without its EMA, alternating update,
same seeds:
every `EVAL_EVERY` steps the engine's `evaluate` hook scores 2,500 samples by the PacGAN protocol
(`genshop.metrics.modes`), and a run's time to quality is the first step at which all 8 modes
are captured and at least `QUALITY_HQ` % of the samples lie within 3 std of a mode.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
from torch import nn

from genshop.claims import LEVEL, Verdict, paired_verdict, sign_test
from genshop.data import get_dataset
from genshop.engine import configure, train
from genshop.metrics.modes import SCORED_SAMPLES, score_dataset
from genshop.plots import plt, save_figure
from genshop.tour import SectionContext, SectionResult, Table, section

LOSSES = {"nsgan": "SGAN (non-saturating)", "rsgan": "RSGAN"}
SEEDS = (0, 1, 2, 3, 4)
MAX_STEPS = 1500
EVAL_EVERY = 100
QUALITY_HQ = 40.0


def quality_curve(loss: str, seed: int, out: Path) -> list[tuple[int, int, float]]:
    """(step, modes captured, % high-quality) every EVAL_EVERY steps of one ring8 run."""
    dataset = get_dataset("ring8")
    curve: list[tuple[int, int, float]] = []

    def evaluate(step: int, net: nn.Module) -> dict[str, float]:
        gen = torch.Generator().manual_seed(10_000 + seed)
        scores = score_dataset(net(net.sample_latent(SCORED_SAMPLES, gen)), dataset)
        curve.append((step, scores.modes, scores.hq_percent))
        return {"modes": scores.modes, "hq_percent": scores.hq_percent}

    config = configure(
        "gan", data="ring8", loss=loss, update="alternating", seed=seed, steps=MAX_STEPS,
        ema=0.0,  # the recipe's EMA lags the trained G; scored here: the loss's own progress
        log_every=EVAL_EVERY, sample_every=0, checkpoint_every=MAX_STEPS, out=str(out))
    train(config, progress=False, evaluate=evaluate)
    return curve


def steps_to_quality(curve: list[tuple[int, int, float]], modes: int = 8) -> float:
    """The first evaluated step with every mode and QUALITY_HQ % high-quality (inf if never)."""
    return next((step for step, m, hq in curve if m == modes and hq >= QUALITY_HQ), math.inf)


def curves_figure(curves: dict[str, list[list[tuple[int, int, float]]]]):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for i, (loss, runs) in enumerate(curves.items()):
        for j, curve in enumerate(runs):
            steps = [c[0] for c in curve]
            label = LOSSES[loss] if j == 0 else None
            axes[0].plot(steps, [c[1] for c in curve], color=f"C{i}", alpha=0.7, label=label)
            axes[1].plot(steps, [c[2] for c in curve], color=f"C{i}", alpha=0.7, label=label)
    axes[0].set_ylabel("modes captured (of 8)")
    axes[1].set_ylabel("% high-quality samples")
    axes[1].axhline(QUALITY_HQ, color="0.5", ls=":", lw=1)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ring8, alternating update, seeds {list(SEEDS)}")
    return fig


def verdict(times: dict[str, list[float]]) -> Verdict:
    """RSGAN is faster when, over the paired seeds, it reaches the bar first significantly more
    often than SGAN does (one-sided sign test at `claims.LEVEL`, tied seeds dropped); slower
    when SGAN does; else inconclusive."""
    sgan, rsgan = times["nsgan"], times["rsgan"]
    faster = sum(r < s for r, s in zip(rsgan, sgan, strict=True))
    slower = sum(r > s for r, s in zip(rsgan, sgan, strict=True))
    med_s, med_r = statistics.median(sgan), statistics.median(rsgan)
    return Verdict(paired_verdict(faster, slower), (
        f"steps until 8/8 modes and >= {QUALITY_HQ:.0f}% high-quality samples on ring8 (recipe "
        f"without EMA, alternating update, evaluated every {EVAL_EVERY} steps, inf = not within "
        f"{MAX_STEPS}): median SGAN {med_s:g} vs RSGAN {med_r:g}; RSGAN faster in {faster}, "
        f"slower in {slower} of {len(sgan)} paired seeds (rule: one-sided sign test at "
        f"{LEVEL:g}, p = {sign_test(faster, slower):.2f} for faster, "
        f"{sign_test(slower, faster):.2f} for slower)"))


@section("rsgan_speed", "RSGAN vs SGAN: steps to a sample-quality bar on the ring", order=46)
def run(ctx: SectionContext) -> SectionResult:
    curves = {loss: [quality_curve(loss, ctx.seed + s, ctx.path(f"{loss}-s{s}"))
                     for s in SEEDS] for loss in LOSSES}
    times = {loss: [steps_to_quality(c) for c in runs] for loss, runs in curves.items()}
    table = Table(f"Steps to 8/8 modes and >= {QUALITY_HQ:.0f}% high-quality (ring8)",
                  ["loss", *(f"seed {ctx.seed + s}" for s in SEEDS), "median"],
                  [[LOSSES[loss], *t, statistics.median(t)] for loss, t in times.items()],
                  note=f"inf: not reached within {MAX_STEPS} steps. Curves below.")
    figure = save_figure(curves_figure(curves), ctx.path("quality_curves.png"))
    claim = verdict(times)
    return SectionResult(summary=claim.measurement, tables=[table], figures=[figure],
                         claims={"rsgan-speed": claim},
                         metrics={loss: t for loss, t in times.items()})
