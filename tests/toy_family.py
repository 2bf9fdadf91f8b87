"""A family written only against the contract of `genshop.families`, to show that a new family
needs no edit elsewhere: softmax regression of a 2-D mixture point's component (its label).

    p(y = k | x) = softmax(W x + b)_k,   L = −(1/B) Σᵢ log p(yᵢ | xᵢ)

On ring8 the classes are separable by angle, so held-out accuracy reaches 1. Every `pass_every`
steps it passes over its whole training set (`Family.data_pass`): on a random tenth of the rows
(the mask drawn from the pass's generator for every row, so each process keeps its own rows' part)
it measures the margin log p(y|x) − max_{k≠y} log p(k|x), gathers the per-row margins and keeps
how many rows are still misclassified, which the next steps log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, RunConfig, option
from genshop.data import Examples
from genshop.errors import BadInputError
from genshop.families import DataPass, Family, StepInput, adam

NAME = "toy-logistic"
ROWS = 2000  # training points
TEST_POINTS = 500


@dataclass
class ToyConfig(RunConfig):
    steps: int = option(40, "steps", valid=AT_LEAST_1)
    batch_size: int = option(32, "points per step", valid=AT_LEAST_1)
    lr: float = option(0.1, "Adam rate", valid=POSITIVE)
    pass_every: int = option(10, "steps between passes over the training set (0: none)",
                             valid=AT_LEAST_0)


class ToyFamily(Family):
    name = NAME
    description = "softmax regression of a 2-D mixture component (a test family)"
    config_class = ToyConfig

    @classmethod
    def check(cls, config: ToyConfig, dataset) -> None:
        if not hasattr(dataset, "num_modes"):
            raise BadInputError(f"{NAME} needs a labelled 2-D mixture, not {dataset.name}")

    @classmethod
    def training_data(cls, config: ToyConfig, dataset) -> Examples:
        return dataset.training_data(seed=config.seed, size=ROWS)

    def __init__(self, config: ToyConfig, dataset, device: torch.device):
        self.config, self.dataset = config, dataset
        self.net = nn.Linear(2, dataset.num_modes).to(device)
        self.opt = adam(self.net.parameters(), lr=config.lr)
        self.misclassified = torch.tensor(-1)  # before the first pass
        self.margins = torch.zeros(0)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        loss = F.cross_entropy(self.net(inp.x), inp.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "misclassified": float(self.misclassified)}

    def model(self) -> nn.Module:
        return self.net

    def data_pass_every(self) -> int:
        return self.config.pass_every

    @torch.no_grad()
    def data_pass(self, work: DataPass) -> None:
        chosen = torch.rand(len(work.data), generator=work.generator) < 0.1
        rows = work.rows()
        logp = F.log_softmax(self.net(rows.x), dim=1)
        true = logp.gather(1, rows.y[:, None])[:, 0]
        other = logp.scatter(1, rows.y[:, None], float("-inf")).amax(1)
        margin = torch.where(chosen[rows.index], true - other, torch.nan)
        self.margins = work.gather(margin)
        self.misclassified = (self.margins < 0).sum()

    def test_scores(self, net: nn.Module) -> dict[str, float]:
        x, y = self.dataset.draw(TEST_POINTS, torch.Generator().manual_seed(self.config.seed + 1))
        return {"accuracy": float((net(x).argmax(1) == y).double().mean())}

    def extra_state(self) -> dict:
        return {"misclassified": self.misclassified, "margins": self.margins}

    def load_extra_state(self, state: dict) -> None:
        self.misclassified, self.margins = state["misclassified"], state["margins"]
