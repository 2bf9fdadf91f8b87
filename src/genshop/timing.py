"""Side-by-side timing for benchmarks and tour sections: alternatives measured in turn, medians.

The machines are shared and noisy, so genshop never compares timings taken at different moments:
the alternatives take turns within each round (the order reversed every other round) and the
comparison is made on medians of the rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class StepRunner:
    """One training step on its own nets and optimiser, callable without arguments."""

    step: Callable[[], dict[str, float]]
    nets: tuple[Any, ...]

    def __call__(self) -> dict[str, float]:
        return self.step()


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int,
                     calls_per_round: int = 1,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each function by `clock` (wall time by default; `time.process_time`
    counts this process's CPU time): `rounds` rounds of `calls_per_round` calls, the functions
    taking turns within a round, the order reversed every other round, after one warm-up call
    each."""
    names = list(fns)
    for name in names:
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            start = clock()
            for _ in range(calls_per_round):
                fns[name]()
            times[name].append((clock() - start) / calls_per_round)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(ts) for name, ts in times.items()}
