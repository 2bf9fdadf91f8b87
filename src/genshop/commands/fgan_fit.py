"""`genshop fgan-fit`: fit N(mu, sigma) to a 1-D mixture by f-GAN and compare with the exact fit.

Post: f-GAN introduction (kexue.fm archives/6016); experiment of Nowozin et al. 2016, Sec. 4.1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genshop import divergences
from genshop.errors import BadInputError
from genshop.threads import torch_threads

NAME = "fgan-fit"
HELP = "fit a Gaussian to a two-mode mixture by f-GAN and compare with argmin D_f"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--divergence", default="kl",
                   help="a divergence name (see `genshop divergences`) or alpha:<a>")
    p.add_argument("--steps", type=int, default=800, help="f-GAN training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/fgan-fit"),
                   help="folder for the PNG of the fit")


def run(args: argparse.Namespace) -> int:
    # Imported here: they load scipy.optimize, matplotlib and the tour (about a second), which
    # every other `genshop` command would pay for, since the CLI imports all command modules.
    from genshop import fgan_fit
    from genshop.sections.fgan_fit import plot_fits

    divergences.get(args.divergence)  # unknown name -> one-line error listing the names
    if args.steps < 1:
        raise BadInputError(f"--steps must be a positive integer, got {args.steps}")
    with torch_threads(1):  # a 1-D critic and 1-D quadrature: extra threads only wait
        row = fgan_fit.compare(args.divergence, steps=args.steps, seed=args.seed)
    print(" | ".join(fgan_fit.COLUMNS))
    print(" | ".join(str(c) for c in row.cells()))
    safe = args.divergence.replace(":", "_")
    png = plot_fits([row], args.out / f"fgan-fit-{safe}.png")
    print(f"plot: {png.resolve()}")
    return 0
