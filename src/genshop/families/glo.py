"""The GLO family: a generator trained with one learnable code per training example, no critic.

Post: "a brief introduction to the non-adversarial generative model GLANN" (kexue.fm 6394), whose
first stage is GLO, Generative Latent Optimization (Bojanowski, Joulin, Lopez-Paz & Szlam 2018,
"Optimizing the Latent Space of Generative Networks"):

    min over G, z_1 … z_N of  (1/N) Σ_i ℓ(x_i, G(z_i))   subject to  ‖z_i‖ = 1.          (1)

Codes. A table Z ∈ ℝ^{N×k} (N = the training set's size, k = `latent_dim`; `Codes`), row i
the code of training row i: a batch reads the rows of `inp.index`. Initialised by PCA (as
Bojanowski et al.): the whitened scores of the top min(k, D) principal axes of the D-dimensional
examples (columns beyond D are N(0, 1) draws), `init = random` all N(0, 1); then every row is
divided by its norm. After each update the updated rows are projected back, z_i ← z_i / ‖z_i‖.

Optimisers. The generator: Adam. The codes: `RowAdam`, Adam run on each row over the steps whose
batch holds it, with its own count t_i of those steps for the bias correction:

    m_i ← β₁ m_i + (1 − β₁) g_i,   v_i ← β₂ v_i + (1 − β₂) g_i²,
    z_i ← z_i − lr_z · (m_i / (1 − β₁^{t_i})) / (√(v_i / (1 − β₂^{t_i})) + ε).              (2)

A row outside the batch has a zero gradient and does not move. Adam on the dense table would move
every row through its momentum at every step; torch's SparseAdam is lazy too but counts the bias
correction in global steps, and needs sparse gradients, which the engine's data-parallel average
(one dense all-reduce) does not take. β = (0.5, 0.999), lr_z = 0.01 and lr_g = 0.001 are the
rates of GLANN's GLO code (Hoshen, Li & Malik 2019). Batches walk the training set epoch by epoch
(`data_order = "epochs"`), so each code is updated once an epoch, as in the papers.

Loss on images, ℓ = Lap₁ + λ·perc (λ = `perceptual`). The Laplacian pyramid of x with J levels
(`levels`; `laplacian_pyramid`):

    g_0 = x,  g_{j+1} = down(g_j),  L_j = g_j − up(g_{j+1}) for j < J − 1,  L_{J−1} = g_{J−1},  (3)

down = blur with the separable binomial kernel [1, 4, 6, 4, 1]/16 (replicate padding), then keep
rows and columns 0, 2, 4, … (28 → 14 → 7 → 4); up = bilinear interpolation to g_j's size
(align_corners off). So x = L_0 + up(L_1 + up(L_2 + …)) (`reconstruct_pyramid`), and a
constant image has zero detail levels L_0 … L_{J−2}. The pyramid is linear, and

    Lap₁(x, x̂) = Σ_j 2^{−2j} · mean |L_j(x − x̂)|   (j = 0 the finest; each mean over the
                                                     C·H_j·W_j values of level j),         (4)

the level weights 2^{−2j} of Bojanowski et al.'s Lap₁. The perceptual term (λ > 0; 1×28×28
images only) is perc(x, x̂) = Σ_b mean |a_b(x) − a_b(x̂)|, a_b the activations after the four
conv · BN · ReLU blocks of the shipped digit classifier (`genshop.metrics.classifier`), fixed, in
eval mode. The papers use VGG-16 ImageNet features (GLANN's code: L1 on five VGG layers), which
cannot be downloaded here. The same classifier's features score FID, KID and precision, so a run
with λ > 0 is judged in the features it was trained to match. On points, ℓ = ‖x − x̂‖², the
squared Euclidean distance. The step minimises the batch mean of ℓ.

Generator: the DCGAN generator of `genshop.nets.dcgan_pair` for C×H×W images (sigmoid output, in
[0, 1]), an MLP (`genshop.nets.mlp_pair`) for points.

Sampling: a full-covariance Gaussian fitted to the codes (Bojanowski et al., Sec. 4), samples not
projected onto the sphere:

    μ = (1/N) Σ_i z_i,   Σ = (1/N) Σ_i (z_i − μ)(z_i − μ)ᵀ + δI  (δ = 10⁻⁶),   Σ = L Lᵀ,
    z = μ + L ε,  ε ~ N(0, I),   x = G(z).                                                 (5)

The delivered net (`GloNet`) holds G and the buffers μ and L; the family refits them after every
update (an N·k² product, about 1 % of a DCGAN step at N = 8,000, k = 64), so the EMA copy
(which copies buffers), snapshots, checkpoints, a resumed run and `load_run(d).sample(n)` all
draw from the fit to the current codes. `reconstruct(net, index)` gives G(z_index); a finished
image run writes `reconstructions.png` (training examples, their reconstructions, samples).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, Range, RunConfig, option
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, adam, inference, register
from genshop.metrics.classifier import load_classifier
from genshop.nets import dcgan_pair, dcgan_shape, mlp_pair
from genshop.plots import image_grid, save_figure

BETAS = (0.5, 0.999)
JITTER = 1e-6  # δ of eq. (5)
BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)
PERCEPTUAL_SHAPE = (1, 28, 28)
SHOWN = 32  # examples in the reconstruction figure
EVAL_ROWS = 512  # training rows whose reconstruction error is logged
MEMORY_SHARE = 0.5  # the code table may take at most this share of the machine's memory


@dataclass
class GloConfig(RunConfig):
    """GLO: a generator and one code per training example on the unit sphere (module
    docstring)."""

    latent_dim: int = option(64, "size k of each code z_i (on the unit sphere)", valid=AT_LEAST_1)
    width: int = option(64, "base channels of the DCGAN generator (images) or hidden units of "
                            "the MLP (points)", valid=AT_LEAST_1)
    depth: int = option(3, "hidden layers of the MLP generator (points)", valid=AT_LEAST_1)
    lr_g: float = option(1e-3, "generator learning rate (Adam)", valid=POSITIVE)
    lr_z: float = option(1e-2, "code learning rate (Adam on each row, eq. 2)", valid=POSITIVE)
    perceptual: float = option(0.0, "weight λ of the L1 distance of the shipped digit "
                                    "classifier's activations (1×28×28 images; 0 = off)",
                               valid=AT_LEAST_0)
    levels: int = option(3, "levels J of the Laplacian pyramid of the L1 loss (images)",
                         valid=Range(1, 8))
    init: str = option("pca", "initial codes: pca (whitened principal scores) or random "
                              "(Gaussian), each row then normalised", ("pca", "random"))


# How each recipe was chosen, with its measured run: docs/glann.md.
RECIPES: dict[str, dict[str, Any]] = {
    "ring8": {"latent_dim": 2, "width": 128, "depth": 3, "batch_size": 256, "steps": 3000},
    "grid25": {"latent_dim": 3, "width": 128, "depth": 3, "batch_size": 256, "steps": 4000},
    "mnist": {"latent_dim": 16, "width": 64, "batch_size": 128, "perceptual": 0.1,
              "levels": 3, "steps": 1500, "log_every": 63, "sample_every": 500},
}


# --- the Laplacian pyramid, eqs. (3)-(4) -------------------------------------------------------

def blur(x: Tensor) -> Tensor:
    """(N, C, H, W) convolved with the separable binomial kernel, replicate padding."""
    c = x.shape[1]
    k = x.new_tensor(BINOMIAL)
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def downsample(x: Tensor) -> Tensor:
    """Blur, then rows and columns 0, 2, 4, …"""
    return blur(x)[..., ::2, ::2]


def upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear interpolation to `size` (H, W)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[L_0, …, L_{J−1}] of eq. (3): J − 1 detail levels, finest first, then the low-pass."""
    out = []
    for _ in range(levels - 1):
        low = downsample(x)
        out.append(x - upsample(low, x.shape[-2:]))
        x = low
    return [*out, x]


