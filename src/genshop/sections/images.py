"""Tour section `images`: a quick DCGAN on MNIST, scored on the reference classifier's features.

Losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN" (6110) on images:
one short run of the mnist recipe (`genshop.families.gan.RECIPES`) through the engine, scored
by `genshop.metrics.score_images` (FID, KID, precision / recall, coverage, digit classes of
`SAMPLES` samples against the 2,000 test digits; classifier features, not Inception-v3), beside
the FID of the real train digits, the floor of this protocol. `genshop bench images` runs every
loss × update with 3 seeds at the full budget (`genshop.experiments.images`).
"""

from __future__ import annotations

from genshop.data.images import MNIST
from genshop.experiments import Row, RunTask, gan
from genshop.experiments.images import IMAGES, ImageScorer, grids_figure, measured_table
from genshop.families.gan import RECIPES
from genshop.metrics.images import score_images
from genshop.plots import save_figure
from genshop.tour import SectionContext, SectionResult, section

LOSS, UPDATE = "nsgan", "alternating"
QUICK_STEPS = 1500
SAMPLES = 2000
# a short run: the recipe's EMA would still hold much of the initial weights (d^T)
QUICK = {"steps": QUICK_STEPS, "ema": 0.99}


@section("images", "Images: a quick DCGAN on MNIST, scored with the reference classifier",
         order=50)
def images_section(ctx: SectionContext) -> SectionResult:
    task = RunTask(gan(LOSS, UPDATE), "mnist", ctx.seed, ctx.path("run"), QUICK,
                   ImageScorer(SAMPLES))
    run = task.run()
    row = Row(task.setting, [run])
    real = score_images(MNIST.training_set(ctx.seed, SAMPLES))  # a seeded draw of the split
    figure = save_figure(grids_figure([row], f"mnist, {QUICK_STEPS} steps"),
                         ctx.path("samples.png"))
    s = run.scores
    summary = (f"{LOSS} with the {UPDATE} update, {QUICK_STEPS} steps of the mnist recipe "
               f"({run.cpu_seconds:.0f} CPU-s): FID {s['fid']:.2f} (real train digits "
               f"{real['fid']:.2f}), precision {s['precision']:.2f}, recall {s['recall']:.2f}, "
               f"{s['classes_found']} digit classes, on {SAMPLES:,} samples and the classifier's "
               "features (not Inception). `genshop bench images` compares every loss and update "
               "at a fixed compute budget.")
    recipe = RECIPES["mnist"]
    table = measured_table(IMAGES, f"mnist, {QUICK_STEPS} steps, 1 seed", [row],
                           f"recipe {recipe} with {QUICK}; reproduce: genshop train gan --data "
                           f"mnist --loss {LOSS} --steps {QUICK_STEPS} --ema 0.99 --out DIR, "
                           f"then genshop eval DIR -n {SAMPLES}.")
    return SectionResult(summary=summary, tables=[table], figures=[figure],
                         metrics={"run": {k: v for k, v in s.items()},
                                  "real_train_fid": real["fid"],
                                  "cpu_seconds": run.cpu_seconds})
