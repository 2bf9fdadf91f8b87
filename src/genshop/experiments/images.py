"""Image GAN benchmarks: GAN losses × {alternating, fused} update on MNIST at a fixed compute
budget, scored on the reference classifier's features; `evaluate_run` scores any image run.

Losses of "f-GAN: a production workshop for GANs" (kexue.fm 6016) and "RSGAN: the Turing test
in GANs" (6110), trained with the alternating update or the single-loss fused step of "A GAN
with a single loss via stop-gradient" (6387), on the DCGAN pair (`genshop.nets.dcgan_pair`).

Scores: `genshop.metrics.score_images` of `EVAL_SAMPLES` = 10,000 samples against the 2,000
test digits — FID (Heusel et al. 2017), KID (Bińkowski et al. 2018), precision / recall
(Kynkäänniemi et al. 2019), coverage (Naeem et al. 2020), digit classes found — on the features
of genshop's own digit classifier, *not* Inception-v3: the published Inception-FIDs on MNIST
(Lucic et al. 2018, copied in the GLANN paper's Table 1) stand beside them for the ranking only.

Fixed budget. Compute is counted, not timed, so a benchmark gives the same numbers on every
machine: F(loss, update) is the model FLOPs of one training step at the recipe's batch size,
counted with torch's FLOP formulas (`count_flops`) and averaged over `r1_every` steps so that lazy
R1 counts at its mean cost. The budget is B = `steps` · F(nsgan, alternating), and a row
(loss, update) trains round(B / F(loss, update)) steps: the fused step (9 net passes against 12,
post 6387) gets 4/3 as many steps as the alternating one, WGAN-GP's double backward fewer. Every
run also records its process CPU time.

`evaluate_run(RUN_DIR)` (also `genshop eval RUN_DIR`) samples a run through
`genshop.load_run(RUN_DIR).sample(n, seed)`, scores the samples and writes `eval.json` (scores
and protocol) into the run directory. The benchmark plumbing — a picklable `Task` per run (a
`genshop.experiments.GanTask`, trained once by `train_once`: its finished-marker makes a benchmark
resumable), rows of seeds, worker processes, `results.json`, `index.html` with sample grids — is
that of `genshop.experiments.modes`; `genshop.experiments.stacked` runs Stacked MNIST with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from genshop.atomic import write_json_atomic
from genshop.data import get_dataset
from genshop.errors import BadInputError
from genshop.experiments import (
    QUIET,
    GanTask,
    gan_config,
    new_folder,
    run_tasks,
    train_once,
    write_page,
)
from genshop.experiments.modes import recipe_note
from genshop.families import StepInput
from genshop.families.gan import GanConfig, GanFamily
from genshop.metrics.images import score_images
from genshop.metrics.modes import mean_stderr
from genshop.plots import image_grid, plt, save_figure
from genshop.report import EVAL as EVAL_FILE
from genshop.report import Table
from genshop.runs import Run, load_run
from genshop.threads import torch_threads

EVAL_SAMPLES = 10_000
EVAL_SEED = 0
SCORABLE = ((1, 28, 28), (3, 28, 28))  # what the reference classifier scores
UPDATES = ("alternating", "fused")
LOSSES = ("nsgan", "lsgan", "hinge", "wgan", "rsgan", "rasgan", "fgan-kl")
REFERENCE = ("nsgan", "alternating")  # the row whose step count sets the budget
GRID = 64  # samples drawn per row in the figure

# Lucic et al. 2018, best FID of each GAN on MNIST (Inception-v3 features, 10k samples), as the
# GLANN paper's Table 1 copies it (spec/benchmarks.md section 4.1, recalled, mean ± std).
PUBLISHED_MNIST = [("MM GAN", "9.8 ± 0.9"), ("NS GAN", "6.8 ± 0.5"), ("LSGAN", "7.8 ± 0.6"),
                   ("WGAN", "6.7 ± 0.4"), ("WGAN-GP", "20.3 ± 5.0"), ("DRAGAN", "7.6 ± 0.4"),
                   ("BEGAN", "13.1 ± 1.0"), ("VAE", "23.8 ± 0.6"), ("GLANN", "8.6 ± 0.1")]


# -- scoring a run ------------------------------------------------------------------------------

def check_image_run(run: Run) -> None:
    """A BadInputError unless `run` samples images the reference classifier can score."""
    dataset = get_dataset(run.config.data)
    if dataset.kind != "images":
        raise BadInputError(f"{run.run_dir} is a run on {run.config.data} ({dataset.kind}), "
                            "not on images; genshop eval scores image runs (mnist, "
                            "stacked-mnist, IDX files, image folders), `genshop bench modes` "
                            "scores 2-D runs")
    if tuple(dataset.shape) not in SCORABLE:
        raise BadInputError(f"{run.run_dir} samples {'×'.join(map(str, dataset.shape))} images; "
                            "the reference classifier scores 1×28×28 digits and 3×28×28 "
                            "Stacked MNIST only")


def evaluate_run(run_dir: Path | str, n: int = EVAL_SAMPLES,
                 seed: int = EVAL_SEED) -> dict[str, Any]:
    """Score n samples (latent seed `seed`) of the image run in `run_dir` with `score_images`;
    write {"run_dir", "step", "scores", "protocol"} to `run_dir/eval.json` (atomically) and
    return it. The protocol is score_images' plus the sample seed, the step and the EMA decay
    of the sampler (0: the trained generator itself)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    check_image_run(run)
    scores = score_images(run.sample(n, seed=seed))
    protocol = {**scores.pop("protocol"), "sample_seed": seed, "step": run.step,
                "ema": getattr(run.config, "ema", 0.0)}
    record = {"run_dir": str(run_dir), "step": run.step, "scores": scores,
              "protocol": protocol}
    write_json_atomic(run_dir / EVAL_FILE, record)
    return record


