"""The 2-D mode benchmark: every GAN loss × {alternating, fused} update on the ring or the grid,
and any other family's row beside them (the flow of kexue.fm 6377, later GLO/IMLE/GLANN of 6394).

Compares the losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN: the
Turing test in GANs" (6110), trained with the alternating update or the single-loss fused step of
"A GAN with a single loss via stop-gradient" (6387), by the VEEGAN/PacGAN mode-collapse protocol
(`genshop.metrics.modes`: 2,500 samples; modes captured, % within 3 std, KL(p̂ ‖ uniform)).

Each row (a `genshop.experiments.Setting`: `gan(loss, update)`, or another family such as
`Setting("flow")`) is trained by `genshop.train` from several seeds at the data set's recipe
(`genshop.families.gan.RECIPES`); then the best rows get more seeds, as PacGAN reports 10
trials. `run_benchmark` writes the benchmark folder: `results.json`, `index.html` (the measured
table beside PacGAN's and VEEGAN's Table 1) and scatter plots of seed 0 of every row. Runs go to
worker processes (`genshop.experiments.Runs`); every run is seeded by its task, so the numbers
do not depend on the number of workers. Each finished run leaves `bench-run.json` in its folder,
so a benchmark resumed in its folder does not retrain what finished (it checks the saved configs
match).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genshop.atomic import write_json_atomic
from genshop.data import get_dataset
from genshop.errors import BadInputError
from genshop.experiments import (
    DIVERGED,
    MAX_CPU,
    Column,
    Result,
    Row,
    Runs,
    RunTask,
    Setting,
    Trained,
    check_resume,
    check_rows,
    family_overrides,
    gan,
    gan_updates,
    open_folder,
    padded,
    ranked_table,
    several_families,
    write_page,
)
from genshop.metrics.modes import SCORED_SAMPLES, format_mean_se, score_dataset
from genshop.plots import plt, save_figure
from genshop.report import Table
from genshop.runs import load_run
from genshop.threads import torch_threads

UPDATES = ("alternating", "fused")
SAMPLE_SEED = 10_000  # the scored samples' latent seed is SAMPLE_SEED + the run's seed


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


def score_points(task: RunTask, config: Any, trained: Trained) -> Result:
    """Score 2,500 samples (seed 10,000 + run seed) of the trained run `config.out` (NaN points
    for a run that diverged)."""
    if trained.diverged:
        samples = torch.full((SCORED_SAMPLES, 2), math.nan)
    else:
        samples = load_run(config.out).sample(SCORED_SAMPLES, seed=SAMPLE_SEED + config.seed)
    scores = score_dataset(samples, get_dataset(config.data))
    return Result(task.setting, config.seed, config.steps, scores, trained.cpu_seconds,
                  trained.diverged, samples)


def rank_key(row: Row) -> tuple[float, float, float]:
    """Higher is better: mean modes, then −mean reverse KL (NaN last), then mean HQ."""
    kl = row.mean_se("reverse_kl")[0]
    return (row.mean_se("modes")[0], -kl if math.isfinite(kl) else -math.inf,
            row.mean_se("hq_percent")[0])


def runs_in(data: str, folder: Path, overrides: dict[str, Any] | None = None,
            jobs: int = 1) -> Runs:
    """How this benchmark trains and scores rows on `data`: run k of a row goes to
    folder/<row name>-s<k> (`runs/nsgan-fused-s0`)."""
    return Runs(data, folder, score_points, dict(overrides or {}), jobs)


def run_rows(data: str, settings: Sequence[Setting], seeds: Sequence[int], out: Path,
             overrides: dict[str, Any] | None = None,
             progress: Callable[[Result], None] = lambda _: None, jobs: int = 1) -> list[Row]:
    """Train and score every row for every seed; run k goes to out/<row name>-s<k>."""
    rows = [Row(setting) for setting in settings]
    runs_in(data, out, overrides, jobs).add_seeds(rows, seeds, progress)
    return rows


def describe(run: Result) -> str:
    s = run.scores
    return (f"{padded(run.setting, (16, 11))} seed {run.seed}: modes {s.modes}/{s.num_modes} "
            f"HQ {s.hq_percent:5.1f}% rev-KL {s.reverse_kl:.3f} ({run.cpu_seconds:.1f} CPU-s"
            f"{', diverged' if run.diverged else ''})")


def _mean_se_column(label: str, key: str, digits: int) -> Column:
    return Column(label, lambda row: format_mean_se(row.mean_se(key), digits))


def all_modes(row: Row) -> str:
    """Seeds that captured every mode, of all seeds."""
    found = sum(r.scores.modes == r.scores.num_modes for r in row.runs)
    return f"{found}/{len(row.runs)}"


COLUMNS = (_mean_se_column("modes", "modes", 1), _mean_se_column("HQ %", "hq_percent", 1),
           _mean_se_column("reverse KL", "reverse_kl", 3), Column("all modes", all_modes),
           MAX_CPU, DIVERGED)


def scatter_figure(data_name: str, rows: Sequence[Row], title: str):
    """One panel per row: seed 0's 2,500 samples (blue) over the mixture's centres (red +)."""
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
        ax.set_title(f"{row.setting.name(' ')}\n{s.modes}/{s.num_modes}, "
                     f"{s.hq_percent:.0f}% HQ", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def published_tables(data_name: str) -> list[Table]:
    """PacGAN's Table 1 and VEEGAN's Table 1 for `data_name`, the protocol's published rows."""
    return [Table(f"Published: PacGAN Table 1, {data_name} (10 trials, mean ± s.e.)",
                  ["method", "modes", "HQ %", "reverse KL"],
                  [list(r) for r in PUBLISHED[data_name]],
                  "Lin et al. 2018 (NeurIPS), fjxmlzn/PacGAN results/Table1.png; G 4×400 ReLU, "
                  "D 3×200 maxout, Adam 1e-4, 400 epochs of 100k points."),
            Table(f"Published: VEEGAN Table 1, {data_name}", ["method", "modes", "HQ %"],
                  [list(r) for r in PUBLISHED_VEEGAN[data_name]],
                  "Srivastava et al. 2017 (NeurIPS), akashgit/VEEGAN tab.png; the same protocol "
                  "with other nets: its GAN row collapses where PacGAN's does not.")]


