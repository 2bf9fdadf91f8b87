"""The 2-D mixtures of the VEEGAN/PacGAN protocol: centres, spreads, registry, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genshop.data import get_dataset, names
from genshop.data.toy import GaussianMixture2D
from genshop.errors import BadInputError, UnknownNameError


def distinct_points(points: np.ndarray, tol: float = 1e-6) -> int:
    """Number of points at least `tol` apart from every earlier one."""
    kept: list[np.ndarray] = []
    for p in points:
        if all(np.linalg.norm(p - q) > tol for q in kept):
            kept.append(p)
    return len(kept)


def test_registry_names_and_unknown_name():
    assert names() == ["ring8", "grid25", "mnist", "stacked-mnist"]
    with pytest.raises(UnknownNameError, match="choose one of: grid25, mnist, ring8"):
        get_dataset("ring7")


def test_ring_has_eight_distinct_unit_radius_modes_at_multiples_of_45_degrees():
    ring = get_dataset("ring8")
    centers = ring.centers.double().numpy()
    expected = np.array([[math.cos(math.pi * k / 4), math.sin(math.pi * k / 4)] for k in range(8)])
    np.testing.assert_allclose(centers, expected, atol=1e-7)
    assert distinct_points(centers) == 8
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-7)
    assert ring.std == 0.01 and ring.kind == "points" and ring.shape == (2,)


def test_linspace_ring_construction_has_only_seven_modes():
    """Regression: `linspace(0, 2π, 8)` includes 2π, so the first and last centres coincide."""
    angles = np.linspace(0, 2 * np.pi, 8)
    copied = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert distinct_points(copied) == 7
    ours = get_dataset("ring8").centers.double().numpy()
    assert not np.allclose(np.sort(ours, axis=0), np.sort(copied, axis=0), atol=1e-3)


def test_grid_centres_are_the_5x5_lattice_of_spacing_2():
    grid = get_dataset("grid25")
    centers = {tuple(c) for c in grid.centers.tolist()}
    assert centers == {(float(i), float(j)) for i in range(-4, 5, 2) for j in range(-4, 5, 2)}
    assert grid.num_modes == 25 and grid.std == 0.05


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_samples_have_the_protocol_spread_and_equal_mode_weights(name):
    data: GaussianMixture2D = get_dataset(name)
    x = data.sample(50_000, torch.Generator().manual_seed(3))
    assert x.shape == (50_000, 2) and x.dtype == torch.float32
    nearest = torch.cdist(x, data.centers).argmin(dim=1)
    offsets = (x - data.centers[nearest]).double().numpy()
    # per-axis std within 2% (chi-square with 1e5 d.o.f. has relative s.d. ~0.3%)
    np.testing.assert_allclose(offsets.std(axis=0), data.std, rtol=0.02)
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=5 * data.std / math.sqrt(50_000))
    counts = np.bincount(nearest.numpy(), minlength=data.num_modes)
    expected = 50_000 / data.num_modes
    # each count is Binomial; 5 s.d. band
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))


def test_training_set_is_100k_points_reproducible_from_its_seed():
    ring = get_dataset("ring8")
    a, b, c = ring.training_set(0), ring.training_set(0), ring.training_set(1)
    assert a.shape == (100_000, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ring.training_set(0, size=10).shape == (10, 2)


def test_negative_sample_count_is_a_user_error():
    with pytest.raises(BadInputError):
        get_dataset("grid25").sample(-1)
