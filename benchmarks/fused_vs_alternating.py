"""Time per iteration: the single-loss GAN step (`steps.fused_step`) against the alternating step.

Post: "巧断梯度：单个loss实现GAN模型" (a GAN with a single loss via stop-gradient), kexue.fm
archives/6387, which claims the single-loss step saves time (one G forward and one backward
fewer) at the cost of memory (all graphs alive at once), without giving numbers.

For the 2-D MLP pair and the 28×28 DCGAN pair of `genshop.nets` at batch 64 on CPU, and for each
loss asked for: first checks in float64 that one backward of `steps.fused_loss` gives the two-loss
gradients (exit 1 otherwise), then measures the peak bytes autograd keeps for backward during one
step of each mode, then times the modes interleaved in this process (same nets, the same Adam for
both, fixed batches) and prints medians. The last lines are alternating/fused ratios.

    .venv/bin/python benchmarks/fused_vs_alternating.py [--rounds 25] [--threads 1]
        [--batch 64] [--pair mlp-2d|dcgan-28 ...] [--loss NAME ...] [--warmup STEPS]
        [--critic-calls auto|separate|shared ...] [--against REV]

`--critic-calls` (repeatable) times one single-loss step per arrangement of the critic calls
("separate": the plain step; "shared": one critic forward on G(z), `genshop.shared_critic`).
`--against REV` also times the steps as they are in the git revision REV (`genshop.steps` with
the `genshop.shared_critic` it imports), imported beside the working tree's, in the same
interleaved rounds: its ratios are printed next to the working tree's, and the ratio of the two
trees' times for each mode. A large `--batch` (e.g. 2048
for mlp-2d) shows the compute-bound ratio, where fixed per-step overheads no longer count.
`--warmup STEPS` first trains the pair that many single-loss steps on the fixed batch, so the
timing starts from a critic that separates the batches (a hinge critic then puts fake logits
beyond its margin, the rows the shared critic forward recomputes).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from operator import truediv
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

import genshop
from genshop import losses, nets, steps
from genshop.families import adam
from genshop.timing import StepRunner, time_interleaved

PAIRS = {  # name: (make (G, D), shape of one real sample, steps per timed round at batch 64)
    "mlp-2d": (nets.mlp_pair, (2,), 20),
    "dcgan-28": (nets.dcgan_pair, (1, 28, 28), 2),
}
ADAM = {"betas": (0.5, 0.999), "fused": True}  # Adam's one-kernel CPU update, for every mode


def fused_runner(module: ModuleType, G: nn.Module, D: nn.Module, loss: losses.GanLoss,
                 real: Tensor, z: Tensor, critic_calls: str = "auto",
                 lr: float = 2e-4) -> StepRunner:
    """`module.fused_step` on copies of (G, D) with one Adam over both."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt = module.fused_optimizer(G, D, torch.optim.Adam, lr_d=lr, lr_g=lr, **ADAM)
    return StepRunner(lambda: module.fused_step(G, D, loss, opt, real, z,
                                                critic_calls=critic_calls), (G, D))


