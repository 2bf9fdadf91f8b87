"""GLO (kexue.fm 6394; Bojanowski et al. 2018): the pyramid of eq. (3), the loss of eq. (4), codes
on the sphere moved only in their batch (eq. 2), the Gaussian fit of eq. (5), learning, and one-line
errors (`genshop.families.glo`)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genshop import configure
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import StepInput
from genshop.families.glo import (
    JITTER,
    GloConfig,
    GloFamily,
    GloNet,
    RowAdam,
    lap1,
    laplacian_pyramid,
    max_levels,
    reconstruct_pyramid,
)


@dataclass
class Blobs:
    """A toy image set: `n` 1×12×12 images of one bright square at a position of a 5×5 grid."""

    n: int = 25
    name: str = "blobs"
    kind: str = "images"
    shape: tuple = (1, 12, 12)

    def training_data(self, seed: int = 0) -> Examples:
        x = torch.zeros(self.n, *self.shape)
        for i in range(self.n):
            r, c = 2 * (i % 25 // 5), 2 * (i % 5)
            x[i, 0, r:r + 4, c:c + 4] = 1.0
        return Examples(x)


@dataclass
class Points:
    name: str = "points"
    kind: str = "points"
    shape: tuple = (2,)

    def training_data(self, seed: int = 0) -> Examples:
        return Examples(torch.randn(64, 2, generator=torch.Generator().manual_seed(seed)))


def family(dataset=None, **options) -> GloFamily:
    torch.manual_seed(0)
    config = GloConfig(**{"latent_dim": 4, "width": 8, "batch_size": 8, **options})
    return GloFamily(config, dataset or Blobs(), torch.device("cpu"))


def step(fam: GloFamily, index: list[int]) -> dict:
    index = torch.tensor(index)
    return fam.train_step(StepInput(fam.data.x[index], torch.Generator().manual_seed(1),
                                    index=index))


def test_a_constant_image_has_zero_detail_levels_and_every_pyramid_reconstructs():
    g = torch.Generator().manual_seed(0)
    constant = torch.full((2, 3, 28, 28), 0.3)
    noise = torch.rand(2, 3, 28, 28, generator=g)
    pyramid = laplacian_pyramid(constant, 4)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert max(p.abs().max() for p in pyramid[:-1]) < 1e-6
    assert (pyramid[-1] - 0.3).abs().max() < 1e-6
    detail = laplacian_pyramid(noise, 4)
    assert min(p.abs().max() for p in detail[:-1]) > 0.05  # a textured image has details
    for x, p in ((constant, pyramid), (noise, detail)):
        assert (reconstruct_pyramid(p) - x).abs().max() < 1e-6
    dropped = reconstruct_pyramid([torch.zeros_like(detail[0]), *detail[1:]])
    assert (dropped - noise).abs().max() > 0.1  # the finest level carries a real part


def test_pyramid_levels_of_a_28_pixel_side():
    assert max_levels((1, 28, 28)) == 6 and max_levels((3, 32, 32)) == 6
    assert max_levels((1, 4, 4)) == 3


def test_lap1_of_a_constant_offset_sits_in_the_low_pass_alone():
    """x̂ = x + c: every detail level of x − x̂ is 0 and the low-pass is −c, so by eq. (4)
    Lap₁ = 4^{−(J−1)} |c| for J levels; one level is the plain mean absolute error."""
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for levels in (1, 2, 3):
        got = lap1(x, x + 0.25, levels)
        torch.testing.assert_close(got, torch.full((3,), 0.25 / 4 ** (levels - 1)),
                                   rtol=0, atol=1e-6)
    y = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(lap1(x, y, 1), (x - y).abs().mean((1, 2, 3)), rtol=0, atol=0)


def test_the_step_loss_is_the_hand_computed_batch_mean():
    """Two levels on a 1×12×12 pair: Lap₁ = mean|L_0| + mean|L_1|/4 per image, from the
    pyramid's definition written out (blur, every other pixel, bilinear up)."""
    fam = family(levels=2)
    index = [3, 7, 7, 20]
    x = fam.data.x[index]
    with torch.no_grad():
        x_hat = fam.net(fam.codes.weight[index])
    d = (x - x_hat).double()
    k = torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64) / 16
    pad = torch.nn.functional.pad(d, (2, 2, 2, 2), mode="replicate")[:, 0]
    blurred = sum(k[a] * k[b] * pad[:, a:a + 12, b:b + 12] for a in range(5) for b in range(5))
    low = blurred[:, ::2, ::2].unsqueeze(1)
    up = torch.nn.functional.interpolate(low, size=(12, 12), mode="bilinear",
                                         align_corners=False)
    by_hand = ((d - up).abs().mean((1, 2, 3)) + low.abs().mean((1, 2, 3)) / 4).mean()
    got = step(fam, index)
    assert got["loss"] == pytest.approx(float(by_hand), rel=1e-5)
    assert got["loss"] == got["lap1"] and "perceptual" not in got