# -- the compute budget -------------------------------------------------------------------------

class _FlopCount(TorchDispatchMode):
    """Adds the FLOPs of every op that `torch.utils.flop_counter` has a formula for (matrix
    products and convolutions, forward and backward). FlopCounterMode itself also tracks
    modules with hooks that fail inside `torch.autograd.grad` (WGAN-GP, R1, the fused step's
    shared critic), so this mode uses its formulas without the tracker."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """Model FLOPs (a multiply-add counts 2) of the torch ops that `fn()` runs."""
    with _FlopCount() as counter:
        fn()
    return counter.total


def step_flops(config: GanConfig, batch: int = 8) -> float:
    """Model FLOPs of one training step of `config` at its batch size: `count_flops` over
    `r1_every` steps (1 without R1) on random images at `batch` rows, averaged and scaled by
    batch_size / batch (every counted op is linear in the rows). Leaves torch's RNG alone."""
    dataset = get_dataset(config.data)
    small = dataclasses.replace(config, batch_size=batch)
    steps = config.r1_every if config.r1 > 0 else 1
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        family = GanFamily(small, dataset, torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)

        def train_steps() -> None:
            for _ in range(steps):
                real = torch.rand(batch * family.real_batches(), *dataset.shape, generator=gen)
                family.train_step(StepInput(real, gen))

        total = count_flops(train_steps)
    return total / steps * config.batch_size / batch


def budget_steps(reference_steps: int, reference_flops: float, flops: float) -> int:
    """Steps with the compute of `reference_steps` steps of `reference_flops` each (≥ 1)."""
    return max(1, round(reference_steps * reference_flops / flops))


# -- one run of a benchmark ---------------------------------------------------------------------

@dataclass
class ImageRun:
    """One trained (loss, update, seed): its scores (empty if it diverged) and a few samples."""

    loss: str
    update: str
    seed: int
    steps: int
    scores: dict[str, Any]
    protocol: dict[str, Any] | None
    cpu_seconds: float
    diverged: bool
    grid: torch.Tensor | None  # GRID samples of the final sampler, for the figure

    def value(self, key: str) -> float:
        return float(self.scores.get(key, math.nan)) if not self.diverged else math.nan


