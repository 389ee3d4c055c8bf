"""The --weighting registry, options, checkpointable state, and the loss-only methods
(EW, RLW, DWA, UW, FAMO) against their formulas (docs/methods.md, "Weighting methods")."""
import io
import math
from dataclasses import replace

import pytest
import torch

from optim.weighting import WEIGHTINGS, StepContext, build_weighting, method_table
from optim.weighting.famo import famo_logit_gradient

NAMES = ["ew", "rlw", "dwa", "uw", "famo", "imtl_l", "stch", "gls",
         "pcgrad", "gdod", "hydalearn", "mgda", "cagrad", "imtl", "upgrad", "aligned_mtl", "nash_mtl", "gradnorm",
         "graddrop", "gradvac", "db_mtl", "fairgrad", "moco", "sdmgrad", "excess_mtl", "config", "dualproj"]


def ctx_for(losses, **kw):
    return StepContext(losses=torch.as_tensor(losses, dtype=torch.float64), epoch=0, step=0, lr=1e-3, **kw)


# ---- registry and options -------------------------------------------------------------

def test_registry_names_and_metadata():
    assert list(WEIGHTINGS) == NAMES
    table = method_table()
    for name, cls in WEIGHTINGS.items():
        assert cls.name == name and cls.paper and cls.needs and cls.cost
        assert f"`{name}`" in table
        method = build_weighting(name, 2)
        head_grads = {"head_grads": cls.default_head_grads} if cls.needs_grads else {}
        assert method.options() == {**{k: o.default for k, o in cls.OPTIONS.items()}, **head_grads}


def test_unknown_names_and_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="valid names: ew, rlw"):
        build_weighting("nope", 2)
    with pytest.raises(ValueError, match="valid options: temperature"):
        build_weighting("dwa", 2, temp=1.0)
    with pytest.raises(ValueError, match="expects float"):
        build_weighting("dwa", 2, temperature="2")
    with pytest.raises(ValueError, match="must be one of lookahead, first_order"):
        build_weighting("hydalearn", 2, gain="exact")
    with pytest.raises(ValueError, match="must be one of network"):
        build_weighting("gdod", 2, decomposition="layer")
    assert build_weighting("cagrad", 2, c=1).options() == {"c": 1.0, "norm_eps": 1e-4, "convention": "published",
                                                           "head_grads": "own"}


# ---- state: plain values only, exact round trip ------------------------------------------

def scenario_context(step, num_tasks=2, size=6):
    """A deterministic step: quadratic task losses L_k(θ) = ½‖θ − c_k‖² around a random θ,
    with their gradients, Gram matrix and look-ahead."""
    gen = torch.Generator().manual_seed(step)
    theta = torch.randn(size, generator=gen, dtype=torch.float64)
    centres = torch.randn(num_tasks, size, generator=gen, dtype=torch.float64)

    def losses_at(point):
        return 0.5 * ((point - centres) ** 2).sum(1)

    def losses_after(delta=None):  # None: "after the step", a fixed step towards the centres' mean
        return losses_at(theta + (0.1 * (centres.mean(0) - theta) if delta is None else delta[0]))

    grads = theta - centres
    return StepContext(losses=losses_at(theta), epoch=step // 2, step=step, lr=1e-3, gram=grads @ grads.T,
                       grads=[[g] for g in grads], losses_after=losses_after)


def run_steps(method, steps):
    out = []
    for step in steps:
        ctx = scenario_context(step)
        if method.needs_grads:
            contributions = method.contributions(ctx).grads
            out.append(torch.stack([torch.cat([g.reshape(-1) for g in task]) for task in contributions]))
        else:
            out.append(method.weights(ctx))
        method.after_step(ctx)
        if step % 2 == 1:
            method.end_epoch(step // 2, ctx.losses + 0.1 * step)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name):
    first = build_weighting(name, 2)
    run_steps(first, range(5))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = build_weighting(name, 2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(run_steps(first, range(5, 9)), run_steps(resumed, range(5, 9))):
        assert torch.equal(a, b)


# ---- loss-only methods -------------------------------------------------------------------

def test_ew_is_the_loss_sum():
    assert torch.equal(build_weighting("ew", 3).weights(ctx_for([3.0, 1.0, 2.0])), torch.ones(3, dtype=torch.float64))


def test_rlw_is_softmax_of_its_own_normal_draws():
    method = build_weighting("rlw", 3, seed=7)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        w = method.weights(ctx_for([1.0, 1.0, 1.0]))
        expected = torch.softmax(torch.randn(3, generator=gen, dtype=torch.float64), 0)
        assert torch.allclose(w, expected, rtol=0, atol=1e-15)
        assert (w > 0).all() and abs(w.sum().item() - 1) < 1e-12


def test_dwa_formula_after_two_epochs():
    method = build_weighting("dwa", 2)
    ctx = ctx_for([1.0, 1.0])
    assert torch.equal(method.weights(ctx), torch.ones(2, dtype=torch.float64))  # epoch 0
    method.end_epoch(0, torch.tensor([1.0, 2.0]))
    assert torch.equal(method.weights(ctx), torch.ones(2, dtype=torch.float64))  # epoch 1
    method.end_epoch(1, torch.tensor([0.5, 1.8]))
    e1, e2 = math.exp(0.5 / 2), math.exp(0.9 / 2)  # r = (0.5/1.0, 1.8/2.0), T = 2
    assert torch.allclose(method.weights(ctx), torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)],
                                                            dtype=torch.float64), atol=1e-12)
    method.end_epoch(2, torch.tensor([0.25, 1.8]))  # now r = (0.25/0.5, 1.8/1.8)
    e1, e2 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    assert torch.allclose(method.weights(ctx), torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)],
                                                            dtype=torch.float64), atol=1e-12)


