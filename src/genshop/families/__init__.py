"""Model families: the small interface through which `genshop.engine` trains every model.

Serves the trainable posts of *Scientific Spaces* (GANs of kexue.fm archives 6016, 6110, 6387;
flows of 6377; later GLO/IMLE/GLANN of 6394 and VAE/VIB of 6181). A family is a subclass of
`Family`, registered with `@FAMILIES.register("name")` in a module of this package (modules here
are discovered, so adding `families/flow.py` needs no other edit). It declares

* `name`, `description` (one line, the help of `genshop train <name>`);
* `config_class`: a dataclass derived from `genshop.config.RunConfig` (its fields become the
  options of `genshop train <name>`), and `recipes`: data-set name → option overrides;
* optionally `check(config, dataset)` (a classmethod): reject options that cannot work together
  or with the data, before any work starts;
* optionally `dataset(config)` (a classmethod): the data set the engine trains on, by default
  `genshop.data.get_dataset(config.data)`; a family whose data are no registered set (the
  couplet family's corpora and folders of pairs) builds its own here;
* `__init__(config, dataset, device)`: build models and optimisers (seed already set);
* `modules()` / `optimizers()`: name → object, saved in checkpoints and restored on resume;
* `train_step(inp: StepInput) -> dict[str, float]`: one update on `inp.real`; noise must come
  from `inp.normal(...)` (or `inp.generator`) so runs are reproducible and data-parallel runs
  equal single-process ones; returns the losses to log (a NaN/Inf stops the run);
* `sampler()`: the net that produces samples (the engine keeps its EMA copy);
* `sample(net, n, generator) -> Tensor`: n samples from `net` (the sampler or its EMA copy);
  N×d for points, N×C×H×W in [0, 1] for images;
* optionally `real_batches()`: how many batches of `batch_size` points `inp.real` holds (1; the
  GAN family asks for one per critic update), `evaluate(net)`: measures of the sampler logged
  at every logged step (the flow's held-out NLL), and `extra_state()` / `load_extra_state(state)`:
  plain values a resumed run needs besides modules and optimisers (checkpointed with them).

The engine owns everything else: data order, progress, metrics, snapshots, EMA, checkpoints,
resume, divergence checks, and gradient averaging across processes (a step pre-hook on each
optimiser averages gradients, so `train_step` is written as for one process).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genshop.config import RunConfig
from genshop.data import get_dataset
from genshop.errors import BadInputError
from genshop.registry import Registry


def share(x: Tensor, rank: int, world_size: int) -> Tensor:
    """Process `rank`'s rows of a global-batch tensor split into `world_size` equal parts."""
    n = x.shape[0] // world_size
    return x[rank * n:(rank + 1) * n]


@dataclass
class StepInput:
    """One step's data: this process's share of a global batch, and the shared noise source."""

    real: Tensor
    generator: torch.Generator  # same state on every process
    rank: int = 0
    world_size: int = 1

    def normal(self, *shape: int) -> Tensor:
        """N(0, I) noise (local batch, *shape), drawn for the global batch then shared out."""
        global_n = self.real.shape[0] * self.world_size
        z = torch.randn(global_n, *shape, generator=self.generator)
        return share(z, self.rank, self.world_size).to(self.real.device)


class Family(ABC):
    """A trainable model family (see the module docstring)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RunConfig]] = RunConfig
    recipes: ClassVar[dict[str, dict[str, Any]]] = {}
    description: ClassVar[str] = ""

    @classmethod  # noqa: B027 (an optional hook: nothing to check by default)
    def check(cls, config: Any, dataset: Any) -> None:
        """Raise a BadInputError for options that cannot work together or with `dataset`;
        runs before any work starts (`genshop.engine.check`)."""

    @classmethod
    def dataset(cls, config: Any) -> Any:
        """The data set of a run of this family (see `genshop.data` for what one offers)."""
        return get_dataset(config.data)

    @abstractmethod
    def __init__(self, config: Any, dataset: Any, device: torch.device): ...

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]: ...

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    @abstractmethod
    def train_step(self, inp: StepInput) -> dict[str, float]: ...

    @abstractmethod
    def sampler(self) -> nn.Module: ...

    @abstractmethod
    def sample(self, net: nn.Module, n: int,
               generator: torch.Generator | None = None) -> Tensor: ...

    def real_batches(self) -> int:
        """Batches of `batch_size` real points one `StepInput` carries (concatenated)."""
        return 1

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Measures of the sampler `net` logged at every logged step (eval mode, no autograd);
        they must draw from their own `torch.Generator`, never the global RNG."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Plain values besides modules and optimisers that a resumed run needs (checkpointed)."""
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
