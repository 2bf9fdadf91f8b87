"""Tour section `modes`: a quick 2-D ring mode-coverage table (VEEGAN/PacGAN protocol).

Losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN: the Turing test in
GANs" (6110), trained by the alternating and the single-loss fused step of "A GAN with a single
loss via stop-gradient" (6387), scored by `genshop.metrics.modes` (modes captured, % within 3 std,
KL(p̂ ‖ uniform)). One seed and a short budget; `genshop bench modes` runs the full table.
"""

from __future__ import annotations

from genshop.tour import SectionContext, SectionResult, section

QUICK_LOSSES = ("lsgan",)
QUICK_STEPS = 2000


@section("modes", "2-D ring: modes captured per GAN loss and step", order=45)
def modes_section(ctx: SectionContext) -> SectionResult:
    from genshop.commands.bench import (
        STEP_KINDS,
        measured_table,
        published_table,
        recipe_summary,
        run_json,
        run_rows,
        scatter_figure,
    )
    from genshop.report import save_figure

    quick = {"steps": QUICK_STEPS}
    rows = run_rows("ring8", QUICK_LOSSES, STEP_KINDS, [ctx.seed], ctx.path("runs"), quick)
    figure = save_figure(scatter_figure("ring8", rows, "ring8, quick budget"),
                         ctx.path("ring8_scatter.png"))
    metrics = {f"{r.loss}/{r.step}": run_json(r)[0] for r in rows}
    best = max(rows, key=lambda r: r.rank_key())
    s = best.runs[0].scores
    summary = (f"{len(rows)} quick runs ({QUICK_STEPS} steps, seed {ctx.seed}) on the 8-Gaussian "
               f"ring; best: {best.loss} with the {best.step} step, {s.modes}/8 modes, "
               f"{s.hq_percent:.1f}% high-quality, reverse KL {s.reverse_kl:.3f}. "
               "`genshop bench modes` runs every loss with 3-10 seeds at the full recipe.")
    return SectionResult(
        summary=summary,
        tables=[measured_table(f"ring8, {QUICK_STEPS} steps, 1 seed", rows,
                               recipe_summary("ring8", quick)),
                published_table("ring8")],
        figures=[figure], metrics=metrics)