def test_uw_weights_and_one_adam_step():
    method = build_weighting("uw", 2, lr=0.025, init=0.0, trainer="own")  # the Nash-MTL/FAMO trainers' UW
    ctx = ctx_for([3.0, 0.5])
    assert torch.equal(method.weights(ctx), torch.tensor([0.5, 0.5], dtype=torch.float64))
    method.after_step(ctx)
    # s = 0: gradient ½(1 − e^0 L) = (−1, 0.25); Adam's first step is −lr·g/(|g| + 1e-8)
    grads = torch.tensor([-1.0, 0.25], dtype=torch.float64)
    expected_s = -0.025 * grads / (grads.abs() + 1e-8)
    assert torch.allclose(method.log_vars.detach(), expected_s, rtol=0, atol=1e-15)
    assert torch.allclose(method.weights(ctx), 0.5 * torch.exp(-expected_s), rtol=0, atol=1e-15)


def test_uw_default_is_libmtl_s_from_minus_a_half_on_the_network_lr():
    """LibMTL: s starts at −0.5 (w = ½e^{0.5}) and takes the network optimizer's Adam step at its
    current lr (ctx.lr, which follows the StepLR schedule)."""
    method = build_weighting("uw", 2)
    ctx = ctx_for([3.0, 0.5])
    assert torch.allclose(method.weights(ctx), torch.full((2,), 0.5 * math.exp(0.5), dtype=torch.float64), atol=1e-15)
    for lr in (1e-3, 5e-4):  # the schedule halves the network's lr: s follows it
        before = method.log_vars.detach().clone()
        method.after_step(replace(ctx, lr=lr))
        assert torch.allclose((method.log_vars.detach() - before).abs(), torch.full((2,), lr, dtype=torch.float64),
                              rtol=1e-2)  # Adam's first steps move each s_k by about lr


def test_famo_weights_and_logit_update():
    method = build_weighting("famo", 2, gamma=0.01, lr=0.025)
    before, after = [2.0, 0.5], [1.0, 0.45]
    ctx = ctx_for(before, losses_after=lambda delta: torch.tensor(after, dtype=torch.float64))
    # z = (½, ½): w_k ∝ 1/L_k, summing to 1
    assert torch.allclose(method.weights(ctx), torch.tensor([0.2, 0.8], dtype=torch.float64), atol=1e-9)
    # K = 2: ∇_ξ zᵀδ = z₁z₂(δ₁ − δ₂)·(1, −1) with δ = log L(before) − log L(after)
    d1, d2 = math.log(2.0 / 1.0), math.log(0.5 / 0.45)
    hand = 0.25 * (d1 - d2) * torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(famo_logit_gradient(torch.zeros(2, dtype=torch.float64), ctx.losses, torch.tensor(after)),
                          hand, atol=1e-8)
    # two updates equal Adam(lr, weight_decay=γ) fed those gradients: the logits move
    # towards the task whose log-loss fell least (task 2)
    reference = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([reference], lr=0.025, weight_decay=0.01)
    for _ in range(2):
        method.after_step(ctx)
        reference.grad = famo_logit_gradient(reference.detach(), ctx.losses, torch.tensor(after, dtype=torch.float64))
        adam.step()
    assert torch.allclose(method.logits.detach(), reference.detach(), rtol=0, atol=1e-15)
    assert method.logits[1] > method.logits[0]


def test_famo_needs_the_losses_after_the_step():
    with pytest.raises(ValueError, match="losses_after"):
        build_weighting("famo", 2).after_step(ctx_for([1.0, 1.0]))
