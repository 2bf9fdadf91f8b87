"""Mode coverage of 2-D samples: modes captured, % high-quality samples, reverse KL.

Measures the GAN losses and steps of "f-GAN: a production workshop for GANs" (kexue.fm 6016),
"RSGAN: the Turing test in GANs" (6110) and "A GAN with a single loss via stop-gradient" (6387)
on the mixtures of `genshop.data.toy`, by the protocol of VEEGAN (Srivastava et al. 2017) as
coded by PacGAN (Lin et al. 2018; `fjxmlzn/PacGAN`, `pacgan/extensions.py`, `MetricLogger`):

* score `SCORED_SAMPLES` = 2,500 generated points;
* a point x is *high-quality* (HQ) when its distance to the nearest centre μ_j, in units of the
  per-axis std σ, is below 3:  ‖x − μ_j‖ / σ < 3.  PacGAN computes
  `sqrt(sum(d² / diag(Σ_j))) < dis_thre` with Σ_j = σ² I and `dis_thre = 3`, which is exactly
  this rule: a strict inequality on the Euclidean norm of both axes together, not a per-axis
  test.  For a perfect sampler ‖x − μ‖²/σ² is χ²₂, so P(HQ) = 1 − e^{−9/2} ≈ 98.89 %, not the
  1-D 99.73 %;
* mode j is *captured* when it is the nearest centre of at least one HQ point;
* the HQ histogram p̂_j = n_j / Σ n (n_j = HQ points whose nearest centre is j) is compared with
  the uniform mixture weights u_j = 1/K by the *reverse* KL (generated ‖ true):
  KL(p̂ ‖ u) = Σ_j p̂_j log(K p̂_j) = log K − H(p̂),  with 0 log 0 = 0, in nats.
  PacGAN's `MetricLogger` logs H(p̂) ("entropy of coverage"); the paper's reverse-KL column is
  this KL.  It stays finite when modes are missed (K p̂ in the log, u in the denominator);
  three equally filled modes of eight give log(8/3).  With no HQ point p̂ is undefined: NaN.
* runs are aggregated as mean ± standard error, s / √n with s the (n − 1) sample std.

Points with NaN or Inf coordinates are never HQ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genshop.errors import BadInputError

SCORED_SAMPLES = 2_500
HQ_THRESHOLD = 3.0


@dataclass(frozen=True)
class ModeScores:
    """Scores of one sample set against one mixture."""

    modes: int  # captured modes
    num_modes: int  # K, modes of the mixture
    hq_fraction: float  # HQ points / all points
    reverse_kl: float  # KL(HQ histogram ‖ uniform), nats; NaN without HQ points
    counts: tuple[int, ...]  # HQ points per mode

    @property
    def hq_percent(self) -> float:
        return 100.0 * self.hq_fraction


def as_points(samples: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float64 (n, 2) array; anything else is a user error."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().double().numpy()
    points = np.asarray(samples, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise BadInputError(f"mode scores need a non-empty (n, 2) array of points, got shape "
                            f"{points.shape}; pass 2-D samples such as `genshop sample` writes")
    return points


def hq_mode_counts(points: np.ndarray, centers: np.ndarray, std: float,
                   threshold: float = HQ_THRESHOLD) -> np.ndarray:
    """n_j: number of points with ‖x − μ_j‖/σ < threshold and μ_j their nearest centre."""
    dist = np.sqrt(((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=-1)) / std
    dist = np.where(np.isfinite(dist), dist, np.inf)
    nearest = dist.argmin(axis=1)
    hq = dist[np.arange(len(points)), nearest] < threshold
    return np.bincount(nearest[hq], minlength=len(centers))


def reverse_kl_to_uniform(counts: Sequence[int] | np.ndarray) -> float:
    """KL(p̂ ‖ uniform) = Σ p̂_j log(K p̂_j) for the histogram `counts`; NaN if it is all zero."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return math.nan
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(len(counts) * p)))


def mode_scores(samples: torch.Tensor | np.ndarray, centers: torch.Tensor | np.ndarray,
                std: float, threshold: float = HQ_THRESHOLD) -> ModeScores:
    """Modes captured, HQ fraction and reverse KL of `samples` (n, 2) for the given mixture."""
    points = as_points(samples)
    c = np.asarray(centers.detach().cpu().double() if isinstance(centers, torch.Tensor)
                   else centers, dtype=np.float64)
    counts = hq_mode_counts(points, c, std, threshold)
    return ModeScores(modes=int(np.count_nonzero(counts)), num_modes=len(c),
                      hq_fraction=float(counts.sum() / len(points)),
                      reverse_kl=reverse_kl_to_uniform(counts),
                      counts=tuple(int(n) for n in counts))


def score_dataset(samples: torch.Tensor | np.ndarray, dataset) -> ModeScores:
    """`mode_scores` against a 2-D mixture from `genshop.data` (uses its centres and std)."""
    return mode_scores(samples, dataset.centers, dataset.std)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error s/√n with the n−1 sample std); s.e. is NaN for a single value."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise BadInputError("cannot average zero runs")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
    return float(x.mean()), se


@dataclass(frozen=True)
class Aggregate:
    """Mean ± standard error over seeds of the three scores."""

    runs: int
    modes: tuple[float, float]
    hq_percent: tuple[float, float]
    reverse_kl: tuple[float, float]
    all_modes_runs: int  # runs that captured every mode


def aggregate(scores: Sequence[ModeScores]) -> Aggregate:
    return Aggregate(runs=len(scores),
                     modes=mean_stderr([s.modes for s in scores]),
                     hq_percent=mean_stderr([s.hq_percent for s in scores]),
                     reverse_kl=mean_stderr([s.reverse_kl for s in scores]),
                     all_modes_runs=sum(s.modes == s.num_modes for s in scores))


def format_mean_se(value: tuple[float, float], digits: int = 2) -> str:
    """'m ± s' (just 'm' when the s.e. is undefined)."""
    mean, se = value
    return f"{mean:.{digits}f}" if math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"
