"""The one training loop for every model family (GANs of kexue.fm archives 6016/6110/6387, flows
of 6377, …), after EDM's config → loop separation: the loop knows nothing about any method.

A family (`genshop.families.Family`) builds its models and optimisers and does one step; this
module owns the rest:

* data order and step noise come from the engine's own `torch.Generator` (seeded by the config);
  each step draws global-batch row indices into the family's training data (`Examples`:
  examples, labels or targets, uniformly with replacement or epoch by epoch, as the family
  declares), and every process takes its share of the rows;
* a family's pass over the whole training set every K steps (`Family.data_pass`), and a run that
  starts from a parent run (`config.init_from`, `Family.start_from`);
* progress (`genshop.progress`: a tqdm bar on a terminal, a plain line now and then in a log),
  `metrics.jsonl` every `log_every` steps (each
  quantity the mean over the steps since the previous line), sample snapshots
  (scatter PNG for points, image grid for images) every `sample_every` steps;
* learning rates follow `config.lr_schedule` (`genshop.schedules`), set from the step each time;
* EMA of the family's model (`Family.model`): θ_ema ← d·θ_ema + (1 − d)·θ after each step
  (buffers copied);
* it writes data only (`config.json`, `metrics.jsonl`, checkpoints, snapshot PNGs, laid out as
  `genshop.runs` names them); the run's HTML page is drawn by its caller (`genshop report`);
* atomic checkpoints (`genshop.checkpoint`) every `checkpoint_every` steps and at the end, with
  models, optimisers, EMA, step and every RNG state, so `resume=True` continues bit for bit;
* a NaN/Inf loss raises `TrainingDiverged` before anything is saved (the last good checkpoint
  stays); Ctrl-C (SIGINT) finishes the current step, checkpoints and returns;
* data parallel under `torchrun`: every process holds the whole model and its share of the
  global batch; a step pre-hook on each optimiser all-reduces and averages the gradients before
  the update. Hooking the optimiser rather than wrapping nets in DistributedDataParallel keeps
  the GAN steps intact: they call the critic several times per backward and freeze its
  parameters for the G term (`steps.parameters_frozen`), which DDP's reducer does not allow.
  The averaged gradient is the global-batch gradient for losses that are batch means of
  per-sample terms (SGAN, NS, LS, hinge, WGAN, RSGAN, f-GAN); relativistic-average losses and
  BatchNorm use per-process batch statistics.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from genshop import checkpoint
from genshop.atomic import write_text_atomic
from genshop.config import RunConfig, read_config_json, resolve_config, save_config
from genshop.data import Batch, Examples
from genshop.data.fetch import sha256_of
from genshop.errors import BadInputError, TrainingDiverged
from genshop.families import (
    DataPass,
    Family,
    StepInput,
    family_of,
    get_family,
    inference,
)
from genshop.plots import samples_figure, save_figure
from genshop.progress import StopRequest, progress_bar
from genshop.runs import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SAMPLES,
    Run,
    check_unowned,
    fitting,
    load_run,
    load_state,
    owned,
    read_metrics,
)
from genshop.schedules import set_learning_rates
from genshop.threads import torch_threads

Evaluate = Callable[[int, nn.Module], dict[str, float]]
SNAPSHOT_COUNT = 1000


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # the engine started the process group and ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), owned)


def _average_gradients_hook(world_size: int):
    """Optimiser step pre-hook: replace every gradient by its mean over the processes."""
    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size
        for g, new in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(new.view_as(g))
    return hook


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _device(config: RunConfig) -> torch.device:
    if config.device.startswith("cuda") and "LOCAL_RANK" in os.environ:
        return torch.device(f"cuda:{os.environ['LOCAL_RANK']}")
    return torch.device(config.device)


class _Ema:
    """θ_ema ← d·θ_ema + (1 − d)·θ for parameters; buffers are copied."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay, self.net = decay, copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        for e, p in zip(self.net.parameters(), live.parameters(), strict=True):
            e.lerp_(p, 1 - self.decay)
        for e, b in zip(self.net.buffers(), live.buffers(), strict=True):
            e.copy_(b)


