"""GradVac, FairGrad, SDMGrad, ExcessMTL and DualProj (torchjd wrappers): each one's defining
property against values computed here by hand, checkpoint round trips, one training step."""
import io
import math

import pytest
import torch

from optim.weighting.base import StepContext
from optim.weighting.dualproj import DualProj
from optim.weighting.excess_mtl import ExcessMTL
from optim.weighting.fairgrad import FairGrad
from optim.weighting.gradvac import GradVac
from optim.weighting.sdmgrad import SDMGrad

METHODS = [GradVac, FairGrad, SDMGrad, ExcessMTL, DualProj]


def context(rows, step=0):
    """A step whose task gradients are the rows given (one shared parameter)."""
    grads = torch.tensor(rows, dtype=torch.float64)
    return StepContext(losses=torch.ones(len(rows), dtype=torch.float64), epoch=0, step=step, lr=1e-3,
                       gram=grads @ grads.T, grads=[[g] for g in grads])


def random_context(step, num_tasks=3, size=6):
    gen = torch.Generator().manual_seed(100 + step)
    grads = torch.randn(num_tasks, size, generator=gen, dtype=torch.float64)
    return StepContext(losses=torch.ones(num_tasks, dtype=torch.float64), epoch=0, step=step, lr=1e-3,
                       gram=grads @ grads.T, grads=[[g[:2], g[2:].reshape(-1, 1)] for g in grads])


def test_metadata_and_weights_follow_the_gram_dtype():
    for cls in METHODS:
        method = cls(3)
        assert method.name and method.paper and method.needs and method.cost and method.needs_grads
        weights = method.weights(random_context(0))
        assert weights.shape == (3,) and weights.dtype == torch.float64 and torch.isfinite(weights).all()


# GradVac

def test_gradvac_raises_a_conflicting_cosine_to_the_zero_target():
    # φ̂ = 0: g1 = (1,0), g2 = (-1,1), cos = -1/√2. g1' = g1 + a g2 with a = ‖g1‖(−cos)/‖g2‖ = 1/2
    # (then g1'·g2 = 0); g2' = g2 + b g1 with b = ‖g2‖(−cos)/‖g1‖ = 1. Update g1' + g2' = 2 g1 + 1.5 g2.
    method = GradVac(2)
    weights = method.weights(context([[1.0, 0.0], [-1.0, 1.0]]))
    assert torch.allclose(weights, torch.tensor([2.0, 1.5], dtype=torch.float64), atol=1e-7)
    # targets: (1 − β)·0 + β·cos
    expected_phi = 0.5 * (-1 / math.sqrt(2)) * (1 - torch.eye(2, dtype=torch.float64))
    assert torch.allclose(method.state_dict()["phi"], expected_phi)


def test_gradvac_leaves_agreeing_pairs_and_raises_to_a_positive_target():
    method = GradVac(2)
    # cos = 1/√2 ≥ φ̂ = 0: untouched; φ̂ becomes β/√2.
    weights = method.weights(context([[1.0, 0.0], [1.0, 1.0]]))
    assert torch.allclose(weights, torch.ones(2, dtype=torch.float64))
    target = 0.5 / math.sqrt(2)
    # orthogonal unit gradients: cos 0 < target, g_i' = g_i + a g_j with a = target/√(1 − target²),
    # which makes cos(g_i', g_j) = a/√(1 + a²) = target.
    weights = method.weights(context([[1.0, 0.0], [0.0, 1.0]]))
    a = target / math.sqrt(1 - target ** 2)
    assert torch.allclose(weights, torch.full((2,), 1 + a, dtype=torch.float64), atol=1e-7)
    assert math.isclose(a / math.sqrt(1 + a ** 2), target, rel_tol=1e-12)


def test_gradvac_three_tasks_only_the_conflicting_pair_is_changed():
    # g3 is orthogonal to g1 and g2 (cos 0, not below the target 0), so every order gives
    # the two-task answer for g1, g2 and leaves g3 alone.
    for seed in range(4):
        weights = GradVac(3, seed=seed).weights(context([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
        assert torch.allclose(weights, torch.tensor([2.0, 1.5, 1.0], dtype=torch.float64), atol=1e-7)


@pytest.mark.usefixtures("seeded_and_restored")
def test_gradvac_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    GradVac(3).weights(random_context(0))
    assert torch.equal(torch.rand(3), expected)


# FairGrad

@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("num_tasks", [2, 3])
def test_fairgrad_solves_its_fixed_point_equation(alpha, num_tasks):
    ctx = random_context(1, num_tasks)
    ctx.gram += 0.5 * torch.eye(num_tasks, dtype=torch.float64)  # well conditioned, positive definite
    w = FairGrad(num_tasks, alpha=alpha).weights(ctx)
    assert (w > 0).all()
    assert torch.allclose(ctx.gram @ w, w.pow(-1 / alpha), rtol=1e-5, atol=1e-7)


def test_fairgrad_orthogonal_gradients_closed_form():
    # M = diag(a, b): a w_1 = w_1^(-1/α)  ⇒  w_1 = a^(−α/(α+1)).
    for alpha in (1.0, 2.0):
        w = FairGrad(2, alpha=alpha).weights(context([[2.0, 0.0], [0.0, 0.5]]))
        expected = torch.tensor([4.0, 0.25], dtype=torch.float64).pow(-alpha / (alpha + 1))
        assert torch.allclose(w, expected, rtol=1e-6)
    assert torch.equal(FairGrad(3, alpha=0.0).weights(random_context(0)), torch.full((3,), 1 / 3, dtype=torch.float64))


# SDMGrad

def simplex_projection(v):
    """Euclidean projection onto {w ≥ 0, Σ w = 1} (sort and threshold)."""
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, 0) - 1
    ks = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - cumulative / ks > 0).max())
    return (v - cumulative[rho] / (rho + 1)).clamp(min=0)


