"""GradNorm, MoCo, GradDrop and ConFIG against hand computations and torchjd, their state
round trips, and one training step each (docs/methods.md, "GradNorm", "MoCo", "GradDrop", "ConFIG")."""
import io

import pytest
import torch

from optim.weighting.base import StepContext, gram_matrix
from optim.weighting.config import ConFIG
from optim.weighting.graddrop import GradDrop
from optim.weighting.gradnorm import GradNorm
from optim.weighting.moco import MoCo, project_simplex

D = torch.float64


def make_ctx(losses, grads):
    """grads: K lists of per-parameter tensors (or None)."""
    return StepContext(losses=torch.as_tensor(losses, dtype=D), epoch=0, step=0, lr=1e-3,
                       gram=gram_matrix(grads), grads=grads)


def flat(task):
    return torch.cat([g.reshape(-1) for g in task if g is not None])


def random_grads(num_tasks, seed, shapes=((3, 2), (4,))):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=D) for s in shapes] for _ in range(num_tasks)]


def round_trip(method_cls, first, **options):
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = method_cls(first.num_tasks, **options)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    return resumed


def contributions_equal(a, b):
    return all((x is None and y is None) or torch.equal(x, y) for ta, tb in zip(a, b) for x, y in zip(ta, tb))


# ---- GradNorm --------------------------------------------------------------------------------

DIRECT = {"parametrization": "direct", "rate_reference": "first_step", "weight_decay": 0.0,  # before issue 24
          "trainer": "own"}

def adam_step(param, grad, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return param - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps), m, v


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_gradnorm_weights_follow_two_hand_computed_updates(num_tasks):
    lr, alpha = 0.01, 1.5
    # the paper's form, before issue 24: w trained directly from the first step
    method = GradNorm(num_tasks, lr=lr, alpha=alpha, **DIRECT)
    norms = torch.tensor([3.0, 1.0, 2.0][:num_tasks], dtype=D)
    grads = [[torch.tensor([n, 0.0], dtype=D)] for n in norms]  # ‖g_k‖ = n_k
    losses0 = torch.tensor([2.0, 1.0, 4.0][:num_tasks], dtype=D)
    losses1 = torch.tensor([1.0, 0.9, 2.0][:num_tasks], dtype=D)
    w, m, v = torch.ones(num_tasks, dtype=D), torch.zeros(num_tasks, dtype=D), torch.zeros(num_tasks, dtype=D)
    for t, losses in enumerate([losses0, losses1], start=1):
        mixing = method.mix(make_ctx(losses, grads))
        assert torch.equal(mixing, torch.diag(w))  # the step uses the weights before the update
        r = (losses / losses0) / (losses / losses0).mean()  # step 1: r = 1
        G = w * norms
        grad = torch.sign(G - G.mean() * r**alpha) * norms
        w, m, v = adam_step(w, grad, m, v, t, lr)
        w = w.clamp(min=0) * num_tasks / w.clamp(min=0).sum()
        assert torch.allclose(method.parameter.detach(), w, rtol=0, atol=1e-12)
    assert abs(float(method.parameter.detach().sum()) - num_tasks) < 1e-12
    # step 1 by hand for K = 2: G = (3, 1), target = (2, 2): gradient (+3, −1), Adam moves ∓lr
    if num_tasks == 2:
        first = GradNorm(2, lr=lr, **DIRECT)
        first.mix(make_ctx(losses0, grads))
        assert torch.allclose(first.parameter.detach(), torch.tensor([1 - lr, 1 + lr], dtype=D), atol=1e-9)


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_gradnorm_libmtl_form_waits_for_the_first_epoch_then_trains_softmax_logits(num_tasks):
    """The default (LibMTL): w = 1 through epoch 0, L(0) = its mean losses, then w = K·softmax(z)
    with z from 1 taking Adam steps (weight decay 1e-5) on L_grad at the network's lr."""
    lr, alpha = 0.01, 1.5
    method = GradNorm(num_tasks, alpha=alpha)
    norms = torch.tensor([3.0, 1.0, 2.0][:num_tasks], dtype=D)
    grads = [[torch.tensor([n, 0.0], dtype=D)] for n in norms]
    mean0 = torch.tensor([2.0, 1.0, 4.0][:num_tasks], dtype=D)
    assert torch.equal(method.mix(make_ctx(mean0, grads)), torch.eye(num_tasks, dtype=D))
    method.end_epoch(0, mean0)
    assert torch.equal(method.parameter.detach(), torch.ones(num_tasks, dtype=D))  # untouched in epoch 0
    losses = torch.tensor([1.0, 0.9, 2.0][:num_tasks], dtype=D)
    ctx = make_ctx(losses, grads)
    ctx.epoch, ctx.lr = 1, lr
    assert torch.allclose(method.mix(ctx), torch.eye(num_tasks, dtype=D), atol=1e-15)  # softmax(1) · K = 1
    z = torch.ones(num_tasks, dtype=D, requires_grad=True)
    w = num_tasks * torch.softmax(z, 0)
    r = (losses / mean0) / (losses / mean0).mean()
    scaled = w * norms
    (scaled - (scaled.mean() * r**alpha).detach()).abs().sum().backward()
    expected, _, _ = adam_step(z.detach(), z.grad + 1e-5 * z.detach(), 0, 0, 1, lr)
    assert torch.allclose(method.parameter.detach(), expected, rtol=0, atol=1e-14)


