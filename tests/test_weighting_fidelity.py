"""Where our methods meet the published implementations (docs/methods.md, "Published
implementations"): small-gradient guards, the float64 Gram matrix, Aligned-MTL's rank cut-off,
MGDA's exact solver, the published scale conventions, --head-grads and DWA's iteration mode."""
import pytest
import torch
from torch import nn

from optim import build_optimizer
from optim.multitask_step import MultiTaskStep
from optim.weighting import StepContext, build_weighting
from optim.weighting.base import gram_matrix


def context(grads, losses=None):
    """A step's context for explicit (K, P) float64 gradient rows."""
    losses = torch.ones(len(grads), dtype=torch.float64) if losses is None else losses
    return StepContext(losses=losses, epoch=0, step=0, lr=1e-3, gram=grads @ grads.T, grads=[[g] for g in grads])


def update(name, grads, **options):
    return build_weighting(name, len(grads), **options).mix(context(grads)).sum(0) @ grads


CONFLICTING = torch.tensor([[1.0, 0.2, -0.3, 0.5], [-0.6, 1.0, 0.4, 0.1], [0.2, -0.4, 1.0, -0.7]],
                           dtype=torch.float64)


# ---- small gradients: no update skipped --------------------------------------------------------

@pytest.mark.parametrize("name", ["cagrad", "upgrad", "dualproj"])
def test_small_gradients_get_the_same_direction_as_large_ones(name):
    """At Σ‖g_k‖² < 1e-4 torchjd's absolute norm_eps zeroed the Gram matrix: CAGrad gave no
    update at all, UPGrad the plain mean. The weights do not depend on the gradients' scale, so
    gradients 1e-4 as large (Σ‖g_k‖² ≈ 1e-8) must give the same weights. UPGrad and DualProj
    keep torchjd's absolute guard by default (issue 24): relative_guard selects ours."""
    options = {} if name == "cagrad" else {"relative_guard": True}
    large = build_weighting(name, 3, **options).mix(context(CONFLICTING)).diagonal()
    small = build_weighting(name, 3, **options).mix(context(CONFLICTING * 1e-4)).diagonal()
    assert float((CONFLICTING * 1e-4).pow(2).sum()) < 1e-4
    assert small.abs().sum() > 0.1
    assert torch.allclose(small, large, rtol=1e-6, atol=1e-9)


def test_small_gradient_upgrad_still_projects():
    grads = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], dtype=torch.float64) * 1e-4
    direction = update("upgrad", grads, relative_guard=True)
    # in the dual cone (up to the QP's ridge): no task's loss rises
    assert (grads @ direction >= -1e-3 * grads.norm(dim=1) * direction.norm()).all()
    assert not torch.allclose(direction, grads.mean(0))  # the plain mean conflicts with task 0
    assert grads[0] @ grads.mean(0) < 0
    # torchjd's absolute guard (the default): Σ‖g_k‖² < norm_eps zeroes M, no projection, the plain mean
    assert torch.allclose(update("upgrad", grads), grads.mean(0), rtol=1e-12, atol=0)


# ---- the Gram matrix in float64 ----------------------------------------------------------------

def test_gram_matrix_keeps_the_small_eigenvalue_of_nearly_collinear_float32_gradients():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4000, generator=gen)
    other = base + 1e-3 * torch.randn(4000, generator=gen)  # collinear to about 1e-3: λ_min/λ_max ≈ 1e-7
    grads = [[base[:1000].reshape(10, 100), base[1000:]], [other[:1000].reshape(10, 100), other[1000:]]]
    exact = torch.stack([base, other]).double()
    exact = exact @ exact.T
    gram = gram_matrix(grads)
    assert gram.dtype == torch.float64
    smallest = torch.linalg.eigvalsh(exact)[0]
    assert torch.allclose(torch.linalg.eigvalsh(gram)[0], smallest, rtol=1e-9)
    flat32 = torch.stack([base, other])
    float32_product = (flat32 @ flat32.T).double()  # what multiplying in the gradients' dtype gave
    assert abs(torch.linalg.eigvalsh(float32_product)[0] - smallest) > 0.01 * smallest


# ---- Aligned-MTL near collinear ------------------------------------------------------------------

