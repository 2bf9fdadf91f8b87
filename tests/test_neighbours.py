"""genshop.neighbours: exact blocked nearest neighbours (IMLE/GLANN, kexue.fm 6394) against
brute force in float64, ties, cancellation far from the origin, and the Johnson–Lindenstrauss
projection."""

from __future__ import annotations

import math

import pytest
import torch

from genshop import neighbours
from genshop.errors import BadInputError
from genshop.neighbours import default_block, jl_dimension, nearest, random_projection

F32, F64 = torch.float32, torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force(queries: torch.Tensor, pool: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest by Σ (q − p)² over every pair in float64, ties by smallest index."""
    q = queries.reshape(len(queries), -1).double()
    p = pool.reshape(len(pool), -1).double()
    d2 = (q[:, None, :] - p[None, :, :]).square().sum(-1)
    d2s, idx = torch.sort(d2, dim=1, stable=True)
    return idx[:, :k], d2s[:, :k]


def naive_matmul_form(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Nearest index by ‖q‖² − 2 q·p + ‖p‖² on the raw values, in their dtype."""
    d2 = queries.square().sum(1)[:, None] - 2 * queries @ pool.T + pool.square().sum(1)
    return d2.argmin(1)


def assert_matches_brute_force(queries, pool, k=1, block=None):
    idx, d2 = nearest(queries, pool, k=k, block=block)
    ref_idx, ref_d2 = brute_force(queries, pool, k)
    assert idx.shape == d2.shape == (len(queries), k)
    assert idx.dtype == torch.int64 and d2.dtype == queries.dtype
    assert torch.equal(idx, ref_idx)
    rtol = 1e-6 if queries.dtype == F32 else 1e-13
    torch.testing.assert_close(d2.double(), ref_d2, rtol=rtol, atol=0)


@pytest.mark.parametrize(("n", "m", "shape", "k", "block", "dtype"), [
    (50, 300, (8,), 1, 7, F32),            # block loop with a ragged last block
    (33, 130, (1, 4, 4), 3, 7, F64),       # image-shaped points, k > 1, pool < 64·k
    (100, 1000, (64,), 1, None, F32),      # default block, pool padded to whole groups
    (20, 70, (3,), 5, 1, F32),             # one query per block
    (64, 777, (2, 5), 4, 16, F64),         # several groups, padding, k > 1
    (10, 1, (6,), 1, 3, F32),              # a pool of one point
    (40, 257, (784,), 2, 9, F32),          # pixel-sized points
])
def test_matches_brute_force(n, m, shape, k, block, dtype):
    g = gen(n + m)
    queries = torch.randn(n, *shape, generator=g, dtype=dtype)
    pool = torch.randn(m, *shape, generator=g, dtype=dtype)
    assert_matches_brute_force(queries, pool, k=k, block=block)


def test_every_block_size_gives_the_same_answer():
    g = gen(1)
    queries, pool = torch.rand(61, 12, generator=g), torch.rand(500, 12, generator=g)
    results = [nearest(queries, pool, k=3, block=b) for b in (1, 7, 60, 61, 1000, None)]
    for idx, d2 in results[1:]:
        assert torch.equal(idx, results[0][0]) and torch.equal(d2, results[0][1])


def test_trailing_shapes_are_flattened():
    g = gen(2)
    queries, pool = torch.rand(9, 1, 4, 4, generator=g), torch.rand(80, 16, generator=g)
    idx, d2 = nearest(queries, pool, k=2)
    flat_idx, flat_d2 = nearest(queries.reshape(9, 16), pool, k=2)
    assert torch.equal(idx, flat_idx) and torch.equal(d2, flat_d2)
    assert_matches_brute_force(queries, pool, k=2)


def test_k_nearest_are_sorted_by_distance():
    g = gen(3)
    queries, pool = torch.randn(30, 5, generator=g), torch.randn(400, 5, generator=g)
    idx, d2 = nearest(queries, pool, k=10)
    assert bool((d2[:, 1:] >= d2[:, :-1]).all())
    assert bool((d2[:, 1:] > d2[:, :-1]).any())
    assert all(len(set(row.tolist())) == 10 for row in idx)


def test_no_queries_give_empty_results():
    idx, d2 = nearest(torch.empty(0, 4), torch.rand(5, 4), k=2)
    assert idx.shape == d2.shape == (0, 2)


# ----------------------------------------------------------------- ties: the smallest index
def test_duplicate_pool_points_resolve_to_the_first_copy():
    g = gen(4)
    base = torch.randn(40, 6, generator=g)
    pool = torch.cat([base, base, base])
    idx, d2 = nearest(base, pool, k=3)
    assert torch.equal(idx, torch.arange(40)[:, None] + torch.tensor([0, 40, 80]))
    assert torch.equal(d2, torch.zeros(40, 3))


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_equidistant_points_come_in_index_order(offset):
    """The query sits at the same distance 1 from ±e_i (exactly representable in float32 even
    1e4 from the origin); a farther point and a nearer one are mixed in."""
    unit = torch.eye(4)
    pool = torch.cat([2 * unit[:1], unit, -unit, 0.5 * unit[3:]]) + offset
    query = torch.full((1, 4), offset)
    idx, d2 = nearest(query, pool, k=6)
    assert idx.tolist() == [[9, 1, 2, 3, 4, 5]]
    assert d2.tolist() == [[0.25, 1.0, 1.0, 1.0, 1.0, 1.0]]


# ------------------------------------------------- cancellation of the matmul form: far points
def far_cloud(offset: float, dtype: torch.dtype, seed: int = 5):
    g = gen(seed)
    shift = offset * torch.ones(16, dtype=dtype)
    return (torch.randn(200, 16, generator=g, dtype=dtype) + shift,
            torch.randn(300, 16, generator=g, dtype=dtype) + shift)


@pytest.mark.parametrize(("offset", "dtype"), [(1e4, F32), (1e12, F64)])
def test_points_far_from_the_origin_are_matched_exactly(offset, dtype):
    queries, pool = far_cloud(offset, dtype)
    wrong = (naive_matmul_form(queries, pool) != brute_force(queries, pool, 1)[0][:, 0])
    assert wrong.float().mean() > 0.5  # the naive form has lost the digits that rank them
    assert_matches_brute_force(queries, pool, k=3)


def two_far_clusters(seed: int = 6):
    """Half the pool near +c·e₀, half near −c·e₀, queries near +c·e₀: the pool's mean is near
    the origin, so translating by it cannot save the matmul form's digits."""
    g = gen(seed)
    c = torch.zeros(8)
    c[0] = 3000.0
    pool = torch.cat([torch.randn(200, 8, generator=g) + c, torch.randn(200, 8, generator=g) - c])
    pool = pool[torch.randperm(400, generator=g)]
    return torch.randn(100, 8, generator=g) + c, pool


def test_far_clusters_are_matched_exactly():
    queries, pool = two_far_clusters()
    centred = pool.mean(0)
    wrong = naive_matmul_form(queries - centred, pool - centred)
    assert (wrong != brute_force(queries, pool, 1)[0][:, 0]).float().mean() > 0.5
    assert_matches_brute_force(queries, pool, k=2, block=7)


def test_the_rounding_window_is_what_makes_far_clusters_exact(monkeypatch):
    queries, pool = two_far_clusters()
    monkeypatch.setattr(neighbours, "_roundoff", lambda dtype: 0.0)
    idx, _ = nearest(queries, pool)
    assert (idx[:, 0] != brute_force(queries, pool, 1)[0][:, 0]).any()


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("queries", "pool", "kwargs", "match"), [
    (torch.rand(3, 4), torch.rand(0, 4), {}, "pool is empty"),
    (torch.rand(3, 4), torch.rand(5, 3), {}, "same nonzero size"),
    (torch.rand(3, 0), torch.rand(5, 0), {}, "same nonzero size"),
    (torch.rand(3, 4), torch.rand(5, 4), {"k": 6}, "k must be"),
    (torch.rand(3, 4), torch.rand(5, 4), {"k": 0}, "k must be"),
    (torch.rand(3, 4), torch.rand(5, 4), {"k": 1.0}, "k must be"),
    (torch.rand(3, 4), torch.rand(5, 4), {"block": 0}, "block must be"),
    (torch.rand(3, 4), torch.rand(5, 4), {"block": True}, "block must be"),
    (torch.ones(3, 4, dtype=torch.int64), torch.rand(5, 4), {}, "float32 or float64"),
    (torch.rand(3, 4, dtype=torch.float16), torch.rand(5, 4), {}, "float32 or float64"),
    (torch.rand(3, 4), torch.rand(5, 4, dtype=F64), {}, "one dtype"),
    (torch.rand(3, 4).numpy(), torch.rand(5, 4), {}, "torch.Tensor"),
    (torch.tensor(1.0), torch.rand(5, 4), {}, "scalar"),
    (torch.rand(3, 4), torch.tensor([[0.0, math.nan]]).repeat(5, 2), {}, "pool has NaN"),
    (torch.tensor([[math.inf, 0.0]]), torch.rand(5, 2), {}, "queries have NaN"),
    (torch.full((2, 3), 1e30), torch.zeros(4, 3), {}, "too large"),
])
def test_bad_input_is_one_line(queries, pool, kwargs, match):
    with pytest.raises(BadInputError, match=match) as info:
        nearest(queries, pool, **kwargs)
    assert "\n" not in str(info.value)


