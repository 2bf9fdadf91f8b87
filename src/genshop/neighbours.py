"""Exact nearest neighbours in blocks of queries, and a fixed random projection to search in.

Post: "a brief introduction to the non-adversarial generative model GLANN" (Scientific Spaces,
kexue.fm archive 6394). IMLE (Li & Malik, arXiv 1809.09087) pulls, for every data point x_i, its
nearest generated sample towards it,

    loss = (1/M) Σ_i min_j ‖x_i − G(z_j)‖²,

and GLANN (Hoshen, Li & Malik, arXiv 1812.08985) runs the same search in GLO's code space.
`nearest(queries, pool, k)` returns, for each query q, the k pool points p with the smallest
‖q − p‖², as (indices, squared distances), both of shape (queries, k), nearest first.

Search. One matrix product per block of queries, in the matmul form

    ‖q − p‖² = ‖q‖² − 2 q·p + ‖p‖²,

after translating queries and pool by the pool's mean μ (distances do not change; the form's
rounding grows with the norms, so points far from the origin lose every digit without it).

Rounding. In floating point with unit roundoff u the form is off by at most
E(q) = 2 (d + 5) u (‖q − μ‖ + R)², R = max_p ‖p − μ‖ (the dot product of length d costs d·u,
the norms, sums and the translation the rest; the factor 2 covers second-order terms and the
threshold's own rounding; float32 products allowed to run in TF32 or bfloat16 by
`torch.set_float32_matmul_precision` get their u). Clamping the form at 0 would hide negative
values, not fix the ranking, so the form only selects candidates: let t be the k-th smallest,
over groups of `GROUP` pool points, of the group minima of the form (t is at least its k-th
smallest value); every pool point whose value lies within 2 E(q) of t is re-checked in the
direct form Σ (q − p)² in float64 from the original values. Every point at least as near as
the true k-th nearest lies in that window, so the result is the true k nearest up to float64
rounding of the direct form, and the squared distances returned are the re-checked ones (never
negative), cast to the input dtype. On data in general position the window holds k points and
a few; it grows only where many pool points are equidistant from a query within E (exact
duplicates in the pool), and then costs O(pool · d) float64 work for that query.

Ties. Equal squared distances are ordered by pool index: the smallest index comes first.

Memory. With b = `block` queries per product, the working memory is the b × pool block of the
matmul values plus a constant multiple of it (the window mask, its pairs and the chunked
float64 re-check), besides one translated copy of the pool (pool × d). It does not grow with
the number of queries. The default `block` keeps b × pool at about 2²² entries (16 MiB in
float32), or at a quarter of the pool's pool × d entries where that is more.

Projection. `random_projection(d_in, d_out, seed)` is a fixed Gaussian matrix with entries
N(0, 1/d_out): for any x, ‖x R‖²/‖x‖² ~ χ²_{d_out}/d_out (mean 1, variance 2/d_out). By the
Johnson–Lindenstrauss lemma (Dasgupta & Gupta 2003), d_out ≥ `jl_dimension(n, eps, delta)` =
(4 ln n + 2 ln(1/δ)) / (ε²/2 − ε³/3) keeps all squared pairwise distances of n points within a
factor 1 ± ε with probability at least 1 − δ, whatever d_in is: search `x.flatten(1) @ R` to
match high-dimensional data at a fraction of the cost (the neighbours are then those of the
projected points).
"""

from __future__ import annotations

import math

import torch

from genshop.errors import BadInputError

BLOCK_ENTRIES = 1 << 22
"""Entries of the block × pool matrix that the default `block` aims at."""

GROUP = 64
"""Pool points screened together by their minimum before any point is compared alone."""

_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}
_REDUCED_F32_MATMUL = {"high": 2.0 ** -11, "medium": 2.0 ** -8}  # TF32 / bfloat16 products


