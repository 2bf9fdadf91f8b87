"""Your own point data: a NumPy `.npy` file of N points in d ≥ 2 dimensions, used as a data set.

Every command that takes `--data NAME` also takes a path ending in `.npy`
(`genshop train gan --data my_points.npy`). The file holds a float array of shape (N, d) with
N ≥ 2 and finite values; it is read with `allow_pickle=False`. Training draws batches from those
rows; `sample(n)` draws n rows with replacement. `genshop train` stores the absolute path in the
run's config.json, so the run can be loaded from anywhere while the file stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genshop.errors import BadInputError, DataError

SUFFIX = ".npy"


def is_points_file(name: str) -> bool:
    return name.endswith(SUFFIX)


@dataclass(frozen=True, eq=False)
class PointsFile:
    """The rows of one (N, d) array as a data set of kind "points"."""

    name: str  # the path as given
    points: torch.Tensor  # (N, d) float32
    kind: str = "points"

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.points.shape[1]),)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n rows (n, d) drawn uniformly with replacement."""
        if n < 0:
            raise BadInputError(f"cannot draw {n} samples; ask for n >= 0")
        return self.points[torch.randint(self.points.shape[0], (n,), generator=generator)]

    def training_set(self, seed: int = 0, size: int | None = None) -> torch.Tensor:
        """All rows (or the first `size`); the file fixes them, so `seed` does not matter."""
        return self.points if size is None else self.points[:size]


def load_points(path: str | Path) -> PointsFile:
    """Read and check an (N, d) point array; what is wrong with a bad file is named."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no points file {path}; give a .npy file of shape (N, d), e.g. saved "
                        "with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path} is not a readable .npy array ({err})") from None
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 2:
        raise DataError(f"{path} must hold an array of shape (N, d) with N >= 2 points and "
                        f"d >= 2 dimensions, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path} must hold real numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise DataError(f"{path} has {bad} rows with NaN or infinite values; drop or fix them")
    return PointsFile(str(path), torch.from_numpy(array.astype(np.float32)))
