"""IMTL-L (and its IMTL-L+G hybrid), STCH, GLS and DB-MTL against hand-computed values, their
checkpointable state, and one step each through the training step (docs/methods.md,
"Weighting methods"). The classes are built directly, not through the registry."""
import io
import math

import pytest
import torch
import torchjd.aggregation as jd
import torchjd.scalarization as jds

from optim.weighting.base import StepContext, gram_matrix
from optim.weighting.db_mtl import DBMTL
from optim.weighting.gls import GLS, gls_weights
from optim.weighting.imtl_l import IMTLL
from optim.weighting.stch import STCH

F64 = torch.float64


def ctx_for(losses, epoch=0, step=0, grads=None):
    losses = torch.as_tensor(losses, dtype=F64)
    gram = None if grads is None else gram_matrix(grads)
    return StepContext(losses=losses, epoch=epoch, step=step, lr=1e-3, gram=gram, grads=grads)


def vec(*values):
    return torch.tensor(values, dtype=F64)


def round_trip(method, fresh):
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


def test_metadata_and_options():
    for cls in (IMTLL, STCH, GLS, DBMTL):
        assert cls.name and cls.paper and cls.needs and cls.cost
    assert [c.name for c in (IMTLL, STCH, GLS, DBMTL)] == ["imtl_l", "stch", "gls", "db_mtl"]
    assert IMTLL(2).options() == {"trainer": "network", "lr": 1e-4, "weight_decay": 1e-5, "hybrid": False,
                                  "heads": "scaled"}
    assert STCH(2).options() == {"mu": 1.0, "warmup_epochs": 4}
    assert DBMTL(2).options() == {"beta": 0.9, "beta_sigma": 0.0, "head_grads": "weighted"}
    assert not IMTLL(2).needs_grads and IMTLL(2, hybrid=True).needs_grads and not IMTLL.needs_grads
    assert DBMTL.needs_grads and not DBMTL.mixes and not GLS.needs_grads and not STCH.needs_grads
    with pytest.raises(ValueError, match="expects bool"):
        IMTLL(2, hybrid=1)
    with pytest.raises(ValueError, match="mu must be > 0"):
        STCH(2, mu=0.0)


# ---- IMTL-L ------------------------------------------------------------------------------------

