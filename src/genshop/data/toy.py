"""2-D Gaussian mixtures for mode-collapse tests: the 8-Gaussian ring and the 25-Gaussian grid.

Used by the GAN posts of *Scientific Spaces* — "f-GAN: a production workshop for GANs" (kexue.fm
archive 6016), "RSGAN: the Turing test in GANs" (6110) and "A GAN with a single loss via
stop-gradient" (6387) — to compare losses and steps on data whose modes can be counted.

Protocol of VEEGAN (Srivastava et al. 2017) as coded by PacGAN (Lin et al. 2018,
`fjxmlzn/PacGAN`, `synthetic_data_experiments/*/config.py`):

* ring8:  p(x) = 1/8 Σ_k N(x; μ_k, 0.01² I),  μ_k = (cos 2πk/8, sin 2πk/8), k = 0..7 (radius 1);
* grid25: p(x) = 1/25 Σ_{i,j} N(x; (i, j), 0.05² I),  i, j ∈ {−4, −2, 0, 2, 4} (spacing 2);
* 100,000 training points; every component has the same weight.

The angles are 2πk/8 for k = 0..7, *not* `linspace(0, 2π, 8)`: that widely copied construction
includes the end point, so its first and last centres coincide and it has only 7 modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genshop.data.examples import Examples
from genshop.errors import BadInputError

TRAINING_SET_SIZE = 100_000


@dataclass(frozen=True, eq=False)
class GaussianMixture2D:
    """An equal-weight mixture of isotropic 2-D Gaussians sharing one per-axis `std`."""

    name: str
    centers: torch.Tensor  # (modes, 2) float32
    std: float
    kind: str = "points"
    shape: tuple[int, ...] = (2,)

    @property
    def num_modes(self) -> int:
        return int(self.centers.shape[0])

    def draw(self, n: int, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """n points (n, 2) float32, a uniformly drawn centre plus N(0, std² I) noise, and the
        index of each point's centre (n,) int64: its label."""
        if n < 0:
            raise BadInputError(f"cannot draw {n} samples; ask for n >= 0")
        modes = torch.randint(self.num_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.centers[modes] + self.std * noise, modes

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points (n, 2) float32 (`draw` without the labels)."""
        return self.draw(n, generator)[0]

    def training_set(self, seed: int = 0, size: int = TRAINING_SET_SIZE) -> torch.Tensor:
        """The protocol's fixed training points (size, 2), reproducible from `seed`."""
        return self.training_data(seed, size).x

    def training_data(self, seed: int = 0, size: int = TRAINING_SET_SIZE) -> Examples:
        """The training points and their components as labels (`genshop.data.examples`)."""
        return Examples(*self.draw(size, torch.Generator().manual_seed(seed)))


def ring_centers(modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """(modes, 2) centres at angles 2πk/modes, k = 0..modes−1 (end point excluded)."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_centers(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    """(len(values)², 2) centres (i, j) for i, j in `values`, row-major in i."""
    axis = torch.tensor(values, dtype=torch.float32)
    return torch.cartesian_prod(axis, axis)


RING8 = GaussianMixture2D("ring8", ring_centers(8, 1.0), std=0.01)
GRID25 = GaussianMixture2D("grid25", grid_centers(), std=0.05)
