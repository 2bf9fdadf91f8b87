"""Every registered family keeps the family contract (`contract.check_family`): train, exact
resume, one-line errors, a loadable run, samples or held-out scores. A family registered without
a few-step config below fails here until it gets one."""

from pathlib import Path

import pytest
import torch
from contract import check_family

from genshop.data.images import MNIST
from genshop.families import family_names

COUPLETS = [("晚风摇树树还挺", "晨露润花花更红"), ("白日依山尽", "黄河入海流"),
            ("明月松间照", "清泉石上流"), ("红豆生南国", "春来发几枝"), ("天高云淡", "地阔水长")]


def couplet_folder(root: Path) -> Path:
    for part in ("train", "valid", "test"):
        folder = root / part
        folder.mkdir(parents=True)
        (folder / "in.txt").write_text("".join(" ".join(a) + "\n" for a, _ in COUPLETS))
        (folder / "out.txt").write_text("".join(" ".join(b) + "\n" for _, b in COUPLETS))
    return root


def fake_digits(monkeypatch, train: int = 40, test: int = 20) -> None:
    """MNIST's splits replaced by random labelled 1×28×28 images (no download)."""
    g = torch.Generator().manual_seed(0)
    parts = {"train": (torch.rand(train, 1, 28, 28, generator=g), torch.arange(train) % 10),
             "test": (torch.rand(test, 1, 28, 28, generator=g), torch.arange(test) % 10)}
    monkeypatch.setattr(MNIST, "split", lambda part: parts[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "0" * 64)


def few_steps(name: str, tmp_path: Path, monkeypatch) -> dict:
    """A seconds-long config of each registered family, on small data."""
    if name == "gan":
        return {"data": "ring8", "width": 8, "depth": 1, "batch_size": 32, "ema": 0.9,
                "r1": 0.1, "r1_every": 2, "log_every": 2}
    if name == "flow":
        return {"data": "ring8", "blocks": 2, "hidden": 8, "batch_size": 32, "log_every": 2}
    if name == "couplet":
        return {"data_dir": str(couplet_folder(tmp_path / "pairs")), "dim": 16, "blocks": 1,
                "batch_size": 4, "min_count": 1, "log_every": 2}
    if name == "classifier":
        fake_digits(monkeypatch)
        return {"batch_size": 16, "log_every": 2}  # 3 steps an epoch: the cut falls on one
    if name == "vae":
        fake_digits(monkeypatch)
        return {"width": 16, "latent_dim": 4, "batch_size": 8, "ema": 0.9, "log_every": 2}
    if name == "vib":
        fake_digits(monkeypatch)
        return {"width": 16, "depth": 1, "latent_dim": 4, "batch_size": 8, "log_every": 2}
    if name == "glo":  # 40 fake digits in batches of 16, 16, 8: the cut falls inside an epoch
        fake_digits(monkeypatch)
        return {"data": "mnist", "width": 4, "latent_dim": 8, "batch_size": 16,
                "perceptual": 0.1, "ema": 0.9, "log_every": 2}
    if name == "imle":  # a matching every 2 steps: the resume falls between two
        return {"data": "ring8", "width": 8, "depth": 1, "batch_size": 16, "data_size": 40,
                "pool_factor": 2, "rematch_every": 2, "ema": 0.9, "log_every": 2}
    if name == "glann":  # a tiny glo parent first; a matching every 2 steps, as imle's
        from genshop import configure, train
        parent = str(tmp_path / "glo-parent")
        train(configure("glo", **{**few_steps("glo", tmp_path, monkeypatch), "steps": 4,
                                  "sample_every": 0, "out": parent}), progress=False)
        return {"data": "mnist", "init_from": parent, "noise_dim": 4, "width": 8, "depth": 1,
                "batch_size": 16, "pool_factor": 2, "rematch_every": 2, "ema": 0.9,
                "log_every": 2}
    raise AssertionError(f"family {name} has no few-step config here: add one to few_steps")


@pytest.mark.parametrize("name", family_names())
def test_every_family_keeps_the_contract(name, tmp_path, monkeypatch, capsys):
    run = check_family(name, few_steps(name, tmp_path, monkeypatch), tmp_path, capsys)
    assert run.family.name == name and run.step == 6  # the run load_run rebuilds is this one
    assert run.has_sampler or run.test_scores()  # it delivers samples or held-out scores