def test_aligned_mtl_drops_a_direction_below_float32_resolution_as_the_official_code():
    g = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    grads = torch.stack([g, g + torch.tensor([0.0, 0.0, 1e-5], dtype=torch.float64)])  # λ_min/λ_max ≈ 1e-11
    dropped = update("aligned_mtl", grads, convention="ours")
    kept = update("aligned_mtl", grads, rank_eps=torch.finfo(torch.float64).eps, convention="ours")
    # one direction left: the aligned mean is the plain mean's projection on it, norm ≈ ‖g‖ = 1.41
    assert dropped.norm() == pytest.approx(2**0.5, rel=1e-6)
    # keeping the tiny direction scales everything by √(λ_min / λ_max): the update nearly vanishes
    assert kept.norm() < 1e-4


def test_aligned_mtl_published_convention_sums_the_aligned_gradients():
    ours = update("aligned_mtl", CONFLICTING, convention="ours")
    assert torch.allclose(update("aligned_mtl", CONFLICTING), 3 * ours, atol=1e-12)  # the default: the authors' sum


# ---- MGDA: exact at our K ------------------------------------------------------------------------

def kkt_violation(gram, weights):
    """The min-norm point's optimality: (M w)_j ≥ wᵀMw for every j, with equality where w_j > 0."""
    value, slopes = weights @ gram @ weights, gram @ weights
    return max(float((value - slopes).clamp(min=0).max()), float((slopes[weights > 1e-12] - value).abs().max()))


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_mgda_exact_solver_is_the_exact_min_norm_point(num_tasks):
    gen = torch.Generator().manual_seed(num_tasks)
    for trial in range(20):
        grads = torch.randn(num_tasks, 12, generator=gen, dtype=torch.float64)
        grads[1] = 0.3 * grads[0] + 0.5 * grads[1]
        if trial % 4 == 0:
            grads[-1] = 2 * grads[0]  # collinear: a singular face
        weights = build_weighting("mgda", num_tasks, solver="exact", normalization="none").weights(context(grads))
        assert weights.min() >= 0 and float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
        gram = grads @ grads.T
        assert kkt_violation(gram, weights) < 1e-10 * float(gram.diagonal().max())


def test_mgda_frank_wolfe_is_inexact_at_three_tasks_and_the_exact_solver_is_not():
    gen = torch.Generator().manual_seed(3)
    worst_fw = worst_exact = 0.0
    for _ in range(20):
        grads = torch.randn(3, 12, generator=gen, dtype=torch.float64)
        grads[1] = 0.3 * grads[0] + 0.5 * grads[1]
        gram = grads @ grads.T
        fw = build_weighting("mgda", 3, solver="frank_wolfe", normalization="none").weights(context(grads))
        exact = build_weighting("mgda", 3, solver="exact", normalization="none").weights(context(grads))
        worst_fw = max(worst_fw, float((fw @ gram @ fw) / (exact @ gram @ exact)) - 1)
        worst_exact = max(worst_exact, kkt_violation(gram, exact))
    assert worst_fw > 1e-4 and worst_exact < 1e-10


def test_mgda_two_tasks_closed_form_and_published_scale():
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-0.5, 1.0], dtype=torch.float64)
    alpha = float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))
    for solver in ("published", "exact"):
        weights = build_weighting("mgda", 2, solver=solver, normalization="none").weights(context(torch.stack([g1, g2])))
        assert weights.tolist() == pytest.approx([alpha, 1 - alpha], abs=1e-14)
    published = build_weighting("mgda", 2, convention="published", normalization="none").weights(
        context(torch.stack([g1, g2])))
    assert published.tolist() == pytest.approx([2 * alpha, 2 * (1 - alpha)], abs=1e-14)


def test_mgda_published_solver_clamps_a_vertex_and_normalises_by_loss_times_norm():
    """The authors' MinNormSolver answers γ = 0.999 (not 1) where the min-norm point is a vertex;
    the default 'loss+' solves on g_k / (L_k‖g_k‖) and applies the weights to the g_k."""
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([2.0, 1.0], dtype=torch.float64)
    grads = torch.stack([g1, g2])
    assert build_weighting("mgda", 2, normalization="none").weights(context(grads)).tolist() == \
        pytest.approx([0.999, 0.001], abs=1e-15)
    assert build_weighting("mgda", 2, solver="exact", normalization="none").weights(context(grads)).tolist() == \
        pytest.approx([1.0, 0.0], abs=1e-12)
    losses = torch.tensor([0.5, 2.0], dtype=torch.float64)
    divided = grads / (losses * grads.norm(dim=1))[:, None]
    default = build_weighting("mgda", 2).weights(context(grads, losses))
    on_divided = build_weighting("mgda", 2, normalization="none").weights(context(divided))
    assert torch.allclose(default, on_divided, atol=1e-14) and float(default.sum()) == pytest.approx(1.0)


