"""Pictures of samples for run directories: a scatter for points, a grid for images.

Library code (the engine draws a run's snapshots with it); the lab's pages (`genshop.report`)
use it too. Matplotlib runs on its file-only Agg backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a matplotlib figure as PNG and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def image_grid(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → one (rows·H, cols·W) or (…, 3) array, 8 images a row."""
    n, c, h, w = x.shape
    cols = min(8, n)
    rows = math.ceil(n / cols)
    grid = torch.zeros(rows * cols, c, h, w)
    grid[:n] = x
    grid = grid.view(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return grid[..., 0].numpy() if c == 1 else grid.numpy()


def samples_figure(x: torch.Tensor, title: str, reference: torch.Tensor | None = None,
                   centers: torch.Tensor | None = None) -> Figure:
    """Samples as a picture: points (N, d) as a scatter of the first two coordinates over the
    `reference` data in grey and the mixture's `centers` (black +), on equal axes that show the
    data; images (N, C, H, W) as a grid of the first 64."""
    if x.ndim == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        if reference is not None:
            ax.scatter(*reference.T[:2], s=2, c="0.75", label="data")
        ax.scatter(*x.T[:2], s=2, c="C3", label="samples")
        if centers is not None:
            ax.scatter(*centers.T[:2], s=40, c="k", marker="+", linewidths=0.8, label="modes")
        shown = [t[:, :2] for t in (reference, centers) if t is not None] or [x[:, :2]]
        lim = 1.25 * max(float(t.abs().max()) for t in shown) or 1.0  # all points at 0
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(image_grid(x[:64]), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    ax.set_title(title)
    return fig
