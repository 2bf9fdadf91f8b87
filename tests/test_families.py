"""genshop.families helpers shared by every family."""

import torch

from genshop.families import adam


def test_adam_matches_plain_adam():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    fast = adam([{"params": a.parameters()}], lr=1e-2, betas=(0.5, 0.999))
    plain = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.5, 0.999))
    x = torch.randn(8, 5)
    start = a.weight.detach().clone()
    for _ in range(3):
        for net, opt in ((a, fast), (b, plain)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert (a.weight - start).abs().min() > 1e-3  # every weight moved (3 steps of lr 1e-2)
