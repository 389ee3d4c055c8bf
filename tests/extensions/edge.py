"""A toy task for tests/test_extension.py: the boundaries between the 7 categories, derived
from label_7/ (no folder of its own)."""
import numpy as np
import torch

from data.layout import label_dir
from optim.distributed import all_reduce_sum

from . import drawing
from .base import Metric, Task, TaskMeter, TrivialPredictor

LABELS = label_dir(7)


def edge_map(labels):
    """1 where a pixel's category differs from its right or lower neighbour, −1 where it or
    they are void, 0 elsewhere."""
    edges = np.zeros(labels.shape, np.float32)
    edges[:, :-1] = np.maximum(edges[:, :-1], labels[:, :-1] != labels[:, 1:])
    edges[:-1] = np.maximum(edges[:-1], labels[:-1] != labels[1:])
    edges[labels < 0] = -1
    return edges


class EdgeMeter(TaskMeter):
    def __init__(self):
        self.sums = torch.zeros(2, dtype=torch.float64)  # (absolute error, valid pixels)

    def update(self, pred, target):
        valid = target >= 0
        self.sums = self.sums + torch.stack([((pred - target).abs() * valid).sum().double(), valid.sum().double()])

    def sum_over_processes(self):
        (self.sums,) = all_reduce_sum([self.sums])

    def compute(self):
        error, pixels = self.sums.tolist()
        return {"edge_err": error / pixels if pixels else None}


class NoEdges(TrivialPredictor):
    def describe(self):
        return "no edge anywhere"

    def predict(self, target):
        return torch.zeros_like(target, dtype=torch.float64)


class EdgeTask(Task):
    name = "edge"
    metrics = (Metric("edge_err", "EdgeErr", False),)

    def folders(self):
        return (LABELS,)

    def target(self, arrays):
        return edge_map(arrays[LABELS])

    def to_tensor(self, target):
        return torch.from_numpy(target[None].copy())

    def out_channels(self):
        return 1

    def activate(self, output):
        return torch.sigmoid(output)

    def loss_terms(self, pred, target):
        valid = target >= 0
        return ((pred - target).abs() * valid).sum(), valid.sum()

    def meter(self, device="cpu"):
        return EdgeMeter()

    def trivial_predictor(self):
        return NoEdges()

    def draw(self, pred, target):
        target = target[0].cpu().numpy()
        shown = np.where(target >= 0, pred[0].float().cpu().numpy(), 0.0)
        return drawing.colourize_depth(shown), drawing.colourize_depth(np.maximum(target, 0))
