"""Every --weighting method with plain Adam and with AdaTask trains a tiny MTAN on SynthCity."""
import pytest
import torch

from data.cityscapes import CityscapesNpy
from models import TASKS, build_model
from models.losses import LOSSES
from optim import build_optimizer
from optim.multitask_step import MultiTaskStep
from optim.weighting import WEIGHTINGS, build_weighting
from optim.weighting.base import StepContext
from optim.weighting.lookahead import losses_after_fn


@pytest.fixture(scope="module")
def batches(tiny_synthcity):
    data = CityscapesNpy(tiny_synthcity, "train", augment=True)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)
    return [batch for batch, _ in zip(loader, range(2))]


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_two_steps_give_finite_changed_parameters(batches, method, weighting):
    torch.manual_seed(0)
    model = build_model("mtan", 7, 0.125)
    before = [p.detach().clone() for p in model.parameters()]
    shared, own = model.shared_parameters(), model.task_specific_parameters()
    step = MultiTaskStep(build_optimizer(method, shared, own, 1e-3), build_weighting(weighting, len(TASKS)),
                         shared, own, clip_grad_norm=10.0)
    for i, (image, label, depth) in enumerate(batches):
        targets = [label, depth]

        def compute_losses(image=image, targets=targets):
            return [LOSSES[t](p, y) for t, p, y in zip(TASKS, model(image), targets)]

        ctx = StepContext(losses=None, epoch=i, step=i, lr=1e-3,
                          losses_after=losses_after_fn(model, lambda: torch.stack(compute_losses()), shared))
        info = step(compute_losses(), ctx, want_diagnostics=True)
        if step.computes_task_gradients:
            assert -1.0 <= info["cosine/0-1"] <= 1.0 and info["norm_ratio/0-1"] > 0
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert all(not torch.equal(b, a) for b, a in zip(before, after) if a.requires_grad)
