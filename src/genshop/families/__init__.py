"""Model families: the one contract through which `genshop.engine` trains every model.

Serves the trainable posts of *Scientific Spaces*: GANs (kexue.fm 6016, 6110, 6387), the flow
(6377), the couplet tagger (6270), the reference digit classifier of the image metrics,
GLO/IMLE/GLANN (6394) and VAE/VIB (6181). A family is a subclass of `Family` in a module
of this package, registered with `@register` (modules here are discovered: a new family is one
new file). It declares

* `name`, `description` (one line, the help of `genshop train <name>`), `config_class` (a
  dataclass derived from `genshop.config.RunConfig`; its fields become the options of
  `genshop train <name>`) and `recipes` (data-set name → option overrides); a family whose
  recipe also depends on another option overrides `recipe(options)` and `recipe_labels()` (the
  GAN family's fused ring recipe);
* its data: `dataset(config)` (default `genshop.data.get_dataset(config.data)`; the couplet
  family builds its corpus here) and `training_data(config, dataset)`, the `Examples` the engine
  draws batches from (default `dataset.training_data(seed=config.seed)`: examples, and labels or
  targets where the data set has them); `data_order` "replacement" (each batch drawn uniformly
  with replacement, the default) or "epochs" (a fresh permutation each epoch, the last batch of an
  epoch shorter); `batches_per_step()` (1; the GAN family asks for one per critic update);
* `check(config, dataset)`: reject options that cannot work together or with the data, with a
  one-line `BadInputError`, before any work starts;
* `__init__(config, dataset, device)`: build models and optimisers (the global seed is set);
  `modules()` and `optimizers()`: name → object, checkpointed and restored on resume;
* `train_step(inp: StepInput) -> dict[str, float]`: one update on this process's share of a batch
  (`inp.x`, `inp.y`, `inp.index`); noise comes from `inp.normal(...)` or `inp.generator`, so runs
  are reproducible and data-parallel runs equal single-process ones; returns the losses to log (a
  NaN/Inf stops the run). Gradients are averaged over processes by the engine;
* `model()`: the net a run delivers — evaluated at logged steps, kept as an EMA copy when
  `config.ema` > 0, loaded by `genshop.load_run`. It may be a composite module (a VAE's encoder
  and decoder, GLANN's mapper and generator), so the EMA covers all of it;
* optionally `sample(net, n, generator) -> Tensor`: a generative family's n samples from `net`
  (the model or its EMA copy), N×d for points, N×C×H×W in [0, 1] for images. A supervised family
  (the classifier, the couplet tagger, VIB) defines none: `has_sampler()` is then False and
  `genshop sample` says so;
* optionally `evaluate(net)` (measures logged at every logged step, e.g. the flow's held-out NLL)
  and `test_scores(net)` (a supervised family's scores on the held-out split, what `genshop eval`
  reports), both drawing from their own `torch.Generator`, never the global RNG;
* optionally a pass over the whole training set every `data_pass_every()` steps
  (`data_pass(work: DataPass)`; IMLE re-matches its sample pool here). It runs before the step
  whose count of finished steps is a multiple of K (step 0 included), with a generator seeded by
  (run seed, step), so it is deterministic and a resumed run repeats it exactly; what it computes
  belongs in `extra_state`. Under torchrun each process works on its share of the rows
  (`work.rows()`) and `work.gather(t)` concatenates every process's per-row results in row order,
  so every process ends with what one process computes alone;
* a run may start from another (`--init-from RUN_DIR`, recorded in config.json): before the first
  step the engine loads the parent run and calls `start_from(parent)` (default: copy the parent's
  modules of the same names); `parent_families()` names the families a parent may be of (default
  this one). GLANN trains its mapper from a GLO run this way. A parent run was chosen over
  stages inside one run because each run then stays what a user already knows — one config, one
  schedule, one checkpoint, one page — and the chain is visible in config.json; the parent's
  checkpoint digest is kept in the child's checkpoint and checked on resume;
* optionally `finish(net, run_dir)`: files a finished run ships besides its checkpoint (the
  classifier's safetensors weights and recipe), and `extra_state()` / `load_extra_state(state)`:
  values a resumed run needs besides modules and optimisers (tensors allowed).

The engine owns everything else: data order, progress, metrics, snapshots, EMA, checkpoints,
resume, divergence checks, and gradient averaging across processes (a step pre-hook on each
optimiser averages gradients, so `train_step` is written as for one process).
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from genshop.config import RunConfig
from genshop.data import Batch, Examples, get_dataset
from genshop.data.examples import process_rows
from genshop.errors import BadInputError
from genshop.registry import Registry


@contextlib.contextmanager
def inference(net: nn.Module) -> Iterator[None]:
    """No autograd and eval mode (BatchNorm running statistics untouched), the mode restored."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        net.train(was_training)


