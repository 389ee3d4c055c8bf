"""AdaTask against its defining properties (docs/methods.md, "AdaTask"), for all three bases."""
import copy

import pytest
import torch
from torch import nn

from optim import AdagradWithAdaTask, AdamWithAdaTask, RMSpropWithAdaTask, task_gradients

# these tests seed or draw from the global RNGs (torch.manual_seed, layer initialisation): given back after each
pytestmark = pytest.mark.usefixtures("seeded_and_restored")

BASES = {
    "adam": (AdamWithAdaTask, torch.optim.Adam, dict(lr=1e-2)),
    "rmsprop": (RMSpropWithAdaTask, torch.optim.RMSprop, dict(lr=1e-3)),
    "adagrad": (AdagradWithAdaTask, torch.optim.Adagrad, dict(lr=1e-2)),
}


class TwoTaskNet(nn.Module):
    """A shared trunk and one head per task; float64 so comparisons are tight."""

    def __init__(self, num_tasks=2):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh()).double()
        self.heads = nn.ModuleList(nn.Linear(8, 1).double() for _ in range(num_tasks))

    def task_params(self):
        return [list(h.parameters()) for h in self.heads]

    def losses(self, x, ys, scales=None):
        z = self.trunk(x)
        scales = scales or [1.0] * len(self.heads)
        return torch.stack([s * ((h(z).squeeze(1) - y) ** 2).mean() for h, y, s in zip(self.heads, ys, scales)])


def batches(steps, num_tasks=2):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
        yield x, [torch.randn(16, generator=gen, dtype=torch.float64) + k for k in range(num_tasks)]


def step_both(net_a, ada, net_b, ref, x, ys):
    """One step of AdaTask on net_a and of a torch.optim optimizer on net_b, same batch."""
    ada.zero_grad()
    ada.backward(net_a.losses(x, ys))
    ada.step()
    ref.zero_grad()
    net_b.losses(x, ys).sum().backward()
    ref.step()


def max_param_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("foreach", [True, False])
def test_one_task_equals_torch_optim(base, foreach):
    ada_cls, torch_cls, kw = BASES[base]
    net_a, net_b = TwoTaskNet(1), TwoTaskNet(1)
    ada = ada_cls(net_a.trunk.parameters(), task_params=net_a.task_params(), foreach=foreach, **kw)
    ref = torch_cls(net_b.parameters(), **kw)
    for x, ys in batches(30, 1):
        step_both(net_a, ada, net_b, ref, x, ys)
        assert max_param_diff(net_a, net_b) <= 1e-7
    assert max_param_diff(net_a, TwoTaskNet(1)) > 1e-3  # it did move


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("foreach", [True, False])
def test_update_is_sum_of_independent_base_optimizers(base, foreach):
    """With gradients that do not depend on θ, AdaTask's displacement of a shared
    parameter is the sum of K torch optimizers' displacements, each fed one task."""
    ada_cls, torch_cls, kw = BASES[base]
    num_tasks, gen = 3, torch.Generator().manual_seed(2)
    theta0 = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    shared = nn.Parameter(theta0.clone())
    ada = ada_cls([shared], num_tasks=num_tasks, foreach=foreach, **kw)
    copies = [nn.Parameter(theta0.clone()) for _ in range(num_tasks)]
    refs = [torch_cls([c], **kw) for c in copies]
    for _ in range(25):
        # tasks on very different gradient scales, as in segmentation vs depth
        grads = [torch.randn(4, 3, dtype=torch.float64, generator=gen) * 10.0**k for k in range(num_tasks)]
        ada.step(task_grads=[[g] for g in grads])
        for c, ref, g in zip(copies, refs, grads):
            c.grad = g.clone()
            ref.step()
        expected = theta0 + sum(c.detach() - theta0 for c in copies)
        assert (shared.detach() - expected).abs().max().item() <= 1e-10


@pytest.mark.parametrize("base", BASES)
def test_foreach_and_per_tensor_paths_agree(base):
    ada_cls, _, kw = BASES[base]
    for mode in ("decoupled", "l2"):
        nets = [TwoTaskNet(2), TwoTaskNet(2)]
        opts = [ada_cls(n.trunk.parameters(), task_params=n.task_params(), foreach=f, weight_decay=0.1,
                        weight_decay_mode=mode, **kw) for n, f in zip(nets, (True, False))]
        for x, ys in batches(10):
            for net, opt in zip(nets, opts):
                opt.zero_grad()
                opt.backward(net.losses(x, ys))
                opt.step()
        assert max_param_diff(*nets) <= 1e-12


