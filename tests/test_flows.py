"""genshop.flows: det(exp A) = exp(tr A) (kexue.fm 6377) and the exact-likelihood flow.

Log-dets are checked the way zuko does: against torch.linalg.slogdet of the autograd Jacobian of
a non-trivial map, never only against a transform whose log-det is 0.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from torch.autograd.functional import jacobian

from genshop.engine import configure, train
from genshop.errors import BadInputError
from genshop.families import get_family
from genshop.families.flow import FlowFamily
from genshop.flows import AffineCoupling, ExpmLinear, Flow, gaussian_baseline_nll

F64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def jordan_block(size: int = 3, eigenvalue: float = 0.7) -> torch.Tensor:
    return eigenvalue * torch.eye(size, dtype=F64) + torch.diag(torch.ones(size - 1, dtype=F64), 1)


def expm_layer(A: torch.Tensor) -> ExpmLinear:
    layer = ExpmLinear(A.shape[0]).double()
    with torch.no_grad():
        layer.A.copy_(A)
    return layer


def randomised(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Every parameter redrawn, so couplings are far from the identity they start as."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def per_example_slogdet(fn, x: torch.Tensor) -> torch.Tensor:
    """slogdet of the autograd Jacobian of fn at each row of x (the zuko check)."""
    out = []
    for row in x:
        J = jacobian(lambda v: fn(v[None])[0][0], row)
        sign, logabs = torch.linalg.slogdet(J)
        assert sign != 0
        out.append(logabs)
    return torch.stack(out)


@pytest.mark.parametrize("A", [rand(6, 6, seed=1), jordan_block()], ids=["random6", "jordan3"])
def test_expm_logdet_is_trace_and_matches_slogdet(A):
    layer = expm_layer(A)
    x = rand(4, A.shape[0], seed=2)
    y, logdet = layer(x)
    sign, logabs = torch.linalg.slogdet(torch.linalg.matrix_exp(A))
    assert sign.item() == 1.0  # det exp(A) = exp(tr A) > 0
    np.testing.assert_allclose(y.detach().numpy(), x.numpy() @ scipy.linalg.expm(A.numpy()).T,
                               rtol=1e-12)
    torch.testing.assert_close(logdet, logabs.expand(4), rtol=0, atol=1e-12)
    torch.testing.assert_close(logdet, torch.trace(A).expand(4), rtol=0, atol=0)
    torch.testing.assert_close(per_example_slogdet(layer, x), logdet, rtol=0, atol=1e-12)


def test_expm_layer_starts_as_a_random_rotation():
    torch.manual_seed(0)
    layer = ExpmLinear(4).double()
    W = layer.weight().detach()
    torch.testing.assert_close(W.T @ W, torch.eye(4, dtype=F64), rtol=0, atol=1e-12)
    assert layer(rand(3, 4))[1].abs().max().item() == 0.0
    assert (W - torch.eye(4, dtype=F64)).abs().max() > 0.1


def test_trace_logdet_has_the_gradient_of_the_expensive_route():
    A = rand(5, 5, seed=20).requires_grad_()
    (via_slogdet,) = torch.autograd.grad(
        torch.linalg.slogdet(torch.linalg.matrix_exp(A)).logabsdet, A)
    layer = expm_layer(A.detach())
    layer(rand(3, 5, seed=21))[1].sum().backward()
    torch.testing.assert_close(via_slogdet, torch.eye(5, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.A.grad, 3 * torch.eye(5, dtype=F64), rtol=0, atol=0)


@pytest.mark.parametrize("A", [rand(6, 6, seed=3), jordan_block()], ids=["random6", "jordan3"])
def test_expm_inverse_is_the_matrix_inverse(A):
    layer = expm_layer(A)
    y = rand(5, A.shape[0], seed=4)
    expected = y @ torch.linalg.inv(torch.linalg.matrix_exp(A)).T
    torch.testing.assert_close(layer.inverse(y), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer(layer.inverse(y))[0], y, rtol=1e-10, atol=1e-12)


def test_jordan_block_exponential_matches_closed_form():
    """exp(λI + N) = e^λ (I + N + N²/2) for the nilpotent 3×3 N: det = e^{3λ} = exp(tr)."""
    lam = 0.7
    N = jordan_block(3, lam) - lam * torch.eye(3, dtype=F64)
    closed = math.exp(lam) * (torch.eye(3, dtype=F64) + N + N @ N / 2)
    torch.testing.assert_close(expm_layer(jordan_block(3, lam)).weight(), closed,
                               rtol=1e-13, atol=1e-13)
    assert torch.linalg.det(closed).item() == pytest.approx(math.exp(3 * lam), rel=1e-13)


@pytest.mark.parametrize("A", [rand(6, 6, seed=5), jordan_block()], ids=["random6", "jordan3"])
def test_ode_of_the_determinant_by_finite_differences(A):
    """f(t) = det(exp(tA)) satisfies f'(t) = tr(A) f(t) (the post's second proof)."""
    def f(t: float) -> float:
        return torch.linalg.det(torch.linalg.matrix_exp(t * A)).item()

    h = 1e-5
    for t in (-0.5, 0.0, 0.3, 1.0):
        derivative = (f(t + h) - f(t - h)) / (2 * h)
        assert derivative == pytest.approx(torch.trace(A).item() * f(t), rel=1e-8)
    assert f(1.0) == pytest.approx(math.exp(torch.trace(A).item()), rel=1e-12)


def test_log_det_equals_trace_of_matrix_log():
    """log det B = tr log B for B = expm(random), with scipy's logm as the independent log."""
    B = scipy.linalg.expm(rand(5, 5, seed=6).numpy())
    trace_log = np.trace(scipy.linalg.logm(B))
    sign, logabs = np.linalg.slogdet(B)
    assert sign == 1.0
    assert trace_log.real == pytest.approx(logabs, rel=1e-12)
    assert abs(trace_log.imag) < 1e-12