def test_points_use_the_squared_distance():
    fam = family(Points(), batch_size=4)
    index = [0, 5, 9]
    x = fam.data.x[index]
    with torch.no_grad():
        by_hand = (x - fam.net(fam.codes.weight[index])).pow(2).sum(1).mean()
    assert step(fam, index)["loss"] == pytest.approx(float(by_hand), rel=1e-6)


def test_codes_start_and_stay_on_the_sphere_and_only_batch_rows_move():
    for init in ("pca", "random"):
        fam = family(init=init)
        before = fam.codes.weight.detach().clone()
        torch.testing.assert_close(before.norm(dim=1), torch.ones(25), rtol=0, atol=1e-6)
        batch = [2, 5, 5, 11]
        for _ in range(3):
            step(fam, batch)
        after = fam.codes.weight.detach()
        torch.testing.assert_close(after.norm(dim=1), torch.ones(25), rtol=0, atol=1e-6)
        others = torch.ones(25, dtype=torch.bool)
        others[batch] = False
        assert torch.equal(after[others], before[others])  # bit for bit
        assert (after[batch] - before[batch]).norm(dim=1).min() > 1e-3


def test_pca_codes_follow_the_main_axis_of_the_data():
    """Points spread along (1, 1) and thin along (1, −1): the first whitened PCA score is the
    coordinate along (1, 1) up to sign, so code angles split the two halves of the line."""
    t = torch.linspace(-1, 1, 64)
    x = torch.stack([t, t], 1) + 0.01 * torch.stack([t.flip(0), -t.flip(0)], 1)

    @dataclass
    class Line(Points):
        def training_data(self, seed: int = 0) -> Examples:
            return Examples(x)

    z = family(Line(), latent_dim=2).codes.weight.detach()
    side = torch.sign(z[:, 0] * torch.sign(z[-1, 0]))
    assert torch.equal(side, torch.sign(t))


def test_row_adam_is_adam_on_each_row_over_its_own_visits():
    """A row visited at steps 1 and 3 moves exactly as torch's Adam moves a lone parameter
    given the same two gradients; an unvisited row keeps its value and zero moments."""
    w = torch.nn.Parameter(torch.zeros(3, 2))
    opt = RowAdam([w], lr=0.1)
    lone = torch.nn.Parameter(torch.zeros(1, 2))
    ref = torch.optim.Adam([lone], lr=0.1, betas=(0.5, 0.999), eps=1e-8)
    grads = [torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 3.0]])]
    schedule = [(0, grads[0]), (1, torch.tensor([[4.0, 4.0]])), (0, grads[1])]
    for row, g in schedule:
        w.grad = torch.zeros(3, 2)
        w.grad[row] = g
        opt.step()
    for g in grads:
        lone.grad = g.clone()
        ref.step()
    torch.testing.assert_close(w.detach()[0], lone.detach()[0], rtol=0, atol=1e-7)
    assert torch.equal(w.detach()[2], torch.zeros(2))
    assert torch.equal(opt.state[w]["exp_avg"][2], torch.zeros(2))
    dense = torch.nn.Parameter(torch.zeros(3, 2))  # dense Adam moves the row it did not see
    dense_opt = torch.optim.Adam([dense], lr=0.1, betas=(0.5, 0.999))
    for row, g in schedule:
        dense.grad = torch.zeros(3, 2)
        dense.grad[row] = g
        dense_opt.step()
    assert (dense.detach()[0] - lone.detach()[0]).abs().max() > 1e-3