def test_adam_is_invariant_to_scaling_one_task_loss():
    """Static task weights barely matter under AdaTask: ×10 on one loss leaves the
    trajectory unchanged when ε is far below the gradient scale."""
    nets = [TwoTaskNet(2), TwoTaskNet(2)]
    opts = [AdamWithAdaTask(n.trunk.parameters(), task_params=n.task_params(), lr=1e-2, eps=1e-12) for n in nets]
    for x, ys in batches(20):
        for net, opt, scales in zip(nets, opts, ([1.0, 1.0], [10.0, 1.0])):
            opt.zero_grad()
            opt.backward(net.losses(x, ys, scales))
            opt.step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=0)
    # and plain Adam on the same weighted sum is not invariant: the test can fail
    plain = [TwoTaskNet(2), TwoTaskNet(2)]
    popts = [torch.optim.Adam(n.parameters(), lr=1e-2, eps=1e-12) for n in plain]
    for x, ys in batches(20):
        for net, opt, scales in zip(plain, popts, ([1.0, 1.0], [10.0, 1.0])):
            opt.zero_grad()
            net.losses(x, ys, scales).sum().backward()
            opt.step()
    assert max_param_diff(*plain) > 1e-3


@pytest.mark.parametrize("base", BASES)
def test_state_dict_round_trip_continues_identically(base):
    ada_cls, _, kw = BASES[base]
    net = TwoTaskNet(2)
    opt = ada_cls(net.trunk.parameters(), task_params=net.task_params(), **kw)
    data = list(batches(10))

    def train(n, o, part):
        for x, ys in part:
            o.zero_grad()
            o.backward(n.losses(x, ys))
            o.step()

    train(net, opt, data[:5])
    saved_net, saved_state = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    per_task = [v for s in saved_state["state"].values() for k, v in s.items() if k != "step"]
    assert any(v.shape[0] == 2 for v in per_task)  # the per-task moments are in the state
    train(net, opt, data[5:])

    net2 = TwoTaskNet(2)
    net2.load_state_dict(saved_net)
    opt2 = ada_cls(net2.trunk.parameters(), task_params=net2.task_params(), **kw)
    opt2.load_state_dict(saved_state)
    train(net2, opt2, data[5:])
    assert max_param_diff(net, net2) == 0.0


@pytest.mark.parametrize("base", BASES)
def test_l2_weight_decay_with_one_task_equals_torch_weight_decay(base):
    ada_cls, torch_cls, kw = BASES[base]
    net_a, net_b = TwoTaskNet(1), TwoTaskNet(1)
    ada = ada_cls(net_a.trunk.parameters(), task_params=net_a.task_params(), weight_decay=0.05,
                  weight_decay_mode="l2", **kw)
    ref = torch_cls(net_b.parameters(), weight_decay=0.05, **kw)
    for x, ys in batches(10, 1):
        step_both(net_a, ada, net_b, ref, x, ys)
    assert max_param_diff(net_a, net_b) <= 1e-7