@dataclass(frozen=True)
class Task(GanTask):
    """One training run of an image benchmark, picklable for a worker process."""

    samples: int = EVAL_SAMPLES

    def run(self) -> ImageRun:
        """Train (once: `genshop.experiments.train_once`), then score with `evaluate_run`
        unless the run's eval.json already holds `samples` scored samples."""
        config = self.config()
        trained = train_once(config)
        record = None
        if not trained.diverged:
            path = self.out / EVAL_FILE
            record = json.loads(path.read_text()) if path.is_file() else None
            if record is None or record["protocol"]["n_samples"] != self.samples:
                record = evaluate_run(self.out, self.samples)
        return self._result(config, trained.cpu_seconds, trained.diverged, record)

    def _result(self, config: GanConfig, cpu_seconds: float, diverged: bool,
                record: dict[str, Any] | None) -> ImageRun:
        grid = None if diverged else load_run(self.out).sample(GRID, seed=EVAL_SEED)
        return ImageRun(self.loss, self.update, self.seed, config.steps,
                        record["scores"] if record else {}, record["protocol"] if record else None,
                        cpu_seconds, diverged, grid)


# -- rows, tables, figures ----------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """A score column: `key` of score_images, its label, digits shown, a scale factor."""

    key: str
    label: str
    digits: int
    scale: float = 1.0


@dataclass
class Row:
    loss: str
    update: str
    steps: int
    runs: list[ImageRun]

    def mean_se(self, key: str) -> tuple[float, float]:
        """Mean and standard error of a score over the seeds (NaN when any run diverged)."""
        return mean_stderr([r.value(key) for r in self.runs])


def format_cell(value: tuple[float, float], metric: Metric) -> str:
    mean, se = (v * metric.scale for v in value)
    if math.isnan(mean):
        return "—"
    text = f"{mean:.{metric.digits}f}"
    return text if math.isnan(se) else f"{text} ± {se:.{metric.digits}f}"


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
    extra_columns: tuple[tuple[str, Callable[[Row], Any]], ...] = ()
    findings: Callable[[Sequence[Row]], list[Table]] = lambda rows: []  # tables of verdicts


def _lower_fid_first(row: Row) -> tuple[float, ...]:
    fid = row.mean_se("fid")[0]
    return (-fid if math.isfinite(fid) else -math.inf,)


def published_mnist() -> list[Table]:
    return [Table("Published: best FID per GAN on MNIST, Inception-v3 features (not comparable)",
                  ["method", "FID (Inception-v3)"], [list(r) for r in PUBLISHED_MNIST],
                  "Lucic et al. 2018 (NeurIPS), copied in GLANN (Hoshen et al. 2019) Table 1; "
                  "recalled (spec/benchmarks.md §4.1). 10k samples against the test set on "
                  "ImageNet Inception-v3 features: an order of magnitude apart from the "
                  "classifier-feature FID measured here; compare the ranking, not the values.")]


IMAGES = Bench("images", "mnist", LOSSES,
               (Metric("fid", "FID", 2), Metric("kid", "KID ×10³", 2, 1e3),
                Metric("precision", "precision", 3), Metric("recall", "recall", 3),
                Metric("coverage", "coverage", 3), Metric("classes_found", "digits", 1)),
               EVAL_SAMPLES, _lower_fid_first, published_mnist)


def table_rows(bench: Bench, rows: Sequence[Row]) -> list[list[Any]]:
    """The measured table's rows, best first (`bench.rank_key`)."""
    out = []
    for row in sorted(rows, key=bench.rank_key, reverse=True):
        cells = [format_cell(row.mean_se(m.key), m) for m in bench.metrics]
        extra = [fn(row) for _, fn in bench.extra_columns]
        cpu = max(r.cpu_seconds for r in row.runs)
        out.append([row.loss, row.update, len(row.runs), row.steps, *cells, *extra,
                    round(cpu, 1), round(row.steps / cpu, 2) if cpu > 0 else math.nan,
                    sum(r.diverged for r in row.runs)])
    return out