def reconstruct_pyramid(pyramid: list[Tensor]) -> Tensor:
    """x from its pyramid: g_{J−1} = L_{J−1}, g_j = L_j + up(g_{j+1})."""
    x = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        x = detail + upsample(x, detail.shape[-2:])
    return x


def max_levels(shape: tuple[int, ...]) -> int:
    """Levels until the smaller side is one pixel (28 → 14 → 7 → 4 → 2 → 1: 6)."""
    side, levels = min(shape[-2:]), 1
    while side > 1:
        side, levels = (side + 1) // 2, levels + 1
    return levels


def lap1(x: Tensor, x_hat: Tensor, levels: int) -> Tensor:
    """Per-row Lap₁(x, x̂) of eq. (4), shape (N,)."""
    pyramid = laplacian_pyramid(x - x_hat, levels)
    return sum(4.0 ** -j * level.abs().flatten(1).mean(1) for j, level in enumerate(pyramid))


class DigitActivations:
    """The fixed perceptual network: the activations after the shipped digit classifier's four
    conv · BN · ReLU blocks (eval mode, no parameter gradients), read by forward hooks."""

    def __init__(self, device: torch.device):
        self.net = load_classifier().to(device).requires_grad_(False)
        self._seen: list[Tensor] = []
        for layer in self.net.body:
            if isinstance(layer, nn.ReLU):
                layer.register_forward_hook(lambda _m, _i, out: self._seen.append(out))

    def __call__(self, x: Tensor) -> list[Tensor]:
        self._seen = []
        self.net.features(x)
        return self._seen

    def distance(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """Per-row perc(x, x̂) = Σ_b mean |a_b(x) − a_b(x̂)|, shape (N,)."""
        with torch.no_grad():
            target = self(x)
        return sum((a - b).abs().flatten(1).mean(1) for a, b in zip(target, self(x_hat),
                                                                     strict=True))


# --- codes, their optimiser and the sampler --------------------------------------------------

class Codes(nn.Module):
    """The code table Z (N, k): `codes(index)` are the rows of those training examples."""

    def __init__(self, initial: Tensor):
        super().__init__()
        self.weight = nn.Parameter(initial.clone())

    def forward(self, index: Tensor) -> Tensor:
        return self.weight[index]


def gradient_rows(grad: Tensor) -> Tensor:
    """Indices of the rows with a nonzero gradient: the rows a batch touched."""
    return grad.ne(0).any(1).nonzero().squeeze(1)


@torch.no_grad()
def project_rows_(weight: Tensor, rows: Tensor) -> None:
    """z_i ← z_i / ‖z_i‖ for the given rows, the others untouched."""
    weight[rows] = F.normalize(weight[rows], dim=1)


class RowAdam(torch.optim.Optimizer):
    """Adam on each row of a 2-D parameter over the steps whose gradient touches it, each row
    with its own bias-correction count (eq. 2); untouched rows and their moments stay as they
    are."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = BETAS, eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)

    def _update(self, p: Tensor, group: dict) -> None:
        (b1, b2), rows = group["betas"], gradient_rows(p.grad)
        state = self.state[p]
        if not state:  # float counts: torch casts floating state to the parameter's dtype
            state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p),
                         visits=p.new_zeros(p.shape[0], 1))
        g = p.grad[rows]
        t = state["visits"][rows] + 1
        m = state["exp_avg"][rows] * b1 + (1 - b1) * g
        v = state["exp_avg_sq"][rows] * b2 + (1 - b2) * g * g
        for key, value in (("visits", t), ("exp_avg", m), ("exp_avg_sq", v)):
            state[key][rows] = value
        step = (m / bias_correction(b1, t)) / ((v / bias_correction(b2, t)).sqrt() + group["eps"])
        p[rows] -= group["lr"] * step


def bias_correction(beta: float, t: Tensor) -> Tensor:
    """1 − βᵗ as −expm1(t·log β): no cancellation for β near 1 in float32."""
    return -torch.expm1(t * math.log(beta))


class GloNet(nn.Module):
    """The delivered sampler: the generator G and the Gaussian fit (μ, L) of eq. (5)."""

    def __init__(self, generator: nn.Module, latent_dim: int):
        super().__init__()
        self.generator, self.latent_dim = generator, latent_dim
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @torch.no_grad()
    def fit_(self, codes: Tensor) -> None:
        """μ and the Cholesky factor L of the codes' covariance (1/N normalisation) + δI."""
        self.mean.copy_(codes.mean(0))
        centred = codes - self.mean
        cov = centred.T @ centred / codes.shape[0]
        cov.diagonal().add_(JITTER)
        self.chol.copy_(torch.linalg.cholesky(cov))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.mean.device)
        return self.mean + eps @ self.chol.T