def test_gradnorm_state_round_trip_continues_identically():
    first = GradNorm(3, lr=0.05, **DIRECT)
    for step in range(3):
        first.mix(make_ctx(torch.rand(3, generator=torch.Generator().manual_seed(step), dtype=D) + 0.5,
                           random_grads(3, step)))
    resumed = round_trip(GradNorm, first, lr=0.05, **DIRECT)
    for step in range(3, 6):
        ctx = make_ctx(torch.rand(3, generator=torch.Generator().manual_seed(step), dtype=D) + 0.5,
                       random_grads(3, step))
        assert torch.equal(first.mix(ctx), resumed.mix(ctx))
    assert torch.equal(first.parameter, resumed.parameter)


# ---- MoCo ------------------------------------------------------------------------------------

def test_simplex_projection():
    assert torch.allclose(project_simplex(torch.tensor([0.5, 0.2, 0.3], dtype=D)), torch.tensor([0.5, 0.2, 0.3], dtype=D))
    assert torch.allclose(project_simplex(torch.tensor([2.0, 0.0], dtype=D)), torch.tensor([1.0, 0.0], dtype=D))
    # (0.6, 0.6, −1): shift by 0.1 on the two positive ones → (0.5, 0.5, 0)
    assert torch.allclose(project_simplex(torch.tensor([0.6, 0.6, -1.0], dtype=D)),
                          torch.tensor([0.5, 0.5, 0.0], dtype=D))


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("normalisation, lambda_map", [("loss", "projection"), ("none", "projection"),
                                                       ("loss", "softmax")])
def test_moco_tracks_and_weights_as_by_hand_over_two_steps(num_tasks, normalisation, lambda_map):
    beta, gamma, rho = 0.5, 0.1, 0.2
    method = MoCo(num_tasks, beta=beta, gamma=gamma, rho=rho, normalisation=normalisation, lambda_map=lambda_map)
    steps = [(torch.tensor([1.0, 2.0, 0.5][:num_tasks], dtype=D), random_grads(num_tasks, 1)),
             (torch.tensor([0.8, 1.5, 0.4][:num_tasks], dtype=D), random_grads(num_tasks, 2))]
    y = torch.zeros(num_tasks, 10, dtype=D)
    lam = torch.full((num_tasks,), 1 / num_tasks, dtype=D)
    for t, (losses, grads) in enumerate(steps, start=1):
        g = torch.stack([flat(task) for task in grads])
        h = g / (g.norm(dim=1, keepdim=True) + 1e-8) * losses[:, None] if normalisation == "loss" else g
        y = y - beta / t**0.5 * (y - h)
        raw = lam - gamma / t**0.5 * (y @ y.T + rho * torch.eye(num_tasks, dtype=D)) @ lam
        lam = torch.softmax(raw, 0) if lambda_map == "softmax" else project_simplex(raw)
        parts, mixing = method.contributions(make_ctx(losses, grads))
        assert mixing is None
        assert torch.allclose(method.lambdas, lam, rtol=0, atol=1e-12)
        assert torch.allclose(torch.stack([flat(task) for task in method.tracked]), y, rtol=0, atol=1e-12)
        got = torch.stack([flat(task) for task in parts])
        assert torch.allclose(got, lam[:, None] * y, rtol=0, atol=1e-12)
    assert abs(float(lam.sum()) - 1) < 1e-12 and (lam >= 0).all()


