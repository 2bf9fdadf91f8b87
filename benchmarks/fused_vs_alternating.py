"""Time per iteration: the single-loss (fused) GAN step against the alternating step.

Post: "巧断梯度：单个loss实现GAN模型" (a GAN with a single loss via stop-gradient), kexue.fm
archives/6387, which claims the fused step saves time (one G forward and one backward fewer) at
the cost of memory (all graphs alive at once), without giving numbers.

For the 2-D MLP pair and the 28×28 DCGAN pair of `genshop.nets` at batch 64 on CPU, and for each
loss asked for: first checks in float64 that one backward of `steps.fused_loss` gives the two-loss
gradients (exit 1 otherwise), then measures the peak bytes autograd keeps for backward during one
step of each mode, then times `steps.fused_step` and `steps.alternating_step` interleaved in this
process (same nets, Adam with the fused CPU kernel, fixed batches) and prints medians. The last line
is the alternating/fused ratio of the medians.

    .venv/bin/python benchmarks/fused_vs_alternating.py [--rounds 25] [--threads 1]
        [--batch 64] [--pair mlp-2d|dcgan-28 ...] [--loss NAME ...] [--warmup STEPS]
        [--critic-calls auto|separate|shared]

A large `--batch` (e.g. 2048 for mlp-2d) shows the compute-bound ratio, where fixed per-step
overheads no longer count. `--warmup STEPS` first trains the pair that many fused steps on the
fixed batch, so the timing starts from a critic that separates the batches (a hinge critic then
puts fake logits beyond its margin, where the shared critic forward recomputes those rows, or
for a convolutional critic with most rows beyond runs a backward chain seeded with the G loss's
gradient; see `steps._NestedSharedCall`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from operator import truediv

import torch
from torch import Tensor, nn

from genshop import losses, nets, steps
from genshop.families import adam
from genshop.sections.gan_losses import StepRunner, step_runners
from genshop.timing import time_interleaved

PAIRS = {  # name: (make (G, D), shape of one real sample, steps per timed round at batch 64)
    "mlp-2d": (nets.mlp_pair, (2,), 20),
    "dcgan-28": (nets.dcgan_pair, (1, 28, 28), 2),
}


class SavedTensorMeter:
    """Peak bytes of the tensors autograd saves for backward, parameters excluded.

    Counts each storage once while any saved tensor refers to it; a storage is released when
    autograd drops the last saved reference (after the backward that used it).
    """

    def __init__(self, nets_: tuple[nn.Module, ...]):
        self.params = {p.untyped_storage().data_ptr() for n in nets_ for p in n.parameters()}
        self.refs: dict[int, int] = {}
        self.live = self.peak = 0

    def pack(self, t: Tensor) -> object:
        ptr = t.untyped_storage().data_ptr()
        if ptr in self.params:
            return t
        if ptr not in self.refs:
            self.live += t.untyped_storage().nbytes()
            self.peak = max(self.peak, self.live)
        self.refs[ptr] = self.refs.get(ptr, 0) + 1
        return _Saved(self, ptr, t)

    def release(self, ptr: int, nbytes: int) -> None:
        self.refs[ptr] -= 1
        if not self.refs[ptr]:
            del self.refs[ptr]
            self.live -= nbytes

    @staticmethod
    def unpack(saved: object) -> Tensor:
        return saved.tensor if isinstance(saved, _Saved) else saved


class _Saved:
    def __init__(self, meter: SavedTensorMeter, ptr: int, tensor: Tensor):
        self.meter, self.ptr, self.tensor = meter, ptr, tensor
        self.nbytes = tensor.untyped_storage().nbytes()

    def __del__(self):
        self.meter.release(self.ptr, self.nbytes)


def peak_saved_mib(run: StepRunner, nets_: tuple[nn.Module, ...]) -> float:
    meter = SavedTensorMeter(nets_)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        run()
    return meter.peak / 2**20


def gradient_gap(G: nn.Module, D: nn.Module, loss: losses.GanLoss, real: Tensor) -> float:
    G64, D64 = copy.deepcopy(G).double(), copy.deepcopy(D).double()
    z = torch.randn(real.shape[0], G.latent_dim, dtype=torch.float64)
    gap = steps.gradient_gap(G64, D64, loss, real.double(), z)
    return max(gap["d_grad"], gap["g_grad"], gap["value"])


def warm_up(G: nn.Module, D: nn.Module, loss: losses.GanLoss, real: Tensor, count: int) -> str:
    """`count` fused steps (Adam 2e-4) on `real` with fresh noise; how many fake logits end < −1."""
    opt = steps.fused_optimizer(G, D, adam, 2e-4, 2e-4, betas=(0.5, 0.999))
    for _ in range(count):
        steps.fused_step(G, D, loss, opt, real, torch.randn(real.shape[0], G.latent_dim))
    with torch.no_grad():
        logits = D(G(torch.randn(real.shape[0], G.latent_dim)))
    share = (logits < -1).float().mean().item()
    return f"after {count} warm-up steps {share:.0%} of fake logits < −1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=64, help="batch size (the target: 64)")
    parser.add_argument("--pair", action="append", choices=list(PAIRS), default=None,
                        help="nets to time (repeatable; default: all)")
    parser.add_argument("--loss", action="append", default=None,
                        help="loss name (repeatable; default: hinge, the post's, and rsgan)")
    parser.add_argument("--critic-calls", choices=steps.CRITIC_CALLS, default="auto",
                        help="how the fused step arranges its critic calls (see genshop.steps; "
                             "auto: shared for per-sample critics, else separate)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="fused training steps before timing (default 0: fresh nets)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.loss or ["hinge", "rsgan"]

    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"{args.rounds} interleaved rounds, Adam (fused CPU kernel)")
    header = (f"{'pair':10s} {'loss':8s} {'mode':12s} {'median ms':>10s} {'IQR ms':>13s} "
              f"{'peak saved MiB':>15s} {'grad gap':>9s}")
    print(header)
    print("-" * len(header))
    ratios, paired = [], []
    for pair in args.pair or list(PAIRS):
        make, sample_shape, calls = PAIRS[pair]
        shape, calls = (args.batch, *sample_shape), max(1, calls * 64 // args.batch)
        for name in names:
            loss = losses.get_loss(name)
            torch.manual_seed(0)
            G, D = make()
            real = torch.rand(shape)
            if args.warmup:
                print(f"{pair} {name}: {warm_up(G, D, loss, real, args.warmup)}")
            gap = gradient_gap(G, D, loss, real)
            if gap > 1e-10:
                print(f"{pair} {name}: fused gradients differ from the two-loss gradients by "
                      f"{gap:.3g}; not timing", file=sys.stderr)
                return 1
            runners = step_runners(G, D, loss, real, critic_calls=args.critic_calls)
            memory = {mode: peak_saved_mib(run, run.nets) for mode, run in runners.items()}
            times = time_interleaved(runners, args.rounds, calls)
            for mode, t in times.items():
                q1, _, q3 = statistics.quantiles(t, n=4)
                print(f"{pair:10s} {name:8s} {mode:12s} {1e3 * statistics.median(t):10.3f} "
                      f"{1e3 * q1:6.2f}–{1e3 * q3:6.2f} {memory[mode]:15.2f} {gap:9.1e}")
            ratio = statistics.median(times["alternating"]) / statistics.median(times["fused"])
            ratios.append(f"{pair}/{name} {ratio:.2f}x")
            per_round = map(truediv, times["alternating"], times["fused"])
            paired.append(f"{pair}/{name} {statistics.median(per_round):.2f}x")
    print("median of per-round ratios (less sensitive to load drift): " + ", ".join(paired))
    print("ratio alternating/fused (medians): " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
