"""Depth estimation (docs/methods.md, "Tasks"): the release's inverse depth, 0 where invalid."""
import numpy as np
import torch

from data.augment import check_depth_rule, scale_depth
from data.layout import DEPTH_DIR

from . import drawing
from .base import Metric, Task, TaskMeter, TrivialPredictor
from .meters import DepthErrors


class DepthMeter(TaskMeter):
    """AbsErr and RelErr as means of per-batch means (the reference code's convention), and
    the pixel-weighted means as abs_err_px and rel_err_px."""

    def __init__(self):
        self.errors = DepthErrors()

    def update(self, pred, target):
        self.errors.update(pred, target)

    def sum_over_processes(self):
        self.errors.sum_over_processes()

    def compute(self):
        e = self.errors
        return {"abs_err": e.abs_err(), "rel_err": e.rel_err(), "abs_err_px": e.abs_err_px(),
                "rel_err_px": e.rel_err_px()}


class MeanDepth(TrivialPredictor):
    """The mean train depth over valid (non-zero) pixels, everywhere."""

    fits = True

    def __init__(self):
        self.total, self.count = 0.0, 0

    def observe(self, target):
        valid = target[target != 0]
        self.total += valid.double().sum().item()
        self.count += valid.numel()

    def fitted(self, train_dir):
        if self.count == 0:
            raise ValueError(f"{train_dir}: no valid depth pixel")
        self.mean = self.total / self.count
        return {"mean_depth": self.mean}

    def describe(self):
        return f"depth {self.mean:.6f} everywhere"

    def predict(self, target):
        return torch.full(target.shape, self.mean, dtype=torch.float64)


class DepthTask(Task):
    name = "depth"
    metrics = (Metric("abs_err", "AbsErr", False), Metric("rel_err", "RelErr", False))

    def __init__(self, settings=None):
        super().__init__(settings)
        check_depth_rule(self.settings.depth_rule)

    def folders(self):
        return (DEPTH_DIR,)

    def target(self, arrays):
        return arrays[DEPTH_DIR]

    def augment(self, target, crop):
        return scale_depth(crop.nearest(target), crop.scale, self.settings.depth_rule)

    def to_tensor(self, target):
        return torch.from_numpy(target.reshape(1, *target.shape[:2]))

    def out_channels(self):
        return 1

    def loss_terms(self, pred, target):
        """L1 summed over the valid pixels (target != 0), and their number."""
        valid = target != 0
        return ((pred - target).abs() * valid).sum(), valid.sum()

    def meter(self, device="cpu"):
        return DepthMeter()

    def trivial_predictor(self):
        return MeanDepth()

    def draw(self, pred, target):
        target = target[0].cpu().numpy()
        shown = np.where(target > 0, pred[0].float().cpu().numpy(), 0.0)
        return drawing.colourize_depth(shown), drawing.colourize_depth(target)

    def key(self, height, width):
        return drawing.depth_key(height, width)
