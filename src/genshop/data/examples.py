"""A training set as the engine sees it: examples, their labels or targets if any, and how batches
are drawn from it.

Infrastructure for every trained family of the *Scientific Spaces* posts (GANs of kexue.fm 6016,
6110, 6387; flows of 6377; the couplet tagger of 6270; GLO/IMLE/GLANN of 6394 and VAE/VIB of
6181 build on it). Every data set gives its `training_data(seed)`: an `Examples` with

* `x` (N, …): the examples (points, images, a couplet's first lines);
* `y` (N, …) or None: what a supervised family predicts (a digit's class, a 2-D point's mixture
  component, a couplet's second line);
* `draw(n, generator)`: the row indices of one batch, uniformly with replacement by default
  (a data set may draw otherwise: couplet batches hold lines of one length);
* `rows(index) -> Batch`: those rows, with `index` kept, so a family that learns something per
  training example (GLO's codes) knows whose rows it got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor


def process_rows(x: Tensor, rank: int, world_size: int) -> Tensor:
    """Process `rank`'s rows of a global-batch tensor split into `world_size` equal parts."""
    n = x.shape[0] // world_size
    return x[rank * n:(rank + 1) * n]


@dataclass
class Batch:
    """Rows of a training set: examples `x`, labels or targets `y` (None when the data set has
    none) and each row's `index` into the training set."""

    x: Tensor
    y: Tensor | None = None
    index: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """`fn` applied to every field that is there."""
        return Batch(*(None if t is None else fn(t) for t in (self.x, self.y, self.index)))

    def to(self, device: torch.device | str) -> Batch:
        return self.map(lambda t: t.to(device))

    def part(self, start: int, stop: int) -> Batch:
        """Rows start … stop − 1."""
        return self.map(lambda t: t[start:stop])

    def process_share(self, rank: int, world_size: int) -> Batch:
        """Process `rank`'s rows (`process_rows`) of every field."""
        return self.map(lambda t: process_rows(t, rank, world_size))

    def split(self, size: int) -> list[Batch]:
        """Consecutive parts of `size` rows (the last may be shorter)."""
        return [self.part(s, s + size) for s in range(0, len(self), size)]

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        fields = ("x", "y", "index")
        return Batch(*(None if getattr(batches[0], k) is None
                       else torch.cat([getattr(b, k) for b in batches]) for k in fields))


@dataclass
class Examples:
    """A training set: `x` (N, …) and optionally `y` (N, …); see the module docstring."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Examples:
        return replace(self, x=self.x.to(device), y=None if self.y is None else self.y.to(device))

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """The indices of a batch of n rows, uniformly with replacement."""
        return torch.randint(len(self), (n,), generator=generator)

    def rows(self, index: Tensor) -> Batch:
        index = index.to(self.x.device)
        return Batch(self.x[index], None if self.y is None else self.y[index], index)

    def batch(self, n: int, generator: torch.Generator) -> Batch:
        return self.rows(self.draw(n, generator))


__all__ = ["Batch", "Examples", "process_rows"]
