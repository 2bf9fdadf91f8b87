"""The GLANN family: IMLE from noise into the code space of a trained GLO run.

Post: "a brief introduction to the non-adversarial generative model GLANN" (kexue.fm 6394), after
Hoshen, Li & Malik, "Non-Adversarial Image Synthesis with Generative Latent Nearest Neighbors"
(CVPR 2019). GLANN chains two stages. GLO (`genshop.families.glo`) learns a generator G and one
code c_i ∈ ℝᵏ per training example; its codes do not fill a Gaussian, so sampling G at Gaussian
draws gives blends. GLANN then learns a mapper T: ℝ^q → ℝᵏ (an MLP, q = `noise_dim`) by IMLE
(`genshop.families.imle`) with the codes as its data: for a pool of M = m·N noise draws
e_1 … e_M ~ N(0, I_q) every code pulls its nearest mapped sample,

    j*(i) = argmin_j ‖c_i − T(e_j)‖²,      L = (1/B) Σ_{i ∈ batch} ‖c_i − T(e_{j*(i)})‖²,      (1)

re-matched every `rematch_every` steps in the engine's pass over the whole training set
(`imle.match_pool`: exact nearest-neighbour search, the pool from the pass's own generator, the
matched noise checkpointed). The samples are

    x = G(T(e)),   e ~ N(0, I_q),                                                             (2)

images in [0, 1] (GLO's sigmoid generator) or points.

Parent run. A glann run starts from a trained glo run (`--init-from RUN_DIR`, required;
`parent_families()` is ("glo",)). Its training rows are the parent's code table (N × k), read from
the parent's checkpoint (`genshop.runs.load_state`, `models/codes/weight`; cheaper than rebuilding
the GLO family with `load_run`), so the parent must stay where it is for the child to train, resume
or load. The generator is built from the parent's config.json and, in `start_from`, copied from the
parent's delivered net (its EMA copy when it kept one: the generator GLO samples with). It is
frozen: no gradient, not in the optimiser, and always in eval mode (`GlannSampler.train`), so its
BatchNorm layers use the parent's running statistics and never update them; the engine's EMA of a
frozen parameter, lerp(θ, θ, w), is θ bit for bit, and its buffer copy copies unchanged buffers.
The delivered net is the one module `GlannSampler` (T and G), so the EMA, `genshop sample`,
`load_run(d).sample(n)` and `genshop eval` treat a glann run as any generative run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genshop.config import AT_LEAST_1, POSITIVE, RunConfig, from_dict, option, read_config_json
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import DataPass, Family, StepInput, adam, register
from genshop.families.glo import GloConfig
from genshop.families.glo import build_generator as glo_generator
from genshop.families.imle import match_pool
from genshop.nets import mlp_pair
from genshop.runs import load_state


@dataclass
class GlannConfig(RunConfig):
    """GLANN (module docstring): a mapper from noise into a GLO parent's codes, by IMLE."""

    data: str = option("mnist", "data set of the GLO parent run (must be the parent's)")
    noise_dim: int = option(16, "dimension q of the noise e ~ N(0, I_q)", valid=AT_LEAST_1)
    width: int = option(256, "hidden units of the mapper MLP", valid=AT_LEAST_1)
    depth: int = option(3, "hidden layers of the mapper MLP", valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate of the mapper", valid=POSITIVE)
    pool_factor: int = option(10, "m: the pool holds m mapped samples per code",
                              valid=AT_LEAST_1)
    rematch_every: int = option(50, "steps between matchings of every code",
                                valid=AT_LEAST_1)


# The parent is the GLO mnist recipe's run (`genshop train glo --data mnist --out runs/glo`);
# the measured run: docs/glann.md.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"steps": 3000, "batch_size": 128, "ema": 0.99, "rematch_every": 25,
              "log_every": 100, "sample_every": 1000},
}


