"""The single-loss GAN step: gradients equal to the two-loss step's for every loss and critic
(bit for bit where the critic calls are the same), value equal to the D loss, the post's
subtraction form failing under dropout, λ against optimisers, the R1 term, and the alternating
and single-loss update steps."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from genshop import losses, shared_critic, steps
from genshop.errors import BadInputError
from genshop.nets import PackedCritic

TOL = 1e-10
BATCH, Z_DIM, X_DIM = 12, 3, 2


def generator() -> nn.Module:
    return nn.Sequential(nn.Linear(Z_DIM, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, X_DIM)).double()


class ConvCritic(nn.Module):
    def __init__(self, batch_norm: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 4, 2), *([nn.BatchNorm1d(4)] if batch_norm else []),
                                  nn.Tanh(), nn.Flatten(), nn.Linear(4, 1))

    def forward(self, x):
        return self.body(x[:, None, :]).reshape(-1)


SPECTRAL = {"spectral": nn.utils.parametrizations.spectral_norm,
            "spectral-hook": nn.utils.spectral_norm}


def critic(kind: str) -> nn.Module:
    if kind in ("conv", "conv-bn"):
        return ConvCritic(batch_norm=kind == "conv-bn").double()
    if kind == "packed":
        inner = nn.Sequential(nn.Linear(2 * X_DIM, 16), nn.Tanh(), nn.Linear(16, 1))
        return PackedCritic(inner, 2).double()
    if kind in SPECTRAL:
        wrap = SPECTRAL[kind]
        return nn.Sequential(wrap(nn.Linear(X_DIM, 16)), nn.LeakyReLU(0.2),
                             wrap(nn.Linear(16, 16)), nn.Tanh(), nn.Linear(16, 1)).double()
    extra = {"plain": [], "separate": [], "shared": [], "bn": [nn.BatchNorm1d(16)],
             "dropout": [nn.Dropout(0.3)],
             "bn+dropout": [nn.BatchNorm1d(16), nn.Dropout(0.3)]}[kind]
    return nn.Sequential(nn.Linear(X_DIM, 16), *extra, nn.LeakyReLU(0.2),
                         nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).double()


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(BATCH, X_DIM, generator=gen, dtype=torch.float64) + 1,
            torch.randn(BATCH, Z_DIM, generator=gen, dtype=torch.float64))


def nets(kind: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return generator(), critic(kind)


def separate_grads(G, D, loss, real, z, rng_seed):
    """(∇_D L_D, ∇_G L_G, L_D) by the two-loss reference, on copies of the nets."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    torch.manual_seed(rng_seed)
    d_loss, g_loss = steps.separate_losses(G, D, loss, real, z)
    grad_d = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
    grad_g = torch.autograd.grad(g_loss, list(G.parameters()))
    return grad_d, grad_g, d_loss.detach(), (G, D)


