"""HydaLearn and the look-ahead helper (docs/methods.md, "HydaLearn"): measured gains, BatchNorm buffers
restored, weights proportional to positive gains, the fallback."""
import copy

import pytest
import torch
from torch import nn

from optim import task_gradients
from optim.weighting import StepContext, build_weighting, losses_after_fn
from optim.weighting.hydalearn import first_order_gains, hydalearn_weights


class BNNet(nn.Module):
    """A shared trunk with BatchNorm and two heads, float64."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh()).double()
        self.heads = nn.ModuleList(nn.Linear(8, 1).double() for _ in range(2))

    def losses(self, x, ys):
        z = self.trunk(x)
        return torch.stack([((h(z).squeeze(1) - y) ** 2).mean() for h, y in zip(self.heads, ys)])


def batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    return x, [x[:, 0] + 0.1 * torch.randn(16, generator=gen, dtype=torch.float64),
               -x[:, 1] + x[:, 0] ** 2]


def setup(model):
    x, ys = batch()
    model.train()
    shared = list(model.trunk.parameters())
    losses = model.losses(x, ys)
    grads = task_gradients(losses, shared, [list(h.parameters()) for h in model.heads])
    return x, ys, shared, losses.detach(), grads


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.usefixtures("seeded_and_restored")
def test_lookahead_measures_the_loss_and_restores_everything():
    model = BNNet()
    x, ys, shared, losses, grads = setup(model)
    before = snapshot(model)
    losses_after = losses_after_fn(model, lambda: model.losses(x, ys), shared)
    eta = 0.1
    for k in range(2):
        measured = losses_after([-eta * g for g in grads[k]])
        independent = copy.deepcopy(model)  # the same step taken on a copy, by hand
        with torch.no_grad():
            for p, g in zip(independent.trunk.parameters(), grads[k]):
                p.sub_(eta * g)
            assert torch.equal(measured, independent.losses(x, ys))
        assert not torch.equal(independent.trunk[1].running_mean, before["trunk.1.running_mean"])  # it would move
        for key, value in model.state_dict().items():  # parameters, running stats, num_batches_tracked
            assert torch.equal(value, before[key]), key
    assert torch.equal(losses_after(None), losses)
    assert model.training


@pytest.mark.usefixtures("seeded_and_restored")
def test_lookahead_gain_weights():
    model = BNNet()
    x, ys, shared, losses, grads = setup(model)
    losses_after = losses_after_fn(model, lambda: model.losses(x, ys), shared)
    method = build_weighting("hydalearn", 2, main_task=1, eta=0.05, normalise="main")
    ctx = StepContext(losses=losses, epoch=0, step=0, lr=1e-3, grads=grads, losses_after=losses_after)
    weights = method.weights(ctx)
    drops = [float(losses[1] - losses_after([-0.05 * g for g in grads[k]])[1]) for k in range(2)]
    assert torch.allclose(method.last_gains, torch.tensor(drops, dtype=torch.float64), rtol=0, atol=1e-15)
    expected = torch.tensor([max(drops[0], 0) / drops[1], 1.0], dtype=torch.float64)
    assert torch.allclose(weights, expected, rtol=0, atol=1e-12)
    assert torch.equal(method.mix(ctx), torch.diag(expected))
    recomputed = build_weighting("hydalearn", 2, main_task=1, eta=0.05, recompute_base=True)
    assert torch.equal(recomputed.weights(ctx), weights)  # the batch's loss is L_main(θ) here


def test_weights_proportional_to_positive_gains():
    gains = torch.tensor([2.0, 1.0, -1.0, 0.5], dtype=torch.float64)
    weights, fell_back = hydalearn_weights(gains, 0, "main")
    assert not fell_back and torch.equal(weights, torch.tensor([1.0, 0.5, 0.0, 0.25], dtype=torch.float64))
    weights, _ = hydalearn_weights(gains, 0, "sum")
    assert torch.allclose(weights, 4 * torch.tensor([2.0, 1.0, 0.0, 0.5], dtype=torch.float64) / 3.5)


def test_no_main_task_gain_falls_back_to_equal_weights_and_counts():
    method = build_weighting("hydalearn", 2, main_task=0)
    worse = lambda delta: torch.tensor([2.0, 0.5], dtype=torch.float64)  # the main loss rises along every step
    grads = [[torch.ones(3, dtype=torch.float64)], [-torch.ones(3, dtype=torch.float64)]]
    ctx = StepContext(losses=torch.tensor([1.0, 1.0], dtype=torch.float64), epoch=0, step=0, lr=1e-3,
                      grads=grads, losses_after=worse)
    for count in (1, 2):
        assert torch.equal(method.weights(ctx), torch.ones(2, dtype=torch.float64))
        assert method.fallbacks == count
    assert method.state_dict() == {"fallbacks": 2}


def test_first_order_gain_is_eta_times_the_gram_row():
    grads = torch.tensor([[1.0, 2.0, 0.0], [1.0, -0.2, 0.5]], dtype=torch.float64)
    gram = grads @ grads.T
    assert torch.equal(first_order_gains(gram, 0, 0.01), 0.01 * gram[0])
    method = build_weighting("hydalearn", 2, gain="first_order", eta=0.01)
    ctx = StepContext(losses=torch.ones(2, dtype=torch.float64), epoch=0, step=0, lr=1e-3, gram=gram)
    assert torch.allclose(method.weights(ctx), gram[0] / gram[0, 0])


def test_main_task_must_exist():
    with pytest.raises(ValueError, match="main_task"):
        build_weighting("hydalearn", 2, main_task=2)
