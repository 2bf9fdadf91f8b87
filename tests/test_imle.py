"""IMLE: every training point is matched to its exact nearest pool sample, the loss pulls that
sample closer, and matching from the data side keeps a mode that the other direction drops."""

from pathlib import Path

import numpy as np
import pytest
import torch

from genshop import configure, train
from genshop.data import Examples, get_dataset
from genshop.errors import BadInputError
from genshop.families import DataPass, StepInput
from genshop.families.imle import ImleFamily, generate

SMALL = {"width": 16, "depth": 1, "latent_dim": 2, "sample_every": 0, "log_every": 50}


def family(tmp_path: Path, **options) -> ImleFamily:
    config = configure("imle", **{**SMALL, "data": "ring8", "data_size": 50, "pool_factor": 3,
                                  "out": str(tmp_path / "r"), **options})
    torch.manual_seed(0)
    return ImleFamily(config, get_dataset("ring8"), torch.device("cpu"))


def test_a_pass_matches_every_point_to_its_nearest_pool_sample(tmp_path):
    imle = family(tmp_path)
    data = Examples(imle.data)
    imle.data_pass(DataPass(data, 0, torch.Generator().manual_seed(7)))
    pool_z = torch.randn(150, 2, generator=torch.Generator().manual_seed(7))
    pool = generate(imle.G, pool_z).double()
    d2 = torch.cdist(imle.data.double(), pool).square()  # brute force, float64
    got = (imle.data.double() - generate(imle.G, imle.matched).double()).square().sum(1)
    torch.testing.assert_close(got, d2.min(1).values, rtol=1e-5, atol=1e-7)
    assert (d2.mean(1) - got).min() > 0  # every point matched better than to a mean sample


def test_the_loss_is_the_mean_squared_distance_to_the_matched_samples(tmp_path):
    imle = family(tmp_path)
    imle.data_pass(DataPass(Examples(imle.data), 0, torch.Generator().manual_seed(1)))
    index = torch.tensor([3, 3, 10, 49])
    x = imle.data[index]
    with torch.no_grad():
        expected = (imle.G(imle.matched[index]) - x).square().sum(1).mean().item()
    got = imle.train_step(StepInput(x, torch.Generator(), index=index))["loss"]
    assert got == pytest.approx(expected, rel=1e-6) and expected > 0.01


def two_clusters(path: Path) -> Path:
    """100 points at (−1, 0) and 100 at (6, 0), std 0.01: an untrained generator sits near the
    origin, nearer the first cluster."""
    g = np.random.default_rng(0)
    points = np.concatenate([g.normal((-1, 0), 0.01, (100, 2)), g.normal((6, 0), 0.01, (100, 2))])
    np.save(path, points.astype(np.float32))
    return path


@pytest.mark.parametrize("match", ["data", "samples"])
def test_matching_every_data_point_keeps_the_far_mode(tmp_path, match):
    data = two_clusters(tmp_path / "two.npy")
    run = train(configure("imle", **SMALL, data=str(data), data_size=0, match=match,
                          pool_factor=5, rematch_every=20, steps=300, batch_size=64, lr=3e-3,
                          out=str(tmp_path / match)), progress=False)
    far = float((run.sample(2000, seed=0)[:, 0] > 2.5).float().mean())
    if match == "data":
        assert far > 0.1  # the far cluster holds samples too
    else:
        assert far < 0.01  # the far cluster was never anyone's nearest: dropped


def test_bad_options_fail_in_one_line(tmp_path):
    for bad in ({"pool_factor": 0}, {"match": "both"}, {"rematch_every": 0}):
        with pytest.raises(BadInputError) as err:
            configure("imle", **bad, out=str(tmp_path))
        assert "\n" not in str(err.value)
