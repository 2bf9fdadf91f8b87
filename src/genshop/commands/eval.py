"""`genshop eval RUN_DIR [-n 10000]`: score a run — an image run's samples against the test
digits, a supervised run on its data set's held-out split.

Serves every image model of the *Scientific Spaces* posts (the GANs of kexue.fm archives 6016,
6110 and 6387; later GLO/IMLE/GLANN of 6394 and the VAE of 6181): samples come from
`genshop.load_run(RUN_DIR).sample(n, seed)`, scores from `genshop.metrics.score_images` (FID,
KID, precision / recall, density / coverage, digit classes; for Stacked MNIST modes of 1,000,
KL and Vendi) on the reference classifier's features; a supervised run (the reference
classifier) reports its test scores. A thin command over `genshop.metrics.evaluate_run`: the
table is printed, `eval.json` (scores and protocol) is written into the run directory and the
run's page shows it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genshop.errors import BadInputError
from genshop.experiments import text_table
from genshop.metrics.images import MIN_SAMPLES
from genshop.metrics.runs import EVAL_SAMPLES, EVAL_SEED, evaluate_run
from genshop.report import Table, eval_table, write_run_page
from genshop.runs import EVAL

NAME = "eval"
HELP = ("score a run: an image run's samples (FID, KID, precision/recall, coverage; Stacked "
        "MNIST modes and KL) against the test digits, a supervised run's test accuracy; "
        "writes eval.json into the run")
MAX_SAMPLES = 100_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="run directory written by `genshop train`")
    p.add_argument("-n", type=int, default=EVAL_SAMPLES,
                   help=f"samples scored, {MIN_SAMPLES} to {MAX_SAMPLES:,} (default: "
                        f"{EVAL_SAMPLES:,}; Stacked MNIST papers count modes in 26,000)")
    p.add_argument("--seed", type=int, default=EVAL_SEED,
                   help=f"seed of the latent draws (default: {EVAL_SEED})")


def run(args: argparse.Namespace) -> int:
    if not MIN_SAMPLES <= args.n <= MAX_SAMPLES:
        raise BadInputError(f"-n must be between {MIN_SAMPLES} and {MAX_SAMPLES:,}, got "
                            f"{args.n}")
    record = evaluate_run(args.run_dir, args.n, args.seed)
    table = eval_table(record)
    for line in text_table(Table(table.title, table.columns,
                                 [[k, f"{v:.4g}" if isinstance(v, float) else v]
                                  for k, v in table.rows])):
        print(line)
    print(table.note)
    page = write_run_page(args.run_dir)
    print(f"scores: {(args.run_dir / EVAL).resolve()}\nreport: {page.resolve()}")
    return 0