def measured_table(bench: Bench, title: str, rows: Sequence[Row], note: str) -> Table:
    columns = ["loss", "update", "seeds", "steps", *(m.label for m in bench.metrics),
               *(name for name, _ in bench.extra_columns), "max CPU-s/run", "steps/CPU-s",
               "diverged"]
    return Table(title, columns, table_rows(bench, rows), note)


def update_table(bench: Bench, rows: Sequence[Row]) -> Table | None:
    """Per loss, the alternating and the fused rows side by side on the first two scores
    (None unless some loss ran with both updates)."""
    by_key = {(r.loss, r.update): r for r in rows}
    losses = [loss for loss in dict.fromkeys(r.loss for r in rows)
              if (loss, "alternating") in by_key and (loss, "fused") in by_key]
    if not losses:
        return None
    shown = bench.metrics[:2]
    table = []
    for loss in losses:
        alt, fused = by_key[(loss, "alternating")], by_key[(loss, "fused")]
        better = bench.rank_key(fused) >= bench.rank_key(alt)
        table.append([loss, *(format_cell(alt.mean_se(m.key), m) for m in shown),
                      *(format_cell(fused.mean_se(m.key), m) for m in shown),
                      "fused" if better else "alternating"])
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
        if run.grid is not None:
            ax.imshow(image_grid(run.grid), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{row.loss} {row.update}" + (" (diverged)" if run.diverged else ""),
                     fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def run_json(run: ImageRun) -> dict[str, Any]:
    scores = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
              for k, v in run.scores.items()}
    return {"loss": run.loss, "update": run.update, "seed": run.seed, "steps": run.steps,
            "scores": scores, "cpu_seconds": run.cpu_seconds, "diverged": run.diverged}


# -- the benchmark ------------------------------------------------------------------------------

@dataclass
class Budget:
    """The compute budget: `steps` reference steps of `flops` each, and each row's steps."""

    steps: int
    flops: float
    per_row: dict[tuple[str, str], tuple[int, float]]  # (loss, update) -> (steps, FLOPs/step)

    def as_json(self) -> dict[str, Any]:
        return {"reference": "/".join(REFERENCE), "reference_steps": self.steps,
                "reference_flops_per_step": self.flops,
                "total_flops": self.steps * self.flops,
                "rows": {f"{loss}/{update}": {"steps": s, "flops_per_step": f}
                         for (loss, update), (s, f) in self.per_row.items()}}


def plan_budget(data: str, losses: Sequence[str], updates: Sequence[str],
                overrides: dict[str, Any], steps: int | None) -> Budget:
    """Each row's steps for the budget of `steps` (default: the recipe's) reference steps.
    Building every config first checks the losses and overrides before any work."""
    reference = gan_config(data, *REFERENCE, 0, Path("."), overrides)
    steps = reference.steps if steps is None else steps
    ref_flops = step_flops(reference)
    per_row = {}
    for loss in losses:
        for update in updates:
            config = gan_config(data, loss, update, 0, Path("."), overrides)
            flops = ref_flops if (loss, update) == REFERENCE else step_flops(config)
            per_row[(loss, update)] = (budget_steps(steps, ref_flops, flops), flops)
    return Budget(steps, ref_flops, per_row)


def recipe_summary(data: str, overrides: dict[str, Any], update: str) -> dict[str, Any]:
    """The options that shape training with `update` (steps excepted: set by the budget)."""
    config = gan_config(data, "nsgan", update, 0, Path("."), overrides)
    skip = {"data", "loss", "update", "seed", "out", "steps", *QUIET}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


@dataclass
class BenchmarkResult:
    """What `run_benchmark` measured and wrote."""

    folder: Path
    rows: list[Row]
    tables: list[Table]
    page: Path
    budget: Budget