def _state(family: Family, ema: _Ema | None, step: int, config: RunConfig,
           generator: torch.Generator) -> dict[str, Any]:
    return {"step": step, "family": family.name, "config": asdict(config),
            "models": {k: m.state_dict() for k, m in family.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in family.optimizers().items()},
            "ema": ema.net.state_dict() if ema else None,
            "family_state": family.extra_state(),
            "rng": checkpoint.rng_states(generator)}


def _load_training_state(state: dict[str, Any], family: Family) -> None:
    """Models, optimisers and the family's own values from a checkpoint into `family`."""
    for k, m in family.modules().items():
        m.load_state_dict(state["models"][k])
    for k, o in family.optimizers().items():
        o.load_state_dict(state["optimizers"][k])
    family.load_extra_state(state.get("family_state", {}))


def _restore(state: dict[str, Any], family: Family, ema: _Ema | None,
             generator: torch.Generator) -> int:
    _load_training_state(state, family)
    if ema is not None:
        ema.net.load_state_dict(state["ema"] if state["ema"] is not None
                                else family.model().state_dict())
    checkpoint.restore_rng_states(state["rng"], generator)
    return int(state["step"])


class _Rows:
    """Which training rows each step gets: `Family.data_order` "replacement" draws them
    uniformly with replacement; "epochs" walks a fresh permutation each epoch (drawn from the
    engine's generator when the epoch starts; the epoch's last batch is shorter), kept in the
    checkpoint."""

    def __init__(self, data: Examples, order: str, rows_per_step: int):
        self.data, self.order, self.rows_per_step = data, order, rows_per_step
        self.steps_per_epoch = math.ceil(len(data) / rows_per_step)
        self.permutation: Tensor | None = None

    def batch(self, step: int, generator: torch.Generator) -> Batch:
        if self.order == "replacement":
            return self.data.batch(self.rows_per_step, generator)
        j = step % self.steps_per_epoch
        if j == 0 or self.permutation is None:
            self.permutation = torch.randperm(len(self.data), generator=generator)
        n = self.rows_per_step
        return self.data.rows(self.permutation[j * n:(j + 1) * n])

    def state(self) -> dict[str, Any]:
        return {"permutation": self.permutation}

    def load(self, state: dict[str, Any]) -> None:
        self.permutation = state.get("permutation")


def _data_pass_generator(seed: int, step: int) -> torch.Generator:
    """The generator of the data pass before `step`: a function of (seed, step) alone."""
    (state,) = np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state))


def _parent_record(run_dir: str | Path) -> dict[str, Any]:
    """What identifies a parent run: its folder and its checkpoint's digest."""
    path = Path(run_dir).resolve()
    return {"run_dir": str(path), "checkpoint_sha256": sha256_of(path / CHECKPOINT)}


def _check_parent(config: RunConfig, family: type[Family], recorded: dict | None) -> None:
    """The parent run of `config.init_from` exists, is of a family `family` may start from and,
    on resume, is still the run this one started from."""
    if not config.init_from:
        return
    parent = Path(config.init_from)
    if not (parent / CHECKPOINT).is_file():
        raise BadInputError(f"--init-from {parent}: no trained run there (no {CHECKPOINT}); "
                            "train the parent run first")
    kind = read_config_json(parent).get("family")
    if kind not in family.parent_families():
        raise BadInputError(f"--init-from {parent} is a {kind} run; a {family.name} run starts "
                            f"from a run of {', '.join(family.parent_families())}")
    if recorded and _parent_record(parent) != recorded:
        raise BadInputError(f"the parent run {parent} changed since this run started from it "
                            "(its checkpoint differs); train this run again from scratch")


def _snapshot(family: Family, net: nn.Module, dataset: Any, train_x: Tensor, step: int,
              path: Path, seed: int) -> None:
    with inference(net):
        x = family.sample(net, SNAPSHOT_COUNT, torch.Generator().manual_seed(seed)).cpu()
    reference = train_x[:SNAPSHOT_COUNT].cpu() if dataset.kind == "points" else None
    save_figure(samples_figure(x, f"step {step}", reference, getattr(dataset, "centers", None)),
                path)


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint being resumed (and any torn line)."""
    path = run_dir / METRICS
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def _non_finite_weights(family: Family) -> int:
    """How many parameters and buffers of the family's modules are NaN or infinite."""
    return sum(int((~t.isfinite()).sum()) for m in family.modules().values()
               for t in m.state_dict().values() if t.is_floating_point())


