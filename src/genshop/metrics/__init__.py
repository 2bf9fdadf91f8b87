"""Sample-quality metrics: `genshop.metrics.modes` scores 2-D samples against a known mixture
(modes captured, % high-quality, reverse KL; the VEEGAN/PacGAN protocol)."""