def test_decoupled_weight_decay_with_one_task_equals_adamw():
    net_a, net_b = TwoTaskNet(1), TwoTaskNet(1)
    ada = AdamWithAdaTask(net_a.trunk.parameters(), task_params=net_a.task_params(), lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW(net_b.parameters(), lr=1e-2, weight_decay=0.1)
    for x, ys in batches(10, 1):
        step_both(net_a, ada, net_b, ref, x, ys)
    assert max_param_diff(net_a, net_b) <= 1e-7


def test_lr_scheduler_drives_the_update_size():
    shared = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = AdagradWithAdaTask([shared], num_tasks=2, lr=1.0, eps=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    g = torch.ones(3, dtype=torch.float64)
    opt.step(task_grads=[[g], [g]])  # Adagrad first step: each task moves lr·g/|g| = 1
    assert torch.allclose(shared.detach(), torch.full((3,), -2.0, dtype=torch.float64))
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5


def test_per_group_learning_rates():
    a, b = nn.Parameter(torch.zeros(2, dtype=torch.float64)), nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = RMSpropWithAdaTask([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}], num_tasks=1, eps=0.0)
    g = torch.ones(2, dtype=torch.float64)
    opt.step(task_grads=[[g, g]])
    assert a.detach()[0] / b.detach()[0] == pytest.approx(10.0)


class CountingIdentity(torch.autograd.Function):
    """Counts how often autograd runs the backward of the graph segment it marks."""

    calls = {}

    @staticmethod
    def forward(ctx, x, name):
        ctx.name = name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        CountingIdentity.calls[ctx.name] = CountingIdentity.calls.get(ctx.name, 0) + 1
        return grad, None


@pytest.mark.parametrize("stacked", [True, False])
def test_task_gradients_takes_k_passes_each_through_its_own_branch_only(stacked):
    net = TwoTaskNet(3)
    x, ys = next(batches(1, 3))
    CountingIdentity.calls = {}
    z = CountingIdentity.apply(net.trunk(x), "trunk")
    losses = [((CountingIdentity.apply(h(z), f"head{k}").squeeze(1) - y) ** 2).mean()
              for k, (h, y) in enumerate(zip(net.heads, ys))]
    losses = torch.stack(losses) if stacked else losses
    shared = list(net.trunk.parameters())
    grads = task_gradients(losses, shared, net.task_params())
    assert CountingIdentity.calls == {"trunk": 3, "head0": 1, "head1": 1, "head2": 1}

    # the per-task gradients add up to the gradient of the summed loss, and each
    # task's own parameters got exactly their gradient
    ref = TwoTaskNet(3)
    ref.losses(x, ys).sum().backward()
    for i, p in enumerate(ref.trunk.parameters()):
        assert torch.allclose(sum(g[i] for g in grads), p.grad, atol=1e-12)
    for h, h_ref in zip(net.heads, ref.heads):
        for p, q in zip(h.parameters(), h_ref.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-12)


def test_bad_task_grads_are_a_clear_error():
    opt = AdamWithAdaTask([nn.Parameter(torch.zeros(2))], num_tasks=2)
    with pytest.raises(ValueError, match="2 lists of 1 gradients"):
        opt.step(task_grads=[[torch.ones(2)]])
    with pytest.raises(ValueError, match="expected 2 task losses"):
        opt.backward(torch.ones(3, requires_grad=True))


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("num_tasks", [1, 2, 3])
def test_task_updates_are_exactly_what_the_step_added(base, foreach, num_tasks):
    """The functional core run again on zeros after a step gives each task's update bit for
    bit: the step adds them one task after another, after the decoupled decay."""
    ada_cls, _, kw = BASES[base]
    gen = torch.Generator().manual_seed(3)
    params = [nn.Parameter(torch.randn(4, 3, generator=gen)), nn.Parameter(torch.randn(3, generator=gen))]
    opt = ada_cls([{"params": params[:1], "lr": 3e-3}, {"params": params[1:]}], num_tasks=num_tasks,
                  foreach=foreach, weight_decay=0.1, **kw)
    for step in range(5):
        grads = [[None if (step + k) % 4 == 3 else torch.randn(p.shape, generator=gen) * 10.0**k for p in params]
                 for k in range(num_tasks)]
        before = [p.detach().clone() for p in params]
        opt.step(task_grads=grads)
        if all(g is None for task in grads for g in task):  # no task reached anything: nothing stepped
            assert all(torch.equal(b, p.detach()) for b, p in zip(before, params))
            continue
        updates = opt.task_updates(params, grads)
        for i, (p, b, group) in enumerate(zip(params, before, opt.param_groups)):
            expected = b * (1.0 - float(group["lr"]) * group["weight_decay"])
            for k in range(num_tasks):
                expected = expected + updates[k][i]
            assert torch.equal(expected, p.detach())


def test_task_updates_under_l2_decay_where_the_step_reads_only_the_state():
    """Adam's step reads its moments, into which the l2 term went: its task updates are
    recovered; RMSprop's reads the gradient, whose l2 term used θ before the step: refused."""
    gen = torch.Generator().manual_seed(4)
    shared = nn.Parameter(torch.randn(5, dtype=torch.float64, generator=gen))
    opt = AdamWithAdaTask([shared], num_tasks=2, lr=1e-2, weight_decay=0.1, weight_decay_mode="l2")
    opt.check_task_updates([shared])
    grads = [[torch.randn(5, dtype=torch.float64, generator=gen)] for _ in range(2)]
    before = shared.detach().clone()
    opt.step(task_grads=grads)
    updates = opt.task_updates([shared], grads)
    assert torch.equal(before + updates[0][0] + updates[1][0], shared.detach())
    with pytest.raises(ValueError, match="decoupled weight decay only, not l2"):
        RMSpropWithAdaTask([shared], num_tasks=2, weight_decay=0.1, weight_decay_mode="l2").check_task_updates([shared])
    head = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="task 0's group"):
        AdamWithAdaTask([shared], task_params=[[head]]).check_task_updates([head])