def require_digits(dataset: Any, family: str) -> None:
    """A BadInputError unless `dataset` is the labelled 1×28×28 mnist digits (with splits)."""
    if tuple(dataset.shape) != (1, 28, 28) or not hasattr(dataset, "split"):
        raise BadInputError(f"the {family} family learns the labelled 1×28×28 mnist digits, "
                            f"not {dataset.name}")


@dataclass
class StepInput:
    """One step's data: this process's share of a global batch (examples `x`, labels or targets
    `y`, row indices `index` into the training set) and the shared noise source."""

    x: Tensor
    generator: torch.Generator  # same state on every process
    y: Tensor | None = None
    index: Tensor | None = None
    rank: int = 0
    world_size: int = 1

    @classmethod
    def of(cls, batch: Batch, generator: torch.Generator, rank: int = 0,
           world_size: int = 1) -> StepInput:
        return cls(batch.x, generator, batch.y, batch.index, rank, world_size)

    def normal(self, *shape: int) -> Tensor:
        """N(0, I) noise (local batch, *shape), drawn for the global batch then shared out."""
        global_n = self.x.shape[0] * self.world_size
        z = torch.randn(global_n, *shape, generator=self.generator)
        return process_rows(z, self.rank, self.world_size).to(self.x.device)

    def split(self, parts: int) -> list[StepInput]:
        """The `batches_per_step` batches this input holds, one input each."""
        pieces = [t.chunk(parts) if t is not None else (None,) * parts
                  for t in (self.x, self.y, self.index)]
        return [StepInput(x, self.generator, y, i, self.rank, self.world_size)
                for x, y, i in zip(*pieces, strict=True)]


@dataclass
class DataPass:
    """One pass of a family over the whole training set (see the module docstring)."""

    data: Examples  # every training row, on the run's device
    step: int  # finished steps before the pass
    generator: torch.Generator  # seeded by (run seed, step): the same on every process
    rank: int = 0
    world_size: int = 1

    def bounds(self, rank: int) -> tuple[int, int]:
        n = len(self.data)
        return rank * n // self.world_size, (rank + 1) * n // self.world_size

    def rows(self) -> Batch:
        """This process's share of the rows: a contiguous block, in order."""
        start, stop = self.bounds(self.rank)
        return self.data.rows(torch.arange(start, stop))

    def gather(self, local: Tensor) -> Tensor:
        """Per-row results of this process's rows → those of every row, in row order, on every
        process (an all-gather; the identity in one process)."""
        if self.world_size == 1:
            return local
        sizes = [b - a for a, b in map(self.bounds, range(self.world_size))]
        padded = local.new_zeros((max(sizes), *local.shape[1:]))
        padded[:local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:k] for p, k in zip(parts, sizes, strict=True)])