def test_cagrad_published_convention_is_ours_times_k_over_one_plus_c_squared():
    ours = update("cagrad", CONFLICTING, c=0.5, convention="ours")
    published = update("cagrad", CONFLICTING, c=0.5)  # the default: the authors' scale
    assert torch.allclose(published, ours * 3 / 1.25, atol=1e-9)


# ---- --head-grads --------------------------------------------------------------------------------

class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(3, 4)
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(2))

    def losses(self, x):
        z = self.trunk(x)
        return [(h(z) - k).pow(2).mean() for k, h in enumerate(self.heads)]


def head_gradients(weighting, **options):
    """The heads' gradients as the step leaves them (lr 0: nothing moves), and each head's
    plain ∇L_k, and the method's weights."""
    net = TwoHeads()
    shared, own = list(net.trunk.parameters()), [list(h.parameters()) for h in net.heads]
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    plain = [torch.autograd.grad(loss, params, retain_graph=True) for loss, params in zip(net.losses(x), own)]
    method = build_weighting(weighting, 2, **options)
    step = MultiTaskStep(build_optimizer("adam", shared, own, 0.0), method, shared, own)
    step(net.losses(x), StepContext(losses=None, epoch=0, step=0, lr=0.0))
    trunk_grads = [torch.autograd.grad(loss, shared, retain_graph=True) for loss in net.losses(x)]
    alphas = method.mix(StepContext(losses=torch.ones(2), epoch=0, step=0, lr=0.0, gram=gram_matrix(trunk_grads))).sum(0)
    return [[p.grad for p in params] for params in own], plain, alphas


@pytest.mark.usefixtures("seeded_and_restored")
def test_mgda_heads_get_weighted_gradients_by_default_and_own_on_request():
    applied, plain, alphas = head_gradients("mgda", normalization="none")
    assert 0 < alphas[0] < 1
    for k in range(2):
        for got, want in zip(applied[k], plain[k]):
            assert torch.allclose(got, float(alphas[k]) * want, atol=1e-6)
    applied, plain, _ = head_gradients("mgda", head_grads="own", normalization="none")
    for k in range(2):
        for got, want in zip(applied[k], plain[k]):
            assert torch.allclose(got, want, atol=1e-7)


@pytest.mark.usefixtures("seeded_and_restored")
def test_pcgrad_heads_get_their_own_gradients_by_default():
    applied, plain, _ = head_gradients("pcgrad")
    for k in range(2):
        for got, want in zip(applied[k], plain[k]):
            assert torch.allclose(got, want, atol=1e-7)


@pytest.mark.parametrize("weighting, reason", [("ew", "loss-only"), ("graddrop", "no K×K weighting")])
@pytest.mark.usefixtures("seeded_and_restored")
def test_weighted_heads_are_refused_where_they_mean_nothing(weighting, reason):
    net = TwoHeads()
    shared, own = list(net.trunk.parameters()), [list(h.parameters()) for h in net.heads]
    with pytest.raises(ValueError, match=f"--head-grads weighted: --weighting {weighting} is .*{reason}"):
        MultiTaskStep(build_optimizer("adam", shared, own, 1e-3), build_weighting(weighting, 2, head_grads="weighted"),
                      shared, own)


def test_head_grads_is_recorded_for_gradient_methods_only():
    assert build_weighting("nash_mtl", 2).options()["head_grads"] == "weighted"
    assert build_weighting("imtl", 2, head_grads="own").options()["head_grads"] == "own"
    assert "head_grads" not in build_weighting("dwa", 2).options()
    with pytest.raises(ValueError, match="--head-grads must be one of own, weighted"):
        build_weighting("mgda", 2, head_grads="scaled")


# ---- DWA per iteration ---------------------------------------------------------------------------

