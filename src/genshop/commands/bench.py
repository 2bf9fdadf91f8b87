"""`genshop bench modes`: every GAN loss × {alternating, fused} step on the 2-D ring or grid.

Compares the losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN: the
Turing test in GANs" (6110), trained with the alternating step or the single-loss fused step of
"A GAN with a single loss via stop-gradient" (6387), by the VEEGAN/PacGAN mode-collapse protocol
(`genshop.metrics.modes`: 2,500 samples; modes captured, % within 3 std, KL(p̂ ‖ uniform)).

Each (loss, step) row is trained by `genshop.engine` (the GAN family) from `--seeds` seeds at the
data set's recipe (`genshop.config.RECIPES`), then the `--best` best rows get `--best-seeds` seeds
in all, as PacGAN reports 10 trials.
The run directory gets `results.json`, `index.html` (tables beside PacGAN's Table 1) and scatter
plots of seed 0 of every row. `--jobs N` trains N runs at once in spawned worker processes of one
torch thread each (every run is seeded by its task, so the numbers equal `--jobs 1`); each
finished run leaves `bench-run.json` in its folder, so `--resume BENCH_DIR` continues an
interrupted benchmark without retraining what finished (it checks the saved configs match).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genshop.errors import BadInputError

if TYPE_CHECKING:
    from genshop.metrics.modes import Aggregate, ModeScores

NAME = "bench"
HELP = "benchmarks: `bench modes` scores every GAN loss on the 2-D ring/grid mode protocol"

STEP_KINDS = ("alternating", "fused")
DONE = "bench-run.json"  # written into a run's folder when it has finished (for --resume)


# PacGAN Table 1 (Lin et al. 2018, 10 trials, mean ± s.e.): (modes, HQ %, reverse KL) per data.
PUBLISHED: dict[str, list[tuple[str, str, str, str]]] = {
    "ring8": [("GAN", "6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"),
              ("ALI", "6.6 ± 0.3", "97.6 ± 0.4", "0.36 ± 0.04"),
              ("PacGAN2", "7.9 ± 0.1", "95.6 ± 2.0", "0.07 ± 0.03"),
              ("PacGAN3", "7.8 ± 0.1", "97.7 ± 0.3", "0.10 ± 0.02"),
              ("PacGAN4", "7.8 ± 0.1", "95.9 ± 1.4", "0.07 ± 0.02")],
    "grid25": [("GAN", "17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07"),
               ("ALI", "24.1 ± 0.4", "95.7 ± 0.6", "0.14 ± 0.03"),
               ("PacGAN2", "23.8 ± 0.7", "91.3 ± 0.8", "0.13 ± 0.04"),
               ("PacGAN3", "24.6 ± 0.4", "94.2 ± 0.4", "0.06 ± 0.02"),
               ("PacGAN4", "24.8 ± 0.2", "93.6 ± 0.6", "0.04 ± 0.01")],
}
# VEEGAN Table 1 (Srivastava et al. 2017, akashgit/VEEGAN tab.png): (modes, HQ %); no reverse KL.
PUBLISHED_VEEGAN: dict[str, list[tuple[str, str, str]]] = {
    "ring8": [("GAN", "1", "99.3"), ("ALI", "2.8", "0.13"), ("Unrolled GAN", "7.6", "35.6"),
              ("VEEGAN", "8", "52.9")],
    "grid25": [("GAN", "3.3", "0.5"), ("ALI", "15.8", "1.6"), ("Unrolled GAN", "23.6", "16"),
               ("VEEGAN", "24.6", "40")],
}


@dataclass
class ToyRun:
    """One trained (loss, step, seed): the generator's samples and their scores."""

    loss: str
    step: str
    seed: int
    samples: torch.Tensor
    scores: ModeScores
    cpu_seconds: float
    diverged: bool


def gan_config(data: str, loss: str, step: str, seed: int, out: Path,
               overrides: dict[str, Any] | None = None):
    """The GAN config of one run: GanConfig defaults, `config.RECIPES[data]`, then overrides."""
    from genshop.config import RECIPES, GanConfig, resolve_config

    quiet = {"sample_every": 0, "checkpoint_every": 10**9, "log_every": 100}
    user = {**quiet, **(overrides or {}), "data": data, "loss": loss, "step": step,
            "seed": seed, "out": str(out)}
    return resolve_config(GanConfig, user, RECIPES)