def test_large_values_pass_in_float64():
    queries, pool = torch.full((2, 3), 1e30, dtype=F64), torch.zeros(4, 3, dtype=F64)
    assert_matches_brute_force(queries, pool)


def test_default_block_bounds_the_distance_block():
    assert default_block(100_000, 64) == 41  # 2²² entries
    assert default_block(100_000, 784) == 196  # a quarter of the pool's 100000 × 784 entries
    assert default_block(10**9, 3) == 1
    assert default_block(1, 8) == 2**22


# ---------------------------------------------------------- Johnson–Lindenstrauss projection
def test_projection_is_fixed_by_its_seed():
    R = random_projection(30, 10, seed=7)
    assert R.shape == (30, 10) and R.dtype == F32
    assert torch.equal(R, random_projection(30, 10, seed=7))
    assert not torch.equal(R, random_projection(30, 10, seed=8))
    assert random_projection(30, 10, seed=7, dtype=F64).dtype == F64


def test_projected_squared_norm_is_chi_square_over_dim_out():
    """‖uR‖² for a unit u is exactly χ²_k/k over the draw of R: mean 1, variance 2/k. Over S
    seeds the sample mean has sd sqrt(2/(kS)) and the sample variance a relative sd of
    sqrt((2 + 12/k)/S) (χ²'s excess kurtosis is 12/k); each is checked within 5 sd."""
    k, S = 20, 400
    u = torch.randn(50, generator=gen(9), dtype=F64)
    u /= u.norm()
    r = torch.stack([(u @ random_projection(50, k, seed=s, dtype=F64)).square().sum()
                     for s in range(S)])
    assert abs(r.mean().item() - 1) <= 5 * math.sqrt(2 / (k * S))
    rel_sd = math.sqrt((2 + 12 / k) / S)
    assert abs(r.var().item() / (2 / k) - 1) <= 5 * rel_sd