# --- building blocks of the family -------------------------------------------------------------

def initial_codes(x: Tensor, k: int, init: str) -> Tensor:
    """(N, k) unit rows: whitened PCA scores padded with N(0, 1) columns, or all N(0, 1)."""
    flat = x.flatten(1).float()
    q = min(k, *flat.shape) if init == "pca" else 0
    columns = [torch.randn(len(flat), k - q)]
    if q:
        u, _, _ = torch.pca_lowrank(flat, q=q, center=True, niter=4)
        columns.insert(0, u * math.sqrt(len(flat)))
    return F.normalize(torch.cat(columns, 1), dim=1)


def build_generator(config: GloConfig, dataset) -> nn.Module:
    if dataset.kind == "points":
        return mlp_pair(config.latent_dim, config.width, config.depth, dataset.shape[0])[0]
    return dcgan_pair(config.latent_dim, config.width, shape=dataset.shape)[0]


def table_bytes(rows: int, k: int) -> int:
    """Memory of the code table in training: weights, gradient and two Adam moments (float32),
    and the per-row counts."""
    return rows * (4 * 4 * k + 4)


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@register
class GloFamily(Family):
    name = "glo"
    description = ("GLO: a generator and one learned unit-norm code per training example, "
                   "no critic; samples from a Gaussian fitted to the codes")
    config_class = GloConfig
    recipes = RECIPES
    data_order = "epochs"

    @classmethod
    def check(cls, config: GloConfig, dataset) -> None:
        if dataset.kind == "images":
            cls._check_images(config, dataset)
        elif dataset.kind != "points":
            raise BadInputError(f"the GLO family has generators for points and images, not for "
                                f"{dataset.kind} ({dataset.name})")
        elif config.perceptual > 0:
            raise BadInputError(f"--perceptual {config.perceptual} needs 1×28×28 images; on "
                                f"points ({dataset.name}) set --perceptual 0")
        rows = len(cls.training_data(config, dataset))
        need, have = table_bytes(rows, config.latent_dim), machine_memory()
        if need > MEMORY_SHARE * have:
            raise BadInputError(f"the code table of {rows} rows × {config.latent_dim} needs "
                                f"{need / 2**30:.1f} GiB in training, more than half of this "
                                f"machine's {have / 2**30:.1f} GiB; lower --latent-dim")

    @classmethod
    def _check_images(cls, config: GloConfig, dataset) -> None:
        shape = dcgan_shape(dataset.shape)
        if config.levels > max_levels(shape):
            raise BadInputError(f"--levels {config.levels} is more than the {max_levels(shape)} "
                                f"pyramid levels of a {shape[1]}×{shape[2]} image")
        if config.perceptual > 0 and shape != PERCEPTUAL_SHAPE:
            raise BadInputError(f"--perceptual uses the digit classifier, for 1×28×28 images, "
                                f"not {'×'.join(map(str, shape))}; set --perceptual 0")
        if config.batch_size < 2:
            raise BadInputError("--batch-size must be at least 2: the DCGAN generator's "
                                "BatchNorm needs two rows")

    def __init__(self, config: GloConfig, dataset, device: torch.device):
        self.check(config, dataset)
        self.config, self.kind = config, dataset.kind
        self.data: Examples = self.training_data(config, dataset)
        self.net = GloNet(build_generator(config, dataset), config.latent_dim).to(device)
        self.codes = Codes(initial_codes(self.data.x, config.latent_dim, config.init)).to(device)
        self.net.fit_(self.codes.weight)
        self.perceptual = (DigitActivations(device) if config.perceptual > 0 else None)
        self.opt_g = adam(self.net.generator.parameters(), config.lr_g, betas=BETAS)
        self.opt_z = RowAdam([self.codes.weight], config.lr_z)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "codes": self.codes}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_z": self.opt_z}

    def losses(self, x: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        """Per-row terms of ℓ(x, x̂) and their weighted sum "loss" (module docstring)."""
        if self.kind == "points":
            return {"loss": (x - x_hat).pow(2).sum(1)}
        terms = {"lap1": lap1(x, x_hat, self.config.levels)}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual.distance(x, x_hat)
        terms["loss"] = terms["lap1"] + self.config.perceptual * terms.get("perceptual", 0.0)
        return terms

    def train_step(self, inp: StepInput) -> dict[str, float]:
        terms = {k: v.mean() for k, v in self.losses(inp.x, self.net(self.codes(inp.index)))
                 .items()}
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_z.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.opt_g.step()
        self.opt_z.step()
        project_rows_(self.codes.weight, gradient_rows(self.codes.weight.grad))
        self.net.fit_(self.codes.weight)
        return {k: v.item() for k, v in terms.items()}

    def model(self) -> nn.Module:
        return self.net

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.sample_latent(n, generator))

    def reconstruct(self, net: nn.Module, index: Tensor) -> Tensor:
        """G(z_i) of training rows `index` by `net` (the model or its EMA copy)."""
        return net(self.codes.weight[index.to(self.codes.weight.device)])

    @torch.no_grad()
    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Mean absolute reconstruction error of the first training rows (mean squared
        distance for points)."""
        index = torch.arange(min(EVAL_ROWS, len(self.data)))
        x = self.data.x[index].to(self.codes.weight.device)
        error = (x - self.reconstruct(net, index)).flatten(1)
        return {"recon_error": float(error.pow(2).sum(1).mean() if self.kind == "points"
                                     else error.abs().mean())}

    def finish(self, net: nn.Module, run_dir: Any) -> None:
        """`reconstructions.png`: training examples beside their reconstructions, and samples."""
        with inference(net):
            index = torch.arange(min(SHOWN, len(self.data)))
            shown = (self.data.x[index], self.reconstruct(net, index).cpu(),
                     self.sample(net, SHOWN, torch.Generator().manual_seed(0)).cpu())
        save_figure(reconstruction_figure(*shown), Path(run_dir) / "reconstructions.png")


def reconstruction_figure(data: Tensor, recon: Tensor, samples: Tensor):
    """Images: rows of 8 data images over their 8 reconstructions, beside a grid of samples;
    points: data and reconstructions, beside samples."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.8))
    if data.ndim == 2:
        left.scatter(*data.T[:2], s=6, c="0.6", label="data")
        left.scatter(*recon.T[:2], s=6, c="C0", marker="x", label="reconstruction")
        left.legend(fontsize=7)
        right.scatter(*samples.T[:2], s=6, c="C3")
        for ax in (left, right):
            ax.set(aspect="equal")
    else:
        rows = [row for d, r in zip(data.split(8), recon.split(8), strict=True)
                for row in (padded_row(d), padded_row(r))]
        left.imshow(image_grid(torch.cat(rows)), cmap="gray", vmin=0, vmax=1)
        right.imshow(image_grid(samples), cmap="gray", vmin=0, vmax=1)
        for ax in (left, right):
            ax.axis("off")
    left.set_title("data (rows 1, 3, 5, 7) over their reconstructions" if data.ndim > 2
                   else "data and reconstructions")
    right.set_title("samples: Gaussian fitted to the codes")
    return fig


def padded_row(images: Tensor) -> Tensor:
    """Up to 8 images, padded with black ones to a full row of `image_grid`."""
    return torch.cat([images, images.new_zeros(8 - len(images), *images.shape[1:])])
