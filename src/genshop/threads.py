"""How many CPU threads torch uses, set for a block of code and restored after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with `n` intra-op threads (n ≤ 0 leaves the setting alone).

    genshop's networks are small: on a shared or busy CPU, the hand-offs between OpenMP threads
    cost more than the parallel work saves, so sections and toy runs use one thread.
    """
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
