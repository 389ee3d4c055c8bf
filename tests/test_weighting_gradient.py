"""The Gram-matrix methods against their defining properties (docs/methods.md, "Weighting methods"): PCGrad, GDOD,
the torchjd-backed weightings and Nash-MTL. Gradients are explicit float64 matrices G
(rows = tasks); a method's per-task contributions are A G and its update 1ᵀ A G."""
import random
import warnings

import pytest
import torch
import torchjd.aggregation as jd

from optim.weighting import StepContext, build_weighting
from optim.weighting.gdod import gdod_decompose, gdod_mixing
from optim.weighting.nash_mtl import nash_weights
from optim.weighting.pcgrad import pcgrad_mixing, python_orders, random_orders


def jacobian(num_tasks, seed, size=9):
    gen = torch.Generator().manual_seed(seed)
    scales = torch.rand(num_tasks, 1, generator=gen, dtype=torch.float64) * 3 + 0.1
    return torch.randn(num_tasks, size, generator=gen, dtype=torch.float64) * scales


def mix(name, grads, **options):
    ctx = StepContext(losses=torch.ones(len(grads), dtype=torch.float64), epoch=0, step=0, lr=1e-3,
                      gram=grads @ grads.T)
    return build_weighting(name, len(grads), **options).mix(ctx)


# ---- PCGrad --------------------------------------------------------------------------------

def test_pcgrad_two_tasks_closed_form():
    g1, g2 = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), torch.tensor([-2.0, 0.5, 1.0], dtype=torch.float64)
    projected = mix("pcgrad", torch.stack([g1, g2])) @ torch.stack([g1, g2])
    dot = g1 @ g2
    assert dot < 0
    assert torch.allclose(projected[0], g1 - dot / (g2 @ g2) * g2, atol=1e-14)
    assert torch.allclose(projected[1], g2 - dot / (g1 @ g1) * g1, atol=1e-14)
    aligned = torch.stack([g1, g1 + g2])  # ⟨g1, g1 + g2⟩ > 0: nothing to project
    assert torch.equal(mix("pcgrad", aligned), torch.eye(2, dtype=torch.float64))


def explicit_pcgrad(grads, orders):
    """PCGrad on the vectors themselves, the paper's loop."""
    out = []
    for i, order in enumerate(orders):
        g = grads[i].clone()
        for j in order:
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return torch.stack(out)


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_pcgrad_matches_the_vector_algorithm_and_leaves_no_conflict(num_tasks):
    for seed in range(20):
        grads = jacobian(num_tasks, seed)
        orders = random_orders(num_tasks, torch.Generator().manual_seed(seed))
        projected = pcgrad_mixing(grads @ grads.T, orders) @ grads
        assert torch.allclose(projected, explicit_pcgrad(grads, orders), atol=1e-12)
        for i, order in enumerate(orders):
            # the last task met is never conflicting afterwards; with K = 2 that is every other task
            assert projected[i] @ grads[order[-1]] >= -1e-9


@pytest.mark.usefixtures("seeded_and_restored")
def test_pcgrad_two_tasks_equals_torchjd():
    for seed in range(5):
        grads = jacobian(2, seed)
        assert torch.allclose(mix("pcgrad", grads).sum(0) @ grads, jd.PCGrad()(grads), atol=1e-12)


@pytest.mark.usefixtures("seeded_and_restored")
def test_pcgrad_orders_come_from_its_own_seeded_generator():
    grads = jacobian(3, 0)
    ctx = StepContext(losses=torch.ones(3), epoch=0, step=0, lr=1.0, gram=grads @ grads.T)
    a, b = build_weighting("pcgrad", 3, seed=5), build_weighting("pcgrad", 3, seed=5)
    torch.manual_seed(123)
    first = [a.mix(ctx) for _ in range(4)]
    torch.manual_seed(456)
    assert all(torch.equal(x, b.mix(ctx)) for x in first)
    # the default: LibMTL's orders, Python's random.shuffle of all K tasks, from random.Random(seed)
    rng = random.Random(5)
    assert torch.equal(first[0], pcgrad_mixing(grads @ grads.T, python_orders(3, rng), eps=1e-8))
    # --pcgrad-shuffle torch (before issue 24): torch.randperm of the other tasks
    legacy = build_weighting("pcgrad", 3, seed=5, shuffle="torch", eps=0.0)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(legacy.mix(ctx), pcgrad_mixing(grads @ grads.T, random_orders(3, gen)))


