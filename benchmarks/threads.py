"""Training speed by CPU thread count: the evidence for the default of `--threads`.

Trains small and larger models of every family through `genshop.train` (the 2-D GAN of the ring
recipe, the coupling flow, the DCGAN pair on 28×28 images) for a few steps at each thread count,
the counts interleaved within each repeat (the machine is shared), and prints the median
milliseconds per step and each count's time over one thread's. 0 means torch's own default
(as many threads as cores).

Run: .venv/bin/python benchmarks/threads.py [--repeats 5] [--threads 1,2,0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genshop

MODELS = {
    "gan ring8 (MLP 3×128, batch 256)": ("gan", {"data": "ring8", "steps": 60}),
    "flow ring8 (8 blocks, hidden 128, batch 256)": ("flow", {"data": "ring8", "steps": 40}),
    "gan mnist (DCGAN width 32, batch 64)": ("gan", {"data": "mnist", "steps": 10,
                                                     "batch_size": 64, "width": 32,
                                                     "latent_dim": 64}),
}


def ms_per_step(family: str, options: dict, threads: int, out: Path) -> float:
    config = genshop.configure(family, **options, threads=threads, sample_every=0,
                               checkpoint_every=10**6, log_every=10**6, out=str(out))
    start = time.perf_counter()
    genshop.train(config, progress=False)
    return 1000 * (time.perf_counter() - start) / config.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", default="1,2,0", help="comma-separated thread counts")
    args = p.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    print(f"torch default threads here: {torch.get_num_threads()}")
    print("model | " + " | ".join(f"{t} thr ms/step" for t in counts) + " | " +
          " | ".join(f"{t} thr / 1 thr" for t in counts if t != 1))
    with tempfile.TemporaryDirectory() as tmp:
        for m, (name, (family, options)) in enumerate(MODELS.items()):
            times: dict[int, list[float]] = {t: [] for t in counts}
            for r in range(args.repeats):
                for t in counts:
                    out = Path(tmp) / f"{m}-{r}-{t}"
                    times[t].append(ms_per_step(family, options, t, out))
            med = {t: statistics.median(v) for t, v in times.items()}
            print(f"{name} | " + " | ".join(f"{med[t]:.1f}" for t in counts) + " | " +
                  " | ".join(f"{med[t] / med[1]:.2f}" for t in counts if t != 1))


if __name__ == "__main__":
    main()