def pairwise_ratios(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return ((x[i] - x[j]) @ R).square().sum(1) / (x[i] - x[j]).square().sum(1)


def test_jl_dimension_keeps_every_pair_within_eps():
    n, eps = 100, 0.5
    dim_out = jl_dimension(n, eps, delta=0.01)
    assert dim_out == 332  # (4 ln 100 + 2 ln 100) / (1/8 − 1/24) = 331.6
    x = torch.randn(n, 2000, generator=gen(10), dtype=F64)
    for seed in range(3):
        ratios = pairwise_ratios(x, random_projection(2000, dim_out, seed, dtype=F64))
        assert bool(((ratios > 1 - eps) & (ratios < 1 + eps)).all())
    ratios = pairwise_ratios(x, random_projection(2000, 8, 0, dtype=F64))
    assert not bool(((ratios > 1 - eps) & (ratios < 1 + eps)).all())


def test_search_in_a_projected_space():
    """Neighbours found in a JL space are those of the projected points, exactly."""
    g = gen(11)
    queries, pool = torch.rand(20, 1, 28, 28, generator=g), torch.rand(300, 784, generator=g)
    R = random_projection(784, 64, seed=0)
    assert_matches_brute_force(queries.flatten(1) @ R, pool @ R, k=2)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: jl_dimension(1, 0.5), "n must be"),
    (lambda: jl_dimension(10, 1.0), "eps and delta"),
    (lambda: jl_dimension(10, 0.5, delta=0.0), "eps and delta"),
    (lambda: random_projection(0, 4, 0), "dim_in"),
    (lambda: random_projection(4, 2.0, 0), "dim_out"),
    (lambda: random_projection(4, 2, 0, dtype=torch.int32), "dtype"),
])
def test_bad_projection_input_is_one_line(call, match):
    with pytest.raises(BadInputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
