"""Every checkable claim of the eight posts of *Scientific Spaces*, and the post it comes from.

The tour report opens with this table. A tour section that measures a claim returns a
`Verdict` under the claim's id; claims no section measures yet show "untested yet".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Status = Literal["holds", "does not hold", "inconclusive", "untested yet"]
LEVEL = 0.05  # the significance level of every statistical rule of a noisy claim


@dataclass(frozen=True)
class Claim:
    id: str
    post: str
    text: str


@dataclass(frozen=True)
class Verdict:
    status: Status
    measurement: str


def sign_test(better: int, worse: int) -> float:
    """One-sided p-value of `better` wins in `better + worse` paired trials (ties dropped) under
    the null that each side wins a pair with probability ½: P(X ≥ better), X ~ Bin(n, ½)."""
    n = better + worse
    return sum(math.comb(n, k) for k in range(better, n + 1)) / 2**n


def paired_verdict(better: int, worse: int, level: float = LEVEL) -> Status:
    """"holds" when the sign test rejects "no better" at `level`, "does not hold" when it
    rejects "no worse", else "inconclusive" (the pairs do not separate the two)."""
    if sign_test(better, worse) < level:
        return "holds"
    if sign_test(worse, better) < level:
        return "does not hold"
    return "inconclusive"


CLAIMS: tuple[Claim, ...] = (
    Claim("fgan-table", "f-GAN (6016)",
          "For every divergence, sup_u tu - f(u) equals the conjugate f*(t), and the output "
          "activation maps R into dom f*."),
    Claim("fgan-optimal-critic", "f-GAN (6016)",
          "The variational bound E_P[T] - E_Q[f*(T)] is maximised by T* = f'(p/q) and then equals "
          "D_f(P||Q)."),
    Claim("fgan-reductions", "f-GAN (6016)",
          "The JS instance is the original GAN objective (x1/2, + log 2); the Hellinger "
          "instance is 2 - E_p e^D - E_q e^-D."),
    Claim("fgan-mixture-fit", "f-GAN (6016) / Nowozin et al. 2016",
          "Fitting one Gaussian to a mixture by f-GAN lands on the exact D_f minimiser: KL covers "
          "both modes, reverse KL locks onto one."),
    Claim("nonsquare-det", "Non-square determinants (6096)",
          "sqrt(det(B^T B)) = |prod diag R| = prod sigma_i = sqrt(sum of squared k-minors); an "
          "n x 2 matrix gives |x||y| sin(theta)."),
    Claim("rsgan-optimum", "RSGAN (6110)",
          "At the optimum of the relativistic critic, T* - log(p/q) is constant."),
    Claim("rsgan-divergence", "RSGAN (6110)",
          "At T*, the RSGAN generator objective equals D_f(p(x_f)q(x_r) || p(x_r)q(x_f)) with "
          "f = h o log."),
    Claim("rsgan-speed", "RSGAN (6110)",
          "RSGAN reaches a given sample quality in fewer generator steps than SGAN."),
    Claim("couplet-model", "Couplet robot (6270)",
          "A 6-block gated residual CNN tagger answers couplets with the input's length and "
          "repetition pattern, without memorising."),
    Claim("couplet-bilstm", "Couplet robot (6270)",
          "A BiLSTM in place of the gated CNN is both slower and worse."),
    Claim("vib-imdb", "VAE and information bottleneck (6181)",
          "A VIB bottleneck (lambda = 0.1) reaches higher validation accuracy, sooner, than the "
          "same network without it."),
    Claim("slerp", "VAE and information bottleneck (6181)",
          "z1 cos(t) + z2 sin(t) stays N(0, I); linear interpolation shrinks the variance to "
          "(1-a)^2 + a^2 < 1."),
    Claim("det-exp-trace", "det(exp A) = exp(tr A) (6377)",
          "det(exp A) = exp(tr A) for every square A, Jordan blocks included; "
          "log det B = tr log B."),
    Claim("single-loss-gradients", "Single-loss GAN (6387)",
          "One backward of the fused loss gives exactly the separate D- and G-loss gradients "
          "(with BatchNorm; dropout needs the functional form)."),
    Claim("single-loss-value", "Single-loss GAN (6387)",
          "The fused loss's value equals the D loss: the G term is identically zero."),
    Claim("single-loss-lambda", "Single-loss GAN (6387)",
          "lambda acts as the D:G learning-rate ratio under SGD, but not under RMSprop or Adam."),
    Claim("single-loss-quality", "Single-loss GAN (6387)",
          "Fused training gives samples basically equal to 1:1 alternating training."),
    Claim("single-loss-speed", "Single-loss GAN (6387)",
          "A fused step takes less time than an alternating step."),
    Claim("imle-blurry", "GLANN (6394)",
          "Pixel-space L2 IMLE gives blurry samples, no better than a VAE; repulsive IMLE is "
          "about the same."),
    Claim("glann-better", "GLANN (6394)",
          "GLANN (GLO codes + latent IMLE) samples better than GLO or IMLE alone."),
    Claim("glann-fid-fairness", "GLANN (6394)",
          "GLANN's FID edge partly comes from sharing ImageNet-style features between its loss and "
          "the metric."),
)

CLAIM_IDS = frozenset(c.id for c in CLAIMS)