def sdmgrad_by_definition(grams, lamda=0.3, n_iter=20, lr=10.0, momentum=0.5, published=False, max_norm=0.0):
    """torchjd's form, or (published) the authors': M / mean_k √(M_kk + 1e-4)², weights × K,
    the update Σ α_k g_k clipped to max_norm."""
    num_tasks = len(grams[0])
    w = torch.full((num_tasks,), 1 / num_tasks, dtype=torch.float64)
    tilde = torch.full((num_tasks,), 1 / num_tasks, dtype=torch.float64)
    out = []
    for gram in grams:
        if published:
            a = gram / (gram.diagonal() + 1e-4).sqrt().mean() ** 2
        else:
            a = gram / (gram.diagonal().clamp(min=0).sqrt().mean() ** 2 + 1e-8)
        velocity = None
        for _ in range(n_iter):  # SGD with momentum on ½‖G(w + λ w̃)‖², projected on the simplex
            grad = a @ (w + lamda * tilde)
            velocity = grad if velocity is None else momentum * velocity + grad
            w = simplex_projection(w - lr * velocity)
        alphas = (w + lamda * tilde) / (1 + lamda) * (num_tasks if published else 1)
        if max_norm:
            alphas = alphas * min(1.0, max_norm / (float(alphas @ gram @ alphas) ** 0.5 + 1e-6))
        out.append(alphas)
    return out


def test_sdmgrad_follows_its_definition_with_warm_start():
    for options, published, max_norm in (({"convention": "torchjd", "max_norm": 0.0}, False, 0.0),
                                         ({}, True, 1.0), ({"max_norm": 0.5}, True, 0.5)):
        method = SDMGrad(3, **options)
        contexts = [random_context(step) for step in range(3)]
        expected = sdmgrad_by_definition([ctx.gram for ctx in contexts], published=published, max_norm=max_norm)
        for ctx, want in zip(contexts, expected):
            assert torch.allclose(method.weights(ctx), want, atol=1e-12)


def test_sdmgrad_converges_to_the_two_task_closed_form():
    # min over the simplex of ‖G v‖², v = w + λ/2: with w interior, v_1/v_2 = (M22 − M12)/(M11 − M12)
    # and v_1 + v_2 = 1 + λ, so the weights v/(1 + λ) are MGDA's (M22 − M12, M11 − M12)/(M11 + M22 − 2 M12);
    # the published convention multiplies them by K
    closed_form = torch.tensor([0.8, 0.2], dtype=torch.float64)
    method = SDMGrad(2, lr=0.1, n_iter=3000, convention="torchjd", max_norm=0.0)
    assert torch.allclose(method.weights(context([[1.0, 0.0], [0.0, 2.0]])), closed_form, atol=1e-8)
    method = SDMGrad(2, lr=0.1, n_iter=3000, max_norm=0.0)
    assert torch.allclose(method.weights(context([[1.0, 0.0], [0.0, 2.0]])), 2 * closed_form, atol=1e-8)


def test_sdmgrad_clips_the_shared_update_to_max_norm():
    ctx = context([[4.0, 0.0], [0.0, 9.0]])
    alphas = SDMGrad(2).weights(ctx)  # unclipped, ‖G α‖ is above 2
    assert float(alphas @ ctx.gram @ alphas) ** 0.5 == pytest.approx(1.0, abs=1e-6)


# ExcessMTL