def single_loss_grads(fn, G, D, loss, real, z, rng_seed):
    """(D grads, G grads, value) after one backward of a single-loss construction, on copies."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    torch.manual_seed(rng_seed)
    total = fn(G, D, loss, real, z)
    total.backward()
    return ([p.grad for p in D.parameters()], [p.grad for p in G.parameters()],
            total.detach(), (G, D))


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


ALL_LOSSES = [*losses.names(), "fgan-alpha:0.5", "rsgan+gp", "fgan-kl+saddle"]
# "separate" and "shared" (one critic forward on G(z) for both terms; what "auto" picks for a
# plain critic): the plain critic with each arrangement of critic calls; the other critics take
# "auto"; bn+dropout: see test_fused_step_is_a_simultaneous_sgd_step
CRITICS = ["separate", "shared", "bn", "dropout", "spectral", "spectral-hook", "packed", "conv",
           "conv-bn"]
# critics whose calls "auto" makes as the two-loss step does (stateful layers, or rows that
# depend on other rows), so their gradients are the two-loss step's bit for bit
SAME_CALLS = {"separate", "bn", "dropout", "spectral", "spectral-hook", "packed", "conv-bn"}


def make_loss(spec: str) -> losses.GanLoss:
    if spec.endswith("+gp"):
        return losses.get_loss(spec.removesuffix("+gp"), gp_weight=3.0)
    if spec.endswith("+saddle"):
        return losses.get_loss(spec.removesuffix("+saddle"), saddle=True)
    return losses.get_loss(spec)


@pytest.mark.parametrize("kind", CRITICS)
@pytest.mark.parametrize("spec", ALL_LOSSES)
def test_fused_gradients_equal_separate_gradients(spec, kind):
    loss = make_loss(spec)
    G, D = nets(kind)
    real, z = batch()
    ref_d, ref_g, ref_value, (G1, D1) = separate_grads(G, D, loss, real, z, rng_seed=5)
    calls = kind if kind in ("separate", "shared") else "auto"
    fused = functools.partial(steps.fused_loss, critic_calls=calls)
    got_d, got_g, value, (G2, D2) = single_loss_grads(fused, G, D, loss, real, z, 5)
    if kind in SAME_CALLS:
        # the same critic calls on the same batches in the same order: the same numbers
        assert max_diff(got_d, ref_d) == 0.0 and max_diff(got_g, ref_g) == 0.0
    else:  # the shared forward rescales J_iᵀu_D,i into J_iᵀu_G,i: equal to rounding
        assert max_diff(got_d, ref_d) < TOL and max_diff(got_g, ref_g) < TOL
    assert value == ref_value  # single-loss-value: the G term is exactly zero
    assert max_diff(ref_d, [torch.zeros_like(g) for g in ref_d]) > 1e-6  # gradients not trivial
    assert max_diff(ref_g, [torch.zeros_like(g) for g in ref_g]) > 1e-6
    # the same critic calls in the same order: BatchNorm running statistics agree too
    assert max_diff(list(D1.buffers()) + list(G1.buffers()),
                    list(D2.buffers()) + list(G2.buffers())) < TOL


def test_fused_gradients_are_not_the_sum_of_the_two_losses():
    """Backward of L_D + L_G would leak the G loss's gradient into D."""
    loss = losses.get_loss("nsgan")
    G, D = nets("plain")
    real, z = batch()
    ref_d, ref_g, _, _ = separate_grads(G, D, loss, real, z, rng_seed=0)
    naive_d, naive_g, _, _ = single_loss_grads(
        lambda *a: sum(steps.separate_losses(*a)), G, D, loss, real, z, 0)
    assert max_diff(naive_d, ref_d) > 1e-3 and max_diff(naive_g, ref_g) < TOL


@pytest.mark.parametrize("spec", ["hinge", "rsgan", "wgan"])
def test_post_subtraction_is_exact_with_batchnorm(spec):
    loss = losses.get_loss(spec)
    G, D = nets("bn")
    real, z = batch()
    ref_d, ref_g, ref_value, _ = separate_grads(G, D, loss, real, z, rng_seed=1)
    got_d, got_g, value, _ = single_loss_grads(steps.subtraction_loss, G, D, loss, real, z, 1)
    assert max_diff(got_d, ref_d) < TOL and max_diff(got_g, ref_g) < TOL
    assert abs(float(value - ref_value)) < TOL


@pytest.mark.parametrize("spec", ["hinge", "rsgan"])
def test_post_subtraction_breaks_with_dropout(spec):
    """Two critic calls on the fake batch draw two masks: the 'zero' term leaks into D."""
    loss = losses.get_loss(spec)
    G, D = nets("dropout")
    real, z = batch()
    ref_d, _, ref_value, _ = separate_grads(G, D, loss, real, z, rng_seed=1)
    got_d, _, value, _ = single_loss_grads(steps.subtraction_loss, G, D, loss, real, z, 1)
    assert max_diff(got_d, ref_d) > 1e-3
    assert abs(float(value - ref_value)) > 1e-4


def test_is_per_sample_and_concatenated_critic_calls():
    assert steps.is_per_sample(critic("plain"))
    for kind in ("bn", "dropout"):
        D = critic(kind)
        assert not steps.is_per_sample(D)
        assert steps.is_per_sample(D.eval())
    D = critic("plain")
    real, _ = batch()
    fake = real[:5] * 2
    joint = steps.critic_outputs(D, real, fake)
    assert torch.allclose(joint[0], D(real), atol=1e-14, rtol=0)
    assert torch.allclose(joint[1], D(fake), atol=1e-14, rtol=0)


def test_parameters_frozen_restores_flags_even_on_error():
    D = critic("plain")
    D[0].bias.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), steps.parameters_frozen(D):
        assert not any(p.requires_grad for p in D.parameters())
        raise RuntimeError("boom")
    assert [p.requires_grad for p in D.parameters()] == [True, False, True, True, True, True]


