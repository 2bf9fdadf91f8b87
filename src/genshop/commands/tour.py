"""`genshop tour`: every section at a quick size, written to runs/tour-<timestamp>/index.html."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "tour"
HELP = "run every tour section quickly and write an HTML report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=[], metavar="SECTION",
                   help="run only this section (repeatable)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="list the sections and exit")


def run(args: argparse.Namespace) -> int:
    from genshop.tour import SECTIONS, discover, run_tour

    sections = discover()
    if args.list:
        for s in sections:
            print(f"{s.name:24s} {s.title}")
        return 0
    for name in args.only:
        SECTIONS.get(name)  # unknown name -> one-line error with the valid names
    outcome = run_tour(args.out, args.only, args.seed)
    print(f"report: {outcome.report.resolve()}")
    if outcome.failed:
        print(f"failed sections: {', '.join(outcome.failed)}")
        return 1
    return 0
