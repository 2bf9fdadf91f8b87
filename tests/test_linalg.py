"""genshop.linalg: non-square volumes (kexue.fm 6096) and manifold densities, against NumPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from genshop.errors import BadInputError
from genshop.linalg import log_volume, manifold_log_density, volume

F64 = torch.float64


def rand(*shape: int, seed: int = 0, dtype=F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def conditioned(n: int, k: int, cond: float, batch: int, seed: int) -> torch.Tensor:
    """Random (batch, n, k) float64 matrices with singular values logspaced from 1 to 1/cond."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(batch, n, k, generator=g, dtype=F64)).Q
    V = torch.linalg.qr(torch.randn(batch, k, k, generator=g, dtype=F64)).Q
    sigma = torch.logspace(0, -math.log10(cond), k, dtype=F64)
    return (U * sigma) @ V.mT


def cauchy_binet_volume(B: np.ndarray) -> float:
    """sqrt(Σ det(minor)²) over the k×k minors of the longer side (rows if n >= k)."""
    M = B if B.shape[0] >= B.shape[1] else B.T
    k = M.shape[1]
    return math.sqrt(sum(np.linalg.det(M[list(S)]) ** 2
                         for S in itertools.combinations(range(M.shape[0]), k)))


def test_square_volume_is_absolute_determinant():
    B = rand(4, 5, 5)
    expected = np.abs(np.linalg.det(B.numpy()))
    np.testing.assert_allclose(volume(B).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(log_volume(B).numpy(), np.log(expected), rtol=1e-12)


def test_column_vector_volume_is_its_norm():
    x = rand(7, 1)
    assert volume(x).item() == pytest.approx(np.linalg.norm(x.numpy()), rel=1e-13)


def test_two_columns_give_parallelogram_area():
    x, y = rand(6, seed=1).numpy(), rand(6, seed=2).numpy()
    theta = math.acos(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
    area = np.linalg.norm(x) * np.linalg.norm(y) * math.sin(theta)
    B = torch.from_numpy(np.stack([x, y], axis=1))
    assert volume(B).item() == pytest.approx(area, rel=1e-12)


@pytest.mark.parametrize(("n", "k"), [(5, 3), (6, 2), (3, 5), (4, 4)])
def test_equals_cauchy_binet_sum_of_minors(n, k):
    B = rand(n, k, seed=n * 10 + k)
    assert volume(B).item() == pytest.approx(cauchy_binet_volume(B.numpy()), rel=1e-11)


def test_wide_matrix_uses_row_gram_determinant():
    B = rand(3, 7, seed=3)
    expected = math.sqrt(np.linalg.det(B.numpy() @ B.numpy().T))
    assert volume(B).item() == pytest.approx(expected, rel=1e-12)
    assert volume(B).item() == pytest.approx(volume(B.mT).item(), rel=1e-13)


def test_invariant_under_orthogonal_map_on_the_left():
    B = rand(3, 6, 4, seed=4)
    Q = torch.linalg.qr(rand(6, 6, seed=5)).Q
    torch.testing.assert_close(log_volume(Q @ B), log_volume(B), rtol=0, atol=1e-12)


def test_batched_shape_matches_per_matrix_loop():
    B = rand(2, 3, 5, 3, seed=6)
    out = log_volume(B)
    assert out.shape == (2, 3)
    loop = torch.stack([torch.stack([log_volume(b) for b in row]) for row in B])
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 4), (4, 4)])
def test_gradients_pass_gradcheck(shape):
    B = rand(*shape, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(log_volume, (B,))
    assert torch.autograd.gradcheck(volume, (B,))


def test_log_volume_gradient_is_pseudo_inverse_transpose():
    B = rand(6, 3, seed=8).requires_grad_()
    (grad,) = torch.autograd.grad(log_volume(B), B)
    np.testing.assert_allclose(grad.numpy(), np.linalg.pinv(B.detach().numpy()).T, rtol=1e-10)


def test_float32_log_volume_stays_accurate_where_the_gram_route_fails():
    """Condition number 1e6: BᵀB has condition 1e12 > 1/eps32, so det(BᵀB) is noise in float32.

    Stated bound for a backward-stable method: |error| <= 2·eps32·cond = 0.24 nats (first-order
    perturbation of Σ log σᵢ). Measured at writing: about 0.05 nats for log_volume, while the
    naive 0.5·log det(BᵀB) is NaN for most matrices and off by several nats for the rest.
    """
    cond = 1e6
    B32 = conditioned(8, 4, cond, batch=200, seed=9).float()
    reference = log_volume(B32.double())  # exact up to float64 rounding, same float32 input
    error = (log_volume(B32).double() - reference).abs()
    assert error.max().item() <= 2 * torch.finfo(torch.float32).eps * cond
    naive = 0.5 * torch.logdet(B32.mT @ B32)
    naive_error = (naive.double() - reference).abs().nan_to_num(math.inf)
    assert (naive_error > 1.0).float().mean().item() >= 0.9
    assert naive_error.median().item() > 100 * error.max().item()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", ["zero column", "repeated column", "sum of columns"])
def test_rank_deficient_gives_minus_infinity_and_finite_gradient(kind, dtype):
    B = rand(6, 3, seed=10, dtype=dtype)
    B[:, 2] = {"zero column": 0.0, "repeated column": B[:, 1],
               "sum of columns": B[:, 0] + B[:, 1]}[kind]
    B.requires_grad_()
    value = log_volume(B)
    assert value.item() == -math.inf
    assert volume(B).item() <= 10 * torch.finfo(dtype).eps * torch.linalg.matrix_norm(B).item()
    (grad,) = torch.autograd.grad(value, B)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("fn", [volume, log_volume])
@pytest.mark.parametrize(("bad", "match"), [
    ([[1.0, 2.0]], "torch.Tensor"),
    (torch.ones(3, 2, dtype=torch.int64), "float32 or float64"),
    (torch.ones(3), r"\(\.\.\., n, k\)"),
    (torch.ones(3, 0), r"\(\.\.\., n, k\)"),
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or Inf"),
    (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "NaN or Inf"),
])
def test_bad_input_names_the_argument(fn, bad, match):
    with pytest.raises(BadInputError, match=match) as info:
        fn(bad)
    assert str(info.value).startswith("B ")


def test_manifold_density_of_linear_generator_matches_closed_form():
    W, b = rand(5, 2, seed=11), rand(5, seed=12)
    z = rand(16, 2, seed=13)
    expected = (-0.5 * (z**2).sum(1) - math.log(2 * math.pi)
                - 0.5 * torch.logdet(W.T @ W))
    torch.testing.assert_close(manifold_log_density(lambda v: W @ v + b, z), expected,
                               rtol=0, atol=1e-12)


def test_manifold_density_with_orthogonal_columns_subtracts_k_log_scale():
    Q = torch.linalg.qr(rand(6, 3, seed=14)).Q
    z = rand(8, 3, seed=15)
    expected = -0.5 * (z**2).sum(1) - 1.5 * math.log(2 * math.pi) - 3 * math.log(2.5)
    torch.testing.assert_close(manifold_log_density(lambda v: 2.5 * (Q @ v), z), expected,
                               rtol=0, atol=1e-12)


def test_manifold_density_of_paraboloid_generator():
    """G(z) = (z, |z|²): J = [I; 2zᵀ], det(JᵀJ) = 1 + 4|z|² (matrix determinant lemma)."""
    z = rand(10, 2, seed=16)
    G = lambda v: torch.cat([v, (v**2).sum().reshape(1)])  # noqa: E731
    sq = (z**2).sum(1)
    expected = -0.5 * sq - math.log(2 * math.pi) - 0.5 * torch.log1p(4 * sq)
    torch.testing.assert_close(manifold_log_density(G, z), expected, rtol=0, atol=1e-12)


def test_manifold_density_works_with_a_module_and_has_gradients():
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    net = net.double()
    z = rand(5, 2, seed=17)
    out = manifold_log_density(net, z)
    out.sum().backward()
    assert out.shape == (5,)
    for weight in (net[0].weight, net[2].weight):  # the output bias does not change J
        assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0
    x = net(z)
    for i in range(5):
        J = torch.autograd.functional.jacobian(net, z[i])
        manual = (-0.5 * (z[i] ** 2).sum() - math.log(2 * math.pi)
                  - 0.5 * torch.logdet(J.T @ J))
        assert out[i].item() == pytest.approx(manual.item(), abs=1e-10)
    assert x.shape == (5, 4)


def test_manifold_density_rejects_non_injective_or_bad_latents():
    with pytest.raises(BadInputError, match="n < k"):
        manifold_log_density(lambda v: v[:1], rand(4, 2))
    with pytest.raises(BadInputError, match="z must be"):
        manifold_log_density(lambda v: v, rand(4))
    with pytest.raises(BadInputError, match="NaN or Inf"):
        manifold_log_density(lambda v: v, torch.full((2, 2), float("nan"), dtype=F64))