def _all_finite_and_stop(losses: dict[str, float], stop: bool, d: _Dist) -> tuple[bool, bool]:
    finite = all(math.isfinite(v) for v in losses.values())
    if d.world_size == 1:
        return finite, stop
    flags = torch.tensor([float(not finite), float(stop)])
    dist.all_reduce(flags)
    return bool(flags[0] == 0), bool(flags[1] > 0)


def check(config: RunConfig, *, resume: bool = False, family: type[Family] | None = None,
          dataset: Any = None) -> int:
    """Everything about a run that can be checked before any work: the device, the data, the
    family's options (`Family.check`), the parent run of `config.init_from`, and the run
    directory `config.out` (a new or empty folder, or the folder of a run that stopped before its
    first checkpoint; with `resume`, a run whose checkpoint lies at or below `config.steps` and
    fits the config). `dataset` is the run's data set when the caller has built it already.
    Returns the step the run starts from."""
    _check_device(config.device)
    family = family or family_of(config)
    dataset = family.dataset(config) if dataset is None else dataset
    family.check(config, dataset)
    run_dir = Path(config.out)
    ckpt_path = run_dir / CHECKPOINT
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--out {run_dir} is a file; name a folder for the run")
    check_unowned(run_dir)
    if resume:
        state = load_state(run_dir)
        if state["step"] > config.steps:
            raise BadInputError(f"the run in {run_dir} is at step {state['step']}, beyond "
                                f"--steps {config.steps}; resume with --steps {state['step']} "
                                "or more")
        _check_parent(config, family, state.get("parent"))
        with fitting(run_dir), torch.random.fork_rng(devices=[]):  # weights drawn and dropped
            _load_training_state(state, family(config, dataset, torch.device("cpu")))
        return state["step"]
    _check_parent(config, family, None)
    if ckpt_path.exists():
        raise BadInputError(f"{run_dir} already holds a run; add --resume to continue it or "
                            "choose another --out")
    elif (run_dir.is_dir() and not (run_dir / CONFIG).is_file()
          and any(not p.name.startswith(".") for p in run_dir.iterdir())):
        raise BadInputError(f"--out {run_dir} is a folder with other files in it, not a genshop "
                            "run; choose a new or empty folder")
    return 0


def _check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise BadInputError(f"--device {device!r} is not a torch device; use cpu, cuda or "
                            "cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"--device {device}: this torch build or machine has no CUDA "
                            "device (torch.cuda.is_available() is False); use --device cpu")
    if kind not in ("cpu", "cuda"):
        raise BadInputError(f"--device {device}: genshop runs on cpu or cuda")


def configure(family: str, **options: Any) -> RunConfig:
    """The config of a `family` run: its defaults, then its recipe for the chosen data set, then
    `options` (the fields of its config class), exactly as `genshop train FAMILY --option ...`.

    E.g. `configure("gan", data="ring8", loss="rasgan", update="fused", steps=2000,
    out="runs/x")`; then `genshop.train(config)`.
    """
    cls = get_family(family)
    return resolve_config(cls.config_class, options, cls.recipe(options))


def train(config: RunConfig, *, resume: bool = False, progress: bool = True,
          evaluate: Evaluate | None = None, family: type[Family] | None = None,
          dataset: Any = None) -> Run:
    """Train the family of `config` into the run directory `config.out`: the one way to start
    a run (see the module docstring). Returns the finished (or Ctrl-C-interrupted) `Run`, whose
    `sample(n)` draws from the trained model (its EMA copy when EMA is on).

    `evaluate(step, net)`, if given, runs on the main process at every logged step with the
    family's model (its EMA copy when EMA is on; eval mode, no autograd); its numbers join that
    step's metrics.jsonl line. It must leave the global RNG alone (use its own
    `torch.Generator`) so that a resumed run still equals an uninterrupted one. `family`
    overrides the registered family of the config's class (a subclass that injects faults in
    tests, say); `dataset` is the run's data set if the caller built it already (it is built
    once per run).
    """
    family_cls = family or family_of(config)
    dataset = family_cls.dataset(config) if dataset is None else dataset
    check(config, resume=resume, family=family_cls, dataset=dataset)
    ckpt_path = Path(config.out) / CHECKPOINT
    d = _init_distributed(config.device)
    try:
        if config.batch_size % d.world_size:
            raise BadInputError(f"batch size {config.batch_size} does not split over "
                                f"{d.world_size} processes; use a multiple of {d.world_size}")
        owner = owned(config.out) if d.is_main else contextlib.nullcontext()
        with owner, torch_threads(config.threads):
            return _train(family_cls, dataset, config, resume, progress, d, ckpt_path, evaluate)
    finally:
        if d.owns_group:
            dist.destroy_process_group()


