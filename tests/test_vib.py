"""The vib family (kexue.fm 6181; Alemi et al. 2017): one-line errors for bad options, the loss
cross-entropy + β·rate against a hand computation, test scores from the mean-z prediction, and a
VIB that learns a toy labelled task while a large β squeezes its rate."""

import pytest
import torch
from test_classifier import toy_digits
from test_contract import fake_digits

import genshop
from genshop import configure
from genshop.data.images import MNIST
from genshop.errors import BadInputError
from genshop.families import StepInput
from genshop.families import vib as V


def family(tmp_path, **options):
    config = configure("vib", **{"width": 8, "depth": 1, "latent_dim": 3,
                                 "out": str(tmp_path / "r"), **options})
    return V.VibFamily(config, MNIST, torch.device("cpu"))


@pytest.mark.parametrize(("option", "value"), [("beta", -1e-3), ("latent_dim", 0),
                                               ("width", 0), ("depth", 0)])
def test_bad_options_fail_in_one_line(option, value, tmp_path):
    with pytest.raises(BadInputError) as err:
        configure("vib", **{option: value, "out": str(tmp_path)})
    assert "\n" not in str(err.value) and option in str(err.value)


def test_loss_is_cross_entropy_plus_beta_rate_by_hand(tmp_path, monkeypatch):
    fake_digits(monkeypatch)
    fam = family(tmp_path, beta=0.5)
    x, y = MNIST.split("train")[0][:6], torch.tensor([0, 3, 9, 3, 1, 7])
    eps = torch.randn(6, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mu, logvar = fam.net.encoder.moments(x)
        logits = fam.net.head(mu + torch.exp(logvar / 2) * eps)
        ce = -(logits.log_softmax(1)[torch.arange(6), y]).mean()
        rate = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).sum(1).mean()
    logged = fam.train_step(StepInput(x, torch.Generator().manual_seed(4), y))
    assert ce > 1.5 and rate > 0  # ≈ log 10 at initialisation
    for key, want in (("cross_entropy", ce), ("rate", rate), ("loss", ce + 0.5 * rate)):
        assert logged[key] == pytest.approx(want.item(), rel=1e-5), key


def test_test_scores_predict_from_the_mean_z(tmp_path, monkeypatch):
    fake_digits(monkeypatch, test=30)
    fam = family(tmp_path)
    images, labels = MNIST.split("test")
    with torch.no_grad():
        mu, logvar = fam.net.encoder.moments(images)
        want = (fam.net.head(mu).argmax(1) == labels).double().mean().item()
        rate = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).sum(1).mean().item()
    scores = fam.test_scores(fam.net)
    assert scores["accuracy"] == pytest.approx(want, abs=1e-12)
    assert scores["rate"] == pytest.approx(rate, rel=1e-5)
    assert fam.net.training and scores == fam.test_scores(fam.net)  # no noise, mode restored
    assert fam.evaluate(fam.net) == {f"held_out_{k}": v for k, v in scores.items()}


def train_toy(tmp_path, monkeypatch, beta, out):
    """VIB on horizontal-or-vertical bars standing in for MNIST's splits; its test scores."""
    parts = {"train": toy_digits(512), "test": toy_digits(200, seed=1)}
    monkeypatch.setattr(MNIST, "split", lambda part: parts[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "d" * 64)
    config = configure("vib", width=32, depth=1, latent_dim=4, beta=beta, batch_size=32,
                       steps=400, log_every=400, out=str(tmp_path / out))
    return genshop.train(config, progress=False).test_scores()


def test_vib_learns_a_toy_task_and_beta_squeezes_the_rate(tmp_path, monkeypatch):
    loose = train_toy(tmp_path, monkeypatch, 1e-3, "loose")
    tight = train_toy(tmp_path, monkeypatch, 1.0, "tight")
    assert 0.98 <= loose["accuracy"] <= 1 and 0.9 <= tight["accuracy"] <= 1
    # one binary label needs at most log 2 nats; β = 1 keeps about that, β = 10⁻³ far more
    assert 5 < loose["rate"] < 100 and 0 < tight["rate"] < 1, (loose, tight)