def sgd_update_of_g(loss, lam: float, optimizer, **opts) -> torch.Tensor:
    """One optimiser step on the fused gradients with G's gradient scaled by λ (the post's λ)."""
    G, D = nets("plain", seed=3)
    real, z = batch(3)
    steps.fused_loss(G, D, loss, real, z).backward()
    for p in G.parameters():
        p.grad.mul_(lam)
    before = torch.cat([p.detach().flatten() for p in G.parameters()])
    optimizer(list(D.parameters()) + list(G.parameters()), **opts).step()
    return torch.cat([p.detach().flatten() for p in G.parameters()]) - before


@pytest.mark.parametrize(("optimizer", "opts", "ratio"), [
    (torch.optim.SGD, {"lr": 0.1}, 2.0),
    (torch.optim.RMSprop, {"lr": 1e-3, "alpha": 0.99}, 1.0),
    (torch.optim.Adam, {"lr": 1e-3}, 1.0),
])
def test_lambda_scales_the_update_only_under_sgd(optimizer, opts, ratio):
    loss = losses.get_loss("hinge")
    step1 = sgd_update_of_g(loss, 1.0, optimizer, **opts)
    step2 = sgd_update_of_g(loss, 2.0, optimizer, **opts)
    mask = step1.abs() > 1e-6
    assert torch.allclose(step2[mask] / step1[mask], torch.full_like(step1[mask], ratio),
                          rtol=1e-3, atol=0)


def test_per_group_learning_rate_scales_adam_updates():
    """lr_g = 2·lr_d doubles G's Adam step (first step: ±lr for every parameter)."""
    loss = losses.get_loss("hinge")
    updates = []
    for lr_g in (1e-3, 2e-3):
        G, D = nets("plain", seed=3)
        real, z = batch(3)
        opt = steps.fused_optimizer(G, D, torch.optim.Adam, lr_d=1e-3, lr_g=lr_g)
        before = [p.detach().clone() for p in G.parameters()]
        steps.fused_step(G, D, loss, opt, real, z)
        updates.append(torch.cat([(p.detach() - b).flatten()
                                  for p, b in zip(G.parameters(), before, strict=True)]))
    mask = updates[0].abs() > 1e-6
    assert torch.allclose(updates[1][mask], 2 * updates[0][mask], rtol=1e-3, atol=0)


def test_fused_optimizer_takes_one_group_when_the_rates_agree():
    """One group (one update call) for lr_d = lr_g, D's parameters first; the update equals that
    of two groups with the same rate, parameter by parameter."""
    loss = losses.get_loss("rsgan")
    G, D = nets("plain", seed=4)
    real, z = batch(4)
    one = steps.fused_optimizer(G, D, torch.optim.Adam, lr_d=1e-3, lr_g=1e-3)
    assert [g["params"] for g in one.param_groups] == [[*D.parameters(), *G.parameters()]]
    two = steps.fused_optimizer(G, D, torch.optim.Adam, lr_d=1e-3, lr_g=2e-3)
    assert [g["lr"] for g in two.param_groups] == [1e-3, 2e-3]
    moved = []
    for grouped in (False, True):
        G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
        opt = (torch.optim.Adam([{"params": list(D1.parameters())},
                                 {"params": list(G1.parameters())}], lr=1e-3) if grouped
               else steps.fused_optimizer(G1, D1, torch.optim.Adam, lr_d=1e-3, lr_g=1e-3))
        steps.fused_step(G1, D1, loss, opt, real, z)
        moved.append(params(D1) + params(G1))
    assert max_diff(moved[0], moved[1]) == 0.0
    assert max_diff(moved[0], params(D) + params(G)) > 1e-4


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("kind", ["plain", "bn+dropout"])  # shared / separate critic calls
@pytest.mark.parametrize("spec", ["rsgan", "wgan", "nsgan", "hinge"])
def test_fused_step_is_a_simultaneous_sgd_step(spec, kind):
    loss = losses.get_loss(spec)
    G, D = nets(kind)
    real, z = batch()
    ref_d, ref_g, ref_value, _ = separate_grads(G, D, loss, real, z, rng_seed=2)
    d0, g0 = params(D), params(G)
    opt = steps.fused_optimizer(G, D, torch.optim.SGD, lr_d=0.1, lr_g=0.05)
    torch.manual_seed(2)
    out = steps.fused_step(G, D, loss, opt, real, z)
    assert max_diff([a - b for a, b in zip(params(D), d0, strict=True)],
                    [-0.1 * g for g in ref_d]) < TOL
    assert max_diff([a - b for a, b in zip(params(G), g0, strict=True)],
                    [-0.05 * g for g in ref_g]) < TOL
    assert out["d_loss"] == pytest.approx(float(ref_value), abs=TOL)
    assert set(out) >= {"d_loss", "g_loss", "d_real", "d_fake"}
    assert ("gp" in out) == (spec == "wgan")


