"""Sample-quality metrics: `genshop.metrics.modes` scores 2-D samples against a known mixture
(modes captured, % high-quality, reverse KL; the VEEGAN/PacGAN protocol);
`genshop.metrics.images` scores 28×28 images (FID, KID, precision/recall, density/coverage,
digit classes, Stacked MNIST modes, Vendi) on the features of the shipped digit classifier of
`genshop.metrics.classifier` — `score_images(x)` is the entry point (docs/metrics.md);
`genshop.metrics.runs.evaluate_run(RUN_DIR)` scores a trained run (what `genshop eval` writes)."""

from genshop.metrics.images import score_images
from genshop.metrics.runs import evaluate_run

__all__ = ["evaluate_run", "score_images"]