def adam_steps(gradients, lr, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam's update of one scalar from 0, by hand."""
    x, m, v = 0.0, 0.0, 0.0
    for t, g in enumerate(gradients, start=1):
        g = g(x)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        x -= lr * (m / (1 - betas[0] ** t)) / (math.sqrt(v / (1 - betas[1] ** t)) + eps)
    return x


@pytest.mark.parametrize("losses", [[3.0, 0.5], [0.2, 1.0, 7.0]])
def test_imtl_l_weights_are_the_scales_and_s_takes_adam_steps_on_its_objective(losses):
    method = IMTLL(len(losses), lr=0.1, weight_decay=0.0, trainer="own")
    ctx = ctx_for(losses)
    assert torch.equal(method.weights(ctx), torch.ones(len(losses), dtype=F64))  # s = 0
    second = [2.0 * x for x in losses]
    method.after_step(ctx)
    method.after_step(ctx_for(second))
    # ∂/∂s (e^s L − s) = e^s L − 1, at the s of each step
    expected = [adam_steps([lambda s, a=a: math.exp(s) * a - 1, lambda s, b=b: math.exp(s) * b - 1], 0.1)
                for a, b in zip(losses, second)]
    assert torch.allclose(method.log_scales.detach(), vec(*expected), rtol=0, atol=1e-14)
    assert torch.allclose(method.weights(ctx), torch.exp(vec(*expected)), rtol=0, atol=1e-14)


def test_imtl_l_equals_its_objective_gradient():
    """The weights are ∂/∂L of torchjd's IMTL-L scalarisation at the current scales."""
    method = IMTLL(3, lr=0.05)
    for step in range(4):
        method.after_step(ctx_for([1.0 + step, 0.3, 5.0]))
    losses = vec(2.0, 0.5, 3.0).requires_grad_()
    reference = jds.IMTLL(3).double()
    with torch.no_grad():
        reference.log_scale.copy_(method.log_scales)
    (expected,) = torch.autograd.grad(reference(losses), losses)
    assert torch.allclose(method.weights(ctx_for([2.0, 0.5, 3.0])), expected, rtol=0, atol=1e-15)


def task_matrix(num_tasks, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_tasks, 7, generator=gen, dtype=F64) * (torch.rand(num_tasks, 1, generator=gen) * 3 + 0.2)


def libmtl_imtl_g(grads):
    """The paper's closed form of IMTL-G (its eq. for α_{2..K}, α_1 = 1 − Σ), as LibMTL computes it."""
    units = grads / grads.norm(dim=1, keepdim=True)
    d = grads[:1] - grads[1:]
    u = units[:1] - units[1:]
    rest = grads[0] @ u.T @ torch.linalg.inv(d @ u.T)
    return torch.cat([(1 - rest.sum()).unsqueeze(0), rest])


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_imtl_l_hybrid_at_zero_scales_is_imtl_g(num_tasks):
    for seed in range(5):
        grads = task_matrix(num_tasks, seed)
        method = IMTLL(num_tasks, hybrid=True)
        w = method.weights(ctx_for([1.0] * num_tasks, grads=[[g] for g in grads]))
        assert torch.allclose(w, jd.IMTLGWeighting()(grads @ grads.T), rtol=0, atol=1e-12)
        update = w @ grads
        projections = grads @ update / grads.norm(dim=1)
        assert torch.allclose(projections, projections[0].expand(num_tasks), rtol=1e-10, atol=0)


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_imtl_l_hybrid_is_imtl_g_on_the_scaled_gradients(num_tasks):
    """As LibMTL's IMTL: α from IMTL-G on e^{s_k} g_k (sum 1), the update Σ α_k e^{s_k} g_k."""
    for seed in range(5):
        grads = task_matrix(num_tasks, seed)
        method = IMTLL(num_tasks, hybrid=True)
        with torch.no_grad():
            method.log_scales.copy_(torch.linspace(-0.7, 0.9, num_tasks, dtype=F64))
        scales = torch.exp(method.log_scales.detach())
        w = method.weights(ctx_for([1.0] * num_tasks, grads=[[g] for g in grads]))
        alpha = libmtl_imtl_g(scales[:, None] * grads)
        assert torch.allclose(w, alpha * scales, rtol=1e-9, atol=1e-12)
        assert (w / scales).sum().item() == pytest.approx(1.0, abs=1e-12)
        update = w @ grads  # equal projections on the unit task gradients, so IMTL-G's direction
        projections = grads @ update / grads.norm(dim=1)
        assert torch.allclose(projections, projections[0].expand(num_tasks), rtol=1e-9, atol=0)
        plain = jd.IMTLGWeighting()(grads @ grads.T) @ grads
        assert torch.allclose(update / update.norm(), plain / plain.norm(), atol=1e-10)


@pytest.mark.parametrize("hybrid", [False, True])
def test_imtl_l_state_round_trip(hybrid):
    def run(method, steps):
        out = []
        for step in steps:
            grads = task_matrix(3, step)
            ctx = ctx_for((grads.norm(dim=1) ** 2).tolist(), step=step, grads=[[g] for g in grads])
            out.append(method.weights(ctx))
            method.after_step(ctx)
        return out

    first = IMTLL(3, lr=0.05, hybrid=hybrid)
    run(first, range(4))
    resumed = round_trip(first, IMTLL(3, lr=0.05, hybrid=hybrid))
    for a, b in zip(run(first, range(4, 8)), run(resumed, range(4, 8))):
        assert torch.equal(a, b)


# ---- STCH --------------------------------------------------------------------------------------

def test_stch_warms_up_on_log_losses_then_uses_the_nadir_of_epoch_w():
    method = STCH(2, warmup_epochs=1)
    for epoch, losses in [(0, [9.0, 9.0]), (1, [2.0, 4.0]), (1, [4.0, 8.0])]:
        ctx = ctx_for(losses, epoch=epoch)
        assert torch.allclose(method.weights(ctx), 1.0 / vec(*losses), rtol=1e-15)  # ∂ Σ log L_k
        method.after_step(ctx)
    assert torch.equal(method.nadir, vec(3.0, 6.0))  # the mean losses of epoch W = 1 only
    # epoch 2, L = (3, 12): log(L/n) = (0, log 2), softmax = (1/3, 2/3), w_k = K p_k / L_k
    assert torch.allclose(method.weights(ctx_for([3.0, 12.0], epoch=2)), vec(2 / 9, 1 / 9), rtol=1e-12)
    method.after_step(ctx_for([3.0, 12.0], epoch=2))
    assert torch.equal(method.nadir, vec(3.0, 6.0))  # fixed from then on


def test_stch_hand_values():
    method = STCH(2, warmup_epochs=0, mu=0.5)
    for losses in ([2.0, 4.0], [4.0, 8.0]):
        method.after_step(ctx_for(losses, epoch=0))
    # μ = 1/2: p ∝ exp(2 log(L/n)) = (L/n)² = (1, 4) → (1/5, 4/5); w = 2 p / L
    assert torch.allclose(method.weights(ctx_for([3.0, 12.0], epoch=1)), vec(2 / 15, 2 / 15), rtol=1e-12)
    three = STCH(3, warmup_epochs=0)
    three.after_step(ctx_for([1.0, 1.0, 1.0], epoch=0))
    # μ = 1, n = 1: p = L / Σ L, w = 3 p / L = 3 / Σ L
    assert torch.allclose(three.weights(ctx_for([1.0, 2.0, 3.0], epoch=1)), vec(0.5, 0.5, 0.5), rtol=1e-12)


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("mu", [0.1, 1.0])
def test_stch_weights_are_the_gradient_of_the_scalarisation(num_tasks, mu):
    """S = K · torchjd's STCH with unit preferences on log(L/n + 1e-20) (LibMTL's form)."""
    gen = torch.Generator().manual_seed(num_tasks)
    method = STCH(num_tasks, warmup_epochs=0, mu=mu)
    for _ in range(3):
        method.after_step(ctx_for((torch.rand(num_tasks, generator=gen, dtype=F64) * 5 + 0.1).tolist()))
    losses = (torch.rand(num_tasks, generator=gen, dtype=F64) * 5 + 0.1).requires_grad_()
    scalarizer = jds.STCH(mu, weights=torch.ones(num_tasks, dtype=F64))
    total = num_tasks * scalarizer(torch.log(losses / method.nadir + 1e-20))
    (expected,) = torch.autograd.grad(total, losses)
    got = method.weights(ctx_for(losses.detach().tolist(), epoch=1))
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def test_stch_collects_the_nadir_later_when_epoch_w_had_no_step():
    method = STCH(2, warmup_epochs=1)
    method.after_step(ctx_for([1.0, 1.0], epoch=3))  # resumed past epoch 1: epoch 3 is collected
    assert torch.allclose(method.weights(ctx_for([2.0, 5.0], epoch=3)), vec(0.5, 0.2))  # still warming up
    assert torch.equal(method.nadir, vec(1.0, 1.0)) and method.nadir_epoch == 3
    w = method.weights(ctx_for([1.0, 3.0], epoch=4))
    assert torch.allclose(w, vec(0.5, 0.5), rtol=1e-12)  # 2 p_k / L_k with p = (1/4, 3/4)


def test_stch_state_round_trip():
    def run(method, steps):
        out = []
        for step in steps:
            ctx = ctx_for([1.0 + step % 3, 2.0 + 0.1 * step], epoch=step // 3, step=step)
            out.append(method.weights(ctx))
            method.after_step(ctx)
        return out

    first = STCH(2, warmup_epochs=1, mu=0.3)
    run(first, range(5))  # mid-epoch 1: the nadir is being collected
    resumed = round_trip(first, STCH(2, warmup_epochs=1, mu=0.3))
    for a, b in zip(run(first, range(5, 12)), run(resumed, range(5, 12))):
        assert torch.equal(a, b)


# ---- GLS ---------------------------------------------------------------------------------------

def test_gls_hand_values():
    # S = (1·4)^{1/2} = 2, w_k = S / (K L_k)
    assert torch.allclose(GLS(2).weights(ctx_for([1.0, 4.0])), vec(1.0, 0.25), rtol=1e-15)
    # S = (1·2·4)^{1/3} = 2
    assert torch.allclose(GLS(3).weights(ctx_for([1.0, 2.0, 4.0])), vec(2 / 3, 1 / 3, 1 / 6), rtol=1e-15)


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_gls_is_the_gradient_of_the_geometric_mean(num_tasks):
    losses = (torch.rand(num_tasks, generator=torch.Generator().manual_seed(num_tasks), dtype=F64) + 0.1)
    losses.requires_grad_()
    (expected,) = torch.autograd.grad(jds.GeometricMean()(losses), losses)
    assert torch.allclose(gls_weights(losses.detach()), expected, rtol=1e-14)


def test_gls_guards_zero_and_refuses_negative_losses():
    w = gls_weights(vec(0.0, 4.0))
    assert torch.isfinite(w).all()
    assert torch.allclose(w, gls_weights(vec(1e-8, 4.0)), rtol=0, atol=0)  # L = 0 counts as 1e-8
    assert GLS(2).state_dict() == {}  # stateless
    with pytest.raises(ValueError, match="non-negative"):
        gls_weights(vec(-1.0, 4.0))


# ---- DB-MTL ------------------------------------------------------------------------------------

def db_ctx(losses, vectors, step=0):
    return ctx_for(losses, step=step, grads=[[torch.tensor(v, dtype=F64)] for v in vectors])


def contribution_vectors(method, ctx):
    grads, mixing = method.contributions(ctx)
    assert mixing is None
    return [task[0] for task in grads]


def test_db_mtl_two_steps_by_hand():
    method = DBMTL(2)  # β = 0.9, σ = 0
    # step 1: log-loss gradients g/(L+ε) = (3, 4), (2, 0); EMAs from 0: 0.1·that = (.3, .4), (.2, 0)
    c1, c2 = contribution_vectors(method, db_ctx([1.0, 0.5], [[3.0, 4.0], [1.0, 0.0]]))
    assert torch.allclose(c1, vec(0.3, 0.4), atol=1e-8)  # the largest norm (0.5) stays
    assert torch.allclose(c2, vec(0.5, 0.0), atol=1e-8)  # (.2, 0) rescaled to norm 0.5
    # step 2: log-loss gradients (0, 1), (0, 1); EMAs 0.9·old + 0.1·new
    c1, c2 = contribution_vectors(method, db_ctx([1.0, 2.0], [[0.0, 1.0], [0.0, 2.0]], step=1))
    m1, m2 = vec(0.27, 0.46), vec(0.18, 0.10)
    n1, n2 = math.sqrt(0.27**2 + 0.46**2), math.sqrt(0.18**2 + 0.10**2)
    assert torch.allclose(c1, m1, atol=1e-8)
    assert torch.allclose(c2, m2 * n1 / n2, atol=1e-8)
    assert c1.norm().item() == pytest.approx(c2.norm().item(), rel=1e-7)


def test_db_mtl_three_tasks_beta_decay_and_unreached_parameters():
    method = DBMTL(3, beta=0.5, beta_sigma=1.0)  # step t uses β / t
    grads = [[vec(2.0, 0.0), None], [vec(0.0, 1.0), vec(1.0)], [None, vec(-3.0)]]
    out, _ = method.contributions(ctx_for([1.0, 1.0, 1.0], grads=grads))
    # step 1, β_1 = 0.5: EMAs 0.5·g; norms (1, √(.25+.25) = √.5, 1.5); all rescaled to 1.5
    assert out[0][1] is None and out[2][0] is None
    assert torch.allclose(out[0][0], vec(1.5, 0.0), atol=1e-7)
    s = 1.5 / math.sqrt(0.5)
    assert torch.allclose(out[1][0], vec(0.0, 0.5 * s), atol=1e-7) and torch.allclose(out[1][1], vec(0.5 * s))
    assert torch.allclose(out[2][1], vec(-1.5), atol=1e-7)
    grads = [[vec(0.0, 0.0), None], [vec(0.0, 0.0), vec(0.0)], [None, vec(0.0)]]
    out, _ = method.contributions(ctx_for([1.0, 1.0, 1.0], grads=grads))
    # step 2, β_2 = 0.25, zero gradients: every EMA is a quarter of the last; the same ratios
    assert torch.allclose(out[0][0], vec(0.375, 0.0), atol=1e-7)
    assert torch.allclose(out[2][1], vec(-0.375), atol=1e-7)


def test_db_mtl_state_round_trip():
    def run(method, steps):
        out = []
        for step in steps:
            gen = torch.Generator().manual_seed(step)
            grads = [[torch.randn(3, 2, generator=gen), torch.randn(4, generator=gen)] for _ in range(3)]
            grads[2][1] = None
            losses = (torch.rand(3, generator=gen) + 0.5).tolist()
            out += [g for task in method.contributions(ctx_for(losses, step=step, grads=grads)).grads
                    for g in task if g is not None]
        return out

    first = DBMTL(3, beta_sigma=0.5)
    run(first, range(3))
    resumed = round_trip(first, DBMTL(3, beta_sigma=0.5))
    for a, b in zip(run(first, range(3, 7)), run(resumed, range(3, 7)), strict=True):
        assert torch.equal(a, b)
