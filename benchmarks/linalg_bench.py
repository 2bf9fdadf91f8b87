"""Speed and float32 accuracy of genshop's log-volume and trace log-det against the direct routes.

Posts: "Determinants of non-square matrices, revisited" (kexue.fm 6096) and "Appreciating the
identity det(exp(A)) = exp(Tr(A))" (6377). Compares, on batched float32 inputs, timed in turn
within each repeat (medians), errors in nats against float64 references:

* `log_volume(B)` = Σ log σᵢ(B) against 0.5·log det(BᵀB) (16×8, condition number 1e4);
* log|det exp(A)| = tr A against slogdet(matrix_exp(A)) (8×8).

Last line: the key ratio, how many times slower slogdet(matrix_exp(A)) is than tr A.
Run: .venv/bin/python benchmarks/linalg_bench.py [--batch 4096] [--repeats 31]
"""

from __future__ import annotations

import argparse

import torch

from genshop.experiments.linalg import BENCH_COLUMNS, benchmark_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = benchmark_rows(args.batch, args.repeats)
    print(" | ".join(BENCH_COLUMNS))
    for name, ours_ms, alt_ms, ratio, err_ours, err_alt in rows:
        print(f"{name} | {ours_ms:.3f} | {alt_ms:.3f} | {ratio:.2f}x | {err_ours:.2e} | "
              f"{err_alt:.2e}")
    print(f"log_volume costs {1 / rows[0][3]:.2f}x the Gram route's time; max float32 errors "
          f"{rows[0][4]:.1e} vs {rows[0][5]:.1e} nats (inf: NaN/Inf on some inputs)")
    print(f"key ratio: slogdet(matrix_exp(A)) / tr(A) time = {rows[1][3]:.0f}x")


if __name__ == "__main__":
    main()
