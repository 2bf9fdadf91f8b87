"""Speed of the DCGAN pair: steps per second, model FLOPs a step, and their ratio to the matrix
product throughput measured in the same run (model-FLOP utilisation, MFU).

For the image GANs of posts 6016 / 6110 (losses) and 6387 (the fused single-loss step), at the
recipe's nets (`genshop.families.gan.RECIPES[--data]`) and batch 64. Timed interleaved with
`genshop.timing.time_interleaved` (the machine is shared), medians over the rounds:

* `alternating`, `fused`: `GanFamily.train_step` on a fixed batch, the family's nets as they
  train (channels-last memory format);
* `... NCHW`: the same step with the nets in torch's default (contiguous NCHW) memory format;
* `alternating, engine`: a whole engine step — the batch indexed from the training set, the
  step, the EMA update — as `genshop.train` runs it;
* `matmul ...`: float32 matrix products at the same thread count — `torch.mm` of two
  1024×1024 matrices (MKL's sgemm) and two 1×1 convolutions in channels-last layout (oneDNN's
  GEMM, the library of the convolutions): 1024 channels over 32×32 positions, and 256 channels
  over 16 images of 32×32. oneDNN picks its kernel by shape and thread count, and on an AMD CPU
  MKL may not run its AVX-512 code, so the products differ by 2× here; MFU is measured against
  the fastest.

Times are process CPU seconds by default (`--clock cpu`): on a shared machine other processes
steal wall time from every variant unevenly; `--clock wall` gives elapsed time.

FLOPs a step are counted with `genshop.experiments.budget.count_flops` (the formulas of
`torch.utils.flop_counter`; for the alternating step it equals FlopCounterMode's count, printed
beside it; FlopCounterMode's module hooks fail inside the fused step's `torch.autograd.grad`).
MFU = FLOPs a step × steps per second ÷ matmul FLOP/s.

Run: .venv/bin/python benchmarks/image_speed.py [--data mnist] [--threads 1] [--rounds 15]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import genshop
from genshop.data import get_dataset
from genshop.experiments.budget import count_flops
from genshop.families import StepInput
from genshop.families.gan import GanFamily
from genshop.timing import time_interleaved

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def family_step(config, dataset, channels_last: bool, seed: int = 0):
    """A callable doing one `train_step` on a fixed batch, with the nets channels-last (as the
    family builds them) or converted back to contiguous NCHW."""
    torch.manual_seed(seed)
    family = GanFamily(config, dataset, torch.device("cpu"))
    if not channels_last:
        for net in (family.G, family.D):
            net.to(memory_format=torch.contiguous_format)
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand(config.batch_size, *dataset.shape, generator=gen)
    return lambda: family.train_step(StepInput(real, gen))


def engine_step(config, dataset, seed: int = 0):
    """A callable doing what the engine does each step: index a batch from the training set,
    step, update the EMA copy of G (θ_ema ← d·θ_ema + (1 − d)·θ)."""
    torch.manual_seed(seed)
    family = GanFamily(config, dataset, torch.device("cpu"))
    ema = copy.deepcopy(family.G).requires_grad_(False)
    train_set = dataset.training_set(seed)
    gen = torch.Generator().manual_seed(seed)

    def step() -> None:
        idx = torch.randint(train_set.shape[0], (config.batch_size,), generator=gen)
        family.train_step(StepInput(train_set[idx], gen))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), family.G.parameters(), strict=True):
                e.lerp_(p, 1 - config.ema)
            for e, b in zip(ema.buffers(), family.G.buffers(), strict=True):
                e.copy_(b)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist", choices=["mnist", "stacked-mnist"])
    p.add_argument("--width", type=int, default=None, help="default: the recipe's")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--matmul", type=int, default=1024,
                   help="side of the torch.mm matrices and channels of the first 1×1 conv")
    p.add_argument("--clock", default="cpu", choices=list(CLOCKS),
                   help="cpu: process CPU time (a busy shared machine steals wall time; with "
                        "several threads it sums them), wall: elapsed time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    options = {"width": args.width} if args.width else {}
    config = {u: genshop.configure("gan", data=args.data, update=u, batch_size=args.batch,
                                   out="unused", **options) for u in ("alternating", "fused")}
    dataset = get_dataset(args.data)
    n = args.matmul
    a, b = torch.randn(n, n), torch.randn(n, n)
    nhwc = {"memory_format": torch.channels_last}
    x1 = torch.randn(1, n, 32, 32).contiguous(**nhwc)
    w1 = torch.randn(n, n, 1, 1).contiguous(**nhwc)
    x2 = torch.randn(16, 256, 32, 32).contiguous(**nhwc)
    w2 = torch.randn(256, 256, 1, 1).contiguous(**nhwc)
    conv = torch.nn.functional.conv2d
    fns = {"alternating": family_step(config["alternating"], dataset, True),
           "fused": family_step(config["fused"], dataset, True),
           "alternating NCHW": family_step(config["alternating"], dataset, False),
           "fused NCHW": family_step(config["fused"], dataset, False),
           "alternating, engine": engine_step(config["alternating"], dataset),
           f"matmul torch.mm {n}": lambda: torch.mm(a, b),
           f"matmul oneDNN 1×1 conv {n} ch, 1×32×32": lambda: conv(x1, w1),
           "matmul oneDNN 1×1 conv 256 ch, 16×32×32": lambda: conv(x2, w2)}
    flops = {name: count_flops(fn) for name, fn in fns.items()}
    with FlopCounterMode(display=False) as counter:
        family_step(config["alternating"], dataset, True)()
    times = time_interleaved(fns, args.rounds, 3, CLOCKS[args.clock])
    med = {name: statistics.median(ts) for name, ts in times.items()}
    gemm = {name[7:]: flops[name] / med[name] for name in fns if name.startswith("matmul")}
    peak = max(gemm.values())
    c = config["alternating"]
    print(f"{args.data}: DCGAN pair width {c.width}, latent {c.latent_dim}, batch {args.batch}, "
          f"{args.threads} thread(s), {args.clock} clock, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"matrix products (medians of {args.rounds}): "
          + ", ".join(f"{name} {rate / 1e9:.1f}" for name, rate in gemm.items())
          + f" GFLOP/s; MFU against {peak / 1e9:.1f}")
    print(f"FlopCounterMode, alternating step: {counter.get_total_flops() / 1e9:.3f} GFLOP "
          f"(count_flops: {flops['alternating'] / 1e9:.3f})")
    print("variant | ms/step | steps/s | GFLOP/step | GFLOP/s | MFU")
    for name in fns:
        if name.startswith("matmul"):
            continue
        rate = flops[name] / med[name]
        print(f"{name} | {1e3 * med[name]:.1f} | {1 / med[name]:.2f} | {flops[name] / 1e9:.3f} | "
              f"{rate / 1e9:.1f} | {100 * rate / peak:.0f} %")


if __name__ == "__main__":
    main()