RECIPE_KEYS = ("steps", "batch_size", "latent_dim", "width", "depth", "activation", "lr_g",
               "lr_d", "beta1", "beta2", "ema", "pack", "r1", "r1_every", "lr_schedule",
               "threads")


def recipe_summary(data: str, overrides: dict[str, Any] | None = None,
                   update: str = "alternating") -> dict[str, Any]:
    """The options that shape GAN training with `update` (the data set's recipe, its part for
    that update rule, then the overrides the GAN family has)."""
    config = gan("nsgan", update).config(data, 0, Path("."),
                                         family_overrides("gan", overrides or {}))
    return {k: getattr(config, k) for k in RECIPE_KEYS}


def gan_recipes(data: str, settings: Sequence[Setting],
                overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """`recipe_summary` per update rule of the GAN rows."""
    return {update: recipe_summary(data, overrides, update) for update in gan_updates(settings)}


def recipe_note(recipe: dict[str, dict[str, Any]]) -> str:
    """The recipe per update rule as one readable line: the options they share, then those in
    which they differ."""
    first, *others = recipe.values()
    shared = {k: v for k, v in first.items() if all(o.get(k) == v for o in others)}
    parts = [", ".join(f"{k} {v}" for k, v in shared.items())]
    for update, options in recipe.items():
        own = {k: v for k, v in options.items() if k not in shared}
        if own:
            parts.append(f"{update}: " + ", ".join(f"{k} {v}" for k, v in own.items()))
    return "; ".join(parts)


def measured_table(title: str, rows: Sequence[Row], recipe: dict[str, dict[str, Any]]) -> Table:
    return ranked_table(title, rows, COLUMNS, rank_key,
                        f"recipe: {recipe_note(recipe)}. Mean ± standard error over seeds; CPU-s "
                        "is process CPU time of one training run (engine included).")


def run_json(row: Row, with_family: bool = False) -> list[dict[str, Any]]:
    return [{**r.setting.fields(with_family), "seed": r.seed, "modes": r.scores.modes,
             "hq_percent": r.scores.hq_percent,
             "reverse_kl": r.scores.reverse_kl if math.isfinite(r.scores.reverse_kl) else None,
             "counts": r.scores.counts, "cpu_seconds": r.cpu_seconds, "diverged": r.diverged}
            for r in row.runs]


@dataclass
class Benchmark:
    """What `run_benchmark` measured and wrote."""

    folder: Path
    rows: list[Row]
    tables: list[Table]
    page: Path


def run_benchmark(data: str, settings: Sequence[Setting], *, parent: Path = Path("runs"),
                  resume: Path | None = None, seeds: int = 3, best: int = 2,
                  best_seeds: int = 10, overrides: dict[str, Any] | None = None,
                  jobs: int = 1, progress: Callable[[Result], None] = lambda _: None
                  ) -> Benchmark:
    """Every row (`gan_grid(losses, updates)`, and rows of other families) with `seeds` seeds,
    then the `best` best rows up to `best_seeds` seeds, into a new folder
    `parent/bench-modes-<data>-<time>` (or the folder of an interrupted benchmark, `resume`):
    runs/, results.json, scatter.png and index.html. Every option is checked before any folder
    is made or run trained."""
    if seeds < 1 or best_seeds < seeds or best < 0 or jobs < 1:
        raise BadInputError("need --seeds >= 1, --best >= 0, --best-seeds >= --seeds and "
                            "--jobs >= 1")
    overrides = dict(overrides or {})
    check_rows(data, settings, overrides)
    recipe = gan_recipes(data, settings, overrides)
    check_resume(resume, "modes")
    folder = open_folder(parent, f"modes-{data}", resume)
    runs = runs_in(data, folder / "runs", overrides, jobs)
    rows = [Row(setting) for setting in settings]
    with torch_threads(1):  # scoring; each training run sets its own `threads`
        runs.add_seeds(rows, range(seeds), progress)
        top = sorted(rows, key=rank_key, reverse=True)[:best]
        runs.add_seeds(top, range(seeds, best_seeds), progress)
    tables = [measured_table(f"Measured: {data}, {seeds} seeds per row ({best_seeds} for the "
                             f"best {len(top)})", rows, recipe), *published_tables(data)]
    figure = save_figure(scatter_figure(data, rows, f"{data}: seed 0 of every row"),
                         folder / "scatter.png")
    with_family = several_families(rows)
    write_json_atomic(folder / "results.json", {
        "data": data, "recipe": recipe,
        "runs": [r for row in rows for r in run_json(row, with_family)]})
    page = write_page(folder, f"genshop bench modes: {data}", tables, [figure])
    return Benchmark(folder, rows, tables, page)
