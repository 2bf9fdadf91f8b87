"""`genshop bench modes`: every GAN loss × {alternating, fused} update on the 2-D ring or grid.

A thin command over `genshop.experiments.modes` (the protocol, rows, scoring, published tables,
worker processes and resume live there): options in, `run_benchmark`, the table printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genshop.errors import BadInputError, UnknownNameError
from genshop.experiments import text_table
from genshop.experiments.modes import UPDATES, describe, run_benchmark
from genshop.losses import names as loss_names

NAME = "bench"
HELP = "benchmarks: `bench modes` scores every GAN loss on the 2-D ring/grid mode protocol"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("benchmark", choices=["modes"], help="which benchmark")
    p.add_argument("--data", choices=["ring8", "grid25"], default="ring8")
    p.add_argument("--losses", default="all",
                   help="comma-separated loss names, or 'all' (genshop.losses.names())")
    p.add_argument("--updates", default=",".join(UPDATES),
                   help="comma-separated update rules: alternating, fused")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: recipe)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row of the full table")
    p.add_argument("--best", type=int, default=2, help="rows rerun with --best-seeds seeds")
    p.add_argument("--best-seeds", type=int, default=10)
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
    losses = parse_names(args.losses, loss_names(), "loss")
    updates = parse_names(args.updates, UPDATES, "update rule")
    overrides = parse_overrides(args.set)
    if args.steps is not None:
        if args.steps < 1:
            raise BadInputError(f"--steps must be >= 1, got {args.steps}")
        overrides["steps"] = args.steps
    bench = run_benchmark(args.data, losses, updates, parent=args.out, resume=args.resume,
                          seeds=args.seeds, best=args.best, best_seeds=args.best_seeds,
                          overrides=overrides, jobs=args.jobs, progress=_print_now)
    for line in text_table(bench.tables[0]):
        print(line)
    print(f"report: {bench.page.resolve()}")
    return 0


def _print_now(run) -> None:
    print(describe(run), flush=True)  # progress shows in a log file as each run finishes