def train_toy_gan(data_name: str, loss_name: str, step: str, seed: int, out: Path,
                  overrides: dict[str, Any] | None = None) -> ToyRun:
    """Train through `genshop.engine` into `out`; score 2,500 samples of the final G."""
    from genshop.engine import train
    from genshop.errors import TrainingDiverged
    from genshop.families.gan import GanFamily

    config = gan_config(data_name, loss_name, step, seed, out, overrides)
    start = time.process_time()
    try:
        train(GanFamily, config, progress=False)
        diverged = False
    except TrainingDiverged:
        diverged = True
    return score_run(config, time.process_time() - start, diverged)


def score_run(config, cpu_seconds: float, diverged: bool) -> ToyRun:
    """Score 2,500 samples (seed 10,000 + run seed) of the trained run `config.out`."""
    from genshop.data import get_dataset
    from genshop.metrics.modes import SCORED_SAMPLES, score_dataset
    from genshop.runs import load_run
    from genshop.threads import torch_threads

    if diverged:
        samples = torch.full((SCORED_SAMPLES, 2), math.nan)
    else:
        with torch_threads(config.threads):
            samples = load_run(config.out).sample(SCORED_SAMPLES, seed=10_000 + config.seed)
    scores = score_dataset(samples, get_dataset(config.data))
    return ToyRun(config.loss, config.step, config.seed, samples, scores, cpu_seconds, diverged)


@dataclass
class Row:
    loss: str
    step: str
    runs: list[ToyRun]

    def aggregate(self) -> Aggregate:
        from genshop.metrics.modes import aggregate

        return aggregate([r.scores for r in self.runs])

    def rank_key(self) -> tuple[float, float, float]:
        """Higher is better: mean modes, then −mean reverse KL (NaN last), then mean HQ."""
        agg = self.aggregate()
        kl = agg.reverse_kl[0]
        return (agg.modes[0], -kl if math.isfinite(kl) else -math.inf, agg.hq_percent[0])


@dataclass(frozen=True)
class Task:
    """One training run of the benchmark, picklable for a worker process."""

    data: str
    loss: str
    step: str
    seed: int
    out: Path
    overrides: dict[str, Any] | None = None

    def run(self) -> ToyRun:
        """Train and score; a finished run of `--resume` is only scored again (not retrained)."""
        if (self.out / DONE).is_file():
            return self.reuse()
        if self.out.exists():  # interrupted before it finished: start it again
            shutil.rmtree(self.out)
        run = train_toy_gan(self.data, self.loss, self.step, self.seed, self.out,
                            self.overrides)
        (self.out / DONE).write_text(json.dumps({"cpu_seconds": run.cpu_seconds,
                                                 "diverged": run.diverged}))
        return run

    def reuse(self) -> ToyRun:
        from genshop.config import read_config_json

        config = gan_config(self.data, self.loss, self.step, self.seed, self.out,
                            self.overrides)
        saved = {k: v for k, v in read_config_json(self.out).items() if k != "family"}
        if saved != dataclasses.asdict(config):
            raise BadInputError(f"{self.out} was trained with another config than this "
                                "benchmark's; resume with the same recipe, --steps and --set")
        done = json.loads((self.out / DONE).read_text())
        return score_run(config, done["cpu_seconds"], done["diverged"])


def _one_thread() -> None:
    torch.set_num_threads(1)


def run_tasks(tasks: Sequence[Task], jobs: int = 1,
              progress: Callable[[str], None] = lambda _: None) -> list[ToyRun]:
    """Run every task, in `jobs` spawned worker processes (1 torch thread each) when jobs > 1.

    Results come back in the order of `tasks`, equal to a serial run's (each run is seeded by its
    task); `progress` gets one line per run as it finishes.
    """
    if jobs <= 1:
        results = []
        for task in tasks:
            results.append(task.run())
            progress(describe(results[-1]))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    done: dict[int, ToyRun] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(task.run): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            progress(describe(done[futures[future]]))
    return [done[i] for i in range(len(tasks))]


def run_rows(data: str, losses: Sequence[str], steps: Sequence[str], seeds: Sequence[int],
             out: Path, overrides: dict[str, Any] | None = None,
             progress: Callable[[str], None] = lambda _: None, jobs: int = 1) -> list[Row]:
    """Train and score every (loss, step) for every seed; run k goes to out/<loss>-<step>-s<k>."""
    rows = [Row(loss, step, []) for loss in losses for step in steps]
    add_seeds(data, rows, seeds, out, overrides, progress, jobs)
    return rows