class Family(ABC):
    """A trainable model family (see the module docstring)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RunConfig]] = RunConfig
    recipes: ClassVar[dict[str, dict[str, Any]]] = {}
    description: ClassVar[str] = ""
    data_order: ClassVar[str] = "replacement"

    @classmethod  # noqa: B027 (an optional hook: nothing to check by default)
    def check(cls, config: Any, dataset: Any) -> None:
        """Raise a BadInputError for options that cannot work together or with `dataset`;
        runs before any work starts (`genshop.engine.check`)."""

    @classmethod
    def recipe(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The overrides the family's recipe makes for a run with the user's `options`: by
        default `recipes[data]`."""
        return dict(cls.recipes.get(options.get("data", cls.config_class.data), {}))

    @classmethod
    def recipe_labels(cls) -> dict[str, dict[str, Any]]:
        """Every recipe by the label `--help` shows it under (e.g. "ring8")."""
        return dict(cls.recipes)

    @classmethod
    def dataset(cls, config: Any) -> Any:
        """The data set of a run of this family (see `genshop.data` for what one offers)."""
        return get_dataset(config.data)

    @classmethod
    def training_data(cls, config: Any, dataset: Any) -> Examples:
        """The examples (and labels or targets) the engine draws batches from."""
        return dataset.training_data(seed=config.seed)

    @classmethod
    def has_sampler(cls) -> bool:
        """True for a generative family (one that defines `sample`)."""
        return cls.sample is not Family.sample

    @classmethod
    def parent_families(cls) -> tuple[str, ...]:
        """The families a run of this one may start from (`--init-from`)."""
        return (cls.name,)

    @abstractmethod
    def __init__(self, config: Any, dataset: Any, device: torch.device): ...

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]: ...

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    @abstractmethod
    def train_step(self, inp: StepInput) -> dict[str, float]: ...

    @abstractmethod
    def model(self) -> nn.Module: ...

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples from `net`; a supervised family has no sampler."""
        raise BadInputError(f"a {self.name} run has no sampler: it is a supervised model, "
                            f"not a generator; score it with `genshop eval RUN_DIR`")

    def batches_per_step(self) -> int:
        """Batches of `batch_size` rows one `StepInput` carries (concatenated; `inp.split`)."""
        return 1

    def cost_period(self) -> int:
        """Steps after which the work of a step repeats (a lazy regulariser applied every k-th
        step); compute budgets average a step's FLOPs over them."""
        return 1

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Measures of `net` logged at every logged step (eval mode, no autograd)."""
        return {}

    def test_scores(self, net: nn.Module) -> dict[str, float]:
        """A supervised family's scores of `net` on the held-out split (eval mode, no
        autograd); none by default."""
        return {}

    def data_pass_every(self) -> int:
        """Steps between passes over the whole training set (0: none)."""
        return 0

    def data_pass(self, work: DataPass) -> None:  # noqa: B027 (optional hook)
        """Work over the whole training set (see the module docstring)."""

    def start_from(self, parent: Any) -> None:
        """Begin from the trained `genshop.runs.Run` `parent`: its modules of the same names."""
        mine = self.modules()
        shared = [k for k in parent.family.modules() if k in mine]
        if not shared:
            raise BadInputError(f"the run in {parent.run_dir} has no module this {self.name} "
                                f"run can start from (it has {', '.join(parent.family.modules())})")
        for k in shared:
            mine[k].load_state_dict(parent.family.modules()[k].state_dict())

    def finish(self, net: nn.Module, run_dir: Any) -> None:  # noqa: B027 (optional hook)
        """Write files a finished run ships besides its checkpoint (main process only)."""

    def extra_state(self) -> dict[str, Any]:
        """Values besides modules and optimisers that a resumed run needs (checkpointed)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what `extra_state` returned."""


FAMILIES: Registry[type[Family]] = Registry("model family")


def adam(params, lr: float = 1e-3, **options: Any) -> torch.optim.Adam:
    """Adam with torch's one-kernel implementation (its `fused=True`; no relation to the fused
    single-loss step) when every parameter is a float tensor on CPU or CUDA.

    Otherwise torch runs one small op per parameter and moment, which dominates a step of the
    small 2-D nets on a CPU; the update is the same up to rounding.
    `params` is an iterable of tensors or of parameter-group dicts, as for torch.optim.Adam.
    """
    params = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in params]
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    one_kernel = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.Adam(params, lr=lr, fused=one_kernel, **options)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def get_family(name: str) -> type[Family]:
    """The family class registered as `name`; an unknown name lists the valid ones."""
    _discover()
    return FAMILIES.get(name)


def family_of(config: RunConfig) -> type[Family]:
    """The family whose config class `config` is an instance of (exactly)."""
    _discover()
    for name in FAMILIES:
        if type(config) is FAMILIES.get(name).config_class:
            return FAMILIES.get(name)
    raise BadInputError(f"{type(config).__name__} is no family's config; build one with "
                        "genshop.configure(FAMILY, ...) for a family of "
                        f"{', '.join(FAMILIES.names())}")


def family_names() -> list[str]:
    _discover()
    return FAMILIES.names()


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: register a family under its `name`."""
    return FAMILIES.add(cls.name, cls)
