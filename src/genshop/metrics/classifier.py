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

It is trained by the one engine as the `classifier` family (`genshop.families.classifier`, its
recipe there), which writes `digit_cnn.safetensors` and `recipe.json` into the run folder:

    genshop train classifier --out runs/classifier

The shipped pair (`ASSET_DIR`) is that run's two files, checked by the recipe's sha256.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from genshop.atomic import write_atomic, write_json_atomic
from genshop.data.fetch import sha256_of
from genshop.errors import DataError

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "classifier"
WEIGHTS_FILE = "digit_cnn.safetensors"
RECIPE_FILE = "recipe.json"
EXTRACTOR_NAME = "genshop-digit-cnn-v1"
NUM_FEATURES = 128


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
