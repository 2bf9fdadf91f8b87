"""The vae family (kexue.fm 6181; Kingma & Welling 2014; β-VAE): one-line errors for bad options,
the loss distortion + β·rate against a hand computation, the static binarisation, the
importance-weighted −log p(x) against closed forms (a decoder that ignores z; a 1-D latent by
quadrature), a VAE that learns a toy binary data set to near its entropy, and an EMA copy that
averages encoder and decoder."""

import json
import math

import pytest
import torch
from test_contract import fake_digits

import genshop
from genshop import checkpoint, configure
from genshop.data.images import MNIST
from genshop.errors import BadInputError
from genshop.families import StepInput
from genshop.families import vae as V
from genshop.runs import CHECKPOINT


def family(tmp_path, **options):
    config = configure("vae", **{"width": 6, "latent_dim": 2, "out": str(tmp_path / "r"),
                                 **options})
    return V.VaeFamily(config, MNIST, torch.device("cpu"))


@pytest.mark.parametrize(("option", "value"), [("beta", -0.5), ("latent_dim", 0),
                                               ("width", 0), ("depth", 0)])
def test_bad_options_fail_in_one_line(option, value, tmp_path):
    with pytest.raises(BadInputError) as err:
        configure("vae", **{option: value, "out": str(tmp_path)})
    assert "\n" not in str(err.value) and option in str(err.value)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_importance_sample_counts_fail_in_one_line(k):
    net = V.Vae((1, 28, 28), 2, 4, 1)
    with pytest.raises(BadInputError, match="k must be an integer >= 1") as err:
        V.importance_nll(net, torch.zeros(3, 1, 28, 28), k)
    assert "\n" not in str(err.value)


def test_binarisation_is_the_fixed_threshold_half(tmp_path, monkeypatch):
    x = torch.tensor([0.0, 0.3, 0.5, 0.5001, 0.9, 1.0])
    assert V.binarise(x).tolist() == [0, 0, 0, 1, 1, 1]
    fake_digits(monkeypatch)
    data = V.VaeFamily.training_data(configure("vae", out=str(tmp_path)), MNIST)
    images, labels = MNIST.split("train")
    assert torch.equal(data.x, (images > 0.5).float()) and torch.equal(data.y, labels)
    assert 0.3 < data.x.mean() < 0.7  # uniform fakes: about half the pixels on


def hand_terms(net, x, eps):
    """distortion, rate by their formulas, from the encoder's (μ, log σ²) and decoder logits."""
    mu, logvar = net.encoder.moments(x)
    p = torch.sigmoid(net.logits(mu + torch.exp(logvar / 2) * eps))
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    return bce.sum((1, 2, 3)).mean(), kl.sum(1).mean()


