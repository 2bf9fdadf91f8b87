"""Instructions per iteration: the single-loss GAN step against the alternating step.

Post: "巧断梯度：单个loss实现GAN模型" (a GAN with a single loss via stop-gradient), kexue.fm
archives/6387. Wall-clock ratios on a shared CPU move by ±5 % from one run to the next
(benchmarks/fused_vs_alternating.py is the time measurement); instruction counts do not. This
script counts, with valgrind's callgrind, the instructions one step of each mode executes: for
each loss and mode it runs itself under callgrind twice, with 10 and 110 steps after
the same set-up, and divides the difference by the extra steps (the set-up and torch's
import cancel). Same nets, batches and optimiser as the timing benchmark (`step_runners`).
The last line is the alternating/fused ratio of instructions per step.

    .venv/bin/python benchmarks/step_instructions.py [--loss NAME ...] [--jobs 2] [--against REV]

`--against REV` also counts the steps of `src/genshop/steps.py` as it is in the git revision
REV (see `fused_vs_alternating.steps_at`) and prints its ratios beside the working tree's.

For the 2-D MLP pair only, whose step is overhead-bound and whose timing is the noisiest: under
callgrind the DCGAN pair's convolutions run for hours. Needs valgrind (Debian's package); each
callgrind run takes 2–4 minutes, mostly the import of torch under the emulator.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

PAIR, FEW, MANY = "mlp-2d", 10, 110  # steps per callgrind run: the difference is counted
MODES = ("fused", "alternating")


def run_steps(pair: str, loss_name: str, mode: str, steps: int, revision: str = "") -> None:
    """Set up as the timing benchmark does, warm up 3 steps, then run `steps` steps of `mode`
    (of the steps module of git revision `revision`, if given)."""
    import torch

    from genshop import losses
    from genshop import steps as this_tree

    sys.path.insert(0, os.path.dirname(__file__))
    from fused_vs_alternating import PAIRS, step_runners, steps_at

    torch.set_num_threads(1)
    make, sample_shape, _ = PAIRS[pair]
    torch.manual_seed(0)
    G, D = make()
    module = steps_at(revision) if revision else this_tree
    run = step_runners(G, D, losses.get_loss(loss_name), torch.rand(64, *sample_shape),
                       modules={"": module})[mode]
    for _ in range(3 + steps):
        run()


def instructions(pair: str, loss_name: str, mode: str, steps: int, revision: str = "") -> int:
    """Instructions callgrind counts for a whole `run_steps` process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
               sys.executable, __file__, "--run", pair, loss_name, mode, str(steps), revision]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if not found:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_step(loss_name: str, mode: str, pool: ThreadPoolExecutor, revision: str = "") -> float:
    low, high = pool.map(lambda n: instructions(PAIR, loss_name, mode, n, revision), (FEW, MANY))
    return (high - low) / (MANY - FEW)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", action="append", default=None,
                        help="loss name (repeatable; default: hinge and rsgan)")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also count the steps of steps.py at this git revision")
    parser.add_argument("--run", nargs=5, metavar=("PAIR", "LOSS", "MODE", "STEPS", "REV"),
                        help=argparse.SUPPRESS)  # the process callgrind counts
    args = parser.parse_args(argv)
    if args.run:
        pair, loss_name, mode, steps, revision = args.run
        run_steps(pair, loss_name, mode, int(steps), revision)
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"{'pair':10s} {'loss':8s} {'steps.py':10s} {'mode':12s} {'instructions/step':>18s}")
    ratios = []
    revisions = ["", args.against] if args.against else [""]
    with ThreadPoolExecutor(args.jobs) as pool:
        for name in args.loss or ["hinge", "rsgan"]:
            for revision in revisions:
                counts = {mode: per_step(name, mode, pool, revision) for mode in MODES}
                for mode, count in counts.items():
                    print(f"{PAIR:10s} {name:8s} {revision or 'tree':10s} {mode:12s} "
                          f"{count / 1e6:16.3f} M", flush=True)
                tag = f" ({revision})" if revision else ""
                ratios.append(f"{PAIR}/{name}{tag} "
                              f"{counts['alternating'] / counts['fused']:.3f}x")
    print("ratio alternating/fused (instructions per step): " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
