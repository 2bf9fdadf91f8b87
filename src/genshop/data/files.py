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

from genshop.data.examples import Examples
from genshop.errors import BadInputError, DataError

SUFFIX = ".npy"
MAX_BYTES = 4 * 2**30
NPY_MAGIC = b"\x93NUMPY"


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

    def training_data(self, seed: int = 0, size: int | None = None) -> Examples:
        """`training_set`, unlabelled."""
        return Examples(self.training_set(seed, size))


def load_points(path: str | Path) -> PointsFile:
    """Read and check an (N, d) point array; what is wrong with a bad file is named."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no points file {path}; give a .npy file of shape (N, d), e.g. saved "
                        "with numpy.save")
    array = _read_npy(path)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 2:
        raise DataError(f"{path} must hold an array of shape (N, d) with N >= 2 points and "
                        f"d >= 2 dimensions, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path} must hold real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32's range become inf, refused below
        points = np.asarray(array, dtype=np.float64).astype(np.float32)
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise DataError(f"{path} has {bad} rows with NaN, infinite values or values beyond "
                        f"float32's range (±{np.finfo(np.float32).max:.2g}); drop or fix them")
    return PointsFile(str(path), torch.from_numpy(points))


def _read_npy(path: Path) -> np.ndarray:
    """The array of a .npy file, its header checked against the file's size first (a header
    that claims more data than the file holds is refused before anything is allocated)."""
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise DataError(f"{path} is not a NumPy .npy file (it lacks the format's first "
                            "bytes); save an (N, d) array with numpy.save")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path} is a damaged or non-numeric .npy file ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:80]}); save an (N, d) array with "
                        "numpy.save") from None
    if array.size * array.itemsize > MAX_BYTES:
        raise DataError(f"{path} holds {array.size * array.itemsize / 2**30:.1f} GiB; genshop "
                        f"reads point files of up to {MAX_BYTES / 2**30:.0f} GiB")
    return np.array(array)