def test_loss_is_distortion_plus_beta_rate_by_hand(tmp_path, monkeypatch):
    fake_digits(monkeypatch)
    fam = family(tmp_path, beta=3.0)
    x = V.binarise(torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    g = torch.Generator().manual_seed(7)
    eps = torch.randn(5, 2, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        d, r = hand_terms(fam.net, x, eps)
    logged = fam.train_step(StepInput(x, g))  # the loss before its update, ε from inp.normal
    assert d > 400 and r > 0  # ≈ 784 log 2 at initialisation: the terms are not both trivial
    for key, want in (("distortion", d), ("rate", r), ("loss", d + 3.0 * r)):
        assert logged[key] == pytest.approx(want.item(), rel=1e-5), key


def test_evaluate_is_the_held_out_elbo_with_beta_one(tmp_path, monkeypatch):
    fake_digits(monkeypatch, test=40)
    fam = family(tmp_path, beta=5.0)
    held_out = V.binarise(MNIST.split("test")[0][::4])
    eps = torch.randn(10, 2, generator=torch.Generator().manual_seed(V.HELD_OUT_SEED))
    with torch.no_grad():
        d, r = hand_terms(fam.net, held_out, eps)
        scores = fam.evaluate(fam.net)
    assert scores["held_out_distortion"] == pytest.approx(d.item(), rel=1e-5)
    assert scores["held_out_rate"] == pytest.approx(r.item(), rel=1e-5)
    assert scores["held_out_nelbo"] == pytest.approx((d + r).item(), rel=1e-5)
    assert scores == fam.evaluate(fam.net)  # its own generator: the same every time


def constant_decoder_net(bias: torch.Tensor) -> V.Vae:
    """A VAE whose decoder ignores z (logits = bias) and whose encoder returns the prior: every
    importance weight is q(x|·) exactly."""
    net = V.Vae((1, 28, 28), 3, 4, 1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.decoder[-1].bias.copy_(bias)
    return net


def test_importance_nll_is_exact_when_the_posterior_is_the_prior(monkeypatch):
    bias = torch.linspace(-3, 2, 784, dtype=torch.float64)
    net = constant_decoder_net(bias)
    x = V.binarise(torch.rand(9, 1, 28, 28, generator=torch.Generator().manual_seed(3),
                              dtype=torch.float64))
    p = torch.sigmoid(bias)
    nll = -(x.flatten(1) * p.log() + (1 - x.flatten(1)) * (1 - p).log()).sum(1)
    monkeypatch.setattr(V, "CHUNK_ROWS", 3)  # digits and samples both split into chunks
    for k in (1, 7):
        est = V.importance_nll(net, x, k, torch.Generator().manual_seed(k))
        assert est.mean == pytest.approx(nll.mean().item(), rel=1e-12)
        assert est.stderr == pytest.approx(nll.std().item() / 3, rel=1e-9)


def one_latent_net() -> V.Vae:
    """latent_dim 1, a small random decoder, an encoder that always proposes N(0.2, 1.5)."""
    torch.manual_seed(0)
    net = V.Vae((1, 28, 28), 1, 8, 1).double()
    with torch.no_grad():
        net.decoder[-1].weight.mul_(0.1)
        head = net.encoder.bottleneck.head
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.2, math.log(1.5)]))
    return net


def exact_nll_and_nelbo(net, x):
    """−log p(x) = −log ∫ q(x|z) N(z) dz and −ELBO = E_p(z|x)[−log q(x|z)] + KL by quadrature
    on z ∈ [−12, 12], step 10⁻³."""
    z = torch.linspace(-12, 12, 24001, dtype=torch.float64).unsqueeze(1)
    dz = z[1, 0] - z[0, 0]
    loglik = -V.distortion(net, x.expand(len(z), -1, -1, -1), z)
    nll = -(torch.logsumexp(loglik + V.log_normal(z), 0) + dz.log())
    q = (V.log_normal(z, 0.2, math.log(1.5)).exp() * dz)
    kl = 0.5 * (0.2**2 + 1.5 - 1 - math.log(1.5))
    return nll.item(), (-(q * loglik).sum() + kl).item()


@torch.no_grad()
def test_importance_nll_against_quadrature_with_a_one_dimensional_latent():
    net = one_latent_net()
    x = V.binarise(torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(4),
                              dtype=torch.float64))
    nll, nelbo = exact_nll_and_nelbo(net, x)
    assert 0.05 < nelbo - nll < 5  # the ELBO is a strict bound here
    g = torch.Generator().manual_seed(0)
    one = V.importance_nll(net, x.expand(20_000, -1, -1, -1), 1, g)  # 20,000 single draws
    assert abs(one.mean - nelbo) < 4 * one.stderr and one.stderr < 0.02
    many = V.importance_nll(net, x.expand(200, -1, -1, -1), 1000, g)
    assert abs(many.mean - nll) < 4 * many.stderr + 1e-3 and many.stderr < 0.005


