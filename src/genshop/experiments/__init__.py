"""Experiments: the lab's benchmarks, one module each, as code the CLI and the tour call.

An experiment module (the template is `modes`) holds, for one published protocol:

* its published rows (`PUBLISHED…`), quoted with their source;
* a picklable `Task` per training run, whose `run()` trains through `genshop.train`, scores the
  result and leaves a finished-marker (`DONE`) in the run's folder, so an interrupted benchmark
  resumes without retraining what finished;
* rows (one per compared setting, several seeds each), their scoring, ranking and tables;
* one `run_benchmark(...)` that writes the benchmark folder: `results.json`, pictures and
  `index.html`.

`genshop.commands.bench` parses options and calls `run_benchmark`; a tour section calls the same
functions on a small budget. What every experiment shares lives here: the process pool
(`run_tasks`), the benchmark folder (`new_folder`) and the page (`write_page`).
"""

from __future__ import annotations

import html
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

import torch

from genshop import report
from genshop.report import Table

DONE = "bench-run.json"  # written into a run's folder when it has finished (for resuming)
R = TypeVar("R")


class Task(Protocol[R]):
    """One training run of a benchmark: picklable, seeded by its own fields."""

    def run(self) -> R: ...


def _one_thread() -> None:
    torch.set_num_threads(1)


def run_tasks(tasks: Sequence[Task[R]], jobs: int = 1,
              progress: Callable[[R], None] = lambda _: None) -> list[R]:
    """Run every task, in `jobs` spawned worker processes (1 torch thread each) when jobs > 1.

    Results come back in the order of `tasks`, equal to a serial run's (each run is seeded by its
    task); `progress` gets each result as it finishes.
    """
    if jobs <= 1:
        results = []
        for task in tasks:
            results.append(task.run())
            progress(results[-1])
        return results
    done: dict[int, R] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(task.run): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            progress(done[futures[future]])
    return [done[i] for i in range(len(tasks))]


def new_folder(parent: Path, name: str) -> Path:
    """A new `parent/bench-<name>-<time>` folder for one benchmark run."""
    out = Path(parent) / f"bench-{name}-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=False)
    return out


def write_page(out: Path, title: str, tables: Sequence[Table], figures: Sequence[Path]) -> Path:
    """`out/index.html`: the tables, then the figures (files in `out`)."""
    imgs = "".join(f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                   for p in figures)
    body = "".join(report.table_html(t) for t in tables) + imgs
    return report.write_page(out / "index.html", title, body)


def text_table(table: Table) -> list[str]:
    """The table as aligned text lines (for a terminal or a log)."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows))
              for i, c in enumerate(table.columns)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*table.columns), *(fmt.format(*map(str, r)) for r in table.rows)]


__all__ = ["DONE", "Task", "new_folder", "run_tasks", "text_table", "write_page"]
