"""Learning-rate schedules of a run: every rate a pure function of the step, so a resumed run
follows the schedule an uninterrupted one does.

Infrastructure for every trained family of the *Scientific Spaces* posts. With η the rate a run
sets (its `--lr`, `--lr-g`, …), T its steps and t = 0 … T − 1 the step:

* constant: η;
* cosine: η·½(1 + cos(πt/T));
* linear: η·(1 − t/T);
* one-cycle (Smith & Topin 2019, as `torch.optim.lr_scheduler.OneCycleLR` with its defaults):
  from η/25 up to η over the first 30 % of the steps, then down to η/(25·10⁴), each phase a
  cosine a(s, e, p) = e + (s − e)/2·(cos πp + 1); the momentum (SGD's momentum, Adam's β₁) goes
  the opposite way, 0.95 → 0.85 → 0.95. The arithmetic is torch's, so a run on this schedule
  equals a hand-written loop with OneCycleLR bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

SCHEDULES = ("constant", "cosine", "linear", "one-cycle")
ONE_CYCLE_WARMUP = 0.3  # share of the steps spent rising
ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV = 25.0, 1e4
ONE_CYCLE_MOMENTUM = (0.85, 0.95)  # (at the peak rate, at the ends)


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The multiplier of the set rate at 0-based `step` of a `steps`-step run for the constant,
    cosine and linear schedules (1 at the start; the last two → 0 at the end)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    if schedule == "linear":
        return 1.0 - step / steps
    return 1.0


def _cosine_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle(peak: float, step: int, steps: int) -> tuple[float, float]:
    """(rate, momentum) of the one-cycle schedule at 0-based `step` (module docstring)."""
    low_m, high_m = ONE_CYCLE_MOMENTUM
    initial = peak / ONE_CYCLE_DIV
    phases = [(float(ONE_CYCLE_WARMUP * steps) - 1, initial, peak, high_m, low_m),
              (steps - 1, peak, initial / ONE_CYCLE_FINAL_DIV, low_m, high_m)]
    start = 0.0
    for i, (end, lr_from, lr_to, m_from, m_to) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            return _cosine_anneal(lr_from, lr_to, pct), _cosine_anneal(m_from, m_to, pct)
        start = end
    raise AssertionError("unreachable")


def set_learning_rates(optimizers: Iterable[torch.optim.Optimizer], schedule: str, step: int,
                       steps: int) -> None:
    """Set every parameter group's rate (and, for one-cycle, momentum) for `step`; each group
    keeps the rate it was built with as `initial_lr` in its state."""
    for opt in optimizers:
        for group in opt.param_groups:
            peak = group.setdefault("initial_lr", group["lr"])
            if schedule != "one-cycle":
                group["lr"] = peak * lr_factor(schedule, step, steps)
                continue
            group["lr"], momentum = one_cycle(peak, step, steps)
            if "betas" in group:
                group["betas"] = (momentum, *group["betas"][1:])
            else:
                group["momentum"] = momentum


__all__ = ["SCHEDULES", "lr_factor", "one_cycle", "set_learning_rates"]
