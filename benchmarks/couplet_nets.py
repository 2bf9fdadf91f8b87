"""Size and speed of the couplet tagger's configurations (kexue.fm archive 6270 and genshop's
second configuration, `genshop.couplet.model`), measured side by side in one run.

For each configuration, built with the poetry vocabulary's size (V = 7,364 unless `--vocab`):
parameters, half-precision megabytes (what `couplet export` ships), and the process CPU time of
a training step (batch 64 of 7-character pairs: forward, backward, Adam), of the forward pass of
one 7-character line and of 32 lines (eval mode, no gradient). The configurations take turns
within each round (`genshop.timing.time_interleaved`, CPU clock); medians of the rounds.

Run: .venv/bin/python benchmarks/couplet_nets.py [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genshop.couplet.model import CoupletNet, CoupletNetConfig, pair_loss, parameter_count
from genshop.timing import time_interleaved

LINE = 7


def configurations(vocab: int) -> dict[str, CoupletNetConfig]:
    return {
        "post": CoupletNetConfig(vocab),
        "post, both directions": CoupletNetConfig(vocab, directions=2),
        "post, width 256": CoupletNetConfig(vocab, dim=256, directions=2),
        "dilated": CoupletNetConfig.dilated(vocab),
        "transformer, 4 layers": CoupletNetConfig.transformer(vocab, directions=2),
        "transformer, 6 layers": CoupletNetConfig.transformer(vocab, blocks=6, directions=2),
    }


def timed_calls(net: CoupletNet, vocab: int) -> dict[str, object]:
    """The three timed calls of one configuration, each on fixed seeded inputs."""
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(2, vocab, (64, 2, LINE), generator=gen)
    one = torch.randint(2, vocab, (1, LINE), generator=gen)
    many = torch.randint(2, vocab, (32, LINE), generator=gen)
    opt = torch.optim.Adam(net.parameters(), eps=1e-7)

    def train_step() -> None:
        net.train()
        loss = pair_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def forward(ids: torch.Tensor) -> None:
        net.eval()
        net(ids)

    return {"train": train_step, "one": lambda: forward(one), "many": lambda: forward(many)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vocab", type=int, default=7364)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {name: CoupletNet(c) for name, c in configurations(args.vocab).items()}
    fns = {(name, kind): fn for name, net in nets.items()
           for kind, fn in timed_calls(net, args.vocab).items()}
    times = time_interleaved({f"{n}|{k}": f for (n, k), f in fns.items()}, args.rounds,
                             clock=time.process_time)
    med = {key: 1e3 * statistics.median(ts) for key, ts in times.items()}
    print(f"V = {args.vocab}, {args.threads} thread(s), CPU clock, medians of {args.rounds} "
          f"rounds, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print("| configuration | receptive field | parameters | fp16 MB | train step, batch 64 (ms) "
          "| forward, 1 line (ms) | forward, 32 lines (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, net in nets.items():
        n = parameter_count(net)
        field = "whole line" if net.config.kind == "transformer" else net.config.receptive_field
        print(f"| {name} | {field} | {n:,} | {2 * n / 2**20:.2f} | {med[f'{name}|train']:.0f} "
              f"| {med[f'{name}|one']:.2f} | {med[f'{name}|many']:.1f} |")


if __name__ == "__main__":
    main()