def test_pcgrad_resumes_its_python_orders():
    grads = jacobian(3, 1)
    ctx = StepContext(losses=torch.ones(3), epoch=0, step=0, lr=1.0, gram=grads @ grads.T)
    a = build_weighting("pcgrad", 3, seed=2)
    a.mix(ctx)
    b = build_weighting("pcgrad", 3, seed=2)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.mix(ctx), b.mix(ctx)) for _ in range(5))


# ---- GDOD ----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks", [2, 3])
def test_gdod_basis_coefficients_and_closed_form(num_tasks):
    for seed in range(10):
        grads = jacobian(num_tasks, seed)
        dec = gdod_decompose(grads)
        rank = dec.basis.shape[0]
        assert rank == num_tasks
        assert torch.allclose(dec.basis @ dec.basis.T, torch.eye(rank, dtype=torch.float64), atol=1e-10)
        assert torch.allclose(dec.coefficients @ dec.basis, grads, atol=1e-10)  # G = c U: spans span(G)
        eigenvalues, vectors = torch.linalg.eigh(grads @ grads.T)
        assert torch.allclose(dec.coefficients, vectors * eigenvalues.sqrt(), atol=1e-12)  # c_ij = √λ_j V_ij
        mixing = gdod_mixing(grads @ grads.T)
        assert torch.allclose(mixing.sum(0) @ grads, dec.update(), atol=1e-10)  # α = V_S V_Sᵀ 1
        shared = dec.coefficients[:, dec.shared]
        assert torch.allclose(mixing @ grads, shared @ dec.basis[dec.shared], atol=1e-10)  # per-task parts


def test_gdod_two_generic_tasks_share_exactly_one_direction():
    for seed in range(10):
        grads = jacobian(2, seed)
        dec = gdod_decompose(grads)
        assert dec.shared.sum() == 1
        v = dec.coefficients[:, dec.shared][:, 0]
        assert (v > 0).all() or (v < 0).all()
        update = dec.update()
        u = dec.basis[dec.shared][0]
        assert torch.allclose(update, (update @ u) * u, atol=1e-10)  # rank 1 along the shared direction
        assert torch.linalg.matrix_rank(mix("gdod", grads)) == 1


def test_gdod_orthogonal_and_anti_parallel_gradients():
    orthogonal = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(mix("gdod", orthogonal).sum(0) @ orthogonal, orthogonal.sum(0), atol=1e-12)
    assert torch.allclose(mix("gdod", orthogonal, zeros="conflict"), torch.zeros(2, 2, dtype=torch.float64))
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    anti = torch.stack([g, -2 * g])
    assert torch.allclose(mix("gdod", anti), torch.zeros(2, 2, dtype=torch.float64), atol=1e-12)
    assert torch.equal(mix("gdod", torch.zeros(2, 3, dtype=torch.float64)), torch.zeros(2, 2, dtype=torch.float64))


# ---- torchjd-backed weightings ----------------------------------------------------------------

# Each method with the options that make it torchjd's computation (the defaults are our
# MGDA solvers and Aligned-MTL's float32 rank cut-off, tested in test_weighting_fidelity.py).
TORCHJD = {
    "mgda": (jd.MGDA, {"solver": "frank_wolfe", "normalization": "none"}),
    "cagrad": (lambda: jd.CAGrad(c=0.4), {"convention": "ours"}),
    "imtl": (jd.IMTLG, {}),
    "upgrad": (jd.UPGrad, {}),
    "aligned_mtl": (jd.AlignedMTL, {"rank_eps": torch.finfo(torch.float64).eps, "convention": "ours"}),
    "dualproj": (jd.DualProj, {}),
}


