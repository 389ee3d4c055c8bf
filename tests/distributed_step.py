"""Training steps of a tiny float64 multi-task net (BatchNorm in training mode), for
tests/test_distributed.py: run as `torchrun --nproc-per-node 2 tests/distributed_step.py OUT`,
each process takes its shard of every global batch and rank r saves what it saw to
OUT/rank<r>.pt; imported, `steps(...)` gives the single-process reference on the whole batch.

A method with extra batches a step (sdmgrad) takes that many consecutive global batches a step.
For every (optimizer, weighting) combination it records, per step, the gradients the
optimizer got (every .grad, and AdaTask's per-task contributions), the parameters and the
BatchNorm buffers after the step, and the losses the engine reported.
"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiment.world import shard
from models.synced_batchnorm import synchronise_batchnorm
from optim import build_optimizer
from optim.engine import TrainingEngine
from optim.weighting import WEIGHTINGS, build_weighting
from tasks import TaskSettings, build_tasks

TASKS = build_tasks(["semantic", "depth"], TaskSettings(classes=3))
STEPS = 2
# (optimizer, weighting, global batch): the three of the issue with gradients compared, on an
# even and an odd global batch; then every weighting under both optimizers on two steps.
GRADIENT_CASES = [("adam", "ew", 6), ("adam_with_adatask", "ew", 6), ("adam_with_adatask", "pcgrad", 6),
                  ("adam_with_adatask", "pcgrad", 3), ("adam", "ew", 1), ("adam_with_adatask", "sdmgrad", 3)]
EVERY_WEIGHTING = [(method, name, 4) for name in WEIGHTINGS for method in ("adam", "adam_with_adatask")]


class TinyNet(nn.Module):
    """conv-BN-ReLU ×2 shared, a 1×1 conv head per task (semantic log-softmax, depth). The
    convolutions before a BatchNorm have no bias: its gradient is zero up to rounding, which
    Adam would turn into a full-size step of either sign."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                   nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.heads = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1)),
                                    nn.Conv2d(4, 1, 1)])

    def forward(self, x):
        h = self.trunk(x)
        return [TASKS[0].activate(self.heads[0](h)), self.heads[1](h)]

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_specific_parameters(self):
        return [list(head.parameters()) for head in self.heads]


def global_batches(batch_size, steps, seed=0):
    """Images, labels with void pixels (-1) and depths with invalid (0) pixels, unevenly
    spread over the samples, so that each process's valid count differs from the others'."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        image = torch.randn(batch_size, 3, 6, 8, generator=g, dtype=torch.float64)
        labels = torch.randint(0, 3, (batch_size, 6, 8), generator=g)
        depth = torch.rand(batch_size, 1, 6, 8, generator=g, dtype=torch.float64) + 0.5
        for i in range(batch_size):
            labels[i, : i % 4] = -1
            depth[i, :, : (2 * i) % 5] = 0
        out.append((image, [labels, depth]))
    return out


def compute_losses(model):
    def forward(batch):
        image, targets = batch
        preds = model(image)
        return preds, [task.loss_terms(p, y) for task, p, y in zip(TASKS, preds, targets)]
    return forward


def steps(method, weighting, batch_size, rank=0, size=1):
    """What one process records over STEPS steps of the combination (see the module docstring)."""
    torch.manual_seed(0)
    model = TinyNet().double()
    if size > 1:
        synchronise_batchnorm(model)
    optimizer = build_optimizer(method, model.shared_parameters(), model.task_specific_parameters(), 1e-2)
    engine = TrainingEngine(model, optimizer, build_weighting(weighting, len(TASKS)), compute_losses(model),
                            [t.name for t in TASKS])
    seen = {"grads": [], "task_grads": [], "params": [], "buffers": [], "losses": []}
    step = optimizer.step

    def recording_step(*args, task_grads=None, **kwargs):
        seen["grads"].append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        seen["task_grads"].append(None if task_grads is None else
                                  [[None if g is None else g.clone() for g in task] for task in task_grads])
        return step(*args, **({} if task_grads is None else {"task_grads": task_grads}), **kwargs)
    optimizer.step = recording_step
    model.train()
    per_step = getattr(engine.weighting, "batches", 1)  # sdmgrad: the main batch and per_step - 1 extra ones
    part = shard(list(range(batch_size)), rank, size)
    drawn = [(image[part], [y[part] for y in targets]) for image, targets in global_batches(batch_size, STEPS * per_step)]
    for first in range(0, len(drawn), per_step):
        result = engine.train_step(drawn[first], epoch=0, extra_batches=drawn[first + 1:first + per_step])
        seen["losses"].append(result.losses)
        seen["params"].append([p.detach().clone() for p in model.parameters()])
        seen["buffers"].append([b.clone() for b in model.buffers()])
    return seen


def cases():
    return GRADIENT_CASES + EVERY_WEIGHTING


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.save({case: steps(*case, rank=rank, size=size) for case in cases()}, Path(sys.argv[1]) / f"rank{rank}.pt")
    dist.destroy_process_group()
