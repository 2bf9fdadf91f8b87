"""The vib family: the deep variational information bottleneck (Alemi, Fischer, Dillon & Murphy,
arXiv 1612.00410) as a supervised use of the VAE's Gaussian bottleneck, on the MNIST digits.

Post: "From variational autoencoders and the information bottleneck to the normal distribution: on
the importance of forgetting" (kexue.fm archive 6181). The VIB loss bounds the information the
representation keeps about the input, I(X; Z) ≤ E_x KL(p(z|x) ‖ N(0, I)):

    E_x [ E_{z~p(z|x)} [−log p(y|z)] + β·KL(p(z|x) ‖ N(0, I)) ].

genshop's model is Alemi et al.'s permutation-invariant MLP: the flattened digit (pixels in
[0, 1], not binarised) → `GaussianEncoder` (`genshop.bottleneck`: ReLU layers of `width`, then
μ, log σ² of `latent_dim` dimensions) → a linear softmax over the 10 classes. Each step
minimises, on a batch of B labelled digits with one ε per digit,

    L = (1/B) Σ_b −log softmax(W z_b + c)_{y_b} + β·(1/B) Σ_b ½ Σ_d (μ² + σ² − 1 − log σ²),

both terms averaged over the batch (nats per digit; the engine's averaged data-parallel gradient
is exact), the rate summed over latent dimensions. A prediction uses the posterior mean z = μ
(the bottleneck's eval mode, as the post's VIB layer; Alemi et al. average the softmax of 12
samples instead). No sampler: `test_scores` (what `genshop eval` reports) gives the accuracy with
z = μ and the rate on the 2,000 test digits; `evaluate` logs the same at every logged step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genshop.bottleneck import GaussianEncoder
from genshop.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, RunConfig, option
from genshop.data import Examples
from genshop.families import Family, StepInput, adam, inference, register, require_digits

NUM_CLASSES = 10


@dataclass
class VibConfig(RunConfig):
    """An MLP encoder, a Gaussian bottleneck and a linear softmax, loss CE + β·rate."""

    data: str = option("mnist", "the labelled digits it classifies: mnist (8,000 train-split "
                                "digits)", ("mnist",))
    beta: float = option(1e-3, "weight β of the rate (KL to N(0, I), nats)", valid=AT_LEAST_0)
    latent_dim: int = option(256, "bottleneck dimensions (Alemi et al.: 256)", valid=AT_LEAST_1)
    width: int = option(1024, "units of each hidden layer of the encoder (Alemi et al.: 1024)",
                        valid=AT_LEAST_1)
    depth: int = option(2, "hidden layers of the encoder (Alemi et al.: 2)", valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate", valid=POSITIVE)
    sample_every: int = option(0, "unused: a classifier draws no samples", valid=AT_LEAST_0)


RECIPES = {"mnist": {"batch_size": 100, "steps": 2000, "log_every": 80,
                     "checkpoint_every": 1000}}


class Vib(nn.Module):
    """x → (class logits, rate): encoder, bottleneck and softmax head in one module."""

    def __init__(self, in_features: int, latent_dim: int, width: int, depth: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = GaussianEncoder(in_features, width, depth, latent_dim)
        self.head = nn.Linear(latent_dim, NUM_CLASSES)

    def forward(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Training mode: logits of z = μ + σ·ε; eval mode: of z = μ."""
        z, rate = self.encoder(x, eps)
        return self.head(z), rate


def scores(net: Vib, images: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy of the mean-z prediction and the rate (nats per digit) of labelled digits."""
    with inference(net):
        logits, rate = net(images)
    return {"accuracy": (logits.argmax(1) == labels).double().mean().item(),
            "rate": rate.item()}


@register
class VibFamily(Family):
    name = "vib"
    description = ("variational information bottleneck (Alemi et al.): MLP encoder, Gaussian "
                   "bottleneck, softmax; cross-entropy + β·rate on the MNIST digits")
    config_class = VibConfig
    recipes = RECIPES

    @classmethod
    def check(cls, config: VibConfig, dataset) -> None:
        require_digits(dataset, cls.name)

    @classmethod
    def training_data(cls, config: VibConfig, dataset) -> Examples:
        """The train split with its digit classes as labels (the permutation is the engine's)."""
        return Examples(*dataset.split("train"))

    def __init__(self, config: VibConfig, dataset, device: torch.device):
        self.check(config, dataset)
        self.net = Vib(28 * 28, config.latent_dim, config.width, config.depth).to(device)
        self.opt = adam(self.net.parameters(), lr=config.lr)
        self.beta, self.dataset = config.beta, dataset

    def modules(self) -> dict[str, nn.Module]:
        return {"vib": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        logits, rate = self.net(inp.x, inp.normal(self.net.latent_dim))
        ce = F.cross_entropy(logits, inp.y)
        loss = ce + self.beta * rate
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "cross_entropy": ce.item(), "rate": rate.item()}

    def model(self) -> nn.Module:
        return self.net

    def test_scores(self, net: nn.Module) -> dict[str, float]:
        """Accuracy (z = μ) and rate on the 2,000 test digits."""
        images, labels = self.dataset.split("test")
        device = next(net.parameters()).device
        return scores(net, images.to(device), labels.to(device))

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """`test_scores` at every logged step, as held_out_accuracy and held_out_rate."""
        return {f"held_out_{k}": v for k, v in self.test_scores(net).items()}