def test_dwa_iteration_mode_by_hand():
    """W = 2, T = 1: the window holds the last 4 steps' losses (ones at first); from the 4th step
    (after more than W steps) w = softmax(mean(last 2) / mean(2 before)); 1/K before."""
    method = build_weighting("dwa", 2, mode="iteration", window=2, temperature=1.0)
    sequence = [[2.0, 4.0], [1.0, 3.0], [1.0, 2.0], [0.5, 2.0], [0.5, 1.0]]
    got = [method.weights(StepContext(losses=torch.tensor(l, dtype=torch.float64), epoch=0, step=i, lr=0.0))
           for i, l in enumerate(sequence)]
    for w in got[:3]:
        assert w.tolist() == [0.5, 0.5]
    # step 4: window [[2,4],[1,3],[1,2],[0.5,2]] -> last two mean (0.75, 2), first two mean (1.5, 3.5)
    r = torch.tensor([0.75 / 1.5, 2.0 / 3.5], dtype=torch.float64)
    assert torch.allclose(got[3], torch.softmax(r, 0), atol=1e-15)
    # step 5: window [[1,3],[1,2],[0.5,2],[0.5,1]] -> (0.5, 1.5) / (1, 2.5)
    r = torch.tensor([0.5 / 1.0, 1.5 / 2.5], dtype=torch.float64)
    assert torch.allclose(got[4], torch.softmax(r, 0), atol=1e-15)
    assert float(got[4].sum()) == pytest.approx(1.0)


def test_dwa_epoch_mode_ignores_the_steps():
    method = build_weighting("dwa", 2)
    for losses in ([2.0, 4.0], [1.0, 1.0]):
        assert method.weights(StepContext(losses=torch.tensor(losses), epoch=0, step=0, lr=0.0)).tolist() == [1, 1]


def test_the_mgda_accuracy_script_reports_frank_wolfe_against_the_exact_solver(capsys):
    from scripts import mgda_accuracy

    mgda_accuracy.main(["--trials", "3"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    errors = {(r[0].strip("| "), r[1]): float(r[2]) for r in rows if r[1].startswith("frank_wolfe epsilon=0.001 ")}
    assert errors[("2", "frank_wolfe epsilon=0.001 max_iters=100")] < 1e-12  # one line search: exact
    assert errors[("3", "frank_wolfe epsilon=0.001 max_iters=100")] > 1e-4  # inexact at K = 3
    published = {r[0].strip("| "): float(r[2]) for r in rows if r[1] == "published"}
    assert published["2"] == pytest.approx(1e-3, rel=1e-6)  # the clamp at a vertex (every fifth case: collinear)


@pytest.mark.usefixtures("seeded_and_restored")
def test_nash_mtl_clip_scales_every_adatask_contribution_alike_before_clip_grad_norm():
    """Under AdaTask each task's moments get α_k g_k times the one factor computed on the summed
    update (norm √K → 1); --clip-grad-norm then clips that sum once more; the heads keep α_k ∇L_k."""
    net = TwoHeads()
    shared, own = list(net.trunk.parameters()), [list(h.parameters()) for h in net.heads]
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    trunk = [torch.autograd.grad(loss, shared, retain_graph=True) for loss in net.losses(x)]
    plain = [torch.autograd.grad(loss, params, retain_graph=True) for loss, params in zip(net.losses(x), own)]
    alpha = build_weighting("nash_mtl", 2, max_norm=0.0).weights(
        StepContext(losses=torch.ones(2), epoch=0, step=0, lr=0.0, gram=gram_matrix(trunk)))
    for clip, total in ((None, 1 / (2**0.5 + 1e-6) * 2**0.5), (0.5, 0.5)):
        optimizer = build_optimizer("adam_with_adatask", shared, own, 0.0)
        fed = {}
        optimizer.step = lambda closure=None, task_grads=None, fed=fed: fed.update(task_grads=task_grads)
        step = MultiTaskStep(optimizer, build_weighting("nash_mtl", 2), shared, own, clip_grad_norm=clip)
        step(net.losses(x), StepContext(losses=None, epoch=0, step=0, lr=0.0))
        ratios = [torch.cat([g.reshape(-1) for g in fed["task_grads"][k]]).norm()
                  / (float(alpha[k]) * torch.cat([g.reshape(-1) for g in trunk[k]]).norm()) for k in range(2)]
        assert float(ratios[0]) == pytest.approx(float(ratios[1]), rel=1e-5)  # one factor for every task
        summed = torch.cat([sum(task[i] for task in fed["task_grads"]).reshape(-1) for i in range(len(shared))])
        heads_norm = sum(float(p.grad.pow(2).sum()) for params in own for p in params) ** 0.5
        if clip is None:
            assert float(summed.norm()) == pytest.approx(total, rel=1e-5)
            for k in range(2):  # the heads: α_k ∇L_k, not clipped
                for got, want in zip([p.grad for p in own[k]], plain[k]):
                    assert torch.allclose(got, float(alpha[k]) * want, atol=1e-6)
        else:  # --clip-grad-norm 0.5 after: the shared sum and the heads together have norm 0.5
            assert (float(summed.norm()) ** 2 + heads_norm**2) ** 0.5 == pytest.approx(0.5, rel=1e-5)