def add_seeds(data: str, rows: Sequence[Row], seeds: Sequence[int], out: Path,
              overrides: dict[str, Any] | None = None,
              progress: Callable[[str], None] = lambda _: None, jobs: int = 1) -> None:
    """Append to each row its runs for `seeds` (all rows' runs share the `jobs` workers)."""
    tasks = [Task(data, row.loss, row.step, seed, out / f"{row.loss}-{row.step}-s{seed}",
                  overrides) for row in rows for seed in seeds]
    runs = iter(run_tasks(tasks, jobs, progress))
    for row in rows:
        row.runs += [next(runs) for _ in seeds]


def describe(run: ToyRun) -> str:
    s = run.scores
    return (f"{run.loss:16s} {run.step:11s} seed {run.seed}: modes {s.modes}/{s.num_modes} "
            f"HQ {s.hq_percent:5.1f}% rev-KL {s.reverse_kl:.3f} ({run.cpu_seconds:.1f} CPU-s"
            f"{', diverged' if run.diverged else ''})")


def table_rows(rows: Sequence[Row]) -> list[list[Any]]:
    from genshop.metrics.modes import format_mean_se

    out = []
    for row in sorted(rows, key=Row.rank_key, reverse=True):
        agg = row.aggregate()
        out.append([row.loss, row.step, agg.runs, format_mean_se(agg.modes, 1),
                    format_mean_se(agg.hq_percent, 1), format_mean_se(agg.reverse_kl, 3),
                    f"{agg.all_modes_runs}/{agg.runs}",
                    round(max(r.cpu_seconds for r in row.runs), 1),
                    sum(r.diverged for r in row.runs)])
    return out


COLUMNS = ["loss", "step", "seeds", "modes", "HQ %", "reverse KL", "all modes",
           "max CPU-s/run", "diverged"]


