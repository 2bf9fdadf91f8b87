"""Speed and float32 accuracy of genshop's log-volume and trace log-det against the direct routes.

Posts: "Determinants of non-square matrices, revisited" (kexue.fm 6096) and "Appreciating the
identity det(exp(A)) = exp(Tr(A))" (6377). `log_volume(B)` = Σ log σᵢ(B) is compared with
0.5·log det(BᵀB), which squares the condition number, and log|det exp(A)| = tr A with
slogdet(matrix_exp(A)); each pair is timed in turn within each repeat (medians), its errors
measured in nats against float64 references. The tour's `linalg` section runs it small,
`benchmarks/linalg_bench.py` at full size.
"""

from __future__ import annotations

import math

import torch

from genshop.linalg import log_volume
from genshop.timing import medians, time_interleaved

BENCH_COLUMNS = ["comparison", "genshop (ms)", "alternative (ms)", "time alternative / genshop",
                 "max err genshop (nats)", "max err alternative (nats)"]


def conditioned(n: int, k: int, cond: float, batch: int, seed: int) -> torch.Tensor:
    """(batch, n, k) float64 matrices with singular values logspaced from 1 down to 1/cond."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(batch, n, k, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(batch, k, k, generator=g, dtype=torch.float64)).Q
    return (U * torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)) @ V.mT


def naive_log_volume(B: torch.Tensor) -> torch.Tensor:
    """0.5·log det(BᵀB): squares the condition number (NaN when det comes out negative)."""
    return 0.5 * torch.logdet(B.mT @ B)


def max_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return (x.double() - reference).abs().nan_to_num(math.inf).max().item()


def benchmark_rows(batch: int, repeats: int, seed: int = 0) -> list[list]:
    """Rows of BENCH_COLUMNS on float32 batches: median times of genshop's form and the
    alternative, their ratio, and max errors in nats against float64 references."""
    g = torch.Generator().manual_seed(seed)
    B = conditioned(16, 8, 1e4, batch, seed).float()
    A = 0.3 * torch.randn(batch, 8, 8, generator=g)
    pairs = {
        f"log_volume vs 0.5 log det(BtB), {batch}x16x8, cond 1e4": (
            lambda: log_volume(B), lambda: naive_log_volume(B), log_volume(B.double())),
        f"tr A vs slogdet(matrix_exp(A)), {batch}x8x8": (
            lambda: A.diagonal(dim1=-2, dim2=-1).sum(-1),
            lambda: torch.linalg.slogdet(torch.linalg.matrix_exp(A)).logabsdet,
            A.double().diagonal(dim1=-2, dim2=-1).sum(-1)),
    }
    rows = []
    for name, (ours, alternative, reference) in pairs.items():
        t = medians(time_interleaved({"ours": ours, "alt": alternative}, repeats))
        rows.append([name, 1e3 * t["ours"], 1e3 * t["alt"], t["alt"] / t["ours"],
                     max_error(ours(), reference), max_error(alternative(), reference)])
    return rows
