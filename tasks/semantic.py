"""Semantic segmentation (docs/methods.md, "Tasks"): per-pixel classes, void ignored."""
import numpy as np
import torch
import torch.nn.functional as F

from data.labels import VOID, class_names
from data.layout import label_dir

from . import drawing
from .base import Metric, Task, TaskMeter, TrivialPredictor
from .meters import ConfusionMatrix


class SemanticMeter(TaskMeter):
    """mIoU and pixel accuracy from one confusion matrix over the split, and the IoU per class."""

    def __init__(self, names, device):
        self.names = tuple(names)
        self.confusion = ConfusionMatrix(len(self.names), device)

    def update(self, pred, target):
        self.confusion.update(pred, target)

    def sum_over_processes(self):
        self.confusion.sum_over_processes()

    def compute(self):
        iou = self.confusion.iou_per_class().tolist()
        return {"miou": self.confusion.miou(), "pix_acc": self.confusion.pix_acc(),
                "class_iou": {name: None if np.isnan(v) else v for name, v in zip(self.names, iou)}}


class MajorityClass(TrivialPredictor):
    """The most frequent train class over non-void pixels, everywhere."""

    fits = True

    def __init__(self, classes):
        self.classes = classes
        self.counts = np.zeros(classes, dtype=np.int64)

    def observe(self, target):
        known = target[(target >= 0) & (target < self.classes)]
        self.counts += np.bincount(known.numpy(), minlength=self.classes)

    def fitted(self, train_dir):
        if self.counts.sum() == 0:
            raise ValueError(f"{train_dir}: no labelled pixel")
        self.majority = int(self.counts.argmax())
        return {"majority_class": self.majority}

    def describe(self):
        return f"class {self.majority} everywhere"

    def predict(self, target):
        return torch.full_like(target, self.majority)


class SemanticTask(Task):
    name = "semantic"
    metrics = (Metric("miou", "mIoU", True, scale=100, digits=2, unit="%"),
               Metric("pix_acc", "PixAcc", True, scale=100, digits=2, unit="%"))

    def folders(self):
        return (label_dir(self.settings.classes),)

    def target(self, arrays):
        return arrays[label_dir(self.settings.classes)]

    def to_tensor(self, target):
        return torch.from_numpy(target.astype(np.int64))

    def out_channels(self):
        return self.settings.classes

    def activate(self, output):
        return F.log_softmax(output, dim=1)

    def loss_terms(self, pred, target):
        """NLL of the log-softmax output summed over the non-void pixels, and their number."""
        return F.nll_loss(pred, target, ignore_index=VOID, reduction="sum"), (target != VOID).sum()

    def meter(self, device="cpu"):
        return SemanticMeter(class_names(self.settings.classes), device)

    def trivial_predictor(self):
        return MajorityClass(self.settings.classes)

    def draw(self, pred, target):
        target = target.cpu().numpy()
        classes = self.settings.classes
        shown = np.where((target >= 0) & (target < classes), pred.argmax(0).cpu().numpy(), VOID)
        return drawing.colourize_labels(shown, classes), drawing.colourize_labels(target, classes)

    def key(self, height, width):
        return drawing.legend(self.settings.classes, height, width)
