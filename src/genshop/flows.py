"""A matrix-exponential invertible layer and a small exact-likelihood normalising flow.

Post: "Appreciating the identity det(exp(A)) = exp(Tr(A))" (Scientific Spaces, kexue.fm archive
6377): for every square A, det(exp A) = exp(tr A) (proof by f(t) = det(exp(tA)),
f'(t) = tr(A) f(t), f(0) = 1), hence exp(A)⁻¹ = exp(−A) and log det B = tr log B.

The flow use is genshop's, not the post's (the post names no machine-learning application): the
layer W = exp(A) is invertible for every A, with

    y = W x,   log|det W| = tr A  (free, no determinant),   x = exp(−A) y.

The flow standardises the data (fixed per-coordinate affine map, log-det −Σ log σ), then
alternates `ExpmLinear` with affine coupling layers (RealNVP, Dinh et al. 2017):

    y = m⊙x + (1−m)⊙(x⊙exp(s(m⊙x)) + t(m⊙x)),   log|det ∂y/∂x| = Σ (1−m)⊙s,
    s = c·tanh(raw_s)   (bounded log-scale, |s| <= c, for stable training),

and its exact log-likelihood is log p(x) = log N(f(x); 0, I) + Σ_layers log|det ∂f_l|.
"""

from __future__ import annotations

import torch
from torch import nn

from genshop.errors import BadInputError
from genshop.linalg import standard_normal_log_prob


def _checked_points(x: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != dim:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise BadInputError(f"{name} must be a tensor of shape (batch, {dim}), got {got}")
    return x


class ExpmLinear(nn.Module):
    """y = exp(A) x with log|det exp(A)| = tr A per example.

    A starts skew-symmetric, (M − Mᵀ)/2 with M ~ N(0, I): exp(A) is a random rotation with
    log-det 0. Starting at the identity instead would leave a flow on standardised product data
    (e.g. the grid25 mixture) at a stationary point: with independent unit-variance coordinates
    every coupling's first-order gradient vanishes, and training never leaves the Gaussian.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        M = torch.randn(dim, dim)
        self.A = nn.Parameter((M - M.T) / 2)

    def weight(self) -> torch.Tensor:
        return torch.linalg.matrix_exp(self.A)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(exp(A) x per row, tr A repeated per row)."""
        x = _checked_points(x, self.dim, "x")
        return x @ self.weight().mT, torch.trace(self.A).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """x = exp(−A) y per row (exp(A)⁻¹ = exp(−A), since A and −A commute)."""
        y = _checked_points(y, self.dim, "y")
        return y @ torch.linalg.matrix_exp(-self.A).mT


class AffineCoupling(nn.Module):
    """RealNVP coupling: the masked part conditions a bounded scale and a shift of the rest."""

    def __init__(self, mask: torch.Tensor, hidden: int = 64, max_log_scale: float = 2.0):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.dim = mask.numel()
        self.max_log_scale = max_log_scale
        self.net = nn.Sequential(nn.Linear(self.dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * self.dim))
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(kept).chunk(2, dim=-1)
        free = 1 - self.mask
        return free * self.max_log_scale * torch.tanh(raw_s), free * t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _checked_points(x, self.dim, "x")
        s, t = self._scale_shift(self.mask * x)
        return x * torch.exp(s) + t, s.sum(dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = _checked_points(y, self.dim, "y")
        s, t = self._scale_shift(self.mask * y)
        return (y - t) * torch.exp(-s)


class Standardize(nn.Module):
    """Fixed affine map y = (x − μ) / σ per coordinate, log|det| = −Σ log σ; μ, σ are buffers
    set from training data by `fit_` (identity until then), so they travel in checkpoints."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("log_std", torch.zeros(dim))

    @torch.no_grad()
    def fit_(self, data: torch.Tensor) -> Standardize:
        data = _checked_points(data, self.dim, "data")
        self.mean.copy_(data.mean(dim=0))
        self.log_std.copy_(data.std(dim=0).clamp_min(1e-12).log())
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _checked_points(x, self.dim, "x")
        return (x - self.mean) * torch.exp(-self.log_std), (-self.log_std.sum()).expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return _checked_points(y, self.dim, "y") * torch.exp(self.log_std) + self.mean


def alternating_masks(dim: int, count: int) -> list[torch.Tensor]:
    """`count` masks keeping the even, then the odd coordinates, and so on."""
    parity = torch.arange(dim) % 2
    return [(parity == i % 2).float() for i in range(count)]


class Flow(nn.Module):
    """x -> z: `Standardize`, then blocks of (ExpmLinear, AffineCoupling); base N(0, I)."""

    def __init__(self, dim: int = 2, blocks: int = 6, hidden: int = 64,
                 max_log_scale: float = 2.0):
        super().__init__()
        if dim < 2:
            raise BadInputError(f"a coupling flow needs dim >= 2, got {dim}")
        self.dim = dim
        layers: list[nn.Module] = [Standardize(dim)]
        for mask in alternating_masks(dim, blocks):
            layers += [ExpmLinear(dim), AffineCoupling(mask, hidden, max_log_scale)]
        self.layers = nn.ModuleList(layers)

    def standardize_with_(self, data: torch.Tensor) -> Flow:
        """Set the first layer's μ, σ from training data (before training)."""
        self.layers[0].fit_(data)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z = f(x), Σ log|det ∂f_l|) per row."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, layer_logdet = layer(x)
            logdet = logdet + layer_logdet
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x| per row, in nats."""
        z, logdet = self(_checked_points(x, self.dim, "x"))
        return standard_normal_log_prob(z) + logdet

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood, nats per point: −(1/N) Σ log p(xᵢ)."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = f⁻¹(z), z ~ N(0, I) drawn on the CPU (so a CPU generator works for any device)."""
        mean = self.layers[0].mean
        z = torch.randn(n, self.dim, generator=generator, dtype=mean.dtype)
        return self.inverse(z.to(mean.device))


def gaussian_baseline_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Held-out NLL (nats per point) of the maximum-likelihood Gaussian fitted to `train`:

    −(1/N) Σ log N(xᵢ; μ̂, Σ̂),  μ̂ = mean, Σ̂ = (1/M) Σ (x − μ̂)(x − μ̂)ᵀ over the training set.
    """
    train, test = train.double(), test.double()
    mean = train.mean(dim=0)
    centred = train - mean
    cov = centred.T @ centred / train.shape[0]
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return -dist.log_prob(test).mean().item()