def _start_from_parent(family: Family, config: RunConfig, device: torch.device) -> dict:
    """Load the parent run of `config.init_from` into `family` (`Family.start_from`); the
    global RNG is left as it was, so the child's own draws do not depend on the parent's nets."""
    with torch.random.fork_rng(devices=[]):
        parent = load_run(config.init_from, device=str(device))
    with fitting(config.init_from):
        family.start_from(parent)
    return _parent_record(config.init_from)


def _train(family_cls: type[Family], dataset: Any, config: RunConfig, resume: bool,
           progress: bool, d: _Dist, ckpt_path: Path, evaluate: Evaluate | None) -> Run:
    run_dir = ckpt_path.parent
    _seed_everything(config.seed)
    device = _device(config)
    family = family_cls(config, dataset, device)
    generator = torch.Generator().manual_seed(config.seed)
    state = load_state(run_dir) if resume else {}
    parent = state.get("parent")
    if config.init_from and not resume:
        parent = _start_from_parent(family, config, device)
    ema = _Ema(family.model(), config.ema) if config.ema > 0 else None
    step = 0
    rows = _Rows(family_cls.training_data(config, dataset).to(device), family_cls.data_order,
                 config.batch_size * family.batches_per_step())
    if resume:
        with fitting(run_dir):
            step = _restore(state, family, ema, generator)
            rows.load(state.get("rows", {}))
    if d.world_size > 1:
        _check_shares(rows, d.world_size)
        for m in family.modules().values():
            for t in m.state_dict().values():
                dist.broadcast(t, 0)
        for o in family.optimizers().values():
            o.register_step_pre_hook(_average_gradients_hook(d.world_size))
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, family.name, run_dir)
        if resume:
            _truncate_metrics(run_dir, step)
        else:  # a run that stopped before its first checkpoint starts again from nothing
            (run_dir / METRICS).unlink(missing_ok=True)
    loop = _Loop(family, config, dataset, rows, generator, ema, d, run_dir, parent, evaluate,
                 _Window(**state.get("log_window", {})))
    return loop.run(step, progress)


def _check_shares(rows: _Rows, world_size: int) -> None:
    """Every batch of an epoch-ordered run splits evenly over the processes."""
    last = len(rows.data) % rows.rows_per_step
    if rows.order == "epochs" and last % world_size:
        raise BadInputError(f"the last batch of each epoch holds {last} rows, which do not split "
                            f"over {world_size} processes; choose a batch size that leaves a "
                            f"multiple of {world_size}")