def test_importance_nll_with_k_one_is_minus_the_elbo_sample_of_the_same_eps():
    net = V.Vae((1, 28, 28), 3, 8, 1).double()
    x = V.binarise(torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(5),
                              dtype=torch.float64))
    eps = torch.randn(6, 1, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        mu, logvar = net.encoder.moments(x)
        z = mu + (logvar / 2).exp() * eps[:, 0]
        want = (V.distortion(net, x, z) + V.log_normal(z, mu, logvar) - V.log_normal(z)).mean()
    est = V.importance_nll(net, x, 1, torch.Generator().manual_seed(9))
    assert est.mean == pytest.approx(want.item(), rel=1e-12)


def toy_binary(n, seed, flip=0.05):
    """Four fixed random 784-pixel binary prototypes, each pixel flipped with probability
    `flip`; returns images and their exact −log p(x) under that mixture (nats)."""
    protos = (torch.rand(4, 784, generator=torch.Generator().manual_seed(99)) > 0.5).float()
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(4, (n,), generator=g)
    x = (protos[labels] + (torch.rand(n, 784, generator=g) < flip).float()) % 2
    mismatches = (x.unsqueeze(1) != protos).sum(-1).double()
    log_p = torch.logsumexp(mismatches * math.log(flip) + (784 - mismatches) * math.log(1 - flip)
                            - math.log(4), 1)
    return x.view(n, 1, 28, 28), labels, -log_p


def test_a_vae_learns_a_toy_binary_data_set(tmp_path, monkeypatch):
    train_x, train_y, _ = toy_binary(512, seed=1)
    test_x, test_y, test_nll = toy_binary(200, seed=2)
    parts = {"train": (train_x, train_y), "test": (test_x, test_y)}
    monkeypatch.setattr(MNIST, "split", lambda part: parts[part])
    monkeypatch.setattr(MNIST, "split_sha256", lambda: "e" * 64)
    config = configure("vae", width=32, latent_dim=2, batch_size=32, lr=3e-3, steps=300,
                       log_every=100, sample_every=0, out=str(tmp_path / "toy"))
    torch.manual_seed(config.seed)  # the untrained net of the run
    untrained = V.VaeFamily(config, MNIST, torch.device("cpu"))
    with torch.no_grad():
        first = untrained.evaluate(untrained.net)["held_out_nelbo"]
    run = genshop.train(config, progress=False)
    lines = (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()
    curve = [json.loads(s)["held_out_nelbo"] for s in lines]
    entropy = test_nll[::V.HELD_OUT_STRIDE].mean().item()  # ≈ 784·h(0.05) + log 4 ≈ 157 nats
    assert 784 * math.log(2) - 20 < first < 784 * math.log(2) + 20  # ≈ 543 at initialisation
    assert entropy - 2 < curve[-1] < entropy + 15, (first, curve, entropy)
    assert curve == sorted(curve, reverse=True)  # it falls at every logged step
    x = run.sample(16, seed=0)
    assert x.shape == (16, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_ema_averages_encoder_and_decoder(tmp_path, monkeypatch):
    fake_digits(monkeypatch)
    options = {"width": 6, "latent_dim": 2, "batch_size": 8, "steps": 1, "sample_every": 0}
    torch.manual_seed(0)  # the engine seeds the run so before building the family
    start = family(tmp_path, **options).net.state_dict()
    genshop.train(configure("vae", **options, ema=0.75, out=str(tmp_path / "ema")),
                  progress=False)
    genshop.train(configure("vae", **options, out=str(tmp_path / "live")), progress=False)
    ema = checkpoint.load(tmp_path / "ema" / CHECKPOINT)["ema"]
    live = checkpoint.load(tmp_path / "live" / CHECKPOINT)["models"]["vae"]
    assert {k.split(".")[0] for k in ema} == {"encoder", "decoder"}
    for name, value in ema.items():
        assert not torch.equal(live[name], start[name]), name  # the step moved every tensor
        torch.testing.assert_close(value, 0.75 * start[name] + 0.25 * live[name], msg=name)
