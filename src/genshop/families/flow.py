"""The flow family: maximum-likelihood training of `genshop.flows.Flow` by the one engine.

Post: "Appreciating the identity det(exp(A)) = exp(Tr(A))" (kexue.fm archive 6377); the flow's
ExpmLinear layers have log|det exp(A)| = tr A (using it in a flow is genshop's idea, not the
post's). Each step minimises the exact negative log-likelihood of a batch,

    L = −(1/B) Σᵢ [log N(f(xᵢ); 0, I) + Σ_layers log|det ∂f_l(xᵢ)|]   (nats per point),

a batch mean of per-point terms, so the engine's averaged data-parallel gradient is exact
(gradient-norm clipping, when on, acts on each process's gradient before that average).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, RunConfig, option
from genshop.errors import BadInputError
from genshop.families import Family, StepInput, adam, register
from genshop.flows import Flow

HELD_OUT = 2048  # fresh points (seed + 1) whose NLL is logged at every logged step


@dataclass
class FlowConfig(RunConfig):
    """A coupling flow of `blocks` × (ExpmLinear, affine coupling), trained by Adam."""

    steps: int = option(3000, "number of training steps (the total, also when resuming)",
                        valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate", valid=POSITIVE)
    blocks: int = option(8, "number of (ExpmLinear, affine coupling) blocks", valid=AT_LEAST_1)
    hidden: int = option(128, "hidden units of each coupling's MLP", valid=AT_LEAST_1)
    max_log_scale: float = option(2.0, "bound c of each coupling's log-scale c·tanh(·)",
                                 valid=POSITIVE)
    lr_schedule: str = option("cosine", "learning rate over the run: constant, or cosine decay "
                                        "to 0 at --steps (the flow's default: it gains ~0.6 "
                                        "nats on ring8)", ("constant", "cosine"))
    clip: float = option(1.0, "largest gradient norm per step (0 = no clipping); sharp toy "
                              "densities otherwise throw rare loss spikes that undo training",
                         valid=AT_LEAST_0)


def build_flow(config: FlowConfig, dim: int) -> Flow:
    return Flow(dim, config.blocks, config.hidden, config.max_log_scale)


@register
class FlowFamily(Family):
    name = "flow"
    description = "normalising flow (ExpmLinear + affine couplings) with exact likelihood"
    config_class = FlowConfig

    @classmethod
    def check(cls, config: FlowConfig, dataset) -> None:
        if dataset.kind != "points":
            raise BadInputError(f"the flow family models point data (e.g. ring8, grid25), "
                                f"not {dataset.kind} ({dataset.name})")

    def __init__(self, config: FlowConfig, dataset, device: torch.device):
        self.check(config, dataset)
        train_set = dataset.training_set(seed=config.seed)  # the engine's training points
        self.flow = build_flow(config, dataset.shape[0]).standardize_with_(train_set).to(device)
        self.opt = adam(self.flow.parameters(), lr=config.lr)
        self.clip = config.clip
        self.held_out = dataset.sample(HELD_OUT, torch.Generator().manual_seed(config.seed + 1))
        self.held_out = self.held_out.to(device)

    def modules(self) -> dict[str, nn.Module]:
        return {"flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        loss = self.flow.nll(inp.x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            nn.utils.clip_grad_norm_(self.flow.parameters(), self.clip)
        self.opt.step()
        return {"nll": loss.item()}

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """NLL of fixed fresh points: a training batch's NLL is heavy-tailed (on ring8, std 0.01,
        a few points the flow has not reached yet cost tens of nats), so it jumps from step to
        step; this one measures the density itself."""
        return {"held_out_nll": net.nll(self.held_out).item()}

    def model(self) -> nn.Module:
        return self.flow

    def sample(self, net: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
        return net.sample(n, generator)