def test_moco_hand_numbers_k2():
    """y and λ after two steps, written out: g = e_1, e_2 scaled, no normalisation, ρ = 0."""
    method = MoCo(2, normalisation="none", lambda_map="projection")
    g1 = [[torch.tensor([2.0, 0.0], dtype=D)], [torch.tensor([0.0, 1.0], dtype=D)]]
    method.contributions(make_ctx([1.0, 1.0], g1))
    # t = 1: β_1 = ½: y = (1, 0), (0, ½); YYᵀ = diag(1, ¼); λ = (½,½) − 0.1·(½, ⅛) = (0.45, 0.4875) → projected
    raw = torch.tensor([0.45, 0.4875], dtype=D)
    lam = raw + (1 - raw.sum()) / 2
    assert torch.allclose(method.lambdas, lam, atol=1e-15)
    method.contributions(make_ctx([1.0, 1.0], g1))
    # t = 2: β_2 = ½/√2; y_1 = 1 + β_2 (2 − 1), y_2 = ½ + β_2 (1 − ½)
    b2 = 0.5 / 2**0.5
    y1, y2 = 1 + b2, 0.5 + b2 * 0.5
    assert torch.allclose(method.tracked[0][0], torch.tensor([y1, 0.0], dtype=D), atol=1e-15)
    assert torch.allclose(method.tracked[1][0], torch.tensor([0.0, y2], dtype=D), atol=1e-15)
    raw = lam - 0.1 / 2**0.5 * torch.tensor([y1**2, y2**2], dtype=D) * lam
    assert torch.allclose(method.lambdas, raw + (1 - raw.sum()) / 2, atol=1e-15)


def test_moco_state_round_trip_continues_identically():
    first = MoCo(3)
    for step in range(3):
        first.contributions(make_ctx([1.0, 2.0, 0.5], random_grads(3, step)))
    resumed = round_trip(MoCo, first)
    for step in range(3, 6):
        ctx = make_ctx([1.0 + step, 2.0, 0.5], random_grads(3, step))
        a, b = first.contributions(ctx), resumed.contributions(ctx)
        assert contributions_equal(a.grads, b.grads)
    assert torch.equal(first.lambdas, resumed.lambdas)


# ---- GradDrop --------------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks", [2, 3])
def test_graddrop_keeps_everything_when_signs_agree(num_tasks):
    grads = [[g.abs() + 0.1 for g in task] for task in random_grads(num_tasks, 3)]
    grads[0][1] = -grads[0][1]
    for task in grads[1:]:  # every task negative on the second parameter
        task[1] = -task[1]
    parts, mixing = GradDrop(num_tasks).contributions(make_ctx([1.0] * num_tasks, grads))
    assert mixing is None
    assert contributions_equal(parts, grads)


def hand_graddrop(matrix, draws, leak):
    """GradDrop's rule written out coordinate by coordinate."""
    num_tasks, size = matrix.shape
    out = torch.zeros_like(matrix)
    for j in range(size):
        column = matrix[:, j]
        purity = 0.5 * (1 + column.sum() / column.abs().sum())
        for k in range(num_tasks):
            keep = (purity > draws[j] and column[k] > 0) or (purity < draws[j] and column[k] < 0)
            out[k, j] = (leak + (1 - leak) * float(keep)) * column[k]
    return out


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_masks_and_torchjd_on_the_same_draws(num_tasks, leak):
    from torchjd.aggregation import GradDrop as TorchJDGradDrop
    grads = random_grads(num_tasks, 4)
    grads[-1][0] = None  # the last task does not reach the first parameter
    method = GradDrop(num_tasks, seed=11, leak=leak)
    for _ in range(2):  # the generator advances between steps
        state = method.generator.get_state()
        parts, _ = method.contributions(make_ctx([1.0] * num_tasks, grads))
        matrix = torch.stack([torch.cat([(torch.zeros(3, 2, dtype=D) if g is None else g).reshape(-1)
                                         for g in task]) for task in grads])
        draws = torch.rand(matrix.shape[1], generator=torch.Generator().set_state(state), dtype=D)
        expected = hand_graddrop(matrix, draws, leak)
        assert parts[-1][0] is None
        got = torch.stack([torch.cat([(torch.zeros(3, 2, dtype=D) if g is None else g).reshape(-1) for g in task])
                           for task in parts])
        assert torch.equal(got, expected)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.set_state(state)
            aggregate = TorchJDGradDrop(leak=torch.full((num_tasks,), leak, dtype=D))(matrix)
        assert torch.allclose(got.sum(0), aggregate, rtol=0, atol=1e-15)


