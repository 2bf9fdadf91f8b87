"""Sample-quality scores of 28×28 images on the features of genshop's reference classifier.

These scores judge the image models of "GLANN, a non-adversarial generator" (kexue.fm 6394; the
GLANN paper's Table 1 is an FID table), "f-GAN: a production workshop for GANs" (6016), "RSGAN"
(6110) and "A GAN with a single loss via stop-gradient" (6387). The feature network is
`genshop.metrics.classifier` (its penultimate layer, 128 values), *not* ImageNet Inception-v3:
the numbers rank models trained here and are not comparable with published Inception-FIDs.
All arithmetic is float64 (features are cast before any sum).

Fréchet distance (Heusel et al. 2017) between N(μ₁, C₁) and N(μ₂, C₂):

    d² = ‖μ₁ − μ₂‖² + tr C₁ + tr C₂ − 2 tr (C₁^½ C₂ C₁^½)^½

C₁^½ comes from the eigen-decomposition of C₁, then tr(·)^½ is the sum of the square roots of
the eigenvalues of the symmetric PSD matrix C₁^½ C₂ C₁^½, which is similar to C₁C₂. Eigenvalues
below d·ε·λ_max (rounding noise, whose square roots would add ≈ 10⁻⁸ each) or negative count as
0. Nothing is inverted, so singular covariances (fewer samples than features) are fine. Covariances
are the unbiased (n − 1) ones of the features, computed after subtracting the mean.

KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic kernel k(x, y) = (xᵀy/d + 1)³,

    MMD²ᵤ = Σ_{i≠j} k(xᵢ, xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ)/m²,

averaged over `subsets` random subsets of m points of each set (drawn without replacement);
returned as (mean, population std over subsets), as torch-fidelity and torchmetrics do.

Precision / recall (Kynkäänniemi et al. 2019): r_k(a) is the distance from a to its k-th nearest
neighbour in its own set (itself excluded), k = 3. A point lies in the manifold of a set Φ when
‖φ − a‖ ≤ r_k(a) for some a ∈ Φ. precision = share of fake points in the real manifold,
recall = share of real points in the fake manifold.

Density / coverage (Naeem et al. 2020), with the real radii r_k, k = 5, M fake and N real points:

    density  = 1/(kM) Σⱼ Σᵢ 1[‖Yⱼ − Xᵢ‖ ≤ r_k(Xᵢ)]
    coverage = 1/N Σᵢ 1[minⱼ ‖Yⱼ − Xᵢ‖ ≤ r_k(Xᵢ)]

(their code uses < ; the two differ only on ties). Distances come in blocks of rows, so 10,000 ×
10,000 points never hold a full distance matrix.

Class coverage: the histogram n_c of arg-max classes; classes found = #{c : n_c > 0} of 10, and
class_kl = KL(n̂ ‖ uniform) = Σ n̂_c log(10 n̂_c) in nats. Stacked MNIST (VEEGAN, Srivastava et
al. 2017; PacGAN, Lin et al. 2018): each of the 3 channels is classified, the mode is
100·d₀ + 10·d₁ + d₂; modes found of 1,000 and KL(mode histogram ‖ uniform on 1,000), which the
papers count over 26,000 samples.

Vendi score (Friedman & Dieng 2022) with the class-probability kernel: for a sample with one
probability vector pᶜ per channel, k(i, j) = Πᶜ cos(pᵢᶜ, pⱼᶜ) (so k(i, i) = 1);
VS = exp(−Σ λ log λ) over the eigenvalues λ of K/n. K = ΦΦᵀ with Φᵢ = ⊗ᶜ pᵢᶜ/‖pᵢᶜ‖, so λ are
also the eigenvalues of ΦᵀΦ/n (10×10, or 1,000×1,000 for three channels). n identical samples
give 1; equal groups of one-hot vectors of k classes give k.

`score_images` runs all of these on N×C×28×28 samples against the 2,000 test digits (see its
docstring for the protocol, which every result records).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genshop.data.fetch import cache_dir, save_npz_atomic
from genshop.data.images import MNIST, SPLIT_SHA256, STACKED_MNIST
from genshop.errors import BadInputError, UnknownNameError
from genshop.metrics.classifier import (
    EXTRACTOR_NAME,
    DigitClassifier,
    load_classifier,
    predict,
    weights_sha256,
)
from genshop.metrics.modes import reverse_kl_to_uniform

Array = np.ndarray | torch.Tensor
BLOCK_ENTRIES = 1 << 22  # distance entries per block: 32 MB of float64


def as_float64(x: Array, name: str, ndim: int) -> np.ndarray:
    """x as a finite float64 numpy array with `ndim` dimensions; BadInputError otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim or a.size == 0:
        raise BadInputError(f"{name} must be a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise BadInputError(f"{name} holds NaN or Inf values; score finite samples only")
    return a


# -- Fréchet distance -------------------------------------------------------------------------

def feature_stats(feats: Array) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of features (n, d), n ≥ 2, in float64."""
    f = as_float64(feats, "features", 2)
    if len(f) < 2:
        raise BadInputError("a covariance needs at least 2 feature vectors")
    mu = f.mean(axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _psd_eigh(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the symmetric part of c, with the eigenvalues that rounding
    cannot tell from 0 (below d·ε·λ_max, or negative) set to 0."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    floor = len(w) * np.finfo(np.float64).eps * max(w.max(), 0.0)
    return np.where(w > floor, w, 0.0), v


def frechet_distance(mu1: Array, cov1: Array, mu2: Array, cov2: Array) -> float:
    """d² between N(mu1, cov1) and N(mu2, cov2) (formula in the module docstring), ≥ 0."""
    m1, m2 = as_float64(mu1, "mu1", 1), as_float64(mu2, "mu2", 1)
    c1, c2 = as_float64(cov1, "cov1", 2), as_float64(cov2, "cov2", 2)
    d = len(m1)
    if m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise BadInputError(f"means and covariances disagree in size: {m1.shape}, {c1.shape}, "
                            f"{m2.shape}, {c2.shape}")
    w1, v1 = _psd_eigh(c1)
    s1 = (v1 * np.sqrt(w1)) @ v1.T  # C₁^½
    cross = np.sqrt(_psd_eigh(s1 @ c2 @ s1)[0]).sum()
    value = float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)
    return max(value, 0.0)


def fid(feat_x: Array, feat_y: Array) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (n, d)."""
    return frechet_distance(*feature_stats(feat_x), *feature_stats(feat_y))


# -- KID ---------------------------------------------------------------------------------------

def _cube(a: np.ndarray) -> np.ndarray:
    return a * a * a


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-sized sets with k(a, b) = (aᵀb/d + 1)³."""
    m, d = x.shape
    kxx, kyy, kxy = (_cube(a @ b.T / d + 1) for a, b in ((x, x), (y, y), (x, y)))
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.mean())


def kid(feat_x: Array, feat_y: Array, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD² over random subsets of
    m = min(subset_size, n_x, n_y) points of each set (module docstring)."""
    x, y = as_float64(feat_x, "feat_x", 2), as_float64(feat_y, "feat_y", 2)
    if x.shape[1] != y.shape[1]:
        raise BadInputError(f"feature sizes differ: {x.shape[1]} and {y.shape[1]}")
    m = min(subset_size, len(x), len(y))
    if m < 2 or subsets < 1:
        raise BadInputError(f"KID needs subsets ≥ 1 of at least 2 points each, got {subsets} "
                            f"of {m}")
    rng = np.random.default_rng(seed)
    values = np.array([polynomial_mmd2(x[rng.choice(len(x), m, replace=False)],
                                       y[rng.choice(len(y), m, replace=False)])
                       for _ in range(subsets)])
    return float(values.mean()), float(values.std())


# -- k-NN manifolds: precision / recall, density / coverage ------------------------------------

def _blocks(n_rows: int, n_cols: int):
    step = max(1, BLOCK_ENTRIES // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """‖aᵢ − bⱼ‖² as a (len(a), len(b)) matrix, clipped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.clip(d, 0, None)


def knn_sq_radii(x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """{k: r_k(xᵢ)²} for each k in ks: squared distance from each point to its k-th nearest
    other point."""
    if not all(1 <= k < len(x) for k in ks):
        raise BadInputError(f"k-NN radii with k = {max(ks)} need more than {max(ks)} points, "
                            f"got {len(x)}")
    radii = {k: np.empty(len(x)) for k in ks}
    for rows in _blocks(len(x), len(x)):
        d = _sq_distances(x[rows], x)
        d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = -1.0  # self comes first
        d = np.partition(d, list(ks), axis=1)
        for k in ks:
            radii[k][rows] = d[:, k]
    return radii


def manifold_scores(real_feats: Array, fake_feats: Array, k_pr: int = 3,
                    k_dc: int = 5) -> dict[str, float]:
    """Precision and recall (k = k_pr; Kynkäänniemi et al. 2019), density and coverage
    (k = k_dc; Naeem et al. 2020) of fake against real features (module docstring), from
    three blocked passes over the real–real, fake–fake and fake–real distances."""
    real = as_float64(real_feats, "real_feats", 2)
    fake = as_float64(fake_feats, "fake_feats", 2)
    if real.shape[1] != fake.shape[1]:
        raise BadInputError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    real_r = knn_sq_radii(real, tuple(sorted({k_pr, k_dc})))
    fake_r = knn_sq_radii(fake, (k_pr,))[k_pr]
    in_real_ball = np.zeros(len(fake), dtype=bool)  # precision: fake point in the real manifold
    in_fake_ball = np.zeros(len(real), dtype=bool)  # recall: real point in the fake manifold
    nearest_fake = np.full(len(real), np.inf)  # coverage
    density_hits = 0
    for rows in _blocks(len(fake), len(real)):
        d = _sq_distances(fake[rows], real)  # (fake rows, real)
        in_real_ball[rows] = (d <= real_r[k_pr][None, :]).any(1)
        density_hits += int((d <= real_r[k_dc][None, :]).sum())
        in_fake_ball |= (d <= fake_r[rows, None]).any(0)
        nearest_fake = np.minimum(nearest_fake, d.min(0))
    return {"precision": float(in_real_ball.mean()), "recall": float(in_fake_ball.mean()),
            "density": density_hits / (k_dc * len(fake)),
            "coverage": float((nearest_fake <= real_r[k_dc]).mean())}


def precision_recall(real_feats: Array, fake_feats: Array, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019), module docstring."""
    s = manifold_scores(real_feats, fake_feats, k_pr=k, k_dc=k)
    return s["precision"], s["recall"]


def density_coverage(real_feats: Array, fake_feats: Array, k: int = 5) -> tuple[float, float]:
    """Density and coverage of Naeem et al. (2020), module docstring."""
    s = manifold_scores(real_feats, fake_feats, k_pr=k, k_dc=k)
    return s["density"], s["coverage"]


# -- classes, Stacked MNIST modes, Vendi --------------------------------------------------------

def class_coverage(probs: Array) -> dict:
    """{"classes_found": classes that are some sample's arg-max, "class_kl": KL(histogram ‖
    uniform) in nats} for class probabilities (n, K)."""
    p = as_float64(probs, "probs", 2)
    counts = np.bincount(p.argmax(1), minlength=p.shape[1])
    return {"classes_found": int(np.count_nonzero(counts)),
            "class_kl": reverse_kl_to_uniform(counts)}


def stacked_modes(labels_per_channel: Array) -> dict:
    """{"modes": modes found of 1,000, "kl": KL(mode histogram ‖ uniform) in nats} for digit
    labels (n, 3) of the three channels; mode = 100·d₀ + 10·d₁ + d₂."""
    labels = np.asarray(labels_per_channel.cpu() if isinstance(labels_per_channel, torch.Tensor)
                        else labels_per_channel)
    if labels.ndim != 2 or labels.shape[1] != 3 or len(labels) == 0:
        raise BadInputError(f"Stacked MNIST modes need labels of shape (n, 3), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise BadInputError("Stacked MNIST labels must be integer digits 0–9")
    counts = np.bincount(labels @ np.array([100, 10, 1]), minlength=1000)
    return {"modes": int(np.count_nonzero(counts)), "kl": reverse_kl_to_uniform(counts)}


def _probability_kernel_spectrum(u: np.ndarray) -> np.ndarray:
    """Eigenvalues of K/n for unit vectors u (n, C, K), K_ij = Πᶜ uᵢᶜ·uⱼᶜ: from K itself when
    n ≤ K^C, else from ΦᵀΦ/n with Φᵢ = ⊗ᶜ uᵢᶜ (the same non-zero eigenvalues)."""
    n, channels, k = u.shape
    dim = k**channels
    if n <= dim:
        kernel = np.ones((n, n))
        for c in range(channels):
            kernel *= u[:, c] @ u[:, c].T
        return np.linalg.eigvalsh(kernel / n)
    gram = np.zeros((dim, dim))
    for rows in _blocks(n, dim):
        phi = u[rows, 0]
        for c in range(1, channels):
            phi = (phi[:, :, None] * u[rows, c][:, None, :]).reshape(len(phi), -1)
        gram += phi.T @ phi
    return np.linalg.eigvalsh(gram / n)


def vendi_score(probs: Array) -> float:
    """Vendi score with the class-probability kernel for probs (n, K) or (n, C, K) (module
    docstring): the effective number of distinct samples, 1 ≤ VS ≤ min(n, K^C)."""
    p = as_float64(probs, "probs", 3 if np.ndim(probs) == 3 else 2)
    p = p[:, None, :] if p.ndim == 2 else p
    norms = np.linalg.norm(p, axis=2, keepdims=True)
    if (norms == 0).any():
        raise BadInputError("probability vectors must not be all zero")
    lam = np.clip(_probability_kernel_spectrum(p / norms), 0, None)
    lam = lam[lam > 0]
    return float(math.exp(-(lam * np.log(lam)).sum()))


# -- score_images: the protocol -----------------------------------------------------------------

REFERENCES = ("mnist-test",)
MIN_SAMPLES = 100
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
K_PR, K_DC = 3, 5
MAX_PR = 5_000
STACKED_REFERENCE_SIZE, STACKED_REFERENCE_SEED = 10_000, 0
NOTE = ("features of genshop's own digit classifier, not Inception-v3: compare these numbers "
        "only with numbers of the same extractor_sha256 and sample counts")


def check_images(x: Array) -> torch.Tensor:
    """x as float32 (N, C, 28, 28), C ∈ {1, 3}, N ≥ MIN_SAMPLES, finite, in [0, 1]; else
    BadInputError saying what to fix."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu())
    if t.ndim != 4 or tuple(t.shape[2:]) != (28, 28) or t.shape[1] not in (1, 3):
        raise BadInputError(f"score_images needs images of shape (N, C, 28, 28) with C = 1 or 3, "
                            f"got {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype == torch.uint8):
        raise BadInputError(f"score_images needs float pixel values in [0, 1], got {t.dtype}")
    t = t.float()
    if len(t) < MIN_SAMPLES:
        raise BadInputError(f"score_images needs at least {MIN_SAMPLES} samples, got {len(t)}; "
                            "scores of few samples mean little (use ≥ 2,000)")
    if not torch.isfinite(t).all():
        raise BadInputError("the images hold NaN or Inf pixels; score finite samples only")
    if t.min() < 0 or t.max() > 1:
        raise BadInputError(f"pixel values must lie in [0, 1], got [{t.min():.4g}, {t.max():.4g}]"
                            "; map tanh outputs with (x + 1) / 2 and clamp")
    return t


def channel_outputs(model: DigitClassifier,
                    images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, C·128), class probabilities (N, C, 10)) of images (N, C, 28, 28): each
    channel is classified on its own and the channel features are concatenated."""
    n, c = images.shape[:2]
    feats, probs = predict(model, images.reshape(n * c, 1, *images.shape[2:]))
    return feats.double().numpy().reshape(n, -1), probs.double().numpy().reshape(n, c, -1)


def reference_features(model: DigitClassifier, extractor_sha256: str, channels: int,
                       reference: str = "mnist-test") -> tuple[np.ndarray, dict]:
    """Features of the reference, cached in the genshop cache per extractor and split hash;
    C = 1: the 2,000 test digits, C = 3: `STACKED_REFERENCE_SIZE` stacks of test digits (seed
    `STACKED_REFERENCE_SEED`). Returns them with the reference's protocol fields."""
    name = reference if channels == 1 else f"stacked-{reference}"
    size = "" if channels == 1 else f"-{STACKED_REFERENCE_SIZE}-seed{STACKED_REFERENCE_SEED}"
    path = (cache_dir() / "metrics"
            / f"{name}{size}-{extractor_sha256[:16]}-{SPLIT_SHA256[:16]}.npz")
    if not path.is_file():
        if channels == 1:
            images = MNIST.split("test")[0]
        else:
            gen = torch.Generator().manual_seed(STACKED_REFERENCE_SEED)
            images = STACKED_MNIST.draw(STACKED_REFERENCE_SIZE, gen, part="test")[0]
        save_npz_atomic(path, feats=channel_outputs(model, images)[0])
    with np.load(path) as stored:
        feats = stored["feats"]
    info = {"reference": name, "n_reference": len(feats), "split_sha256": SPLIT_SHA256}
    if channels == 3:
        info["reference_seed"] = STACKED_REFERENCE_SEED
    return feats, info


def _subset(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def score_images(x: Array, reference: str = "mnist-test", seed: int = 0) -> dict:
    """Scores of samples x (N, C, 28, 28) in [0, 1] against the test split, with the protocol.

    C = 1: digits against the 2,000 test digits. C = 3: Stacked MNIST against 10,000 stacks of
    test digits; each channel is classified alone, and FID/KID/PR use the three channels'
    features concatenated (384 values). Keys: fid, kid, kid_std, precision, recall, density,
    coverage (on min(N, n_reference, 5,000) points of each side, drawn by `seed`), classes_found and
    class_kl (arg-max digits of every channel), vendi; for C = 3 also modes (of 1,000) and kl
    (mode histogram to uniform; the papers use N = 26,000); and "protocol".
    """
    if reference not in REFERENCES:
        raise UnknownNameError("reference", reference, REFERENCES)
    images = check_images(x)
    n, channels = images.shape[:2]
    model, sha = load_classifier(), weights_sha256()
    ref_feats, ref_info = reference_features(model, sha, channels, reference)
    feats, probs = channel_outputs(model, images)
    n_pr = min(n, len(ref_feats), MAX_PR)
    rng = np.random.default_rng(seed)
    kid_mean, kid_std = kid(feats, ref_feats, KID_SUBSETS, KID_SUBSET_SIZE, seed)
    scores = {"fid": fid(feats, ref_feats), "kid": kid_mean, "kid_std": kid_std,
              **manifold_scores(_subset(ref_feats, n_pr, rng), _subset(feats, n_pr, rng),
                                K_PR, K_DC),
              **class_coverage(probs.reshape(-1, probs.shape[2])),
              "vendi": vendi_score(probs)}
    if channels == 3:
        scores.update(stacked_modes(probs.argmax(2)))
    scores["protocol"] = {
        "extractor": EXTRACTOR_NAME, "extractor_sha256": sha,
        "features": f"penultimate layer, {feats.shape[1]} values"
                    + (" (3 channels × 128, concatenated)" if channels == 3 else ""),
        "n_samples": n, **ref_info, "n_pr": n_pr, "k_pr": K_PR, "k_dc": K_DC,
        "kid_subsets": KID_SUBSETS, "kid_subset_size": min(KID_SUBSET_SIZE, n, len(ref_feats)),
        "kid_kernel": "(x·y/d + 1)^3", "seed": seed, "dtype": "float64", "note": NOTE}
    return scores


__all__ = ["check_images", "class_coverage", "density_coverage", "feature_stats", "fid",
           "frechet_distance", "kid", "manifold_scores", "precision_recall", "score_images",
           "stacked_modes", "vendi_score"]
