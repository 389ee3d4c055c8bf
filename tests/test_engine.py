"""The training engine owns a step's life cycle: context, hooks, look-ahead, diagnostics names."""
import math

import pytest
import torch
from torch import nn

from optim import build_optimizer
from optim.engine import NonFinite, TrainingEngine
from optim.weighting import build_weighting
from optim.weighting.base import WeightingMethod

# these tests seed or draw from the global RNGs (torch.manual_seed, layer initialisation): given back after each
pytestmark = pytest.mark.usefixtures("seeded_and_restored")

TASKS = ("a", "b")


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in TASKS)

    def forward(self, x):
        h = self.trunk(x)
        return [head(h) for head in self.heads]

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_specific_parameters(self):
        return [list(head.parameters()) for head in self.heads]


class Recorder(WeightingMethod):
    """Equal weights; records what the engine hands its hooks."""

    name = "recorder"

    def __init__(self, num_tasks, needs_lookahead=False):
        super().__init__(num_tasks)
        self.needs_lookahead = needs_lookahead
        self.contexts, self.epochs = [], []

    def weights(self, ctx):
        return torch.ones(self.num_tasks)

    def after_step(self, ctx):
        self.contexts.append(ctx)

    def end_epoch(self, epoch, mean_losses):
        self.epochs.append((epoch, mean_losses.clone()))


def engine_for(weighting, method="adam", scale=1.0):
    model = TwoHeads()
    calls = []

    def compute_losses(batch):
        calls.append(batch)
        preds = model(batch)
        return preds, [scale * (p - k).pow(2).mean() for k, p in enumerate(preds)]

    optimizer = build_optimizer(method, model.shared_parameters(), model.task_specific_parameters(), 0.1)
    return TrainingEngine(model, optimizer, weighting, compute_losses, TASKS, diagnostics_every=2), calls


def test_hooks_get_the_step_context_and_the_epoch_mean_losses():
    weighting = Recorder(2)
    engine, calls = engine_for(weighting)
    batches = [torch.randn(8, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    results = [engine.train_step(batch, epoch=0) for batch in batches]
    engine.end_epoch(0)
    assert len(calls) == 3  # one forward a step: no look-ahead was built for a method without one
    assert [ctx.step for ctx in weighting.contexts] == [0, 1, 2] and engine.global_step == 3
    assert all(ctx.losses_after is None and ctx.lr == 0.1 for ctx in weighting.contexts)
    for ctx, result in zip(weighting.contexts, results):
        assert ctx.losses.tolist() == pytest.approx(result.losses)
    [(epoch, mean)] = weighting.epochs
    expected = [sum(r.losses[k] for r in results) / 3 for k in range(2)]
    assert epoch == 0 and mean.tolist() == pytest.approx(expected)
    again = engine.train_step(batches[0], epoch=1)
    engine.end_epoch(1)
    assert weighting.epochs[1][1].tolist() == pytest.approx(again.losses)  # the sums start afresh each epoch


def test_the_look_ahead_is_offered_to_methods_that_need_it_and_restores_the_model():
    weighting = Recorder(2, needs_lookahead=True)
    engine, calls = engine_for(weighting)
    batch = torch.randn(8, 3)
    engine.train_step(batch, epoch=0)
    [ctx] = weighting.contexts
    state = {k: v.clone() for k, v in engine.model.state_dict().items()}
    at_now = ctx.losses_after(None)
    moved = ctx.losses_after([torch.ones_like(p) for p in engine.model.shared_parameters()])
    assert len(calls) == 3 and not torch.equal(at_now, moved)
    assert all(torch.equal(state[k], v) for k, v in engine.model.state_dict().items())


def test_famo_gets_its_extra_forward_from_the_engine():
    engine, calls = engine_for(build_weighting("famo", 2))
    engine.train_step(torch.randn(8, 3), epoch=0)
    assert len(calls) == 2


def test_diagnostics_are_named_after_the_tasks_every_n_steps():
    engine, _ = engine_for(build_weighting("pcgrad", 2), method="adam_with_adatask")
    first = engine.train_step(torch.randn(8, 3), epoch=0)
    second = engine.train_step(torch.randn(8, 3), epoch=0)
    assert {"cosine/a-b", "norm_ratio/a-b", "weight/a", "weight/b"} == set(first.diagnostics)
    assert second.diagnostics == {}


def test_a_non_finite_loss_stops_before_the_update_naming_task_and_step():
    engine, _ = engine_for(Recorder(2), scale=math.inf)
    before = [p.detach().clone() for p in engine.model.parameters()]
    with pytest.raises(NonFinite, match=r"epoch 1, step 0: loss_a is inf, loss_b is inf"):
        engine.train_step(torch.randn(8, 3), epoch=0)
    assert all(torch.equal(b, p) for b, p in zip(before, engine.model.parameters()))
