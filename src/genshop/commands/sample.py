"""`genshop sample RUN_DIR -n 2500 --out samples.npy`: samples of a trained run as float32 NumPy.

N×2 for 2-D data, N×C×H×W with pixels in [0, 1] for images (see `genshop.runs.load_run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "sample"
HELP = "draw samples from a trained run directory into a .npy file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="run directory written by `genshop train`")
    p.add_argument("-n", type=int, default=2500, help="number of samples (default: 2500)")
    p.add_argument("--out", type=Path, default=Path("samples.npy"), help="output .npy file")
    p.add_argument("--seed", type=int, default=None, help="seed of the latent draws")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from genshop.runs import load_run

    x = load_run(args.run_dir, device=args.device).sample(args.n, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, x.numpy().astype(np.float32))
    print(f"wrote {tuple(x.shape)} float32 samples to {args.out}")
    return 0