def test_the_sampler_is_the_gaussian_fit_of_the_codes():
    g = torch.Generator().manual_seed(4)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.3, 0.2]])
    codes = torch.randn(5000, 3, generator=g) @ a + torch.tensor([0.5, -1.0, 2.0])
    net = GloNet(torch.nn.Identity(), 3)
    net.fit_(codes)
    mean = codes.mean(0)
    cov = (codes - mean).T @ (codes - mean) / len(codes)
    torch.testing.assert_close(net.mean, mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(net.chol @ net.chol.T, cov + JITTER * torch.eye(3),
                               rtol=0, atol=1e-5)
    z = net.sample_latent(200_000, torch.Generator().manual_seed(5))
    got_cov = (z - z.mean(0)).T @ (z - z.mean(0)) / len(z)
    # standard errors at n = 2·10⁵: mean ≈ √(Σ_jj/n) ≤ 0.003, covariance ≈ √2·Σ_jj/√n ≤ 0.005
    assert (z.mean(0) - mean).abs().max() < 0.015
    assert (got_cov - cov).abs().max() < 0.025
    # AᵀA has 0.48 off the diagonal: a diagonal fit misses it by far more than the tolerance
    assert (cov - torch.diag(cov.diagonal())).abs().max() > 0.4
    assert torch.equal(net(z[:3]), z[:3])  # samples pass through G unchanged here


def test_a_tiny_glo_learns_its_blobs():
    """25 blob images, batches walking the set: after 400 steps the mean absolute
    reconstruction error is at least 4 times below its start."""
    fam = family(batch_size=5, latent_dim=8, width=16, lr_g=3e-3, lr_z=3e-2)
    start = fam.evaluate(fam.net.eval())["recon_error"]
    fam.net.train()
    g = torch.Generator().manual_seed(6)
    for _ in range(80):
        for index in torch.randperm(25, generator=g).split(5):
            step(fam, index.tolist())
    end = fam.evaluate(fam.net.eval())["recon_error"]
    assert end < start / 4, (start, end)


def test_bad_options_fail_in_one_line_before_any_work():
    cases = [({"data": "ring8", "perceptual": 1.0}, "--perceptual"),
             ({"data": "mnist", "perceptual": 0.0, "levels": 7}, "--levels 7"),
             ({"data": "mnist", "perceptual": 0.0, "batch_size": 1}, "--batch-size"),
             ({"data": "ring8", "latent_dim": 10**9}, "--latent-dim"),
             ({"data": "mnist", "init": "zeros"}, "init"),
             ({"data": "mnist", "lr_z": 0.0}, "lr_z")]
    for options, named in cases:
        with pytest.raises(BadInputError) as err:
            config = configure("glo", out="/nonexistent/never", **options)
            GloFamily.check(config, Blobs(n=30) if options["data"] == "mnist" else Points())
        assert "\n" not in str(err.value) and named in str(err.value), str(err.value)


def test_the_perceptual_term_rejects_other_image_shapes():
    with pytest.raises(BadInputError, match="1×28×28"):
        family(perceptual=0.5)


def test_a_resumed_run_samples_what_the_straight_run_samples(tmp_path):
    """Through the engine on a points file, with EMA: the sampler of `load_run` after 3 steps
    and a resume to 6 draws the straight run's samples bit for bit, and its μ is the loaded
    codes' mean (the fit follows the last update); the run folder gets its figure."""
    from genshop import load_run, train

    path = tmp_path / "points.npy"
    np.save(path, torch.randn(300, 2, generator=torch.Generator().manual_seed(7)).numpy())

    def run(out: str, steps: int, resume: bool = False):
        config = configure("glo", data=str(path), latent_dim=3, width=8, depth=1,
                           batch_size=64, ema=0.5, steps=steps, log_every=3,
                           sample_every=0, out=str(tmp_path / out))
        return train(config, resume=resume, progress=False)

    run("straight", 6)
    run("resumed", 3)
    run("resumed", 6, resume=True)
    a, b = (load_run(tmp_path / r) for r in ("straight", "resumed"))
    assert torch.equal(a.sample(50, seed=0), b.sample(50, seed=0))
    codes = b.family.codes.weight.detach()
    torch.testing.assert_close(b.net.mean, codes.mean(0), rtol=0, atol=1e-6)
    assert (b.net.mean - torch.zeros(3)).abs().max() > 1e-4  # a real fit, not the init buffer
    assert not torch.equal(a.sample(50, seed=0), a.sample(50, seed=1))
    assert (tmp_path / "straight" / "reconstructions.png").stat().st_size > 1000