@pytest.mark.parametrize("kind", ["plain", "bn+dropout"])
@pytest.mark.parametrize("spec", ["hinge", "wgan"])
def test_fused_step_equals_a_backward_of_fused_loss_bit_for_bit(spec, kind):
    """fused_step's two-root backward gives what `fused_loss(...).backward()` gives, exactly."""
    loss = losses.get_loss(spec)
    G, D = nets(kind)
    real, z = batch()
    moved = []
    for by_step in (True, False):
        G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
        opt = steps.fused_optimizer(G1, D1, torch.optim.Adam, lr_d=1e-3, lr_g=5e-4)
        torch.manual_seed(7)  # the same dropout masks and penalty points
        if by_step:
            steps.fused_step(G1, D1, loss, opt, real, z)
        else:
            steps.fused_loss(G1, D1, loss, real, z).backward()
            opt.step()
        moved.append(params(D1) + params(G1))
    assert max_diff(moved[0], moved[1]) == 0.0
    assert max_diff(moved[0], params(D) + params(G)) > 1e-4


def test_fused_step_reports_the_g_loss_value():
    loss = losses.get_loss("rasgan")
    G, D = nets("plain")
    real, z = batch()
    with torch.no_grad():
        fake = G(z)
        want = {"g_loss": float(loss.g_loss(D(real), D(fake))),
                "d_loss": float(loss.d_loss(D(real), D(fake))),
                "d_real": float(D(real).mean()), "d_fake": float(D(fake).mean())}
    opt = steps.fused_optimizer(G, D, torch.optim.SGD, lr_d=0.1, lr_g=0.1)
    out = steps.fused_step(G, D, loss, opt, real, z)
    assert out == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("spec", ["rsgan", "hinge"])
def test_alternating_step_updates_d_then_g_against_the_new_d(spec):
    loss = losses.get_loss(spec)
    G, D = nets("plain")
    real, z_d = batch(0)
    _, z_g = batch(1)
    lr = 0.1
    # expected: D moves by −lr ∇_D L_D(D, G(z_d)); then G by −lr ∇_G L_G(D_new, G(z_g))
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    with torch.no_grad():
        fake_d = G_ref(z_d)
    d_loss = loss.d_loss(D_ref(real), D_ref(fake_d))
    grad_d = torch.autograd.grad(d_loss, list(D_ref.parameters()))
    with torch.no_grad():
        for p, g in zip(D_ref.parameters(), grad_d, strict=True):
            p -= lr * g
    g_loss_new = loss.g_loss(D_ref(real), D_ref(G_ref(z_g)))
    grad_g = torch.autograd.grad(g_loss_new, list(G_ref.parameters()))
    # the G gradient against the *old* D differs, so this checks the order
    old_g = torch.autograd.grad(loss.g_loss(D(real), D(G(z_g))), list(G.parameters()))
    assert max_diff(old_g, grad_g) > 1e-4

    g0 = params(G)
    opt_d = torch.optim.SGD(D.parameters(), lr=lr)
    opt_g = torch.optim.SGD(G.parameters(), lr=lr)
    out = steps.alternating_step(G, D, loss, opt_d, opt_g, real, z_d, z_g)
    assert max_diff(params(D), params(D_ref)) < TOL
    assert max_diff([a - b for a, b in zip(params(G), g0, strict=True)],
                    [-lr * g for g in grad_g]) < TOL
    assert out["d_loss"] == pytest.approx(d_loss.item(), abs=TOL)
    assert out["g_loss"] == pytest.approx(g_loss_new.item(), abs=TOL)
    assert all(p.requires_grad for p in D.parameters())