@dataclass
class _Window:
    """Sums of the logged quantities over the steps since the last metrics line: each line
    holds their means, so a single batch's outlier (a flow's rare far point) cannot pose as the
    run's state. Checkpointed, so a resumed run logs what an uninterrupted one does."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    def take(self) -> dict[str, float]:
        means = {k: v / self.steps for k, v in self.sums.items()}
        self.sums, self.steps = {}, 0
        return means


@dataclass
class _Loop:
    family: Family
    config: RunConfig
    dataset: Any
    rows: _Rows
    generator: torch.Generator
    ema: _Ema | None
    d: _Dist
    run_dir: Path
    parent: dict | None = None  # `_parent_record` of the run this one started from
    evaluate: Evaluate | None = None
    window: _Window = field(default_factory=lambda: _Window())
    last_saved: int | None = None  # the step of the latest checkpoint

    def run(self, step: int, progress: bool) -> Run:
        cfg, stop = self.config, StopRequest()
        self.last_saved = step if step else None
        display = progress_bar(cfg.steps, initial=step, desc=f"{self.family.name} {cfg.data}",
                               enabled=progress and self.d.is_main)
        start, start_step = time.perf_counter(), step
        with stop.installed(), display as bar:
            while step < cfg.steps:
                self._data_pass(step)
                set_learning_rates(self.family.optimizers().values(), cfg.lr_schedule, step,
                                   cfg.steps)
                losses = self.family.train_step(self._input(step))
                finite, stopping = _all_finite_and_stop(losses, stop.requested, self.d)
                if not finite:
                    bad = ", ".join(f"{k} = {v}" for k, v in losses.items()
                                    if not math.isfinite(v))
                    self._diverged(f"{bad} at step {step + 1}")
                step += 1
                self.window.add(losses)
                if self.ema:
                    self.ema.update(self.family.model())
                if step % cfg.log_every == 0 or step == cfg.steps:
                    rate = (step - start_step) / (time.perf_counter() - start)
                    means = self.window.take()
                    bar.set_values(means)
                    self._log({"step": step, **means, "it_per_s": rate,
                               **self._evaluation(step)})
                bar.update(1)
                if cfg.sample_every and step % cfg.sample_every == 0:
                    self._snapshot(step)
                if step % cfg.checkpoint_every == 0 or stopping:
                    self._save(step)
                if stopping:
                    return self._result(step, interrupted=True)
        if self.last_saved != step:
            self._save(step)
        if not cfg.sample_every or step % cfg.sample_every:
            self._snapshot(step)
        if self.d.is_main:
            self.family.finish(self._net(), self.run_dir)
        return self._result(step, interrupted=False)

    def _net(self) -> nn.Module:
        """The delivered net: the EMA copy of the family's model when EMA is on."""
        return self.ema.net if self.ema else self.family.model()

    def _result(self, step: int, interrupted: bool) -> Run:
        return Run(self.run_dir, self.config, self.family, self._net().eval(), step, interrupted,
                   self.dataset)

    def _input(self, step: int) -> StepInput:
        """This process's rows of the step's global batch (`batches_per_step` batches of
        `batch_size` rows, each shared out on its own, so batch i of every process is its share
        of global batch i, as `StepInput.split` reads it)."""
        batch = self.rows.batch(step, self.generator)
        parts = [b.process_share(self.d.rank, self.d.world_size)
                 for b in batch.split(self.config.batch_size)]
        return StepInput.of(Batch.cat(parts), self.generator, self.d.rank, self.d.world_size)

    def _data_pass(self, step: int) -> None:
        every = self.family.data_pass_every()
        if every and step % every == 0:
            self.family.data_pass(DataPass(self.rows.data, step,
                                           _data_pass_generator(self.config.seed, step),
                                           self.d.rank, self.d.world_size))

    def _diverged(self, what: str) -> None:
        kept = (f"the last good checkpoint (step {self.last_saved}) is kept in {self.run_dir}"
                if self.last_saved is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{what}; training stopped and {kept}; lower the learning rates "
                               "or try another loss")

    def _evaluation(self, step: int) -> dict[str, float]:
        """The family's own measures of its model (`Family.evaluate`), then the caller's."""
        if not self.d.is_main:
            return {}
        net = self._net()
        with inference(net):
            return {**self.family.evaluate(net),
                    **(self.evaluate(step, net) if self.evaluate else {})}

    def _log(self, record: dict[str, float]) -> None:
        if self.d.is_main:
            with open(self.run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _snapshot(self, step: int) -> None:
        if self.d.is_main and self.family.has_sampler():  # pictures of points or images
            _snapshot(self.family, self._net(), self.dataset, self.rows.data.x, step,
                      self.run_dir / SAMPLES / f"step_{step:07d}.png", self.config.seed)

    def _save(self, step: int) -> None:
        bad = _non_finite_weights(self.family)
        if bad:
            self._diverged(f"{bad} weights became NaN or infinite by step {step}")
        if self.d.is_main:
            state = _state(self.family, self.ema, step, self.config, self.generator)
            state |= {"log_window": asdict(self.window), "rows": self.rows.state(),
                      "parent": self.parent}
            checkpoint.save_atomic(state, self.run_dir / CHECKPOINT)
        if self.d.world_size > 1:
            dist.barrier()
        self.last_saved = step
