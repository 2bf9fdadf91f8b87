"""Shapes, output ranges and spectral normalisation of the shared nets; PacGAN packing."""

import pytest
import torch
from torch import nn

from genshop.errors import BadInputError, UnknownNameError
from genshop.nets import Critic, PackedCritic, dcgan_pair, mlp_pair


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_pair_shapes_and_depth(activation, batch_norm):
    torch.manual_seed(0)
    G, D = mlp_pair(latent_dim=3, width=16, depth=2, activation=activation, batch_norm=batch_norm)
    assert G.latent_dim == 3
    z = G.sample_latent(5)
    x = G(z)
    assert z.shape == (5, 3) and x.shape == (5, 2) and D(x).shape == (5,)
    assert sum(isinstance(m, nn.Linear) for m in G.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == (2 if batch_norm else 0)
    kind = nn.ReLU if activation == "relu" else nn.LeakyReLU
    assert sum(isinstance(m, kind) for m in D.modules()) == 2


def test_unknown_activation_lists_choices():
    with pytest.raises(UnknownNameError, match="leaky_relu"):
        mlp_pair(activation="tanh")


def test_sample_latent_is_reproducible_with_a_generator():
    G, _ = mlp_pair(latent_dim=4)
    a = G.sample_latent(3, torch.Generator().manual_seed(1))
    b = G.sample_latent(3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, G.sample_latent(3))


def test_dcgan_shapes_and_pixel_range():
    torch.manual_seed(0)
    G, D = dcgan_pair(latent_dim=8, width=4)
    x = G(10 * G.sample_latent(6))  # large latents push the sigmoid to its ends
    assert G.latent_dim == 8 and x.shape == (6, 1, 28, 28)
    assert x.min() >= 0 and x.max() <= 1 and (x.max() - x.min()) > 0.5
    assert D(x).shape == (6,)


def _spectral_linear_sigma(D: nn.Module) -> float:
    linear = [m for m in D.modules() if isinstance(m, nn.Linear)][-1]
    return torch.linalg.matrix_norm(linear.weight.detach(), ord=2).item()


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    _, D_plain = dcgan_pair(latent_dim=8, width=4)
    _, D_sn = dcgan_pair(latent_dim=8, width=4, spectral_norm=True)
    D_sn.train()
    x = torch.rand(4, 1, 28, 28)
    for _ in range(30):  # power iterations run once per training-mode forward
        D_sn(x)
    D_sn.eval()
    assert _spectral_linear_sigma(D_sn) == pytest.approx(1.0, abs=0.02)
    assert _spectral_linear_sigma(D_plain) < 0.9  # default init is well below 1: SN rescales
    conv = next(m for m in D_sn.modules() if isinstance(m, nn.Conv2d))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
    assert sigma == pytest.approx(1.0, abs=0.02)


def test_dcgan_critic_batch_norm_option():
    _, D = dcgan_pair(latent_dim=8, width=4, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    _, D = dcgan_pair(latent_dim=8, width=4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


def test_packed_critic_gives_each_pack_one_logit_repeated_per_sample():
    layer = nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        layer.bias.fill_(0.3)
    D = PackedCritic(Critic(layer), pack=2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, -1.0]])
    # packs (1, 0, 0, 1) and (2, 0, 0, -1): 1 + 4 + 0.3 and 2 − 4 + 0.3
    assert D(x).tolist() == pytest.approx([5.3, 5.3, -1.7, -1.7])
    with pytest.raises(BadInputError, match="multiple of 2"):
        D(x[:3])


def test_packed_images_stack_a_packs_samples_along_the_channels():
    """Sample k of a pack is channels k·C … k·C + C − 1 of the inner critic's input."""
    torch.manual_seed(0)
    _, inner = dcgan_pair(latent_dim=8, width=4, shape=(2, 8, 8))
    D = PackedCritic(inner, pack=2)
    x = torch.rand(6, 1, 8, 8)
    want = inner(torch.cat([x[0::2], x[1::2]], dim=1))
    assert torch.equal(D(x), want.repeat_interleave(2))
    assert not torch.equal(D(x), inner(torch.cat([x[1::2], x[0::2]], dim=1)).repeat_interleave(2))
    assert D.pack == 2
    with pytest.raises(AttributeError):
        D.pack = 3  # fixed: the inner critic takes the features of `pack` samples
