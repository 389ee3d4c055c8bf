"""Every --method with every --weighting trains a tiny MTAN on SynthCity through the training
engine: the two release tasks, and CityScapes-3 (semantic, instance, depth) with K = 3."""
import pytest
import torch

from data.cityscapes import CityscapesNpy
from models import build_model
from optim import OPTIMIZERS, build_optimizer
from optim.engine import TrainingEngine
from optim.weighting import WEIGHTINGS, build_weighting
from tasks import DEFAULT_TASKS, build_tasks

# these tests seed the global RNGs (torch.manual_seed) and draw from them (DataLoader): given back after each
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]

CITYSCAPES_3 = ("semantic", "instance", "depth")


def batches(root, tasks):
    data = CityscapesNpy(root, "train", tasks, augment=True)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)
    return [(image, [targets[t.name] for t in tasks]) for (image, targets), _ in zip(loader, range(2))]


def train_two_steps(root, task_names, method, weighting):
    tasks = build_tasks(task_names)
    torch.manual_seed(0)
    model = build_model("mtan", tasks, 0.125)
    before = [p.detach().clone() for p in model.parameters()]
    # SGD's usual step size: at 1e-3 a BatchNorm weight's gradient of 1e-5 moves it by less than float32 resolves
    lr = 0.1 if method == "sgd" else 1e-3
    optimizer = build_optimizer(method, model.shared_parameters(), model.task_specific_parameters(), lr)

    def compute_losses(batch):
        image, targets = batch
        preds = model(image)
        return preds, [task.loss(p, y) for task, p, y in zip(tasks, preds, targets)]

    engine = TrainingEngine(model, optimizer, build_weighting(weighting, len(tasks)), compute_losses, task_names,
                            clip_grad_norm=10.0, diagnostics_every=1, diagnose_plain=True)
    for batch in batches(root, tasks):
        result = engine.train_step(batch, epoch=0)
        names = [t.name for t in tasks]
        assert -1.0 <= result.diagnostics[f"cosine/{names[0]}-{names[-1]}"] <= 1.0
        # effective weights exist for K×K mixings; GradDrop, ConFIG, DB-MTL and MoCo are none
        expected = len(tasks) if WEIGHTINGS[weighting].mixes else 0
        assert len([k for k in result.diagnostics if k.startswith("weight/")]) == expected
    engine.end_epoch(0)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert all(not torch.equal(b, a) for b, a in zip(before, after) if a.requires_grad)


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_two_tasks_two_steps_give_finite_changed_parameters(tiny_synthcity, method, weighting):
    train_two_steps(tiny_synthcity, DEFAULT_TASKS, method, weighting)


@pytest.mark.parametrize("method", list(OPTIMIZERS))
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_cityscapes_3_trains_with_every_method_and_weighting(tiny_synthcity, method, weighting):
    train_two_steps(tiny_synthcity, CITYSCAPES_3, method, weighting)
