"""The metric accumulators the tasks' meters are built on: a confusion matrix and depth error
sums over a whole split (docs/methods.md, "Tasks").

The math lives in small functions (`confusion_counts`, `pix_acc`, `iou_per_class`, `miou`,
`depth_error_sums`); the accumulator classes only add their results up. Depth sums stay
tensors on the inputs' device and the confusion matrix on its own device, so a CUDA batch
costs no host round trip beyond the label-range check and the bincount.
"""
import math

import torch

from optim.distributed import all_reduce_sum

# ---------------------------------------------------------------- segmentation

def confusion_counts(pred, target, num_classes):
    """(C, C) int64 counts of (target, prediction) pairs; rows = target, columns = prediction.

    `pred` holds labels (B,H,W) or log-probs (B,C,H,W) (argmax over dim 1). Pixels whose target
    lies outside [0, C) (void = -1) are ignored. A predicted label outside [0, C) is an error,
    not a silently miscounted pixel.
    """
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes}), got {pred.min().item()}..{pred.max().item()}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def pix_acc(cm):
    """Correct / counted pixels; NaN for an empty matrix."""
    total = cm.sum().item()
    return cm.diagonal().sum().item() / total if total else math.nan


def iou_per_class(cm):
    """diag / (row + col - diag) per class as float64; NaN where the union is 0."""
    cm = cm.double()
    diag = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - diag
    return torch.where(union > 0, diag / union.clamp(min=1), torch.full_like(diag, math.nan))


def miou(cm):
    """Mean IoU over the classes that occur (union > 0): an absent class is left out, not a 0."""
    iou = iou_per_class(cm)
    present = ~iou.isnan()
    return iou[present].mean().item() if present.any() else math.nan


class ConfusionMatrix:
    """Confusion matrix over a whole split. Row = target, column = prediction."""

    def __init__(self, num_classes, device="cpu"):
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred, target):
        self.mat += confusion_counts(pred, target, self.num_classes).to(self.mat.device)

    def reset(self):
        self.mat.zero_()

    def sum_over_processes(self):
        (self.mat,) = all_reduce_sum([self.mat])

    def pix_acc(self):
        return pix_acc(self.mat)

    def iou_per_class(self):
        return iou_per_class(self.mat)

    def miou(self):
        return miou(self.mat)


# ---------------------------------------------------------------- depth

def depth_error_sums(pred, target):
    """(sum |p-t|, sum |p-t|/t, number of valid pixels) in float64; valid = target != 0."""
    if pred.shape != target.shape:
        raise ValueError(f"depth prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}")
    pred, target = pred.double(), target.double()
    valid = target != 0
    err = (pred - target).abs()[valid]
    return err.sum(), (err / target[valid]).sum(), valid.sum().double()


class DepthErrors:
    """AbsErr and RelErr over valid pixels, in the two conventions of docs/methods.md, "Depth".

    Batch-mean (the reference code, the default for comparability): the mean over each
    batch's valid pixels, then the plain mean over batches; a batch without a valid pixel
    contributes nothing. Pixel-weighted (`*_px`): the mean over all valid pixels of the split.
    The sums are kept per batch: across processes (`sum_over_processes`) a batch's mean is
    that of the global batch, which totals over the split could not give.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._rows = []  # per batch: (sum |p-t|, sum |p-t|/t, valid pixels), float64 on the inputs' device

    def update(self, pred, target):
        self._rows.append(torch.stack(depth_error_sums(pred, target)))

    def sum_over_processes(self):
        if self._rows:
            self._rows = list(all_reduce_sum([torch.stack(self._rows)])[0])

    def _sums(self):
        return torch.stack(self._rows) if self._rows else torch.zeros(0, 3, dtype=torch.float64)

    def _batch_mean(self, column):
        rows = self._sums()
        has_valid = rows[:, 2] > 0
        return self._ratio((rows[:, column] / rows[:, 2].clamp(min=1)).sum(), has_valid.sum())

    def _pixel_mean(self, column):
        rows = self._sums()
        return self._ratio(rows[:, column].sum(), rows[:, 2].sum())

    @staticmethod
    def _ratio(num, den):
        den = float(den)
        return float(num) / den if den else math.nan

    def abs_err(self):
        return self._batch_mean(0)

    def rel_err(self):
        return self._batch_mean(1)

    def abs_err_px(self):
        return self._pixel_mean(0)

    def rel_err_px(self):
        return self._pixel_mean(1)