class GlannSampler(nn.Module):
    """x = G(T(e)) (eq. 2): the trained mapper T and the parent's frozen generator G."""

    def __init__(self, mapper: nn.Module, generator: nn.Module):
        super().__init__()
        self.mapper, self.generator = mapper, generator.requires_grad_(False).eval()

    def forward(self, e: Tensor) -> Tensor:
        return self.generator(self.mapper(e))

    def train(self, mode: bool = True) -> GlannSampler:
        """The mapper follows `mode`; the frozen generator stays in eval mode."""
        super().train(mode)
        self.generator.eval()
        return self


def parent_dir(config: GlannConfig) -> Path:
    return Path(config.init_from)


def parent_config(config: GlannConfig) -> GloConfig:
    """The GLO parent's config (its config.json)."""
    saved = read_config_json(parent_dir(config))
    saved.pop("family", None)
    return from_dict(GloConfig, saved)


def parent_codes(config: GlannConfig) -> Tensor:
    """The GLO parent's code table (N, k), from its checkpoint."""
    return load_state(parent_dir(config))["models"]["codes"]["weight"].detach().float()


def squared_distances(codes: Tensor, mapped: Tensor) -> Tensor:
    """‖c_i − T(e_i)‖² per row, shape (B,)."""
    return (codes - mapped).pow(2).sum(1)


@register
class GlannFamily(Family):
    name = "glann"
    description = ("GLANN: IMLE from noise into a trained GLO run's codes (--init-from a glo "
                   "run); samples G(T(e))")
    config_class = GlannConfig
    recipes = RECIPES

    @classmethod
    def check(cls, config: GlannConfig, dataset) -> None:
        if not config.init_from:
            raise BadInputError("a glann run maps noise into a trained GLO run's codes: name "
                                "that run with --init-from RUN_DIR (train one with `genshop "
                                "train glo --data mnist --out runs/glo`)")
        saved = parent_dir(config) / "config.json"
        if not saved.is_file() or read_config_json(parent_dir(config)).get("family") != "glo":
            return  # the engine's parent check says what is wrong with it
        data = parent_config(config).data
        if data != config.data:
            raise BadInputError(f"--data {config.data} differs from the data of the GLO parent "
                                f"{config.init_from} ({data}); use --data {data}")

    @classmethod
    def parent_families(cls) -> tuple[str, ...]:
        return ("glo",)

    @classmethod
    def training_data(cls, config: GlannConfig, dataset) -> Examples:
        return Examples(parent_codes(config))

    def __init__(self, config: GlannConfig, dataset, device: torch.device):
        self.check(config, dataset)
        self.config = config
        parent = parent_config(config)
        mapper = mlp_pair(config.noise_dim, config.width, config.depth, parent.latent_dim)[0]
        self.net = GlannSampler(mapper, glo_generator(parent, dataset)).to(device)
        self.opt = adam(self.net.mapper.parameters(), lr=config.lr)
        # the noise matched to each code: set by the pass before the first step (step 0)
        self.matched = torch.zeros(0, config.noise_dim, device=device)
        self.pool_distance = float("nan")  # mean squared distance to the matched sample

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def start_from(self, parent: Any) -> None:
        """The parent GLO run's delivered generator, copied (then frozen)."""
        self.net.generator.load_state_dict(parent.net.generator.state_dict())

    def data_pass_every(self) -> int:
        return self.config.rematch_every

    def data_pass(self, work: DataPass) -> None:
        """Match every code to its nearest mapped sample of a fresh pool (eq. 1)."""
        self.matched, self.pool_distance = match_pool(work, self.net.mapper,
                                                      self.config.noise_dim,
                                                      self.config.pool_factor)

    def train_step(self, inp: StepInput) -> dict[str, float]:
        loss = squared_distances(inp.x, self.net.mapper(self.matched[inp.index])).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "pool_distance": self.pool_distance}

    def model(self) -> nn.Module:
        return self.net

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net(net.mapper.sample_latent(n, generator))

    def extra_state(self) -> dict[str, Any]:
        return {"matched": self.matched, "pool_distance": self.pool_distance}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.matched, self.pool_distance = state["matched"], float(state["pool_distance"])
