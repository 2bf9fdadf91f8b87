"""`genshop sample RUN_DIR -n 2500 --out samples.npy`: samples of a trained run as float32 NumPy.

N×2 for 2-D data, N×C×H×W with pixels in [0, 1] for images (see `genshop.runs.load_run`).
`--out NAME.png` draws them instead: a scatter for points, a grid of the first 64 for images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from genshop.errors import BadInputError
from genshop.plots import samples_figure, save_figure
from genshop.runs import load_run

NAME = "sample"
HELP = "draw samples from a trained run directory into a .npy file or a .png picture"
MAX_SAMPLES = 10_000_000  # 80 MB of 2-D points, 31 GB of 28×28 images: ask in parts beyond


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="run directory written by `genshop train`")
    p.add_argument("-n", type=int, default=2500,
                   help=f"number of samples, 1 to {MAX_SAMPLES:,} (default: 2500)")
    p.add_argument("--out", type=Path, default=Path("samples.npy"),
                   help="output: .npy (float32 array) or .png (picture)")
    p.add_argument("--seed", type=int, default=None, help="seed of the latent draws")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    if args.out.suffix not in (".npy", ".png") or args.out.is_dir():
        raise BadInputError(f"--out must name a file ending in .npy or .png, got {args.out}")
    if not 1 <= args.n <= MAX_SAMPLES:
        raise BadInputError(f"-n must be between 1 and {MAX_SAMPLES:,}, got {args.n}")
    run = load_run(args.run_dir, device=args.device)
    x = run.sample(args.n, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".png":
        title = f"{args.n} samples of {args.run_dir.name}, step {run.step}"
        centers = getattr(run.dataset, "centers", None)  # of a known mixture
        save_figure(samples_figure(x, title, centers=centers), args.out)
        print(f"drew {tuple(x.shape)} samples into {args.out}")
    else:
        np.save(args.out, x.numpy().astype(np.float32))
        print(f"wrote {tuple(x.shape)} float32 samples to {args.out}")
    return 0
