"""Image benchmarks: GAN losses × {alternating, fused} update on MNIST at a fixed compute budget,
scored on the reference classifier's features, with any other image family's row beside them.

Losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN: the Turing test
in GANs" (6110), trained with the alternating update or the single-loss fused step of "A GAN
with a single loss via stop-gradient" (6387), on the DCGAN pair (`genshop.nets.dcgan_pair`);
later GLO/IMLE/GLANN (6394) and the VAE (6181) as rows of the same table.

Scores: `genshop.metrics.evaluate_run` — `score_images` of `EVAL_SAMPLES` = 10,000 samples
against the 2,000 test digits: FID (Heusel et al. 2017), KID (Bińkowski et al. 2018), precision
/ recall (Kynkäänniemi et al. 2019), coverage (Naeem et al. 2020), digit classes found — on the
features of genshop's own digit classifier, *not* Inception-v3: the published Inception-FIDs on
MNIST (Lucic et al. 2018, copied in the GLANN paper's Table 1) stand beside them for the ranking
only. Each run's scores and protocol are in its `eval.json`.

Fixed budget (`genshop.experiments.budget`): F(row) is the model FLOPs of one training step of
the row at the recipe's batch size; the budget is B = `steps` · F(nsgan, alternating), and a row
trains round(B / F(row)) steps. Every run also records its process CPU time. The rows, seeds,
worker processes, resume and pages are those of the skeleton in `genshop.experiments`;
`genshop.experiments.stacked` runs Stacked MNIST with it (`run_benchmark(STACKED, ...)`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genshop.atomic import write_json_atomic
from genshop.errors import BadInputError
from genshop.experiments import (
    DIVERGED,
    MAX_CPU,
    QUIET,
    STEPS,
    STEPS_PER_CPU,
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
    gan_grid,
    gan_updates,
    open_folder,
    padded,
    ranked_table,
    several_families,
    write_page,
)
from genshop.experiments.budget import Budget, plan_budget
from genshop.experiments.modes import UPDATES, recipe_note
from genshop.metrics.modes import format_mean_se
from genshop.metrics.runs import EVAL_SAMPLES, EVAL_SEED, evaluate_run
from genshop.plots import image_grid, plt, save_figure
from genshop.report import Table
from genshop.runs import EVAL, load_run
from genshop.threads import torch_threads

LOSSES = ("nsgan", "lsgan", "hinge", "wgan", "rsgan", "rasgan", "fgan-kl")
REFERENCE = gan("nsgan", "alternating")  # the row whose step count sets the budget
GRID = 64  # samples drawn per row in the figure

# Lucic et al. 2018, best FID of each GAN on MNIST (Inception-v3 features, 10k samples), as the
# GLANN paper's Table 1 copies it (Hoshen et al. 2019; recalled, mean ± std).
PUBLISHED_MNIST = [("MM GAN", "9.8 ± 0.9"), ("NS GAN", "6.8 ± 0.5"), ("LSGAN", "7.8 ± 0.6"),
                   ("WGAN", "6.7 ± 0.4"), ("WGAN-GP", "20.3 ± 5.0"), ("DRAGAN", "7.6 ± 0.4"),
                   ("BEGAN", "13.1 ± 1.0"), ("VAE", "23.8 ± 0.6"), ("GLANN", "8.6 ± 0.1")]


# -- one run of a benchmark ---------------------------------------------------------------------

@dataclass(frozen=True)
class ImageScorer:
    """Scores a trained image run with `evaluate_run` (`samples` samples) unless its eval.json
    already holds that many; keeps `GRID` samples for the figure."""

    samples: int = EVAL_SAMPLES

    def __call__(self, task: RunTask, config: Any, trained: Trained) -> Result:
        record = None if trained.diverged else self.record(task.out)
        grid = None if trained.diverged else load_run(task.out).sample(GRID, seed=EVAL_SEED)
        return Result(task.setting, task.seed, config.steps, record["scores"] if record else {},
                      trained.cpu_seconds, trained.diverged, grid,
                      record["protocol"] if record else None)

    def record(self, out: Path) -> dict[str, Any]:
        path = out / EVAL
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or record["protocol"].get("n_samples") != self.samples:
            record = evaluate_run(out, self.samples)
        return record


# -- rows, tables, figures ----------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """A score column: `key` of score_images, its label, digits shown, a scale factor."""

    key: str
    label: str
    digits: int
    scale: float = 1.0

    def cell(self, row: Row) -> str:
        return format_cell(row.mean_se(self.key), self)

    def column(self) -> Column:
        return Column(self.label, self.cell)


def format_cell(value: tuple[float, float], metric: Metric) -> str:
    """'m ± s' of a score, scaled; — when a seed has none (it diverged)."""
    mean, se = (v * metric.scale for v in value)
    return "—" if math.isnan(mean) else format_mean_se((mean, se), metric.digits)


@dataclass(frozen=True)
class Bench:
    """What differs between the image benchmarks: data, scores shown, ranking, published rows."""

    name: str
    data: str
    losses: tuple[str, ...]
    metrics: tuple[Metric, ...]
    samples: int
    rank_key: Callable[[Row], tuple[float, ...]]  # higher is better
    published: Callable[[], list[Table]]
    extra_columns: tuple[Column, ...] = ()
    findings: Callable[[Sequence[Row]], list[Table]] = lambda rows: []  # tables of verdicts

    def columns(self) -> list[Column]:
        return [STEPS, *(m.column() for m in self.metrics), *self.extra_columns, MAX_CPU,
                STEPS_PER_CPU, DIVERGED]


def _lower_fid_first(row: Row) -> tuple[float, ...]:
    fid = row.mean_se("fid")[0]
    return (-fid if math.isfinite(fid) else -math.inf,)


def published_mnist() -> list[Table]:
    return [Table("Published: best FID per GAN on MNIST, Inception-v3 features (not comparable)",
                  ["method", "FID (Inception-v3)"], [list(r) for r in PUBLISHED_MNIST],
                  "Lucic et al. 2018 (NeurIPS), copied in GLANN (Hoshen et al. 2019) Table 1; "
                  "values as recalled. 10k samples against the test set on "
                  "ImageNet Inception-v3 features: an order of magnitude apart from the "
                  "classifier-feature FID measured here; compare the ranking, not the values.")]


IMAGES = Bench("images", "mnist", LOSSES,
               (Metric("fid", "FID", 2), Metric("kid", "KID ×10³", 2, 1e3),
                Metric("precision", "precision", 3), Metric("recall", "recall", 3),
                Metric("coverage", "coverage", 3), Metric("classes_found", "digits", 1)),
               EVAL_SAMPLES, _lower_fid_first, published_mnist)


def measured_table(bench: Bench, title: str, rows: Sequence[Row], note: str) -> Table:
    return ranked_table(title, rows, bench.columns(), bench.rank_key, note)


def fused_twin(setting: Setting) -> Setting:
    return Setting(setting.family, {**setting.options, "update": "fused"})


def without_update(setting: Setting) -> Setting:
    return Setting(setting.family, {k: v for k, v in setting.options.items() if k != "update"})


def update_table(bench: Bench, rows: Sequence[Row]) -> Table | None:
    """Per loss, the alternating and the fused rows side by side on the first two scores
    (None unless some loss ran with both updates)."""
    by_setting = {row.setting: row for row in rows}
    pairs = [(row, by_setting[fused_twin(row.setting)]) for row in rows
             if row.setting.options.get("update") == "alternating"
             and fused_twin(row.setting) in by_setting]
    if not pairs:
        return None
    shown = bench.metrics[:2]
    table = [[without_update(alt.setting).name(" "), *(m.cell(alt) for m in shown),
              *(m.cell(fused) for m in shown),
              "fused" if bench.rank_key(fused) >= bench.rank_key(alt) else "alternating"]
             for alt, fused in pairs]
    return Table("The single-loss (fused) step against alternating, at equal compute",
                 ["loss", *(f"alternating {m.label}" for m in shown),
                  *(f"fused {m.label}" for m in shown), "better (rank order)"], table,
                 "Each fused run has the model FLOPs of its alternating twin (≈ 4/3 as many "
                 "steps); equal learning rates unless the recipe says otherwise.")


def grids_figure(rows: Sequence[Row], title: str):
    """One panel per row: seed 0's first 64 samples as an 8×8 grid."""
    cols = min(4, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.5 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(list(axes.flat)[: len(rows)], rows, strict=True):
        run = row.runs[0]
        if run.samples is not None:
            ax.imshow(image_grid(run.samples), cmap="gray", vmin=0, vmax=1)
        ax.set_title(row.setting.name(" ") + (" (diverged)" if run.diverged else ""),
                     fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def run_json(run: Result, with_family: bool = False) -> dict[str, Any]:
    scores = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
              for k, v in run.scores.items()}
    return {**run.setting.fields(with_family), "seed": run.seed, "steps": run.steps,
            "scores": scores, "cpu_seconds": run.cpu_seconds, "diverged": run.diverged}


# -- the benchmark ------------------------------------------------------------------------------

def recipe_summary(data: str, overrides: dict[str, Any], update: str) -> dict[str, Any]:
    """The options that shape GAN training with `update` (steps excepted: set by the budget)."""
    config = gan("nsgan", update).config(data, 0, Path("."), family_overrides("gan", overrides))
    skip = {"data", "loss", "update", "seed", "out", "steps", "init_from", *QUIET}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


@dataclass
class BenchmarkResult:
    """What `run_benchmark` measured and wrote."""

    folder: Path
    rows: list[Row]
    tables: list[Table]
    page: Path
    budget: Budget


def check_options(seeds: int, jobs: int, steps: int | None, samples: int,
                  overrides: dict[str, Any]) -> None:
    if seeds < 1 or jobs < 1 or (steps is not None and steps < 1) or samples < 1:
        raise BadInputError("need --seeds >= 1, --jobs >= 1, --steps >= 1 and --samples >= 1")
    if "steps" in overrides:
        raise BadInputError("set the budget with --steps, not --set steps=...")


def run_benchmark(bench: Bench, settings: Sequence[Setting] | None = None, *,
                  parent: Path = Path("runs"), resume: Path | None = None, seeds: int = 3,
                  steps: int | None = None, samples: int | None = None,
                  overrides: dict[str, Any] | None = None, jobs: int = 1,
                  progress: Callable[[Result], None] = lambda _: None) -> BenchmarkResult:
    """Every row (default: `bench.losses` × both updates) with `seeds` seeds at the compute
    budget of `steps` reference steps, into a new folder `parent/bench-<name>-<time>` (or
    `resume`, the folder of an interrupted run): runs/<row name>-s<k>/ (each with eval.json),
    results.json, samples.png and index.html. Every option is checked before any folder is
    made."""
    settings = list(settings or gan_grid(bench.losses, UPDATES))
    samples = bench.samples if samples is None else samples
    overrides = dict(overrides or {})
    check_options(seeds, jobs, steps, samples, overrides)
    check_resume(resume, bench.name)
    check_rows(bench.data, settings, overrides)
    budget = plan_budget(bench.data, settings, REFERENCE, overrides, steps)
    recipe = {update: recipe_summary(bench.data, overrides, update)
              for update in gan_updates(settings)}
    folder = open_folder(parent, bench.name, resume)
    rows = [Row(setting, steps=budget.per_row[setting][0]) for setting in settings]
    runs = Runs(bench.data, folder / "runs", ImageScorer(samples), overrides, jobs)
    with torch_threads(1):  # scoring; each training run sets its own `threads`
        runs.add_seeds(rows, range(seeds), progress)
    note = (f"recipe: {recipe_note(recipe)}. Budget: the model FLOPs of {budget.steps} "
            f"{REFERENCE.name('/')} steps ({budget.steps * budget.flops / 1e12:.2f} TFLOP) per "
            f"run; mean ± standard error over seeds; {samples:,} samples per run scored "
            "against the test split on genshop's digit-classifier features (not Inception).")
    comparison = update_table(bench, rows)
    per_row = f"{seeds} seed{'s' if seeds > 1 else ''} per row"
    tables = [measured_table(bench, f"Measured: {bench.data}, {per_row}", rows, note),
              *bench.findings(rows), *([comparison] if comparison else []), *bench.published()]
    figure = save_figure(grids_figure(rows, f"{bench.data}: seed 0 of every row"),
                         folder / "samples.png")
    protocol = next((r.protocol for row in rows for r in row.runs if r.protocol), None)
    with_family = several_families(rows)
    write_json_atomic(folder / "results.json", {
        "benchmark": bench.name, "data": bench.data, "recipe": recipe,
        "budget": budget.as_json(), "protocol": protocol,
        "runs": [run_json(r, with_family) for row in rows for r in row.runs]})
    page = write_page(folder, f"genshop bench {bench.name}: {bench.data}", tables, [figure])
    return BenchmarkResult(folder, rows, tables, page, budget)


def describe(run: Result) -> str:
    """One progress line per finished run."""
    if run.diverged:
        scores = "diverged"
    else:
        s = run.scores
        scores = (f"FID {s['fid']:.2f} KID {1e3 * s['kid']:.2f}e-3 precision "
                  f"{s['precision']:.3f} recall {s['recall']:.3f} coverage {s['coverage']:.3f}")
        if "modes" in s:
            scores += f" modes {s['modes']} KL {s['kl']:.3f} vendi {s['vendi']:.1f}"
    return (f"{padded(run.setting, (10, 11))} seed {run.seed}: {run.steps} steps, {scores} "
            f"({run.cpu_seconds:.0f} CPU-s)")


__all__ = ["EVAL_SAMPLES", "IMAGES", "LOSSES", "REFERENCE", "Bench", "ImageScorer", "Metric",
           "describe", "run_benchmark"]