def scatter_figure(data_name: str, rows: Sequence[Row], title: str):
    """One panel per row: seed 0's 2,500 samples (blue) over the mixture's centres (red +)."""
    import matplotlib.pyplot as plt

    from genshop.data import get_dataset

    centers = get_dataset(data_name).centers
    cols = min(6, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.8 * nrows), squeeze=False,
                             layout="constrained")
    lim = float(centers.abs().max()) * 1.5
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(list(axes.flat)[: len(rows)], rows, strict=True):
        x = row.runs[0].samples.nan_to_num(posinf=1e3, neginf=-1e3)
        ax.scatter(centers[:, 0], centers[:, 1], s=40, c="C3", marker="+", linewidths=0.8)
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, c="C0", linewidths=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        s = row.runs[0].scores
        ax.set_title(f"{row.loss} {row.step[:3]}\n{s.modes}/{s.num_modes}, "
                     f"{s.hq_percent:.0f}% HQ", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def published_tables(data_name: str) -> list:
    """PacGAN's Table 1 and VEEGAN's Table 1 for `data_name`, the protocol's published rows."""
    from genshop.tour import Table

    return [Table(f"Published: PacGAN Table 1, {data_name} (10 trials, mean ± s.e.)",
                  ["method", "modes", "HQ %", "reverse KL"],
                  [list(r) for r in PUBLISHED[data_name]],
                  "Lin et al. 2018 (NeurIPS), fjxmlzn/PacGAN results/Table1.png; G 4×400 ReLU, "
                  "D 3×200 maxout, Adam 1e-4, 400 epochs of 100k points."),
            Table(f"Published: VEEGAN Table 1, {data_name}", ["method", "modes", "HQ %"],
                  [list(r) for r in PUBLISHED_VEEGAN[data_name]],
                  "Srivastava et al. 2017 (NeurIPS), akashgit/VEEGAN tab.png; the same protocol "
                  "with other nets: its GAN row collapses where PacGAN's does not.")]


def measured_table(title: str, rows: Sequence[Row], recipe: dict[str, Any]):
    from genshop.tour import Table

    return Table(title, COLUMNS, table_rows(rows),
                 f"recipe: {json.dumps(recipe)}; mean ± standard error over seeds; "
                 "CPU-s is process CPU time of one training run (engine included).")


def recipe_summary(data: str, overrides: dict[str, Any] | None = None,
                   step: str = "alternating") -> dict[str, Any]:
    """The options that shape training with `step` (config.RECIPES[data], its part for that
    step, then the overrides)."""
    config = gan_config(data, "nsgan", step, 0, Path("."), overrides)
    keys = ("steps", "batch_size", "latent_dim", "width", "depth", "activation", "lr_g",
            "lr_d", "beta1", "beta2", "ema", "pack", "r1", "r1_every", "lr_schedule",
            "threads")
    return {k: getattr(config, k) for k in keys}


def write_page(out: Path, title: str, tables: Sequence[Any], figures: Sequence[Path]) -> Path:
    import html

    from genshop import report

    imgs = "".join(f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                   for p in figures)
    body = "".join(report.table_html(t) for t in tables) + imgs
    return report.write_page(out / "index.html", title, body)


def run_json(row: Row) -> list[dict[str, Any]]:
    return [{"loss": r.loss, "step": r.step, "seed": r.seed, "modes": r.scores.modes,
             "hq_percent": r.scores.hq_percent,
             "reverse_kl": r.scores.reverse_kl if math.isfinite(r.scores.reverse_kl) else None,
             "counts": r.scores.counts, "cpu_seconds": r.cpu_seconds, "diverged": r.diverged}
            for r in row.runs]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("benchmark", choices=["modes"], help="which benchmark")
    p.add_argument("--data", choices=["ring8", "grid25"], default="ring8")
    p.add_argument("--losses", default="all",
                   help="comma-separated loss names, or 'all' (genshop.losses.names())")
    p.add_argument("--step-kinds", default=",".join(STEP_KINDS),
                   help="comma-separated: alternating, fused")
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
    else the text; `gan_config` checks names and types."""
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
    from genshop.errors import UnknownNameError

    names = list(valid) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in valid and not n.startswith("fgan-alpha:"):
            raise UnknownNameError(kind, n, valid)
    return names


def run(args: argparse.Namespace) -> int:
    from genshop.losses import names as loss_names
    from genshop.report import save_figure

    losses = parse_names(args.losses, loss_names(), "loss")
    kinds = parse_names(args.step_kinds, STEP_KINDS, "step kind")
    if args.seeds < 1 or args.best_seeds < args.seeds or args.best < 0 or args.jobs < 1:
        raise BadInputError("need --seeds >= 1, --best >= 0, --best-seeds >= --seeds and "
                            "--jobs >= 1")
    overrides = parse_overrides(args.set)
    if args.steps is not None:
        if args.steps < 1:
            raise BadInputError(f"--steps must be >= 1, got {args.steps}")
        overrides["steps"] = args.steps
    # resolving each step kind's recipe checks --set's names and types before any run starts
    recipe = {kind: recipe_summary(args.data, overrides, kind) for kind in kinds}
    out = bench_folder(args)

    rows = run_rows(args.data, losses, kinds, range(args.seeds), out / "runs", overrides,
                    _print_now, args.jobs)
    best = sorted(rows, key=Row.rank_key, reverse=True)[: args.best]
    add_seeds(args.data, best, range(args.seeds, args.best_seeds), out / "runs", overrides,
              _print_now, args.jobs)
    tables = [measured_table(f"Measured: {args.data}, {args.seeds} seeds per row "
                             f"({args.best_seeds} for the best {len(best)})", rows, recipe),
              *published_tables(args.data)]
    figure = save_figure(scatter_figure(args.data, rows, f"{args.data}: seed 0 of every row"),
                         out / "scatter.png")
    (out / "results.json").write_text(json.dumps(
        {"data": args.data, "recipe": recipe,
         "runs": [r for row in rows for r in run_json(row)]}, indent=1), encoding="utf-8")
    page = write_page(out, f"genshop bench modes: {args.data}", tables, [figure])
    for line in format_text_table(tables[0]):
        print(line)
    print(f"report: {page.resolve()}")
    return 0


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress shows in a log file as each run finishes


def bench_folder(args: argparse.Namespace) -> Path:
    """A new runs/bench-modes-<data>-<time> folder, or the --resume folder."""
    if args.resume is None:
        out = args.out / f"bench-modes-{args.data}-{datetime.now():%Y%m%d-%H%M%S}"
        out.mkdir(parents=True, exist_ok=False)
        return out
    if not (args.resume / "runs").is_dir():
        raise BadInputError(f"--resume {args.resume}: not a `genshop bench modes` folder "
                            "(it has no runs/ folder)")
    return args.resume


def format_text_table(table) -> list[str]:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows))
              for i, c in enumerate(table.columns)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    return [fmt.format(*table.columns), *(fmt.format(*map(str, r)) for r in table.rows)]