def test_alternating_step_with_gradient_penalty_and_stochastic_critic_runs():
    loss = losses.get_loss("wgan")
    G, D = nets("bn+dropout")
    real, z = batch()
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    g0, d0 = params(G), params(D)
    out = steps.alternating_step(G, D, loss, opt_d, opt_g, real, z, z)
    assert out["gp"] > 0 and all(map(torch.isfinite, map(torch.tensor, out.values())))
    assert max_diff(params(G), g0) > 1e-5 and max_diff(params(D), d0) > 1e-5


def test_batchnorm_critic_sees_real_and_fake_in_separate_batches():
    D = critic("bn")
    real, _ = batch()
    fake = real.flip(0) * 3
    out_real, out_fake = steps.critic_outputs(copy.deepcopy(D), real, fake)
    assert torch.allclose(out_real, copy.deepcopy(D)(real), atol=1e-14, rtol=0)
    assert torch.allclose(out_fake, copy.deepcopy(D)(fake), atol=1e-14, rtol=0)
    joint = copy.deepcopy(D)(torch.cat([real, fake]))
    assert (joint[:BATCH] - out_real).abs().max() > 1e-3  # concatenation would change the stats


def test_gradient_gap_measures_both_constructions_and_leaves_state_alone():
    loss = losses.get_loss("hinge")
    G, D = nets("dropout")
    real, z = batch()
    before = [p.detach().clone() for p in [*G.parameters(), *D.parameters()]]
    torch.manual_seed(11)
    state = torch.get_rng_state()
    fused = steps.gradient_gap(G, D, loss, real, z, seed=4)
    post = steps.gradient_gap(G, D, loss, real, z, construction=steps.subtraction_loss, seed=4)
    assert fused == {"d_grad": 0.0, "g_grad": 0.0, "value": 0.0}
    assert post["d_grad"] > 1e-3 and post["value"] > 1e-4
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in
               zip(before, [*G.parameters(), *D.parameters()], strict=True))
    assert all(p.grad is None for p in [*G.parameters(), *D.parameters()])


def test_shared_conv_critic_backward_twice_and_critic_calls_are_checked():
    torch.manual_seed(0)
    G, D = generator(), ConvCritic().double()
    real, z = batch()
    for spec in ("rsgan", "wgan", "fgan-kl"):
        gap = steps.gradient_gap(G, D, losses.get_loss(spec), real, z)  # backward twice
        assert max(gap.values()) < TOL
    with pytest.raises(BadInputError, match="without BatchNorm, dropout or spectral norm"):
        steps.fused_loss(*nets("bn"), losses.get_loss("hinge"), real, z, critic_calls="shared")
    with pytest.raises(BadInputError, match="choose one of auto, separate, shared"):
        steps.fused_loss(G, D, losses.get_loss("hinge"), real, z, critic_calls="fast")


GLOBAL_HOOKS = """
import json
import genshop.steps
from torch.nn.modules import module
print(json.dumps({name: len(getattr(module, name)) for name in dir(module)
                  if name.startswith("_global_") and name.endswith("_hooks")}))
"""


def test_importing_the_steps_registers_no_global_module_hook():
    """A fresh interpreter that imports genshop.steps has no hook in any of torch's global hook
    tables (registration of modules, buffers and parameters; forward; backward)."""
    out = subprocess.run([sys.executable, "-c", GLOBAL_HOOKS], capture_output=True, text=True,
                         check=True)
    counts = json.loads(out.stdout)
    assert {"_global_module_registration_hooks", "_global_buffer_registration_hooks",
            "_global_parameter_registration_hooks", "_global_forward_hooks"} <= set(counts)
    assert counts == dict.fromkeys(counts, 0)


def test_spectral_norm_critics_get_one_call_per_batch_and_exact_gradients():
    """Each call of a spectral-norm layer in training mode runs a power iteration, so the steps
    neither concatenate nor share calls; the fused gradients stay exact."""
    torch.manual_seed(0)
    for wrap in (nn.utils.parametrizations.spectral_norm, nn.utils.spectral_norm):
        D = nn.Sequential(wrap(nn.Linear(X_DIM, 8)), nn.Tanh(), wrap(nn.Linear(8, 1))).double()
        assert not steps.is_per_sample(D) and steps.is_per_sample(copy.deepcopy(D).eval())
        real, z = batch()
        gap = steps.gradient_gap(generator(), D, losses.get_loss("rsgan"), real, z)
        assert max(gap.values()) < TOL