def alternating_runner(module: ModuleType, G: nn.Module, D: nn.Module, loss: losses.GanLoss,
                       real: Tensor, z_d: Tensor, z_g: Tensor, lr: float = 2e-4) -> StepRunner:
    """`module.alternating_step` on copies of (G, D) with an Adam each."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt_d, opt_g = (torch.optim.Adam(net.parameters(), lr=lr, **ADAM) for net in (D, G))
    return StepRunner(lambda: module.alternating_step(G, D, loss, opt_d, opt_g, real, z_d, z_g),
                      (G, D))


def step_runners(G: nn.Module, D: nn.Module, loss: losses.GanLoss, real: Tensor, *,
                 modules: dict[str, ModuleType] | None = None,
                 critic_calls: tuple[str, ...] = ("auto",),
                 seed: int = 0) -> dict[str, StepRunner]:
    """For each steps module (label → module; default: this tree's `genshop.steps`): a
    single-loss step per arrangement in `critic_calls` and an alternating step, each on its own
    copy of (G, D). Fixed latent batches: z for the single-loss step and the D step, a second z
    for the G step, so the modes differ only in the step."""
    gen = torch.Generator().manual_seed(seed)
    z_d, z_g = (torch.randn(real.shape[0], G.latent_dim, generator=gen) for _ in range(2))
    runners = {}
    for label, module in (modules or {"": steps}).items():
        prefix = f"{label} " if label else ""
        for calls in critic_calls:
            name = prefix + ("fused" if calls == "auto" else f"fused/{calls}")
            runners[name] = fused_runner(module, G, D, loss, real, z_d, calls)
        runners[prefix + "alternating"] = alternating_runner(module, G, D, loss, real, z_d, z_g)
    return runners


STEP_MODULES = ("shared_critic", "steps")  # a step's modules, each importing those before it


def steps_at(revision: str) -> ModuleType:
    """`genshop.steps` of a git revision, with the `genshop.shared_critic` of that revision,
    each imported as a module of its own; the rest of genshop is the working tree's."""
    tag = revision.replace("/", "_").replace("~", "_").replace("^", "_")
    loaded: dict[str, ModuleType] = {}
    for name in STEP_MODULES:
        with modules_replaced(loaded):
            loaded[name] = module_at(revision, f"src/genshop/{name}.py", f"genshop_{name}_{tag}")
    return loaded["steps"]


def module_at(revision: str, path: str, name: str) -> ModuleType:
    """The file `path` of a git revision, imported as the module `name`."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix=name, delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    Path(f.name).unlink()
    return module


@contextlib.contextmanager
def modules_replaced(modules: dict[str, ModuleType]):
    """`genshop.<name>` is `modules[name]` inside (for the imports of a module being loaded)."""
    saved = {name: getattr(genshop, name) for name in modules}
    for name, module in modules.items():
        setattr(genshop, name, module)
        sys.modules[f"genshop.{name}"] = module
    try:
        yield
    finally:
        for name, module in saved.items():
            setattr(genshop, name, module)
            sys.modules[f"genshop.{name}"] = module


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


def peak_saved_mib(run: StepRunner) -> float:
    meter = SavedTensorMeter(run.nets)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        run()
    return meter.peak / 2**20


def gradient_gap(module: ModuleType, G: nn.Module, D: nn.Module, loss: losses.GanLoss,
                 real: Tensor, critic_calls: str) -> float:
    G64, D64 = copy.deepcopy(G).double(), copy.deepcopy(D).double()
    z = torch.randn(real.shape[0], G.latent_dim, dtype=torch.float64)

    def single_loss(*a):
        return module.fused_loss(*a, critic_calls=critic_calls)

    gap = steps.gradient_gap(G64, D64, loss, real.double(), z, construction=single_loss)
    return max(gap["d_grad"], gap["g_grad"], gap["value"])


def warm_up(G: nn.Module, D: nn.Module, loss: losses.GanLoss, real: Tensor, count: int) -> str:
    """`count` single-loss steps (Adam 2e-4) on `real` with fresh noise; the share of fake
    logits that end < −1."""
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
    parser.add_argument("--critic-calls", action="append", choices=steps.CRITIC_CALLS,
                        default=None, help="arrangement of the single-loss step's critic calls "
                        "(repeatable; default: auto, see genshop.steps.fused_terms)")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also time steps.py of this git revision, interleaved")
    parser.add_argument("--warmup", type=int, default=0,
                        help="single-loss training steps before timing (default 0: fresh nets)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.loss or ["hinge", "rsgan"]
    calls = tuple(args.critic_calls or ["auto"])
    modules = {"": steps}
    if args.against:
        modules[args.against] = steps_at(args.against)

    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"{args.rounds} interleaved rounds, one-kernel Adam for every mode")
    header = (f"{'pair':10s} {'loss':8s} {'mode':24s} {'median ms':>10s} {'IQR ms':>13s} "
              f"{'peak saved MiB':>15s} {'grad gap':>9s}")
    print(header)
    print("-" * len(header))
    ratios, paired, versus = [], [], []
    for pair in args.pair or list(PAIRS):
        make, sample_shape, per_round = PAIRS[pair]
        shape, per_round = (args.batch, *sample_shape), max(1, per_round * 64 // args.batch)
        for name in names:
            loss = losses.get_loss(name)
            torch.manual_seed(0)
            G, D = make()
            real = torch.rand(shape)
            if args.warmup:
                print(f"{pair} {name}: {warm_up(G, D, loss, real, args.warmup)}")
            gaps = {(label, c): gradient_gap(module, G, D, loss, real, c)
                    for label, module in modules.items() for c in calls}
            if max(gaps.values()) > 1e-10:
                print(f"{pair} {name}: single-loss gradients differ from the two-loss gradients "
                      f"by {max(gaps.values()):.3g}; not timing", file=sys.stderr)
                return 1
            runners = step_runners(G, D, loss, real, modules=modules, critic_calls=calls)
            memory = {mode: peak_saved_mib(run) for mode, run in runners.items()}
            times = time_interleaved(runners, args.rounds, per_round)
            gap = max(gaps.values())
            for mode, t in times.items():
                q1, _, q3 = statistics.quantiles(t, n=4)
                print(f"{pair:10s} {name:8s} {mode:24s} {1e3 * statistics.median(t):10.3f} "
                      f"{1e3 * q1:6.2f}–{1e3 * q3:6.2f} {memory[mode]:15.2f} {gap:9.1e}")
            for label in modules:
                prefix = f"{label} " if label else ""
                alternating = times[prefix + "alternating"]
                for c in calls:
                    fused = times[prefix + ("fused" if c == "auto" else f"fused/{c}")]
                    tag = f"{pair}/{name}" + ("" if c == "auto" else f"/{c}") + \
                        (f" ({label})" if label else "")
                    ratio = statistics.median(alternating) / statistics.median(fused)
                    ratios.append(f"{tag} {ratio:.3f}x")
                    per = statistics.median(map(truediv, alternating, fused))
                    paired.append(f"{tag} {per:.3f}x")
            if args.against:
                for mode in [*("fused" if c == "auto" else f"fused/{c}" for c in calls),
                             "alternating"]:
                    per = statistics.median(map(truediv, times[mode],
                                                times[f"{args.against} {mode}"]))
                    versus.append(f"{pair}/{name}/{mode} {per:.3f}")
    if versus:
        print(f"step time, this tree / {args.against} (median of per-round ratios): "
              + ", ".join(versus))
    print("median of per-round ratios (less sensitive to load drift): " + ", ".join(paired))
    print("ratio alternating/fused (medians): " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
