"""`genshop report RUN_DIR`: (re)draw the page `RUN_DIR/index.html` of a training run.

The engine writes data only (config.json, metrics.jsonl, checkpoints, snapshots); this draws the
page from it: the config, the last logged values, metric curves and the latest snapshots. It
works on any run directory, finished, interrupted or still training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genshop.errors import DataError
from genshop.report import write_run_page

NAME = "report"
HELP = "(re)draw the index.html page of a run directory from its data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="run directory written by `genshop train`")


def run(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise DataError(f"run directory {args.run_dir} does not exist; train one with "
                        "`genshop train ... --out DIR`")
    page = write_run_page(args.run_dir)
    print(f"report: {page.resolve()}")
    return 0