def test_excess_mtl_first_updates_by_hand():
    """torchjd's convention (the default until issue 24): from 1/K, updated from the first step."""
    eta = 0.5
    method = ExcessMTL(3, robust_step_size=eta, convention="torchjd")
    j1 = torch.tensor([[3.0, 0.0, 1.0], [0.0, 4.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    j2 = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)

    def ctx(jac):  # two parameters: columns 0–1 and column 2; task 2 does not reach the second
        return StepContext(losses=torch.ones(3, dtype=torch.float64), epoch=0, step=0, lr=1.0, gram=jac @ jac.T,
                           grads=[[jac[k, :2], None if k == 1 else jac[k, 2:]] for k in range(3)])

    # Eq. 6–7: S = Σ_t g², e_k = Σ_p g_kp² / √(S_kp + 1e-7); Eq. 9 from w = 1/K, the first e raw.
    s = j1 ** 2
    e1 = (j1 ** 2 / (s + 1e-7).sqrt()).sum(1)
    w1 = torch.exp(eta * e1) / torch.exp(eta * e1).sum()
    assert torch.allclose(method.weights(ctx(j1)), w1, rtol=1e-12)
    s = s + j2 ** 2
    e2 = (j2 ** 2 / (s + 1e-7).sqrt()).sum(1) / (e1 + 1e-7)
    w2 = w1 * torch.exp(eta * e2) / (w1 * torch.exp(eta * e2)).sum()
    assert torch.allclose(method.weights(ctx(j2)), w2, rtol=1e-12)
    assert torch.allclose(w2.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_excess_mtl_warmup_keeps_uniform_weights_then_uses_the_mean_baseline():
    method = ExcessMTL(2, robust_step_size=1.0, n_warmup_steps=2, convention="torchjd")
    rows = [[[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 2.0]]]
    uniform = torch.full((2,), 0.5, dtype=torch.float64)
    assert torch.equal(method.weights(context(rows[0])), uniform)
    assert torch.equal(method.weights(context(rows[1])), uniform)
    # e at steps 1, 2, 3 for a constant gradient c: c²/√(t c² + 1e-7) ≈ |c|/√t, baseline the mean of t = 1, 2
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    e = [g ** 2 / (t * g ** 2 + 1e-7).sqrt() for t in (1, 2, 3)]
    ratio = e[2] / ((e[0] + e[1]) / 2 + 1e-7)
    expected = torch.softmax(torch.log(uniform) + ratio, 0)
    assert torch.allclose(method.weights(context(rows[2])), expected, rtol=1e-12)


def test_excess_mtl_official_by_hand():
    """The authors' code (the default): w = 1 at the first step, which only sets the baseline
    e⁰; then w ← K w exp(η e / e⁰) / Σ w exp(η e / e⁰)."""
    eta = 0.5
    method = ExcessMTL(2, robust_step_size=eta)
    assert method.head_grads == "weighted"
    j1 = torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    j2 = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    assert torch.equal(method.weights(context(j1.tolist())), torch.ones(2, dtype=torch.float64))
    e1 = (j1 ** 2 / (j1 ** 2 + 1e-7).sqrt()).sum(1)
    e2 = (j2 ** 2 / (j1 ** 2 + j2 ** 2 + 1e-7).sqrt()).sum(1) / e1
    expected = 2 * torch.exp(eta * e2) / torch.exp(eta * e2).sum()
    assert torch.allclose(method.weights(context(j2.tolist())), expected, rtol=1e-12)
    restored = ExcessMTL(2, robust_step_size=eta)
    restored.load_state_dict(method.state_dict())
    j3 = torch.tensor([[0.5, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert torch.equal(restored.weights(context(j3.tolist())), method.weights(context(j3.tolist())))


# DualProj

def test_dualproj_projects_the_mean_by_hand():
    # g1 = (1,0), g2 = (−2,1): mean (−½,½) has g1·d < 0; its projection on {g1·d ≥ 0, g2·d ≥ 0}
    # drops the g1 component: d = (0, ½) = 1·g1 + ½·g2.
    w = DualProj(2).weights(context([[1.0, 0.0], [-2.0, 1.0]]))
    assert torch.allclose(w, torch.tensor([1.0, 0.5], dtype=torch.float64), atol=1e-3)
    # a mean already in the dual cone is kept: w = 1/K
    w = DualProj(3).weights(context([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert torch.allclose(w, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("reg_eps", [1e-4, 1e-10])
@pytest.mark.parametrize("step", range(4))
def test_dualproj_satisfies_the_projection_optimality_conditions(step, reg_eps):
    # d = Gᵀw is the projection of the mean Gᵀ(1/K) onto the dual cone iff d = mean + Σ λ_k g_k with
    # λ = w − 1/K ≥ 0, g_kᵀd ≥ 0, and λ_k g_kᵀd = 0 (KKT of the projection). torchjd solves it on
    # M/tr(M) + ε I, so these hold for (M/tr(M) + ε I) w, and g_kᵀd/tr(M) ≥ −ε w_k.
    gen = torch.Generator().manual_seed(step)
    rows = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    rows[2] = 0.3 * rows[2] - 1.5 * rows[0]  # task 3 conflicts with task 1: the mean leaves the cone
    ctx = context(rows.tolist())
    w = DualProj(3, reg_eps=reg_eps).weights(ctx)
    lam = w - 1 / 3
    assert lam.max() > 1e-2  # the projection is active
    dots = ctx.gram @ w / ctx.gram.trace()
    regularised = dots + reg_eps * w
    assert (lam >= -1e-8).all()
    assert (regularised >= -1e-8).all()
    assert (lam * regularised).abs().max() < 1e-8
    assert (dots >= -reg_eps * w - 1e-8).all()


# checkpoints and training

@pytest.mark.parametrize("cls", METHODS)
def test_state_round_trip_continues_identically(cls):
    method = cls(3)
    for step in range(3):
        method.weights(random_context(step))
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    resumed = cls(3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for step in range(3, 7):
        assert torch.equal(method.weights(random_context(step)), resumed.weights(random_context(step)))
