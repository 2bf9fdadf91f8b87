"""`genshop bench modes|images|stacked`: every GAN loss × {alternating, fused} update on the 2-D
ring or grid (`modes`), on MNIST at a fixed compute budget (`images`) or on Stacked MNIST's
1,000 modes (`stacked`).

A thin command over `genshop.experiments.modes`, `.images` and `.stacked` (the protocols, rows,
scoring, published tables, worker processes and resume live there, on the skeleton of
`genshop.experiments`): options in, the rows `gan_grid(losses, updates)`, `run_benchmark`, the
table printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genshop.errors import BadInputError, UnknownNameError
from genshop.experiments import Result, Setting, gan_grid, images, modes, stacked, text_table
from genshop.losses import names as loss_names

NAME = "bench"
HELP = ("benchmarks: `bench modes` (2-D ring/grid modes), `bench images` (MNIST FID/KID/"
        "precision/recall at a fixed compute budget), `bench stacked` (Stacked MNIST's 1,000 "
        "modes)")
IMAGE_BENCHES = {"images": images.IMAGES, "stacked": stacked.STACKED}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("benchmark", choices=["modes", *IMAGE_BENCHES], help="which benchmark")
    p.add_argument("--data", choices=["ring8", "grid25"], default=None,
                   help="modes only: ring8 (default) or grid25; images trains on mnist, "
                        "stacked on stacked-mnist")
    p.add_argument("--losses", default=None,
                   help="comma-separated loss names, or 'all' (genshop.losses.names()); "
                        f"default: all for modes, {','.join(images.LOSSES)} for images, "
                        f"{','.join(stacked.LOSSES)} for stacked")
    p.add_argument("--updates", default=",".join(modes.UPDATES),
                   help="comma-separated update rules: alternating, fused")
    p.add_argument("--steps", type=int, default=None,
                   help="modes: training steps; images, stacked: the compute budget, in steps "
                        "of nsgan alternating (each row gets the steps of equal model FLOPs); "
                        "default: the recipe's steps")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row of the full table")
    p.add_argument("--samples", type=int, default=None,
                   help="images, stacked: samples scored per run (default 10,000 and 26,000, "
                        "the protocols' counts; at least 100)")
    p.add_argument("--best", type=int, default=None,
                   help="modes only: rows rerun with --best-seeds seeds (default 2)")
    p.add_argument("--best-seeds", type=int, default=None, help="modes only (default 10)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run")
    p.add_argument("--resume", type=Path, default=None, metavar="BENCH_DIR",
                   help="continue an interrupted benchmark in its folder: finished runs are "
                        "scored again, not retrained (same data, losses, recipe, --steps and "
                        "--set)")
    p.add_argument("--jobs", type=int, default=1,
                   help="training runs at once, in worker processes of one torch thread each "
                        "(results equal --jobs 1)")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="override a recipe option of every run, e.g. lr_g=1e-3 (repeatable; "
                        "names as in config.json)")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["lr_g=1e-3", "activation=relu"] -> {"lr_g": 0.001, "activation": "relu"}: JSON values,
    else the text; building the runs' configs checks names and types."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise BadInputError(f"--set takes OPTION=VALUE, got {item!r}")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text
    return out


def parse_names(text: str, valid: Sequence[str], kind: str) -> list[str]:
    names = list(valid) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in valid and not n.startswith("fgan-alpha:"):
            raise UnknownNameError(kind, n, valid)
    return names


def run(args: argparse.Namespace) -> int:
    default_losses = "all" if args.benchmark == "modes" else ",".join(
        IMAGE_BENCHES[args.benchmark].losses)
    losses = parse_names(args.losses or default_losses, loss_names(), "loss")
    updates = parse_names(args.updates, modes.UPDATES, "update rule")
    overrides = parse_overrides(args.set)
    if args.steps is not None and args.steps < 1:
        raise BadInputError(f"--steps must be >= 1, got {args.steps}")
    if args.benchmark != "modes":
        return _run_images(args, IMAGE_BENCHES[args.benchmark], gan_grid(losses, updates),
                           overrides)
    if args.samples is not None:
        raise BadInputError("--samples is for bench images and bench stacked; bench modes "
                            "scores 2,500 samples, as the protocol does")
    if args.steps is not None:
        overrides["steps"] = args.steps
    best = 2 if args.best is None else args.best
    best_seeds = 10 if args.best_seeds is None else args.best_seeds
    bench = modes.run_benchmark(args.data or "ring8", gan_grid(losses, updates),
                                parent=args.out, resume=args.resume, seeds=args.seeds,
                                best=best, best_seeds=best_seeds, overrides=overrides,
                                jobs=args.jobs, progress=_print_now(modes.describe))
    for line in text_table(bench.tables[0]):
        print(line)
    print(f"report: {bench.page.resolve()}")
    return 0


def _run_images(args: argparse.Namespace, bench: images.Bench, settings: list[Setting],
                overrides: dict[str, Any]) -> int:
    for name, value in (("--data", args.data), ("--best", args.best),
                        ("--best-seeds", args.best_seeds)):
        if value is not None:
            raise BadInputError(f"{name} is for bench modes only; bench {bench.name} trains "
                                f"on {bench.data}, every row with --seeds seeds")
    result = images.run_benchmark(bench, settings, parent=args.out, resume=args.resume,
                                  seeds=args.seeds, steps=args.steps, samples=args.samples,
                                  overrides=overrides, jobs=args.jobs,
                                  progress=_print_now(images.describe))
    for table in result.tables[:2]:
        print(table.title)
        for line in text_table(table):
            print(line)
    print(f"report: {result.page.resolve()}")
    return 0


def _print_now(describe: Callable[[Result], str]) -> Callable[[Result], None]:
    """Print each run's line as it finishes (so progress shows in a log file)."""
    return lambda run: print(describe(run), flush=True)