def test_stateful_layers_make_a_critic_not_per_sample():
    """Batch statistics, random layers and buffers a call may change; eval mode undoes them
    except for a BatchNorm without running statistics, which uses batch statistics always."""
    def mlp(*extra):
        return nn.Sequential(nn.Linear(X_DIM, 8), *extra, nn.Linear(8, 1)).double()

    for layer in (nn.BatchNorm1d(8), nn.Dropout(0.1), nn.AlphaDropout(0.1), nn.RReLU(),
                  nn.InstanceNorm1d(8, track_running_stats=True)):
        D = mlp(layer)
        assert not steps.is_per_sample(D)
        assert steps.is_per_sample(D.eval())
    no_stats = mlp(nn.BatchNorm1d(8, track_running_stats=False)).eval()
    assert not steps.is_per_sample(no_stats)
    for stateless in (nn.LayerNorm(8), nn.Tanh()):
        assert steps.is_per_sample(mlp(stateless))
    weight_norm = mlp()
    nn.utils.parametrizations.weight_norm(weight_norm[0])  # a parametrization without state
    assert steps.is_per_sample(weight_norm)
    with_empty_slot = critic("dropout")
    with_empty_slot.register_module("unused", None)  # modules() skips such slots
    assert not steps.is_per_sample(with_empty_slot)
    assert steps.is_per_sample(with_empty_slot.eval())


def test_critic_calls_follow_changes_to_the_critic_after_a_step():
    """"auto" follows the training flags and the layers, buffers and parametrizations added
    after the first step: the single-loss gradients stay exact after each change, and equal the
    two-loss step's bit for bit whenever the critic is stateful (the same critic calls)."""
    loss = losses.get_loss("rsgan")
    real, z = batch()
    torch.manual_seed(0)
    G, D = generator(), critic("plain")

    def check(expected: str):
        gap = max(steps.gradient_gap(G, D, loss, real, z).values())
        assert gap < TOL if expected == "shared" else gap == 0.0
        assert shared_critic.critic_traits(D).shareable == (expected == "shared")
        assert steps.is_per_sample(D) == (expected == "shared")

    check("shared")
    nn.utils.spectral_norm(D[0])  # the hook version, on a layer already seen
    check("separate")
    D.eval()
    check("shared")
    D.train()
    check("separate")
    D[0] = nn.Linear(X_DIM, 16).double()
    check("shared")
    nn.utils.parametrizations.spectral_norm(D[-1])
    check("separate")
    D[-1] = nn.Linear(16, 1).double()
    check("shared")
    D[2] = nn.Dropout(0.3)
    check("separate")
    D[2] = nn.Identity()
    check("shared")
    D[0].register_buffer("scale", torch.ones(1, dtype=torch.float64))  # any buffer: stateful
    check("separate")
    D[0].eval()
    check("shared")


