"""Experiments: the lab's benchmarks, one module each, as code the CLI and the tour call.

The benchmarks measure the models of the *Scientific Spaces* posts (the GAN losses of "f-GAN: a
production workshop for GANs", kexue.fm 6016, and "RSGAN", 6110, with the single-loss step of
6387; the flow of 6377; later GLO/IMLE/GLANN of 6394 and the VAE of 6181) on published
protocols. This module is their one skeleton:

* a row of a table is a `Setting`: a family and the options that set the row apart, e.g.
  `Setting("gan", {"loss": "nsgan", "update": "fused"})` (`gan(loss, update)`) or
  `Setting("flow")`, so rows of several families sit in one table at the same protocol;
* `Runs` trains a row's seeds: run k of a row goes to `<folder>/<row name>-s<k>`
  (`runs/nsgan-fused-s0`; a GAN row is named by its options alone, any other family's row starts
  with the family's name), built by `genshop.configure(family, **QUIET, overrides, options,
  data, seed, out)`. The options every row shares (`--set`) go to each row whose family has
  them (`check_overrides`: one that no row's family has is an error);
* each run is a picklable `RunTask`, trained once by `train_once` (its finished-marker `DONE`
  makes a benchmark resumable in its folder) and scored by the benchmark's scorer into a
  `Result`; `run_tasks` spreads the tasks over worker processes;
* `Row` (a setting and its seeds' results), `Column` and `ranked_table` make the table, best
  row first by the benchmark's rank key: the row's options as columns (and `family` when the
  table holds more than one family), `seeds`, then the benchmark's columns;
* `open_folder`, `write_page` (`index.html`, `tables.md`) and `text_table` the rest.

An experiment module (`modes`, `images`, `stacked`) adds its published rows (`PUBLISHED…`,
quoted with their source), its scorer, columns, rank key, figures and `run_benchmark(...)`;
`genshop.commands.bench` parses options and calls it, a tour section calls the same functions on
a small budget; `genshop.experiments.budget` counts the compute of a training step of any family.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from genshop import report
from genshop.atomic import write_json_atomic, write_text_atomic
from genshop.config import RunConfig, read_config_json
from genshop.engine import configure, train
from genshop.errors import BadInputError, TrainingDiverged
from genshop.families import get_family
from genshop.metrics.modes import mean_stderr
from genshop.report import Table
from genshop.runs import PAGE

DONE = "bench-run.json"  # written into a run's folder when it has finished (for resuming)
QUIET = {"sample_every": 0, "checkpoint_every": 10**9, "log_every": 100}
BARE = "gan"  # the family whose rows are named by their options alone (the GAN benchmarks' runs)
TABLES = "tables.md"
R = TypeVar("R")


# -- rows: a family and its options -------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One compared setting of a benchmark: a family and the options that set its row apart
    (besides the data set, the seed, the folder and the options every row shares)."""

    family: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.family, tuple(sorted(self.options.items()))))

    def words(self) -> list[str]:
        """The row's name in words: its option values, after the family's name unless it is
        the GAN family (whose rows keep the names of the GAN benchmarks)."""
        head = [] if self.family == BARE else [self.family]
        return [*head, *map(str, self.options.values())] or [self.family]

    def name(self, sep: str = "-") -> str:
        return sep.join(self.words())

    def fields(self, with_family: bool) -> dict[str, Any]:
        """The row's key as JSON fields: its options, after its family when asked."""
        return {**({"family": self.family} if with_family else {}), **self.options}

    def config(self, data: str, seed: int, out: Path | str,
               overrides: dict[str, Any] | None = None) -> RunConfig:
        """The config of one run: the family's defaults, the data set's recipe, `overrides`
        (steps included), then the row's options."""
        return configure(self.family, **{**QUIET, **(overrides or {}), **self.options,
                                         "data": data, "seed": seed, "out": str(out)})


def gan(loss: str, update: str) -> Setting:
    """The row of one GAN loss and update rule."""
    return Setting("gan", {"loss": loss, "update": update})


def gan_grid(losses: Sequence[str], updates: Sequence[str]) -> list[Setting]:
    """Every loss × update rule, loss by loss."""
    return [gan(loss, update) for loss in losses for update in updates]


def gan_updates(settings: Sequence[Setting]) -> list[str]:
    """The update rules of the GAN rows, in order of first appearance."""
    return list(dict.fromkeys(s.options["update"] for s in settings if s.family == "gan"))


def option_names(family: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_family(family).config_class)}