@pytest.mark.parametrize("name", TORCHJD)
@pytest.mark.parametrize("num_tasks", [2, 3])
def test_torchjd_backed_methods_equal_torchjd_aggregators(name, num_tasks):
    aggregator, options = TORCHJD[name]
    for seed in range(3):
        grads = jacobian(num_tasks, seed)
        mixing = mix(name, grads, **options)
        assert torch.equal(mixing, torch.diag(mixing.diagonal()))
        assert torch.allclose(mixing.sum(0) @ grads, aggregator()(grads), rtol=1e-9, atol=1e-9)


# ---- Nash-MTL ------------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks", [2, 3])
def test_nash_mtl_solves_the_bargaining_equation_and_matches_torchjd(num_tasks):
    for seed in range(3):
        grads = jacobian(num_tasks, seed)
        gram = grads @ grads.T
        alpha = mix("nash_mtl", grads, max_norm=0.0).diagonal()  # unclipped: α itself
        assert (alpha > 0).all()
        assert torch.allclose(gram @ alpha, 1 / alpha, rtol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cvxpy's "not DPP" notice
            reference = jd.NashMTL(num_tasks, max_norm=0.0)(grads)
        assert torch.allclose(alpha @ grads, reference, rtol=1e-4, atol=1e-6 * reference.norm())


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_nash_mtl_clips_the_shared_update_as_the_official_code(num_tasks):
    """Default max_norm 1: the update Σ α_k g_k (norm √K) is scaled by torch's clip factor
    1 / (√K + 1e-6), every contribution alike; the heads' weights stay α; a small max_norm
    that the update is under leaves it alone."""
    grads = jacobian(num_tasks, 5)
    ctx = StepContext(losses=torch.ones(num_tasks, dtype=torch.float64), epoch=0, step=0, lr=1e-3,
                      gram=grads @ grads.T)
    method = build_weighting("nash_mtl", num_tasks)
    mixing = method.mix(ctx)
    alpha, _ = nash_weights(grads @ grads.T)
    assert torch.allclose(mixing.diagonal(), alpha / (num_tasks**0.5 + 1e-6), rtol=1e-9)
    assert abs(float((mixing.sum(0) @ grads).norm()) - num_tasks**0.5 / (num_tasks**0.5 + 1e-6)) < 1e-9
    assert torch.allclose(method.head_weights(mixing), alpha, rtol=1e-9)
    loose = build_weighting("nash_mtl", num_tasks, max_norm=10.0).mix(ctx)
    assert torch.allclose(loose.diagonal(), alpha, rtol=1e-9)


def test_nash_mtl_hard_cases():
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    # positively collinear: a solution exists although M is singular
    collinear = torch.stack([g, 3 * g])
    alpha, _ = nash_weights(collinear @ collinear.T)
    assert torch.allclose(collinear @ collinear.T @ alpha, 1 / alpha, rtol=1e-5)
    # three gradients in a plane, inside a half-plane
    planar = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64) * 1e-3
    alpha, _ = nash_weights(planar @ planar.T)
    assert torch.allclose(planar @ planar.T @ alpha, 1 / alpha, rtol=1e-5)
    # anti-parallel: no solution; the ridge keeps α finite and the update is zero
    anti = torch.stack([g, -g])
    alpha, _ = nash_weights(anti @ anti.T)
    assert torch.isfinite(alpha).all() and (alpha @ anti).norm() < 1e-9 * alpha.max()
    assert torch.equal(nash_weights(torch.zeros(2, 2, dtype=torch.float64))[0], torch.ones(2, dtype=torch.float64))


def test_nash_mtl_warm_start_and_update_interval():
    grads = [jacobian(2, seed) for seed in range(3)]
    cold = [nash_weights(g @ g.T)[0] for g in grads]
    method = build_weighting("nash_mtl", 2, update_every=2)
    out = [method.weights(StepContext(losses=torch.ones(2), epoch=0, step=s, lr=1.0, gram=g @ g.T))
           for s, g in enumerate(grads)]
    assert torch.allclose(out[0], cold[0], rtol=1e-9)
    assert torch.equal(out[1], out[0])  # reused between solves
    assert torch.allclose(out[2], cold[2], rtol=1e-7)  # warm start: the same solution
