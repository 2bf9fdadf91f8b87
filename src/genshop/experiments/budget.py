"""The compute budget of a benchmark: model FLOPs of a training step of any family, and the steps
each row trains so that every row has the same compute.

Serves the image benchmarks of the GAN losses of "f-GAN: a production workshop for GANs"
(kexue.fm 6016) and "RSGAN" (6110) with the single-loss step of "A GAN with a single loss via
stop-gradient" (6387), and any other family's row beside them (GLO/IMLE/GLANN of 6394, the VAE
of 6181). Compute is counted, not timed, so a benchmark gives the same numbers on every machine:
F(row) is the model FLOPs of one `train_step` of the row's family at the config's batch size,
counted with torch's FLOP formulas (`count_flops`: `torch.utils.flop_counter.FlopCounterMode`
without its module tracker) on a batch of the family's own training data, and averaged over the
family's `cost_period()` steps (the GAN's `r1_every`, so that lazy R1 counts at its mean cost).
The budget is B = `steps` · F(reference row), and a row trains round(B / F(row)) steps: the
GAN's fused step (9 net passes against 12, post 6387) gets 4/3 as many steps as the alternating
one, WGAN-GP's double backward fewer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.module_tracker import ModuleTracker

from genshop.experiments import Setting, family_overrides
from genshop.families import StepInput, family_of
from genshop.threads import torch_threads


class _NoModules(ModuleTracker):
    """A module tracker that tracks nothing: FlopCounterMode then counts every FLOP under
    "Global" only. The tracker's hooks on module inputs and outputs fail inside
    `torch.autograd.grad` (WGAN-GP, R1, the fused step's shared critic)."""

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *args: Any) -> None:
        return None


class _GlobalFlopCounter(FlopCounterMode):
    """FlopCounterMode with its formulas and dispatch, without per-module counts."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModules()


def count_flops(fn: Callable[[], Any]) -> int:
    """Model FLOPs (a multiply-add counts 2) of the torch ops that `fn()` runs, by the formulas
    of `torch.utils.flop_counter` (matrix products and convolutions, forward and backward)."""
    with _GlobalFlopCounter() as counter:
        fn()
    return counter.get_total_flops()


def step_flops(config: Any, batch: int = 8) -> float:
    """Model FLOPs of one training step of `config` (any family) at its batch size:
    `count_flops` over `Family.cost_period()` steps of the family's `train_step` on batches of
    `batch` rows of its training data, averaged and scaled by batch_size / batch (every counted
    op is linear in the rows). Leaves torch's RNG alone."""
    family_cls = family_of(config)
    small = dataclasses.replace(config, batch_size=batch)
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        dataset = family_cls.dataset(small)
        data = family_cls.training_data(small, dataset)
        family = family_cls(small, dataset, torch.device("cpu"))
        steps = family.cost_period()
        gen = torch.Generator().manual_seed(0)

        def train_steps() -> None:
            for _ in range(steps):
                rows = data.batch(batch * family.batches_per_step(), gen)
                family.train_step(StepInput.of(rows, gen))

        total = count_flops(train_steps)
    return total / steps * config.batch_size / batch


def budget_steps(reference_steps: int, reference_flops: float, flops: float) -> int:
    """Steps with the compute of `reference_steps` steps of `reference_flops` each (≥ 1)."""
    return max(1, round(reference_steps * reference_flops / flops))


@dataclass
class Budget:
    """The compute budget: `steps` steps of the reference row at `flops` each, and each row's
    steps and FLOPs per step."""

    reference: Setting
    steps: int
    flops: float
    per_row: dict[Setting, tuple[int, float]]

    def as_json(self) -> dict[str, Any]:
        return {"reference": self.reference.name("/"), "reference_steps": self.steps,
                "reference_flops_per_step": self.flops,
                "total_flops": self.steps * self.flops,
                "rows": {s.name("/"): {"steps": n, "flops_per_step": f}
                         for s, (n, f) in self.per_row.items()}}


def plan_budget(data: str, settings: Sequence[Setting], reference: Setting,
                overrides: Mapping[str, Any], steps: int | None) -> Budget:
    """Each row's steps for the budget of `steps` (default: the recipe's) reference steps.
    Building every config first checks the rows and options before any work."""
    def config(setting: Setting) -> Any:
        return setting.config(data, 0, Path("."), family_overrides(setting.family, overrides))

    ref_config = config(reference)
    steps = ref_config.steps if steps is None else steps
    ref_flops = step_flops(ref_config)
    per_row = {}
    for setting in settings:
        flops = ref_flops if setting == reference else step_flops(config(setting))
        per_row[setting] = (budget_steps(steps, ref_flops, flops), flops)
    return Budget(reference, steps, ref_flops, per_row)


__all__ = ["Budget", "budget_steps", "count_flops", "plan_budget", "step_flops"]