def check_overrides(settings: Sequence[Setting], overrides: Mapping[str, Any]) -> None:
    """A BadInputError for a shared option that no row's family has."""
    families = list(dict.fromkeys(s.family for s in settings))
    known = set().union(*map(option_names, families))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BadInputError(f"unknown option(s) {unknown} for the rows' families "
                            f"({', '.join(families)}); valid: {', '.join(sorted(known))}")


def family_overrides(family: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The shared options that `family` has."""
    names = option_names(family)
    return {k: v for k, v in overrides.items() if k in names}


def check_rows(data: str, settings: Sequence[Setting], overrides: Mapping[str, Any]) -> None:
    """Build every row's config once (`check_overrides` first), so a bad option or value is a
    BadInputError before any folder is made or run trained."""
    check_overrides(settings, overrides)
    for setting in settings:
        setting.config(data, 0, Path("."), family_overrides(setting.family, overrides))


def padded(setting: Setting, widths: Sequence[int]) -> str:
    """The row's words in columns of `widths` (for progress lines)."""
    words = setting.words()
    cells = [f"{w:{n}s}" for w, n in zip(words, widths, strict=False)]
    return " ".join([*cells, *words[len(widths):]])


# -- training once ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trained:
    """What `train_once` records of a finished run (its `DONE` file)."""

    cpu_seconds: float
    diverged: bool


def same_config(saved: dict[str, Any], config: Any) -> bool:
    """Whether a run's saved config.json is `config` but for its folder (a benchmark folder may
    have been moved or copied); an option the saved config lacks (one added to genshop since)
    reads as its default."""
    unchecked = {"family", "out"}
    defaults = dataclasses.asdict(type(config)())
    full = {k: v for k, v in {**defaults, **saved}.items() if k not in unchecked}
    return full == {k: v for k, v in dataclasses.asdict(config).items() if k not in unchecked}


def train_once(config: Any) -> Trained:
    """Train `config` into `config.out` unless it finished before.

    A folder holding `DONE` is reused after checking its saved config equals `config` but for
    the folder's path (`same_config`; else a BadInputError); a folder without it was interrupted
    and is trained again from scratch. A run whose loss turned NaN counts as finished and
    `diverged`.
    """
    out = Path(config.out)
    if (out / DONE).is_file():
        if not same_config(read_config_json(out), config):
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


# -- results, rows, tasks -----------------------------------------------------------------------

@dataclass
class Result:
    """One scored run of a row: its scores (the benchmark's: a dict of numbers or a dataclass
    of them; missing ones read as NaN), what its figure draws, and what training cost."""

    setting: Setting
    seed: int
    steps: int
    scores: Any
    cpu_seconds: float
    diverged: bool
    samples: Tensor | None = None  # what the benchmark's figure draws of the run
    protocol: dict[str, Any] | None = None

    def value(self, key: str) -> float:
        if isinstance(self.scores, Mapping):
            return float(self.scores.get(key, math.nan))
        return float(getattr(self.scores, key, math.nan))


@dataclass
class Row:
    """A setting and its seeds' results; `steps` fixes its training steps (None: the recipe's,
    or the shared options')."""

    setting: Setting
    runs: list[Result] = field(default_factory=list)
    steps: int | None = None

    def mean_se(self, key: str) -> tuple[float, float]:
        """Mean and standard error of a score over the seeds (NaN when one is missing)."""
        return mean_stderr([r.value(key) for r in self.runs])


class Scorer(Protocol):
    """Scores a trained run: picklable (a module-level function or a frozen dataclass)."""

    def __call__(self, task: RunTask, config: Any, trained: Trained) -> Result: ...


@dataclass(frozen=True)
class RunTask:
    """One training run of a benchmark, picklable for a worker process."""

    setting: Setting
    data: str
    seed: int
    out: Path
    overrides: dict[str, Any] | None
    score: Scorer

    def config(self) -> RunConfig:
        return self.setting.config(self.data, self.seed, self.out, self.overrides)

    def run(self) -> Result:
        """Train (once: `train_once`), then score."""
        config = self.config()
        return self.score(self, config, train_once(config))


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


@dataclass(frozen=True)
class Runs:
    """How a benchmark trains and scores its rows: the data set, the folder of the runs, the
    options every row shares (each row's family takes those it has), the scorer and the number
    of worker processes."""

    data: str
    folder: Path
    score: Scorer
    overrides: Mapping[str, Any] = field(default_factory=dict)
    jobs: int = 1

    def task(self, row: Row, seed: int) -> RunTask:
        own = family_overrides(row.setting.family, self.overrides)
        steps = {} if row.steps is None else {"steps": row.steps}
        return RunTask(row.setting, self.data, seed,
                       self.folder / f"{row.setting.name()}-s{seed}", {**own, **steps},
                       self.score)

    def add_seeds(self, rows: Sequence[Row], seeds: Sequence[int],
                  progress: Callable[[Result], None] = lambda _: None) -> None:
        """Append to each row its runs for `seeds` (all rows' runs share the workers)."""
        tasks = [self.task(row, seed) for row in rows for seed in seeds]
        results = iter(run_tasks(tasks, self.jobs, progress))
        for row in rows:
            row.runs += [next(results) for _ in seeds]


# -- tables -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A column of a measured table: its label and its cell of a row."""

    label: str
    cell: Callable[[Row], Any]


def _max_cpu(row: Row) -> float:
    return max(r.cpu_seconds for r in row.runs)


STEPS = Column("steps", lambda row: row.runs[0].steps)
MAX_CPU = Column("max CPU-s/run", lambda row: round(_max_cpu(row), 1))
STEPS_PER_CPU = Column("steps/CPU-s", lambda row: round(row.runs[0].steps / _max_cpu(row), 2)
                       if _max_cpu(row) > 0 else math.nan)
DIVERGED = Column("diverged", lambda row: sum(r.diverged for r in row.runs))


def several_families(rows: Sequence[Row]) -> bool:
    return len({row.setting.family for row in rows}) > 1


def ranked_table(title: str, rows: Sequence[Row], columns: Sequence[Column],
                   rank_key: Callable[[Row], Any], note: str) -> Table:
    """The rows best first (`rank_key`, higher is better): `family` when the rows hold more
    than one, every option of the rows (— where a row has none), `seeds`, then `columns`."""
    with_family = several_families(rows)
    keys = list(dict.fromkeys(k for row in rows for k in row.setting.options))
    head = ["family"] * with_family + keys + ["seeds"]
    body = [[*[row.setting.family] * with_family, *(row.setting.options.get(k, "—") for k in keys),
             len(row.runs), *(c.cell(row) for c in columns)]
            for row in sorted(rows, key=rank_key, reverse=True)]
    return Table(title, [*head, *(c.label for c in columns)], body, note)


def text_table(table: Table) -> list[str]:
    """The table as aligned text lines (for a terminal or a log)."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows))
              for i, c in enumerate(table.columns)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*table.columns), *(fmt.format(*map(str, r)) for r in table.rows)]


# -- the benchmark folder -----------------------------------------------------------------------

def new_folder(parent: Path, name: str) -> Path:
    """A new `parent/bench-<name>-<time>` folder for one benchmark run."""
    out = Path(parent) / f"bench-{name}-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=False)
    return out


def check_resume(resume: Path | None, command: str) -> None:
    """A BadInputError unless `resume` (if given) is a benchmark folder (it has runs/)."""
    if resume is not None and not (resume / "runs").is_dir():
        raise BadInputError(f"--resume {resume}: not a `genshop bench {command}` folder (it "
                            "has no runs/ folder)")


def open_folder(parent: Path, name: str, resume: Path | None) -> Path:
    """The folder of an interrupted benchmark (`resume`, checked by `check_resume`), else a
    `new_folder`."""
    return resume if resume is not None else new_folder(parent, name)


def write_page(out: Path, title: str, tables: Sequence[Table], figures: Sequence[Path]) -> Path:
    """`out/index.html`: the tables, then the figures (files in `out`); and `out/tables.md`:
    the same tables in markdown, to paste into documentation."""
    markdown = "\n".join([f"# {title}\n", *map(report.table_markdown, tables)])
    write_text_atomic(out / TABLES, markdown)
    imgs = "".join(f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                   for p in figures)
    body = "".join(report.table_html(t) for t in tables) + imgs
    return report.write_page(out / PAGE, title, body)


__all__ = ["DIVERGED", "DONE", "MAX_CPU", "QUIET", "STEPS", "STEPS_PER_CPU", "Column",
           "Result", "Row", "RunTask", "Runs", "Scorer", "Setting", "Task", "Trained",
           "check_overrides", "check_resume", "check_rows", "family_overrides", "gan", "gan_grid",
           "gan_updates",
           "new_folder", "open_folder", "padded", "ranked_table", "run_tasks", "same_config",
           "several_families", "text_table", "train_once", "write_page"]