def test_coupling_inverse_and_logdet_against_autograd_jacobian():
    layer = randomised(AffineCoupling(torch.tensor([1.0, 0.0, 1.0]), hidden=16), seed=7).double()
    x = rand(6, 3, seed=8)
    y, logdet = layer(x)
    torch.testing.assert_close(y[:, [0, 2]], x[:, [0, 2]], rtol=0, atol=0)
    assert logdet.abs().min() > 1e-3  # a map with a non-trivial log-det
    torch.testing.assert_close(layer.inverse(y), x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(per_example_slogdet(layer, x), logdet, rtol=0, atol=1e-12)


def test_coupling_log_scale_is_bounded_by_tanh():
    layer = randomised(AffineCoupling(torch.tensor([1.0, 0.0]), hidden=8, max_log_scale=1.5),
                       seed=9, scale=20.0).double()
    _, logdet = layer(100 * rand(200, 2, seed=10))
    assert logdet.abs().max() <= 1.5
    assert logdet.abs().max() > 1.4  # the bound is reached, so the check above can bite


def test_standardize_layer_whitens_training_data_and_has_its_logdet():
    data = rand(1000, 2, seed=18) * torch.tensor([3.0, 0.5], dtype=F64) + 4
    flow = Flow(dim=2, blocks=1).double().standardize_with_(data)
    layer = flow.layers[0]
    y, logdet = layer(data)
    torch.testing.assert_close(y.mean(0), torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(y.std(0), torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(per_example_slogdet(layer, data[:3]), logdet[:3], rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(layer.inverse(y), data, rtol=1e-12, atol=1e-12)


def test_flow_log_prob_is_change_of_variables_and_invertible():
    flow = randomised(Flow(dim=2, blocks=3, hidden=16), seed=11, scale=0.3).double()
    flow.standardize_with_(rand(100, 2, seed=19) * 2 + 1)
    x = rand(5, 2, seed=12)
    with torch.no_grad():
        z, logdet = flow(x)
        log_prob = flow.log_prob(x)
    torch.testing.assert_close(per_example_slogdet(flow, x), logdet, rtol=0, atol=1e-10)
    expected = torch.from_numpy(scipy.stats.multivariate_normal(np.zeros(2)).logpdf(z.numpy()))
    torch.testing.assert_close(log_prob, expected + logdet, rtol=0, atol=1e-10)
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-9, atol=1e-10)


def test_flow_density_integrates_to_one():
    flow = randomised(Flow(dim=2, blocks=2, hidden=16), seed=13, scale=0.2).double()
    step = 0.04
    axis = torch.arange(-8, 8, step, dtype=F64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * step**2
    assert mass == pytest.approx(1.0, abs=5e-3)


def test_flow_samples_are_inverse_images_of_base_draws():
    flow = randomised(Flow(dim=2, blocks=2, hidden=16), seed=14, scale=0.3).double()
    x = flow.sample(7, torch.Generator().manual_seed(15))
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(15), dtype=F64)
    torch.testing.assert_close(flow(x)[0], z, rtol=1e-9, atol=1e-10)


def test_gaussian_baseline_matches_scipy():
    train, test = 3 * rand(500, 2, seed=16) + 1, rand(100, 2, seed=17)
    mean, cov = train.mean(0).numpy(), np.cov(train.numpy().T, bias=True)
    expected = -scipy.stats.multivariate_normal(mean, cov).logpdf(test.numpy()).mean()
    assert gaussian_baseline_nll(train, test) == pytest.approx(expected, rel=1e-12)


def test_engine_training_beats_the_gaussian_baseline_on_ring8(tmp_path):
    from genshop.data import get_dataset

    assert get_family("flow") is FlowFamily
    run = tmp_path / "run"
    config = configure("flow", data="ring8", steps=150, batch_size=128, lr=2e-3, blocks=3,
                       hidden=32, sample_every=0, log_every=10, out=str(run))
    flow = train(config, progress=False).net
    nll = [json.loads(line)["nll"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    ring = get_dataset("ring8")
    test = ring.sample(2000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        held_out = flow.nll(test).item()
    baseline = gaussian_baseline_nll(ring.training_set(0), test)
    assert isinstance(flow, Flow) and not flow.training
    assert len(nll) == 15 and max(nll[-3:]) < min(nll[:3]) - 0.5
    assert held_out < baseline - 0.3, (held_out, baseline)


@pytest.mark.parametrize("bad", [torch.ones(4, 3), torch.ones(4), "x"])
def test_bad_point_shapes_are_reported(bad):
    with pytest.raises(BadInputError, match=r"shape \(batch, 2\)"):
        ExpmLinear(2)(bad)
    with pytest.raises(BadInputError, match=r"shape \(batch, 2\)"):
        Flow(dim=2, blocks=1).log_prob(bad)