def test_graddrop_hand_masks_k2():
    """Coordinates: P = ½ (opposite signs, equal size), 0 (both negative), 1 (both positive)."""
    grads = [[torch.tensor([1.0, -2.0, 3.0], dtype=D)], [torch.tensor([-1.0, -1.0, 1.0], dtype=D)]]
    method = GradDrop(2, seed=5)
    u = torch.rand(3, generator=torch.Generator().manual_seed(5), dtype=D)
    parts, _ = method.contributions(make_ctx([1.0, 1.0], grads))
    positive_wins = bool(0.5 > u[0])
    assert torch.equal(parts[0][0], torch.tensor([1.0 if positive_wins else 0.0, -2.0, 3.0], dtype=D))
    assert torch.equal(parts[1][0], torch.tensor([0.0 if positive_wins else -1.0, -1.0, 1.0], dtype=D))


def test_graddrop_state_round_trip_continues_identically():
    first = GradDrop(3, seed=2)
    for step in range(2):
        first.contributions(make_ctx([1.0] * 3, random_grads(3, step)))
    resumed = round_trip(GradDrop, first, seed=2)
    for step in range(2, 5):
        ctx = make_ctx([1.0] * 3, random_grads(3, step))
        assert contributions_equal(first.contributions(ctx).grads, resumed.contributions(ctx).grads)


# ---- ConFIG ----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_tasks", [2, 3])
def test_config_equal_cosines_and_torchjd_sum(num_tasks):
    from torchjd.aggregation import ConFIG as TorchJDConFIG
    grads = random_grads(num_tasks, 5)
    grads[0][1] = None
    parts, mixing = ConFIG(num_tasks).contributions(make_ctx([1.0] * num_tasks, grads))
    assert mixing is None
    matrix = torch.stack([torch.cat([(torch.zeros(4, dtype=D) if g is None else g).reshape(-1) for g in task])
                          for task in grads])
    pieces = torch.stack([flat(task) for task in parts])
    update = pieces.sum(0)
    assert torch.allclose(update, TorchJDConFIG()(matrix), rtol=0, atol=1e-12)
    cosines = matrix @ update / (matrix.norm(dim=1) * update.norm())
    assert (cosines > 0).all() and torch.allclose(cosines, cosines[0].expand(num_tasks), atol=1e-12)
    # contribution k is g_k's projection on the update
    unit = update / update.norm()
    assert torch.allclose(pieces, (matrix @ unit)[:, None] * unit[None, :], atol=1e-12)


def test_config_preference_vector_and_zero_update():
    from torchjd.aggregation import ConFIG as TorchJDConFIG
    grads = random_grads(2, 6)
    parts, _ = ConFIG(2, pref_vector="1,3").contributions(make_ctx([1.0, 1.0], grads))
    matrix = torch.stack([flat(task) for task in grads])
    expected = TorchJDConFIG(pref_vector=torch.tensor([1.0, 3.0], dtype=D))(matrix)
    assert torch.allclose(torch.stack([flat(task) for task in parts]).sum(0), expected, rtol=0, atol=1e-12)
    zeros = [[torch.zeros(3, 2, dtype=D), torch.zeros(4, dtype=D)] for _ in range(2)]
    parts, _ = ConFIG(2).contributions(make_ctx([1.0, 1.0], zeros))
    assert all(torch.equal(p, torch.zeros_like(p)) for task in parts for p in task)
    with pytest.raises(ValueError, match="needs 3 values"):
        ConFIG(3, pref_vector="1,2")
