"""Draw the mode pictures of docs/results.md from two `genshop bench modes` folders.

    .venv/bin/python docs/mode_figures.py RING8_BENCH_DIR GRID25_BENCH_DIR \
        [RING8_FUSED_BENCH_DIR GRID25_FUSED_BENCH_DIR]

Seed 0 of four rows per data set (the best alternating rows, rsgan fused, hinge fused), sampled
and scored as the bench does (2,500 samples, latent seed 10,000), written to docs/modes_<data>.png.
The fused rows come from the second pair of folders when given (a `--updates fused` bench).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from genshop.data import get_dataset
from genshop.experiments import Result, Row, gan
from genshop.experiments.modes import scatter_figure
from genshop.metrics.modes import SCORED_SAMPLES, score_dataset
from genshop.plots import save_figure
from genshop.runs import load_run

ROWS = {"ring8": [("fgan-hellinger", "alternating"), ("rsgan", "alternating"), ("rsgan", "fused"),
                  ("hinge", "fused")],
        "grid25": [("sgan", "alternating"), ("rsgan", "alternating"), ("rsgan", "fused"),
                   ("hinge", "fused")]}


def seed0_row(bench_dir: Path, data: str, loss: str, update: str) -> Row:
    x = load_run(bench_dir / "runs" / f"{loss}-{update}-s0").sample(SCORED_SAMPLES, seed=10_000)
    setting = gan(loss, update)
    scores = score_dataset(x, get_dataset(data))
    return Row(setting, [Result(setting, 0, 0, scores, 0.0, False, x)])


def main(ring_dir: str, grid_dir: str, ring_fused_dir: str | None = None,
         grid_fused_dir: str | None = None) -> None:
    torch.set_num_threads(1)
    for data, bench_dir, fused_dir in (("ring8", ring_dir, ring_fused_dir),
                                       ("grid25", grid_dir, grid_fused_dir)):
        dirs = {"alternating": Path(bench_dir), "fused": Path(fused_dir or bench_dir)}
        rows = [seed0_row(dirs[update], data, loss, update) for loss, update in ROWS[data]]
        title = f"{data}: seed 0 of four bench rows (recipe, full budget)"
        out = save_figure(scatter_figure(data, rows, title), Path(__file__).parent /
                          f"modes_{data}.png")
        print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
