"""Volumes of non-square matrices and densities on a generator's manifold.

Post: "Determinants of non-square matrices, revisited" (Scientific Spaces, kexue.fm archive 6096).
The post defines, in absolute value only, the determinant of an n×k matrix B as the k-volume of
the parallelotope its columns span (n > k), or its rows span (n < k):

    |det B| := sqrt(det(BᵀB))   (n >= k),        |det B| := sqrt(det(BBᵀ))   (n < k),

and proves it via B = U C (orthonormal U, triangular C). Equal forms: |Π diag R| (QR) = Π σᵢ(B)
(SVD) = sqrt(Σ_S det(B_S)²) over the k×k row-minors (Cauchy–Binet, not in the post). Both cases
are the product of the min(n, k) singular values of B, which is what `volume` computes; the log
is Σ log σᵢ, never 0.5·log det(BᵀB): forming the Gram matrix squares the condition number, so in
float32 a matrix of condition 1e6 gives a numerically singular BᵀB.

genshop's use (the post leaves applications open): the density of x = G(z) on the k-dimensional
manifold of an injective generator G: ℝᵏ → ℝⁿ is

    log p_G(x) = log p(z) − log_volume(J_G(z)),   p = N(0, I_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.func import jacfwd, vmap

from genshop.errors import BadInputError


def _checked_matrices(B: object, name: str) -> torch.Tensor:
    """B as a floating tensor of shape (..., n, k) with finite entries, else BadInputError."""
    if not isinstance(B, torch.Tensor):
        raise BadInputError(f"{name} must be a torch.Tensor of shape (..., n, k), "
                            f"got {type(B).__name__}")
    if not B.is_floating_point():
        raise BadInputError(f"{name} must be float32 or float64, got {B.dtype}; "
                            f"convert it with .float() or .double()")
    if B.ndim < 2 or B.shape[-1] == 0 or B.shape[-2] == 0:
        raise BadInputError(f"{name} must have shape (..., n, k) with n, k >= 1, "
                            f"got {tuple(B.shape)}")
    if not torch.isfinite(B).all():
        raise BadInputError(f"{name} has NaN or Inf entries; pass finite values")
    return B


def volume(B: torch.Tensor) -> torch.Tensor:
    """k-volume sqrt(det(BᵀB)) (n >= k) or sqrt(det(BBᵀ)) (n < k) of each matrix in (..., n, k).

    Computed as Π σᵢ(B) over the min(n, k) singular values; returns shape (...). Zero for a
    rank-deficient B. For large k the product may under- or overflow: use `log_volume`.
    """
    return torch.linalg.svdvals(_checked_matrices(B, "B")).prod(dim=-1)


def log_volume(B: torch.Tensor) -> torch.Tensor:
    """log of `volume(B)` = Σᵢ log σᵢ(B), shape (...), differentiable.

    Rank deficiency: a singular value σᵢ <= eps(dtype)·σ_max is below the rounding level of the
    SVD and is treated as an exact zero, so a (numerically) rank-deficient B gives −inf rather
    than a LAPACK error or a meaningless large negative number. The gradient at such a B is
    finite by choice: it is the gradient of Σ log σᵢ over the remaining singular values only
    (the true derivative is unbounded there), so do not optimise through rank-deficient points.
    Elsewhere the gradient is the exact ∂/∂B Σ log σᵢ = (B⁺)ᵀ (n >= k), via torch's stable
    svdvals backward.
    """
    sigma = torch.linalg.svdvals(_checked_matrices(B, "B"))
    negligible = sigma <= torch.finfo(sigma.dtype).eps * sigma[..., :1]
    safe_log = torch.log(torch.where(negligible, torch.ones_like(sigma), sigma))
    return torch.where(negligible, torch.full_like(sigma, -math.inf), safe_log).sum(dim=-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row of z (batch, k): −|z|²/2 − (k/2) log 2π."""
    return -0.5 * z.pow(2).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def generator_jacobian(G: Callable[[torch.Tensor], torch.Tensor],
                       z: torch.Tensor) -> torch.Tensor:
    """J_G(z) for each row of z (batch, k): shape (batch, n, k), by vmap(jacfwd(G)).

    G must map one latent vector (k,) to one output vector (n,) (a per-example function: no
    batch statistics, e.g. BatchNorm in training mode). Forward mode costs k passes, the cheap
    side for a generator with k <= n.
    """
    return vmap(jacfwd(G))(z)


def manifold_log_density(G: Callable[[torch.Tensor], torch.Tensor],
                         z: torch.Tensor) -> torch.Tensor:
    """log density of x = G(z) on the manifold G(ℝᵏ), per row of z (batch, k), shape (batch,).

    log p_G(G(z)) = log N(z; 0, I) − log_volume(J_G(z)), with J_G(z) the n×k Jacobian. Needs an
    injective G, so n >= k; a point where J_G is rank-deficient gets +inf (zero volume).
    """
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise BadInputError(f"z must be a floating tensor of shape (batch, k), got {got}")
    if not torch.isfinite(z).all():
        raise BadInputError("z has NaN or Inf entries; pass finite latent codes")
    jac = generator_jacobian(G, z)
    if jac.ndim != 3:
        raise BadInputError(f"G must map a latent vector (k,) to a vector (n,); its Jacobian "
                            f"has shape {tuple(jac.shape[1:])}")
    n, k = jac.shape[-2:]
    if n < k:
        raise BadInputError(f"G maps R^{k} to R^{n} with n < k: it cannot be injective, so it "
                            f"has no density on its image; use a latent size k <= n")
    return standard_normal_log_prob(z) - log_volume(jac)