def default_block(pool_size: int, dim: int) -> int:
    """Queries per block: block × pool_size about `BLOCK_ENTRIES`, or at most a quarter of the
    pool's own pool_size × dim entries where that is more (dim // 4 rows keep a wide product
    efficient); at least 1."""
    return max(1, BLOCK_ENTRIES // max(1, pool_size), dim // 4)


def _points(x: object, name: str) -> torch.Tensor:
    """x as an (n, features) float32/float64 tensor, else BadInputError (finiteness is
    checked on the squared norms the search computes anyway)."""
    if not isinstance(x, torch.Tensor):
        raise BadInputError(f"{name} must be a torch.Tensor of shape (n, ...), "
                            f"got {type(x).__name__}")
    if x.dtype not in _ROUNDOFF:
        raise BadInputError(f"{name} must be float32 or float64, got {x.dtype}; "
                            f"convert it with .float() or .double()")
    if x.ndim == 0:
        raise BadInputError(f"{name} must have shape (n, ...), got a scalar")
    return x.reshape(len(x), math.prod(x.shape[1:]))


def _checked(queries: object, pool: object, k: object,
             block: object) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    q, p = _points(queries, "queries"), _points(pool, "pool")
    if len(p) == 0:
        raise BadInputError("pool is empty; pass at least one pool point")
    if q.shape[1] != p.shape[1] or q.shape[1] == 0:
        raise BadInputError(f"queries have {q.shape[1]} features per point and pool points "
                            f"{p.shape[1]}; pass points of the same nonzero size")
    if q.dtype != p.dtype or q.device != p.device:
        raise BadInputError(f"queries are {q.dtype} on {q.device} and pool {p.dtype} on "
                            f"{p.device}; pass both with one dtype on one device")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(p):
        raise BadInputError(f"k must be an integer from 1 to the pool size {len(p)}, got {k!r}")
    block = default_block(len(p), p.shape[1]) if block is None else block
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise BadInputError(f"block must be a positive integer (queries per block), got "
                            f"{block!r}")
    return q, p, k, block


def _roundoff(dtype: torch.dtype) -> float:
    """Unit roundoff of a matrix product in `dtype` (float32 products may run in TF32/bf16)."""
    if dtype == torch.float32:
        return _REDUCED_F32_MATMUL.get(torch.get_float32_matmul_precision(), _ROUNDOFF[dtype])
    return _ROUNDOFF[dtype]


class _Pool:
    """The pool translated by its mean and padded to whole groups of `group` points (padding
    rows of zeros with infinite squared norm, so they never enter a window), with the squared
    norms and the radius R that the rounding bound needs."""

    def __init__(self, p: torch.Tensor, k: int):
        m, dim = p.shape
        self.points, self.size = p, m
        self.group = GROUP if m >= GROUP * k else 1
        padded = m + (-m % self.group)
        self.centre = p.mean(0)
        self.centred = p.new_zeros(padded, dim)
        torch.sub(p, self.centre, out=self.centred[:m])
        self.norms = self.centred.square().sum(1)
        self.norms[m:] = math.inf
        self.radius = self.norms[:m].max().sqrt()
        if not torch.isfinite(self.radius):
            raise BadInputError(f"pool has NaN or Inf entries, or entries too large for "
                                f"{p.dtype}; pass finite values (float64 for large ones)")
        self.bound_scale = 2.0 * (dim + 5) * _roundoff(p.dtype)


def _window(qb: torch.Tensor, pool: _Pool, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of every pool point whose matmul value ‖p‖² − 2 q·p lies within 2 E(q) of
    t, the k-th smallest group minimum of its row (t is at least the k-th smallest value, so
    the window holds every point the exact k nearest can be); ‖q‖², equal along a row, is
    left out. Groups are screened first so that only their minima are compared in full."""
    qc = qb - pool.centre
    values = torch.addmm(pool.norms, qc, pool.centred.T, alpha=-2)
    groups = values.view(len(qb), -1, pool.group).amin(2)
    if k == 1:
        kth = groups.amin(1)
    else:
        kth = groups.topk(k, dim=1, largest=False, sorted=True).values[:, -1]
    bound = pool.bound_scale * (qc.square().sum(1).sqrt() + pool.radius).square()
    if not torch.isfinite(bound).all():
        raise BadInputError(f"queries have NaN or Inf entries, or entries too large for "
                            f"{qb.dtype}; pass finite values (float64 for large ones)")
    threshold = kth + 2 * bound
    g_rows, g_cols = (groups <= threshold[:, None]).nonzero(as_tuple=True)
    offsets = torch.arange(pool.group, device=qb.device)
    rows = g_rows.repeat_interleave(pool.group)
    cols = (g_cols[:, None] * pool.group + offsets).reshape(-1)
    inside = values[rows, cols] <= threshold[rows]
    return rows[inside], cols[inside]


def _direct(qb: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
            chunk: int) -> torch.Tensor:
    """Σ (q − p)² in float64 for each pair (rows[i], cols[i]), `chunk` pairs at a time."""
    out = torch.empty(len(rows), dtype=torch.float64, device=qb.device)
    for s in range(0, len(rows), chunk):
        r, c = rows[s:s + chunk], cols[s:s + chunk]
        out[s:s + chunk] = (qb[r].double() - p[c].double()).square().sum(1)
    return out


def _k_smallest(rows: torch.Tensor, cols: torch.Tensor, d2: torch.Tensor, n_rows: int,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k pairs of smallest d2, ties by smallest col: sorted by (row, d2, col)."""
    order = torch.sort(cols, stable=True).indices
    order = order[torch.sort(d2[order], stable=True).indices]
    order = order[torch.sort(rows[order], stable=True).indices]
    counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    take = order[starts[:, None] + torch.arange(k, device=rows.device)]
    return cols[take], d2[take]


def _search_block(qb: torch.Tensor, pool: _Pool, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = _window(qb, pool, k)
    chunk = max(1, len(qb) * pool.size // pool.points.shape[1])
    d2 = _direct(qb, pool.points, rows, cols, chunk)
    return _k_smallest(rows, cols, d2, len(qb), k)


def nearest(queries: torch.Tensor, pool: torch.Tensor, k: int = 1,
            block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest pool points of each query by squared Euclidean distance, exact.

    queries (n, ...) and pool (m, ...): float32 or float64, same dtype and device, each point
    flattened to its features. Returns (indices, squared_distances), shapes (n, k), int64 and
    the input dtype, nearest first, equal distances by smallest pool index. `block` queries
    are searched per matrix product (default `default_block(m, features)`); memory grows with
    block × m, not with n.
    """
    q, p, k, block = _checked(queries, pool, k, block)
    index = torch.empty(len(q), k, dtype=torch.int64, device=q.device)
    dist = torch.empty(len(q), k, dtype=q.dtype, device=q.device)
    prepared = _Pool(p, k)
    for s in range(0, len(q), block):
        i, d2 = _search_block(q[s:s + block], prepared, k)
        index[s:s + block], dist[s:s + block] = i, d2.to(q.dtype)
    return index, dist


def jl_dimension(n: int, eps: float, delta: float = 0.01) -> int:
    """Smallest d_out for which a Gaussian projection keeps every squared distance among n
    points within a factor 1 ± eps with probability ≥ 1 − delta (Johnson–Lindenstrauss with
    the χ² tail bounds of Dasgupta & Gupta 2003): (4 ln n + 2 ln(1/δ)) / (ε²/2 − ε³/3)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise BadInputError(f"n must be an integer >= 2 (points), got {n!r}")
    if not 0 < eps < 1 or not 0 < delta < 1:
        raise BadInputError(f"eps and delta must lie in (0, 1), got {eps!r} and {delta!r}")
    return math.ceil((4 * math.log(n) + 2 * math.log(1 / delta)) / (eps ** 2 / 2 - eps ** 3 / 3))


def random_projection(dim_in: int, dim_out: int, seed: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A fixed (dim_in, dim_out) Gaussian matrix R with entries N(0, 1/dim_out), drawn from
    `seed` on the CPU: `x.flatten(1) @ R` keeps squared distances in expectation, within
    1 ± eps for n points when dim_out ≥ `jl_dimension(n, eps)`."""
    for name, v in (("dim_in", dim_in), ("dim_out", dim_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BadInputError(f"{name} must be a positive integer, got {v!r}")
    if dtype not in _ROUNDOFF:
        raise BadInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(dim_in, dim_out, generator=g, dtype=torch.float64)
            / math.sqrt(dim_out)).to(dtype)
