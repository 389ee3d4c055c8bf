"""The training step's wiring: Gram matrix, mixing, one backward for loss-only methods,
clipping the same way for every method, dominance tracking fed what was applied."""
import pytest
import torch
from torch import nn

from optim import build_optimizer
from optim.dominance import DominanceTracker
from optim.multitask_step import MultiTaskStep, gram_matrix
from optim.weighting import build_weighting
from optim.weighting.base import StepContext, mix_gradients

# these tests seed or draw from the global RNGs (torch.manual_seed, layer initialisation): given back after each
pytestmark = pytest.mark.usefixtures("seeded_and_restored")


def test_gram_matrix_and_mixing_follow_their_formulas():
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(3, 2, generator=gen), torch.randn(4, generator=gen)] for _ in range(3)]
    flat = torch.stack([torch.cat([g.reshape(-1) for g in task]) for task in grads]).double()
    assert torch.allclose(gram_matrix(grads), flat @ flat.T)
    grads[1][0] = None  # a task that does not reach a parameter counts as zero
    flat[1, :6] = 0
    assert torch.allclose(gram_matrix(grads), flat @ flat.T)
    mixing = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    mixed = mix_gradients(mixing, grads)
    expected = mixing @ flat
    for i in range(3):
        assert torch.allclose(torch.cat([g.reshape(-1) for g in mixed[i]]).double(), expected[i], atol=1e-6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(4, 6)
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(2))
        self.backward_calls = 0

    def losses(self, x):
        z = self.trunk(x)
        z.register_hook(lambda g: setattr(self, "backward_calls", self.backward_calls + 1))
        return [(h(z) - k).pow(2).mean() for k, h in enumerate(self.heads)]


def make_step(method, weighting, clip=None, track=False):
    net = Net()
    shared, own = list(net.trunk.parameters()), [list(h.parameters()) for h in net.heads]
    opt = build_optimizer(method, shared, own, 1.0)
    tracker = DominanceTracker(opt, [("trunk", shared)], 2) if track else None
    return net, MultiTaskStep(opt, build_weighting(weighting, 2), shared, own, clip, tracker)


def ctx():
    return StepContext(losses=None, epoch=0, step=0, lr=1.0)


@pytest.mark.parametrize("method, weighting, passes", [
    ("adam", "ew", 1), ("adam", "dwa", 1), ("adam_with_adatask", "ew", 2), ("adam", "pcgrad", 2)])
def test_only_methods_that_use_per_task_gradients_pay_for_them(method, weighting, passes):
    net, step = make_step(method, weighting)
    step(net.losses(torch.randn(8, 4)), ctx())
    assert net.backward_calls == passes


@pytest.mark.parametrize("method", ["sgd", "adam_with_adatask"])
@pytest.mark.parametrize("weighting", ["ew", "pcgrad"])
def test_clipping_bounds_the_applied_gradient_the_same_way_everywhere(method, weighting, monkeypatch):
    net, step = make_step(method, weighting, clip=1e-3)
    applied = {}
    original = step.optimizer.step

    def spy(*args, task_grads=None, **kwargs):
        shared = [sum(g[i] for g in task_grads) for i in range(2)] if task_grads else [p.grad for p in step.shared_params]
        own = [p.grad for task in step.task_params for p in task]
        applied["norm"] = torch.sqrt(sum(g.pow(2).sum() for g in shared + own)).item()
        return original(*args, task_grads=task_grads, **kwargs) if task_grads else original(*args, **kwargs)

    monkeypatch.setattr(step.optimizer, "step", spy)
    step(net.losses(torch.randn(8, 4) * 100), ctx())
    assert applied["norm"] == pytest.approx(1e-3, rel=1e-3)


def test_tracking_under_a_plain_optimizer_takes_per_task_gradients():
    net, step = make_step("adam", "ew", track=True)
    for _ in range(3):
        step(net.losses(torch.randn(8, 4)), ctx())
    assert net.backward_calls == 6
    rows = step.tracker.layer_summary()
    assert [r["task"] for r in rows] == [0, 1]
    assert sum(r["mean_rau"] for r in rows) == pytest.approx(1.0)


@pytest.mark.parametrize("weighting", ["ew", "dwa"])
def test_diagnostics_of_a_plain_optimizer_leave_its_update_unchanged(weighting):
    """--diagnostics: per-task gradients on the side of the one summed backward."""
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    plain_net, plain = make_step("adam", weighting)
    probed_net, probed = make_step("adam", weighting)
    assert plain(plain_net.losses(x), ctx()) == {}
    info = probed(probed_net.losses(x), ctx(), want_diagnostics=True)
    for a, b in zip(plain_net.parameters(), probed_net.parameters()):
        assert torch.equal(a, b)  # bit for bit: results do not depend on the flag
    assert probed_net.backward_calls == 3  # two per-task passes for the diagnostics, then the summed one
    # the diagnostics are those of the per-task gradients, as a step that needs them reports them
    fresh = Net()
    losses = fresh.losses(x)
    g = [torch.cat([t.reshape(-1) for t in torch.autograd.grad(l, list(fresh.trunk.parameters()),
                                                               retain_graph=True)]) for l in losses]
    assert info["cosine/0-1"] == pytest.approx(float(g[0] @ g[1] / (g[0].norm() * g[1].norm())), rel=1e-5)
    assert info["norm_ratio/0-1"] == pytest.approx(float(g[0].norm() / g[1].norm()), rel=1e-5)
    assert info["weight/0"] == info["weight/1"] == 1.0
