"""Instance segmentation as centroid offsets (docs/methods.md, "Tasks"; Kendall et al., CVPR 2018).

The target is instance/<i>.npy, float32 (H, W, 3): channels 0–1 the offset (dy, dx), in
pixels of the stored image, from each pixel of an object instance to that instance's
centroid; channel 2 is 1 on instance pixels and 0 elsewhere, where the offsets are 0.
"""
import torch

from data.layout import INSTANCE_DIR
from optim.distributed import all_reduce_sum

from . import drawing
from .base import Metric, Task, TaskMeter, TrivialPredictor


def offset_error_sums(pred, target):
    """(Σ over instance pixels of |Δdy| + |Δdx|, number of instance pixels), float64 tensors.
    pred (B, 2, H, W); target (B, 3, H, W) as the dataset gives it."""
    if pred.shape[-2:] != target.shape[-2:] or pred.shape[1] != 2 or target.shape[1] != 3:
        raise ValueError(f"instance prediction {tuple(pred.shape)} and target {tuple(target.shape)}: expected "
                         f"(B, 2, H, W) and (B, 3, H, W)")
    mask = target[:, 2:3].double()
    errors = (pred.double() - target[:, :2].double()).abs() * mask
    return errors.sum(), mask.sum()


class InstanceMeter(TaskMeter):
    """inst_err: the mean absolute offset error in pixels, the mean of |Δdy| and |Δdx| over
    every instance pixel of the split (pixel-weighted)."""

    def __init__(self):
        self.sums = torch.zeros(2, dtype=torch.float64)  # (error, instance pixels)

    def update(self, pred, target):
        self.sums = self.sums.to(pred.device) + torch.stack(offset_error_sums(pred, target))

    def sum_over_processes(self):
        (self.sums,) = all_reduce_sum([self.sums])

    def compute(self):
        error, pixels = self.sums.tolist()
        return {"inst_err": error / (2 * pixels) if pixels else float("nan")}


class ZeroOffsets(TrivialPredictor):
    """Offset (0, 0) at every pixel, every pixel its own centroid: InstErr is then the mean
    |offset| over instance pixels. Nothing to fit."""

    def describe(self):
        return "zero offsets everywhere"

    def predict(self, target):
        return torch.zeros(target.shape[0], 2, *target.shape[2:], dtype=target.dtype)


class InstanceTask(Task):
    name = "instance"
    metrics = (Metric("inst_err", "InstErr", False, digits=3, unit="px"),)

    def folders(self):
        return (INSTANCE_DIR,)

    def target(self, arrays):
        return arrays[INSTANCE_DIR]

    def augment(self, target, crop):
        """A zoom by s stretches every offset by s; a flip negates dx. Centroids of instances
        the crop cuts are not recomputed: the offsets still point at the whole object's centre."""
        out = crop.nearest(target)
        if crop.scale != 1:
            out[..., :2] *= crop.scale
        if crop.flip:
            out[..., 1] *= -1
        return out

    def to_tensor(self, target):
        return torch.from_numpy(target.transpose(2, 0, 1).copy())

    def out_channels(self):
        return 2

    def loss_terms(self, pred, target):
        """L1 over instance pixels: |Δdy| + |Δdx| summed there, and twice their number (the
        loss is the mean of both offsets)."""
        error, pixels = offset_error_sums(pred, target)
        return error.to(pred.dtype), (2 * pixels).long()

    def meter(self, device="cpu"):
        return InstanceMeter()

    def trivial_predictor(self):
        return ZeroOffsets()

    def draw(self, pred, target):
        target = target.cpu().numpy()
        mask = target[2] > 0
        predicted = drawing.colourize_offsets(pred.float().cpu().numpy(), mask)
        return predicted, drawing.colourize_offsets(target[:2], mask)

    def key(self, height, width):
        return drawing.offset_key(height, width)
