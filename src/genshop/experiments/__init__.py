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
functions on a small budget. What every experiment shares lives here: the config of a GAN run
(`gan_config`), training it once with its finished-marker (`train_once`), the process pool
(`run_tasks`), the benchmark folder (`new_folder`) and the page (`write_page`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from genshop import report
from genshop.atomic import write_json_atomic, write_text_atomic
from genshop.config import read_config_json
from genshop.engine import configure, train
from genshop.errors import BadInputError, TrainingDiverged
from genshop.families.gan import GanConfig
from genshop.report import Table

DONE = "bench-run.json"  # written into a run's folder when it has finished (for resuming)
QUIET = {"sample_every": 0, "checkpoint_every": 10**9, "log_every": 100}
R = TypeVar("R")


def gan_config(data: str, loss: str, update: str, seed: int, out: Path | str,
               overrides: dict[str, Any] | None = None) -> GanConfig:
    """The config of one benchmark run: GanConfig defaults, the data set's recipe, then
    `overrides` (steps included)."""
    return configure("gan", **{**QUIET, **(overrides or {}), "data": data, "loss": loss,
                              "update": update, "seed": seed, "out": str(out)})


@dataclass(frozen=True)
class GanTask:
    """One GAN training run of a benchmark, picklable for a worker process; an experiment
    subclasses it with its `run()` (train with `train_once`, then score)."""

    data: str
    loss: str
    update: str
    seed: int
    out: Path
    overrides: dict[str, Any] | None = None

    def config(self) -> GanConfig:
        return gan_config(self.data, self.loss, self.update, self.seed, self.out,
                          self.overrides)


@dataclass(frozen=True)
class Trained:
    """What `train_once` records of a finished run (its `DONE` file)."""

    cpu_seconds: float
    diverged: bool


def train_once(config: Any) -> Trained:
    """Train `config` into `config.out` unless it finished before.

    A folder holding `DONE` is reused after checking its saved config equals `config` but for
    the folder's path (else a BadInputError); a folder without it was interrupted and is trained
    again from scratch. A run whose loss turned NaN counts as finished and `diverged`.
    """
    out = Path(config.out)
    if (out / DONE).is_file():
        unchecked = {"family", "out"}  # a benchmark folder may have been moved or copied
        saved = {k: v for k, v in read_config_json(out).items() if k not in unchecked}
        if saved != {k: v for k, v in dataclasses.asdict(config).items() if k not in unchecked}:
            raise BadInputError(f"{out} was trained with another config than this "
                                "benchmark's; resume with the same recipe, --steps and --set")
        return Trained(**json.loads((out / DONE).read_text()))
    if out.exists():
        shutil.rmtree(out)
    start = time.process_time()
    try:
        train(config, progress=False)
        diverged = False
    except TrainingDiverged:
        diverged = True
    record = Trained(time.process_time() - start, diverged)
    write_json_atomic(out / DONE, dataclasses.asdict(record))
    return record


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
    """`out/index.html`: the tables, then the figures (files in `out`); and `out/tables.md`:
    the same tables in markdown, to paste into documentation."""
    markdown = "\n".join([f"# {title}\n", *map(report.table_markdown, tables)])
    write_text_atomic(out / "tables.md", markdown)
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


__all__ = ["DONE", "QUIET", "GanTask", "Task", "Trained", "gan_config", "new_folder", "run_tasks",
           "text_table", "train_once", "write_page"]