def put_fake_logits_beyond_margin(D, last: nn.Linear, fake: torch.Tensor, count: int) -> None:
    """Shift the critic's last bias so that exactly `count` fake logits are < −1 (hinge)."""
    s = D(fake).reshape(-1).sort().values
    cut = {0: s[0] - 1.0, BATCH: s[-1] + 7.0}.get(count, (s[count - 1] + s[count % BATCH]) / 2)
    with torch.no_grad():
        last.bias -= 1 + cut
    assert (D(fake) < -1).sum().item() == count


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("beyond", [0, BATCH // 4, 3 * BATCH // 4, BATCH])
def test_shared_critic_forward_is_exact_on_either_side_of_the_hinge_margin(beyond, conv):
    """`beyond` fake logits past the hinge margin, where ∂L_D/∂D(G(z)) is 0 and the G loss's
    gradient cannot come from rescaling; with and without a real-batch R1 term."""
    torch.manual_seed(0)
    G, D = generator(), (ConvCritic().double() if conv else critic("plain"))
    real, z = batch()
    put_fake_logits_beyond_margin(D, D.body[-1] if conv else D[-1], G(z), beyond)
    loss = losses.get_loss("hinge")
    for r1 in (0.0, 0.5):
        shared = functools.partial(steps.fused_loss, critic_calls="shared", r1=r1)
        two_loss = functools.partial(steps.separate_losses, r1=r1)
        G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
        d_loss, g_loss = two_loss(G1, D1, loss, real, z)
        ref_d = torch.autograd.grad(d_loss, list(D1.parameters()), retain_graph=True)
        ref_g = torch.autograd.grad(g_loss, list(G1.parameters()))
        got_d, got_g, _, _ = single_loss_grads(shared, G, D, loss, real, z, 0)
        assert max_diff(got_d, ref_d) < TOL and max_diff(got_g, ref_g) < TOL
        assert max_diff(ref_g, [torch.zeros_like(g) for g in ref_g]) > 1e-6


def test_packed_critic_can_share_its_forward():
    """A pack's logit depends on m samples, so no row can be rescaled: "shared" recomputes every
    row's gradient for G, and the gradients stay exact; "auto" keeps the two-loss step's calls
    (the same gradients bit for bit), also for a critic that holds the packed one."""
    torch.manual_seed(0)
    real, z = batch()
    for D in (critic("packed"), nn.Sequential(critic("packed"), nn.Tanh())):
        assert not shared_critic.critic_traits(D).rows_independent and steps.is_per_sample(D)
        for spec in ("rasgan", "hinge"):
            shared = functools.partial(steps.fused_loss, critic_calls="shared")
            gap = steps.gradient_gap(generator(), D, losses.get_loss(spec), real, z, shared)
            assert max(gap.values()) < TOL
            auto = steps.gradient_gap(generator(), D, losses.get_loss(spec), real, z)
            assert auto == {"d_grad": 0.0, "g_grad": 0.0, "value": 0.0}


# --- R1 as a term of the critic loss ------------------------------------------------------------

R1 = 0.8


def by_hand_critic_gradient(G, D, loss, real, z, r1, rng_seed=0):
    """∇_D [L_D(D(x_r), D(G(z))) + λ_gp·GP + r1·R1(D; x_r)] for a deterministic critic, without
    the steps (the RNG seeded to `rng_seed` before the penalty's interpolation points; R1 over
    the packs of a packed critic)."""
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    with torch.no_grad():
        fake = G(z)
    pack = D.pack if isinstance(D, PackedCritic) else 1
    total = loss.d_loss(D(real), D(fake)) + r1 * losses.r1_penalty(D, real, pack=pack)
    if loss.gp_weight:
        torch.manual_seed(rng_seed)
        total = total + loss.gp_weight * losses.gradient_penalty(D, real, fake)
    return torch.autograd.grad(total, list(D.parameters()))


@pytest.mark.parametrize("kind", ["shared", "bn", "dropout", "spectral", "packed", "conv"])
@pytest.mark.parametrize("spec", ["hinge", "rsgan", "wgan"])
def test_fused_step_with_r1_is_the_two_loss_sgd_step(spec, kind):
    """fused_step(r1=w) moves D by −lr·∇_D(L_D + w·R1) and G by −lr·∇_G L_G, in float64; the
    R1 term changes the critic's gradient and, where its extra critic call leaves the G term's
    call unchanged, only the critic's."""
    loss = losses.get_loss(spec)
    G, D = nets(kind)
    real, z = batch()
    G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
    torch.manual_seed(2)
    d_loss, g_loss = steps.separate_losses(G1, D1, loss, real, z, r1=R1)
    ref_d = torch.autograd.grad(d_loss, list(D1.parameters()), retain_graph=True)
    ref_g = torch.autograd.grad(g_loss, list(G1.parameters()))
    plain_d, plain_g, _, _ = separate_grads(G, D, loss, real, z, rng_seed=2)
    assert max_diff(ref_d, plain_d) > 1e-6
    if kind not in ("dropout", "spectral"):  # R1's critic call draws no mask, runs no iteration
        assert max_diff(ref_g, plain_g) < TOL
    if kind in ("shared", "packed", "conv"):  # deterministic: check the reference by hand too
        assert max_diff(ref_d, by_hand_critic_gradient(G, D, loss, real, z, R1, 2)) < 1e-10
    d0, g0 = params(D), params(G)
    opt = steps.fused_optimizer(G, D, torch.optim.SGD, lr_d=0.1, lr_g=0.05)
    torch.manual_seed(2)
    out = steps.fused_step(G, D, loss, opt, real, z, r1=R1)
    assert max_diff([a - b for a, b in zip(params(D), d0, strict=True)],
                    [-0.1 * g for g in ref_d]) < TOL
    assert max_diff([a - b for a, b in zip(params(G), g0, strict=True)],
                    [-0.05 * g for g in ref_g]) < TOL
    assert out["d_loss"] == pytest.approx(d_loss.item(), abs=TOL)
    assert out["r1"] > 1e-6 and ("gp" in out) == (spec == "wgan")


def test_step_summaries_report_the_unweighted_r1_penalty_when_computed():
    loss = losses.get_loss("nsgan")
    G, D = nets("plain")
    real, z = batch()
    want = losses.r1_penalty(copy.deepcopy(D), real).item()
    with torch.no_grad():
        plain_d_loss = loss.d_loss(D(real), D(G(z))).item()
    runs = {
        "fused": lambda G, D, r1: steps.fused_step(
            G, D, loss, steps.fused_optimizer(G, D, torch.optim.SGD, 0.1, 0.1), real, z, r1=r1),
        "alternating": lambda G, D, r1: steps.alternating_step(
            G, D, loss, torch.optim.SGD(D.parameters(), lr=0.1),
            torch.optim.SGD(G.parameters(), lr=0.1), real, z, z, r1=r1),
        "critic": lambda G, D, r1: steps.critic_step(
            G, D, loss, torch.optim.SGD(D.parameters(), lr=0.1), real, z, r1=r1),
    }
    for name, run in runs.items():
        off = run(copy.deepcopy(G), copy.deepcopy(D), 0.0)
        on = run(copy.deepcopy(G), copy.deepcopy(D), R1)
        assert "r1" not in off and on["r1"] == pytest.approx(want, rel=1e-12), name
        assert off["d_loss"] == pytest.approx(plain_d_loss, abs=1e-12)
        assert on["d_loss"] == pytest.approx(plain_d_loss + R1 * want, abs=1e-12)
        assert ("g_loss" in on) == (name != "critic")


@pytest.mark.parametrize("kind", ["plain", "packed"])
def test_alternating_and_critic_steps_add_r1_to_the_critic_update(kind):
    """critic_step(r1=w) and the D half of alternating_step(r1=w) move D by −lr·∇(L_D + w·R1);
    the G half is unchanged by r1 (for the same updated critic)."""
    loss = losses.get_loss("rsgan")
    G, D = nets(kind)
    real, z_d = batch(0)
    _, z_g = batch(1)
    lr = 0.1
    want = by_hand_critic_gradient(G, D, loss, real, z_d, R1)
    d0 = params(D)
    D1 = copy.deepcopy(D)
    steps.critic_step(G, D1, loss, torch.optim.SGD(D1.parameters(), lr=lr), real, z_d, r1=R1)
    assert max_diff([a - b for a, b in zip(params(D1), d0, strict=True)],
                    [-lr * g for g in want]) < TOL
    moved = []
    for r1 in (R1, 0.0):
        G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
        steps.alternating_step(G2, D2, loss, torch.optim.SGD(D2.parameters(), lr=lr),
                               torch.optim.SGD(G2.parameters(), lr=lr), real, z_d, z_g, r1=r1)
        moved.append((params(D2), params(G2)))
    assert max_diff(moved[0][0], params(D1)) == 0.0  # the same D update as critic_step
    assert max_diff(moved[0][1], moved[1][1]) > 1e-8  # G moved against a different critic


@pytest.mark.parametrize("calls", ["separate", "shared"])
def test_fused_step_with_r1_equals_a_backward_of_fused_loss_bit_for_bit(calls):
    loss = losses.get_loss("hinge")
    G, D = nets("plain")
    real, z = batch()
    moved = []
    for by_step in (True, False):
        G1, D1 = copy.deepcopy(G), copy.deepcopy(D)
        opt = steps.fused_optimizer(G1, D1, torch.optim.Adam, lr_d=1e-3, lr_g=5e-4)
        if by_step:
            steps.fused_step(G1, D1, loss, opt, real, z, critic_calls=calls, r1=R1)
        else:
            steps.fused_loss(G1, D1, loss, real, z, critic_calls=calls, r1=R1).backward()
            opt.step()
        moved.append(params(D1) + params(G1))
    assert max_diff(moved[0], moved[1]) == 0.0
    assert max_diff(moved[0], params(D) + params(G)) > 1e-4