def run_benchmark(bench: Bench, losses: Sequence[str] | None = None,
                  updates: Sequence[str] = UPDATES, *, parent: Path = Path("runs"),
                  resume: Path | None = None, seeds: int = 3, steps: int | None = None,
                  samples: int | None = None, overrides: dict[str, Any] | None = None,
                  jobs: int = 1, progress: Callable[[ImageRun], None] = lambda _: None
                  ) -> BenchmarkResult:
    """Every (loss, update) row with `seeds` seeds at the compute budget of `steps` reference
    steps, into a new folder `parent/bench-<name>-<time>` (or `resume`, the folder of an
    interrupted run): runs/<loss>-<update>-s<k>/ (each with eval.json), results.json,
    samples.png and index.html. Every option is checked before any folder is made."""
    losses = list(losses or bench.losses)
    samples = bench.samples if samples is None else samples
    overrides = dict(overrides or {})
    if seeds < 1 or jobs < 1 or (steps is not None and steps < 1) or samples < 1:
        raise BadInputError("need --seeds >= 1, --jobs >= 1, --steps >= 1 and --samples >= 1")
    if "steps" in overrides:
        raise BadInputError("set the budget with --steps, not --set steps=...")
    if resume is not None and not (resume / "runs").is_dir():
        raise BadInputError(f"--resume {resume}: not a `genshop bench {bench.name}` folder (it "
                            "has no runs/ folder)")
    budget = plan_budget(bench.data, losses, updates, overrides, steps)
    recipe = {update: recipe_summary(bench.data, overrides, update) for update in updates}
    folder = resume if resume is not None else new_folder(parent, bench.name)
    rows = [Row(loss, update, budget.per_row[(loss, update)][0], [])
            for loss in losses for update in updates]
    tasks = [Task(bench.data, row.loss, row.update, seed,
                  folder / "runs" / f"{row.loss}-{row.update}-s{seed}",
                  {**overrides, "steps": row.steps}, samples)
             for row in rows for seed in range(seeds)]
    with torch_threads(1):  # scoring; each training run sets its own `threads`
        results = iter(run_tasks(tasks, jobs, progress))
        for row in rows:
            row.runs = [next(results) for _ in range(seeds)]
    note = (f"recipe: {recipe_note(recipe)}. Budget: the model FLOPs of {budget.steps} "
            f"{'/'.join(REFERENCE)} steps ({budget.steps * budget.flops / 1e12:.2f} TFLOP) per "
            f"run; mean ± standard error over seeds; {samples:,} samples per run scored "
            "against the test split on genshop's digit-classifier features (not Inception).")
    comparison = update_table(bench, rows)
    per_row = f"{seeds} seed{'s' if seeds > 1 else ''} per row"
    tables = [measured_table(bench, f"Measured: {bench.data}, {per_row}", rows,
                             note), *bench.findings(rows), *([comparison] if comparison else []),
              *bench.published()]
    figure = save_figure(grids_figure(rows, f"{bench.data}: seed 0 of every row"),
                         folder / "samples.png")
    protocol = next((r.protocol for row in rows for r in row.runs if r.protocol), None)
    write_json_atomic(folder / "results.json", {
        "benchmark": bench.name, "data": bench.data, "recipe": recipe,
        "budget": budget.as_json(), "protocol": protocol,
        "runs": [run_json(r) for row in rows for r in row.runs]})
    page = write_page(folder, f"genshop bench {bench.name}: {bench.data}", tables, [figure])
    return BenchmarkResult(folder, rows, tables, page, budget)


def describe(run: ImageRun) -> str:
    """One progress line per finished run."""
    if run.diverged:
        scores = "diverged"
    else:
        s = run.scores
        scores = (f"FID {s['fid']:.2f} KID {1e3 * s['kid']:.2f}e-3 precision "
                  f"{s['precision']:.3f} recall {s['recall']:.3f} coverage {s['coverage']:.3f}")
        if "modes" in s:
            scores += f" modes {s['modes']} KL {s['kl']:.3f} vendi {s['vendi']:.1f}"
    return (f"{run.loss:10s} {run.update:11s} seed {run.seed}: {run.steps} steps, {scores} "
            f"({run.cpu_seconds:.0f} CPU-s)")


__all__ = ["EVAL_FILE", "EVAL_SAMPLES", "IMAGES", "Bench", "Metric", "Row", "Task",
           "budget_steps", "count_flops", "describe", "evaluate_run", "run_benchmark",
           "step_flops"]
